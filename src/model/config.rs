//! ModelConfig from GGUF metadata, for architectures `llama` and `mobilellm`.

use crate::gguf::{GgufFile, MetaValue};
use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    /// Llama blocks plus `mobilellm.block_repeat` (MobileLLM-LS weight sharing).
    MobileLlm,
}

impl Arch {
    /// The `general.architecture` string, also the prefix of the hyperparameter keys.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::MobileLlm => "mobilellm",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub n_vocab: usize,        // 49152 (SmolLM2), 32000 (MobileLLM)
    pub dim: usize,            // hidden width, 576 for the 125M shape
    pub n_layers: usize,       // unique blocks stored in the file, 30
    pub block_repeat: usize,   // consecutive runs of each block: 1, or 2 for MobileLLM-LS
    pub n_heads: usize,        // query heads, 9
    pub n_kv_heads: usize,     // key/value heads (GQA), 3
    pub head_dim: usize,       // 64
    pub ffn_dim: usize,        // SwiGLU hidden width, 1536
    pub rope_base: f32,        // 1e4 (MobileLLM) or 1e5 (SmolLM2)
    pub norm_eps: f32,         // RMSNorm epsilon, 1e-5
    pub context_length: usize, // trained context, 2048 / 8192
    /// True when the file has no `output.weight`: logits = h . token_embdᵀ.
    pub tied_embeddings: bool,
}

/// Upper bounds that keep every product of sizes far from overflow (on 32-bit wasm too); real
/// models are orders of magnitude smaller.
const MAX_WIDTH: u64 = 1 << 20;
const MAX_LAYERS: u64 = 4096;
const MAX_REPEAT: u64 = 64;
const MAX_CONTEXT: u64 = 1 << 24;

fn unsupported(msg: impl Into<String>) -> Error {
    Error::UnsupportedModel(msg.into())
}

/// Reads `key` as a positive integer no larger than `max`; `default` when absent.
fn get_size(file: &GgufFile, key: &str, default: Option<u64>, max: u64) -> crate::Result<usize> {
    let v = match file.get(key) {
        None => default.ok_or_else(|| unsupported(format!("missing metadata {key}")))?,
        Some(v) => v.as_u64().ok_or_else(|| unsupported(format!("metadata {key} = {v:?} is not a non-negative integer")))?,
    };
    if v == 0 || v > max {
        return Err(unsupported(format!("metadata {key} = {v} is out of range 1..={max}")));
    }
    Ok(v as usize)
}

fn get_float(file: &GgufFile, key: &str, default: f32) -> crate::Result<f32> {
    match file.get(key) {
        None => Ok(default),
        Some(v) => match v.as_f32() {
            Some(f) if f.is_finite() && f > 0.0 => Ok(f),
            _ => Err(unsupported(format!("metadata {key} = {v:?} is not a positive number"))),
        },
    }
}

impl ModelConfig {
    /// Reads `general.architecture` and the `<arch>.*` keys; checks them against the tensor table
    /// (shapes of every block tensor, tied or separate output). Errors name what is unsupported.
    pub fn from_gguf(file: &GgufFile) -> crate::Result<Self> {
        let arch = match file.get_str("general.architecture") {
            Some("llama") => Arch::Llama,
            Some("mobilellm") => Arch::MobileLlm,
            Some(other) => return Err(unsupported(format!("architecture {other:?} (supported: llama, mobilellm)"))),
            None => return Err(unsupported("missing general.architecture")),
        };
        let a = arch.name();
        let key = |k: &str| format!("{a}.{k}");

        check_features(file, a)?;

        let n_layers = get_size(file, &key("block_count"), None, MAX_LAYERS)?;
        let dim = get_size(file, &key("embedding_length"), None, MAX_WIDTH)?;
        let ffn_dim = get_size(file, &key("feed_forward_length"), None, MAX_WIDTH)?;
        let n_heads = get_size(file, &key("attention.head_count"), None, MAX_WIDTH)?;
        let n_kv_heads = get_size(file, &key("attention.head_count_kv"), Some(n_heads as u64), MAX_WIDTH)?;
        if n_heads % n_kv_heads != 0 {
            return Err(unsupported(format!("{n_heads} query heads are not a multiple of {n_kv_heads} KV heads")));
        }
        let head_dim = match file.get(&key("attention.key_length")) {
            Some(_) => get_size(file, &key("attention.key_length"), None, MAX_WIDTH)?,
            None if dim % n_heads == 0 => dim / n_heads,
            None => return Err(unsupported(format!("embedding length {dim} is not a multiple of {n_heads} heads"))),
        };
        if head_dim % 2 != 0 {
            return Err(unsupported(format!("odd head dimension {head_dim} (RoPE rotates pairs)")));
        }
        if let Some(v) = file.get(&key("attention.value_length")) {
            if v.as_u64() != Some(head_dim as u64) {
                return Err(unsupported(format!("value length {v:?} differs from key length {head_dim}")));
            }
        }
        if let Some(v) = file.get(&key("rope.dimension_count")) {
            if v.as_u64() != Some(head_dim as u64) {
                return Err(unsupported(format!("partial rotary embedding (rope.dimension_count {v:?}, head_dim {head_dim})")));
            }
        }
        let rope_base = get_float(file, &key("rope.freq_base"), 10000.0)?;
        let norm_eps = get_float(file, &key("attention.layer_norm_rms_epsilon"), 1e-5)?;
        let context_length = get_size(file, &key("context_length"), None, MAX_CONTEXT)?;
        let block_repeat = match arch {
            Arch::Llama => 1,
            Arch::MobileLlm => get_size(file, "mobilellm.block_repeat", Some(1), MAX_REPEAT)?,
        };

        let embd = file.tensor("token_embd.weight").ok_or_else(|| unsupported("missing tensor token_embd.weight"))?;
        let n_vocab = match file.get("tokenizer.ggml.tokens") {
            Some(MetaValue::Array { values, .. }) => values.len(),
            Some(v) => return Err(unsupported(format!("tokenizer.ggml.tokens is not an array ({:?})", v.ty()))),
            None => match embd.dims.get(1) {
                Some(&rows) if rows <= MAX_WIDTH * 16 => rows as usize,
                _ => return Err(unsupported(format!("token_embd.weight has dims {:?}", embd.dims))),
            },
        };
        if n_vocab == 0 {
            return Err(unsupported("empty vocabulary"));
        }
        let tied_embeddings = file.tensor("output.weight").is_none();

        let cfg = ModelConfig {
            arch,
            n_vocab,
            dim,
            n_layers,
            block_repeat,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim,
            rope_base,
            norm_eps,
            context_length,
            tied_embeddings,
        };
        super::tensors::check_shapes(file, &cfg)?;
        Ok(cfg)
    }

    /// Blocks evaluated per token: n_layers * block_repeat. Each evaluation has its own KV cache.
    pub fn n_block_evals(&self) -> usize {
        self.n_layers * self.block_repeat
    }

    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// Rejects llama-family variants this engine does not implement: RoPE scaling, MoE.
fn check_features(file: &GgufFile, a: &str) -> crate::Result<()> {
    let scaling = file.get_str(&format!("{a}.rope.scaling.type"));
    let factor = file.get_f32(&format!("{a}.rope.scaling.factor"));
    match scaling {
        None | Some("none") => {}
        // Linear scaling by 1 is the identity.
        Some("linear") if factor.is_none_or(|f| f == 1.0) => {}
        Some(t) => return Err(unsupported(format!("RoPE scaling type {t:?} (factor {factor:?})"))),
    }
    if file.tensor("rope_freqs.weight").is_some() {
        return Err(unsupported("per-dimension RoPE frequencies (rope_freqs.weight, Llama-3 style scaling)"));
    }
    if file.get_u64(&format!("{a}.expert_count")).is_some_and(|n| n > 0) {
        return Err(unsupported("mixture of experts (expert_count > 0)"));
    }
    Ok(())
}
