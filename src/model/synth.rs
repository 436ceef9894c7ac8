//! Synthetic models for tests: a complete, valid GGUF with random weights and a small
//! SentencePiece-style vocabulary, in any supported tensor type, for `llama` or `mobilellm`.
//! Also [`duplicate_blocks`], which unrolls MobileLLM-LS layer sharing into a plain llama file:
//! the oracle that layer sharing is implemented right.

use super::config::{Arch, ModelConfig};
use super::tensors::expected_tensors;
use crate::gguf::{GgufFile, GgufWriter, MetaType, MetaValue};
use crate::quant::{quantize, random_blocks, GgmlType};
use crate::Error;

/// Shape, types and seed of a synthetic model.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSpec {
    pub arch: Arch,
    pub n_vocab: usize,
    pub dim: usize,
    pub n_layers: usize,
    /// Written as `mobilellm.block_repeat` (must be 1 for `llama`).
    pub block_repeat: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub context_length: usize,
    pub rope_base: f32,
    pub norm_eps: f32,
    /// No `output.weight`: logits use token_embd.
    pub tied: bool,
    /// Type of the block matrices (attn_*, ffn_*).
    pub weight_type: GgmlType,
    /// Type of token_embd and output.
    pub embd_type: GgmlType,
    /// Per-tensor types, first match wins: a tensor whose name contains the key (e.g.
    /// `"attn_v"`, `"blk.0.ffn_down"`) takes the type instead (mixes such as Q4_K_M).
    pub overrides: Vec<(String, GgmlType)>,
    /// Matrices as random valid blocks (`quant::random_blocks`: every quant bit random, scales
    /// sized to the same spread) instead of quantised random values: reaches the corners of a
    /// format a quantiser rarely writes (negative Q6_K scales, the largest 6-bit scales).
    pub random_blocks: bool,
    pub seed: u64,
}

impl SynthSpec {
    /// A tiny model shaped like SmolLM2 (GQA, tied Q8_0 embedding, Q4_1 blocks):
    /// vocab 300, dim 64, 2 layers, 4 heads / 2 KV heads of 16, FFN 96, context 256.
    /// `mobilellm` gets block_repeat 2.
    pub fn tiny(arch: Arch) -> Self {
        SynthSpec {
            arch,
            n_vocab: 300,
            dim: 64,
            n_layers: 2,
            block_repeat: if arch == Arch::MobileLlm { 2 } else { 1 },
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 16,
            ffn_dim: 96,
            context_length: 256,
            rope_base: 10000.0,
            norm_eps: 1e-5,
            tied: true,
            weight_type: GgmlType::Q4_1,
            embd_type: GgmlType::Q8_0,
            overrides: Vec::new(),
            random_blocks: false,
            seed: 42,
        }
    }

    /// The config a model built from this spec loads as.
    pub fn config(&self) -> ModelConfig {
        ModelConfig {
            arch: self.arch,
            n_vocab: self.n_vocab,
            dim: self.dim,
            n_layers: self.n_layers,
            block_repeat: self.block_repeat,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            ffn_dim: self.ffn_dim,
            rope_base: self.rope_base,
            norm_eps: self.norm_eps,
            context_length: self.context_length,
            tied_embeddings: self.tied,
        }
    }
}

/// xorshift64*: tiny, deterministic, good enough for weights.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        // splitmix64 of (seed, stream) so that nearby seeds give unrelated streams; never zero.
        let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x632B_E59B_D9B4_E019);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((r >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// The vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte tokens, common English pieces, then
/// generated letter strings up to `n` (all distinct). Returns (tokens, scores, token types).
fn vocabulary(n: usize) -> (Vec<String>, Vec<f32>, Vec<i32>) {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    let mut seen: std::collections::HashSet<String> = tokens.iter().cloned().collect();
    let words = [
        "▁the",
        "▁a",
        "▁of",
        "▁and",
        "▁to",
        "▁in",
        "▁is",
        "▁was",
        "▁it",
        "▁he",
        "▁she",
        "▁for",
        "▁on",
        "▁with",
        "▁that",
        "▁as",
        "▁at",
        "▁by",
        "▁time",
        "▁once",
        "▁upon",
        "▁there",
        "▁lived",
        "▁small",
        "▁village",
        "▁river",
        "▁Hello",
        "▁world",
        "Hello",
        "▁Once",
        "▁The",
        "th",
        "he",
        "in",
        "er",
        "an",
        "re",
        "on",
        "at",
        "en",
        "nd",
        "es",
        "or",
        "ed",
        "is",
        "it",
        "ing",
        "▁",
        ".",
        ",",
        "!",
        "?",
        "'",
        "\"",
        ":",
        "-",
    ];
    let mut pieces: Vec<String> = words.iter().map(|s| s.to_string()).collect();
    let letters: Vec<char> = "etaoinshrdlcumwfgypbvkjxqz".chars().collect();
    pieces.extend(letters.iter().map(|c| c.to_string()));
    pieces.extend(letters.iter().map(|c| format!("▁{c}")));
    pieces.extend(letters.iter().map(|c| c.to_ascii_uppercase().to_string()));
    pieces.extend(('0'..='9').map(|c| c.to_string()));
    let mut scores = vec![0f32; tokens.len()];
    let mut push = |p: String, tokens: &mut Vec<String>, scores: &mut Vec<f32>, types: &mut Vec<i32>| {
        if tokens.len() < n && seen.insert(p.clone()) {
            // Earlier pieces are "more frequent": SentencePiece prefers higher scores.
            scores.push(-((tokens.len() - 259) as f32));
            tokens.push(p);
            types.push(1);
        }
    };
    for p in pieces {
        push(p, &mut tokens, &mut scores, &mut types);
    }
    // Filler: all letter strings of length 2, 3, ... (with and without the space marker).
    let mut len = 2;
    while tokens.len() < n {
        let total = letters.len().pow(len as u32);
        for k in 0..total {
            if tokens.len() >= n {
                break;
            }
            let mut s = String::new();
            let mut r = k;
            for _ in 0..len {
                s.push(letters[r % letters.len()]);
                r /= letters.len();
            }
            push(format!("▁{s}"), &mut tokens, &mut scores, &mut types);
            push(s, &mut tokens, &mut scores, &mut types);
        }
        len += 1;
    }
    (tokens, scores, types)
}

/// A complete GGUF for `spec`: metadata, vocabulary and random weights (uniform / sqrt(cols) for
/// block matrices so activations stay O(1), norm weights in [0.9, 1.1]).
pub fn synth_gguf(spec: &SynthSpec) -> crate::Result<Vec<u8>> {
    let mut out = Vec::new();
    write_synth_gguf(spec, None, &mut out)?;
    Ok(out)
}

/// [`synth_gguf`] written to `out` tensor by tensor (a 1.6 GB model never sits in memory), with
/// the tokenizer of `vocab` (every `tokenizer.*` key of another GGUF, e.g. llama.cpp's Llama-2
/// vocabulary; `spec.n_vocab` must be its token count) instead of the generated one.
pub fn write_synth_gguf<W: std::io::Write>(spec: &SynthSpec, vocab: Option<&GgufFile>, out: &mut W) -> crate::Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(format!("SynthSpec: {m}")));
    if spec.n_vocab < 300 {
        return bad(format!("n_vocab {} < 300", spec.n_vocab));
    }
    let sizes = [spec.dim, spec.n_layers, spec.block_repeat, spec.n_heads, spec.n_kv_heads, spec.head_dim, spec.ffn_dim, spec.context_length];
    if sizes.contains(&0) || !spec.n_heads.is_multiple_of(spec.n_kv_heads) || !spec.head_dim.is_multiple_of(2) {
        return bad(format!("inconsistent shape {spec:?}"));
    }
    if spec.arch == Arch::Llama && spec.block_repeat != 1 {
        return bad("block_repeat needs architecture mobilellm".into());
    }
    let a = spec.arch.name();
    let mut w = GgufWriter::new();
    let u32v = |v: usize| MetaValue::U32(v as u32);
    w.add_meta("general.architecture", MetaValue::String(a.into()));
    w.add_meta("general.name", MetaValue::String(format!("synthetic-{a}-{}", spec.seed)));
    w.add_meta(&format!("{a}.vocab_size"), u32v(spec.n_vocab));
    w.add_meta(&format!("{a}.context_length"), u32v(spec.context_length));
    w.add_meta(&format!("{a}.embedding_length"), u32v(spec.dim));
    w.add_meta(&format!("{a}.block_count"), u32v(spec.n_layers));
    w.add_meta(&format!("{a}.feed_forward_length"), u32v(spec.ffn_dim));
    w.add_meta(&format!("{a}.attention.head_count"), u32v(spec.n_heads));
    w.add_meta(&format!("{a}.attention.head_count_kv"), u32v(spec.n_kv_heads));
    w.add_meta(&format!("{a}.attention.key_length"), u32v(spec.head_dim));
    w.add_meta(&format!("{a}.attention.value_length"), u32v(spec.head_dim));
    w.add_meta(&format!("{a}.rope.dimension_count"), u32v(spec.head_dim));
    w.add_meta(&format!("{a}.rope.freq_base"), MetaValue::F32(spec.rope_base));
    w.add_meta(&format!("{a}.attention.layer_norm_rms_epsilon"), MetaValue::F32(spec.norm_eps));
    if spec.arch == Arch::MobileLlm {
        w.add_meta("mobilellm.block_repeat", u32v(spec.block_repeat));
    }
    if let Some(v) = vocab {
        let n = v.get("tokenizer.ggml.tokens").and_then(MetaValue::as_array).map_or(0, <[MetaValue]>::len);
        if n != spec.n_vocab {
            return bad(format!("n_vocab {} but the vocabulary has {n} tokens", spec.n_vocab));
        }
        for (k, val) in v.metadata.iter().filter(|(k, _)| k.starts_with("tokenizer.")) {
            w.add_meta(k, val.clone());
        }
    } else {
        let (tokens, scores, types) = vocabulary(spec.n_vocab);
        let arr = |elem, values| MetaValue::Array { elem, values };
        w.add_meta("tokenizer.ggml.model", MetaValue::String("llama".into()));
        w.add_meta("tokenizer.ggml.tokens", arr(MetaType::String, tokens.into_iter().map(MetaValue::String).collect()));
        w.add_meta("tokenizer.ggml.scores", arr(MetaType::F32, scores.into_iter().map(MetaValue::F32).collect()));
        w.add_meta("tokenizer.ggml.token_type", arr(MetaType::I32, types.into_iter().map(MetaValue::I32).collect()));
        w.add_meta("tokenizer.ggml.bos_token_id", MetaValue::U32(1));
        w.add_meta("tokenizer.ggml.eos_token_id", MetaValue::U32(2));
        w.add_meta("tokenizer.ggml.unknown_token_id", MetaValue::U32(0));
        w.add_meta("tokenizer.ggml.add_bos_token", MetaValue::Bool(true));
        w.add_meta("tokenizer.ggml.add_eos_token", MetaValue::Bool(false));
    }

    let tensors = expected_tensors(&spec.config());
    for (name, rows, cols, norm) in &tensors {
        let overridden = spec.overrides.iter().find(|(key, _)| name.contains(key.as_str())).map(|o| o.1);
        let ty = if *norm {
            GgmlType::F32
        } else if let Some(t) = overridden {
            t
        } else if name.starts_with("blk.") {
            spec.weight_type
        } else {
            spec.embd_type
        };
        let dims: Vec<u64> = if *norm { vec![*cols as u64] } else { vec![*cols as u64, *rows as u64] };
        w.add_tensor(name, &dims, ty);
    }
    let types: Vec<GgmlType> = w.tensors.iter().map(|t| t.2).collect();
    w.write(out, &mut |i| {
        let (name, rows, cols, norm) = &tensors[i];
        let mut rng = Rng::new(spec.seed, i as u64);
        if *norm {
            let values: Vec<f32> = (0..*cols).map(|_| 1.0 + 0.1 * rng.uniform()).collect();
            return quantize(types[i], &values);
        }
        // Embedding rows: scale 3/sqrt(dim) keeps tied logits around unit spread.
        let scale = if name.starts_with("blk.") { 1.0 / (*cols as f32).sqrt() } else { 3.0 / (*cols as f32).sqrt() };
        if spec.random_blocks {
            return random_blocks(types[i], rows * cols, scale, spec.seed.wrapping_mul(1000).wrapping_add(i as u64));
        }
        let values: Vec<f32> = (0..rows * cols).map(|_| rng.uniform() * scale).collect();
        quantize(types[i], &values)
    })
}

/// Rewrites a model with block_repeat R as architecture `llama` with each block stored R times in
/// a row (blk.0, blk.0, blk.1, blk.1, ... renumbered 0..n_layers*R). Tensor bytes are copied
/// unchanged, so the result computes exactly what the shared-layer model should.
pub fn duplicate_blocks(bytes: &[u8]) -> crate::Result<Vec<u8>> {
    let file = GgufFile::parse(bytes)?;
    let cfg = ModelConfig::from_gguf(&file)?;
    let r = cfg.block_repeat;
    let from = cfg.arch.name();
    let mut w = GgufWriter::new();
    w.alignment = file.alignment;
    for (k, v) in &file.metadata {
        if k == "mobilellm.block_repeat" {
            continue;
        }
        let key = match k.strip_prefix(&format!("{from}.")) {
            Some(rest) => format!("llama.{rest}"),
            None => k.clone(),
        };
        let value = match key.as_str() {
            "general.architecture" => MetaValue::String("llama".into()),
            "llama.block_count" => MetaValue::U32((cfg.n_layers * r) as u32),
            _ => v.clone(),
        };
        w.add_meta(&key, value);
    }
    // Source tensor of each output tensor, in output order: non-block tensors, then blocks.
    let mut sources = Vec::new();
    for t in file.tensors.iter().filter(|t| !t.name.starts_with("blk.")) {
        w.add_tensor(&t.name, &t.dims, t.ty);
        sources.push(t);
    }
    for layer in 0..cfg.n_layers {
        let prefix = format!("blk.{layer}.");
        for rep in 0..r {
            for t in file.tensors.iter().filter(|t| t.name.starts_with(&prefix)) {
                let new_name = format!("blk.{}.{}", layer * r + rep, &t.name[prefix.len()..]);
                w.add_tensor(&new_name, &t.dims, t.ty);
                sources.push(t);
            }
        }
    }
    let mut out = Vec::new();
    w.write(&mut out, &mut |i| {
        file.try_tensor_data(bytes, sources[i])
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::InvalidArgument(format!("tensor {} outside the file", sources[i].name)))
    })?;
    Ok(out)
}
