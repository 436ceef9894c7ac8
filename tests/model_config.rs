//! ModelConfig / ModelTensors on synthetic models: fields, defaults, every type combination,
//! the vocabulary the synth builder writes, rejection of unsupported variants with a message
//! naming the problem, and duplicate_blocks (the layer-sharing oracle).

use mobilellm_web::gguf::{GgufFile, GgufWriter, MetaValue};
use mobilellm_web::model::{duplicate_blocks, synth_gguf, Arch, ModelConfig, ModelTensors, SynthSpec};
use mobilellm_web::quant::GgmlType;
use mobilellm_web::Error;

type Meta = Vec<(String, MetaValue)>;
/// (name, dims, type, index of the original tensor whose bytes to copy)
type Table = Vec<(String, Vec<u64>, GgmlType, Option<usize>)>;

/// Re-writes a GGUF after letting the caller edit its metadata and tensor table (name, dims, type).
/// Tensor bytes are copied from the original (by original index), or zero-filled when resized.
fn rewrite(bytes: &[u8], edit_meta: impl FnOnce(&mut Meta), edit_tensors: impl FnOnce(&mut Table)) -> Vec<u8> {
    let f = GgufFile::parse(bytes).unwrap();
    let mut meta = f.metadata.clone();
    edit_meta(&mut meta);
    let mut tensors: Vec<_> = f.tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), t.dims.clone(), t.ty, Some(i))).collect();
    edit_tensors(&mut tensors);
    let mut w = GgufWriter::new();
    w.metadata = meta;
    for (n, d, ty, _) in &tensors {
        w.add_tensor(n, d, *ty);
    }
    let mut out = Vec::new();
    w.write(&mut out, &mut |i| {
        let (_, dims, ty, src) = &tensors[i];
        let size = ty.bytes_for(dims.iter().product()).unwrap() as usize;
        Ok(match src {
            Some(s) if f.tensors[*s].n_bytes as usize == size => f.tensor_data(bytes, &f.tensors[*s]).to_vec(),
            _ => vec![0; size],
        })
    })
    .unwrap();
    out
}

fn set(meta: &mut Meta, key: &str, v: MetaValue) {
    meta.retain(|(k, _)| k != key);
    meta.push((key.to_string(), v));
}

fn config_of(bytes: &[u8]) -> mobilellm_web::Result<ModelConfig> {
    ModelConfig::from_gguf(&GgufFile::parse(bytes)?)
}

fn unsupported_msg(bytes: &[u8]) -> String {
    match config_of(bytes) {
        Err(Error::UnsupportedModel(m)) => m,
        other => panic!("expected UnsupportedModel, got {other:?}"),
    }
}

#[test]
fn tiny_llama_config_and_tensors() {
    let spec = SynthSpec::tiny(Arch::Llama);
    let bytes = synth_gguf(&spec).unwrap();
    let f = GgufFile::parse(&bytes).unwrap();
    let cfg = ModelConfig::from_gguf(&f).unwrap();
    let want = ModelConfig {
        arch: Arch::Llama,
        n_vocab: 300,
        dim: 64,
        n_layers: 2,
        block_repeat: 1,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 16,
        ffn_dim: 96,
        rope_base: 10000.0,
        norm_eps: 1e-5,
        context_length: 256,
        tied_embeddings: true,
    };
    assert_eq!(cfg, want);
    assert_eq!((cfg.q_dim(), cfg.kv_dim(), cfg.n_block_evals()), (64, 32, 2));

    let t = ModelTensors::from_gguf(&f, &bytes, &cfg).unwrap();
    assert!(t.output.is_none());
    assert_eq!((t.token_embd.rows, t.token_embd.cols, t.token_embd.ty), (300, 64, GgmlType::Q8_0));
    assert_eq!(t.lm_head().name, "token_embd.weight");
    assert_eq!(t.layers.len(), 2);
    let l = &t.layers[1];
    assert_eq!(l.wq.name, "blk.1.attn_q.weight");
    assert_eq!((l.wq.rows, l.wq.cols, l.wq.ty), (64, 64, GgmlType::Q4_1));
    assert_eq!((l.wk.rows, l.wk.cols), (32, 64));
    assert_eq!((l.wv.rows, l.wv.cols), (32, 64));
    assert_eq!((l.wo.rows, l.wo.cols), (64, 64));
    assert_eq!((l.w_gate.rows, l.w_gate.cols), (96, 64));
    assert_eq!((l.w_up.rows, l.w_up.cols), (96, 64));
    assert_eq!((l.w_down.rows, l.w_down.cols), (64, 96));
    assert_eq!((l.attn_norm.rows, l.attn_norm.cols, l.attn_norm.ty), (1, 64, GgmlType::F32));

    // Weights are scaled so activations stay O(1): norms near 1, matrices ~ U(-1,1)/sqrt(cols).
    let norm = l.ffn_norm.to_f32().unwrap();
    assert!(norm.iter().all(|v| (0.89..=1.11).contains(v)), "{norm:?}");
    let down = l.w_down.to_f32().unwrap();
    let rms = (down.iter().map(|v| v * v).sum::<f32>() / down.len() as f32).sqrt();
    let expect = 1.0 / (96f32).sqrt() / 3f32.sqrt();
    assert!((rms / expect - 1.0).abs() < 0.15, "w_down rms {rms} vs {expect}");
    // Different tensors get different random values.
    assert_ne!(t.layers[0].wq.data, t.layers[1].wq.data);
}

#[test]
fn mobilellm_block_repeat_and_untied_output() {
    let mut spec = SynthSpec::tiny(Arch::MobileLlm);
    spec.tied = false;
    spec.seed = 7;
    let bytes = synth_gguf(&spec).unwrap();
    let f = GgufFile::parse(&bytes).unwrap();
    let cfg = ModelConfig::from_gguf(&f).unwrap();
    assert_eq!((cfg.arch, cfg.block_repeat, cfg.n_block_evals(), cfg.tied_embeddings), (Arch::MobileLlm, 2, 4, false));
    let t = ModelTensors::from_gguf(&f, &bytes, &cfg).unwrap();
    assert_eq!(t.lm_head().name, "output.weight");
    assert_eq!((t.lm_head().rows, t.lm_head().cols), (300, 64));
    // Same seed, same bytes; another seed, other weights.
    assert_eq!(synth_gguf(&spec).unwrap(), bytes);
    spec.seed = 8;
    assert_ne!(synth_gguf(&spec).unwrap(), bytes);
}

#[test]
fn every_type_combination_builds_and_loads() {
    for wt in GgmlType::ALL {
        for et in GgmlType::ALL {
            let mut spec = SynthSpec::tiny(Arch::Llama);
            if wt.is_k_quant() || et.is_k_quant() {
                // The super-block is 256 elements: rows must be whole super-blocks (attn_output's
                // rows are n_heads * head_dim).
                (spec.dim, spec.ffn_dim, spec.head_dim) = (256, 512, 64);
            }
            spec.weight_type = wt;
            spec.embd_type = et;
            let bytes = synth_gguf(&spec).unwrap();
            let f = GgufFile::parse(&bytes).unwrap();
            let cfg = ModelConfig::from_gguf(&f).unwrap();
            let t = ModelTensors::from_gguf(&f, &bytes, &cfg).unwrap();
            assert_eq!((t.layers[0].w_up.ty, t.token_embd.ty), (wt, et));
            let up = t.layers[0].w_up.to_f32().unwrap();
            // Values are uniform within ±1/sqrt(dim); 2- and 3-bit K-quants may overshoot a little.
            let bound = 1.3 / (spec.dim as f32).sqrt();
            assert!(up.iter().all(|v| v.abs() <= bound), "{} weights within scale", wt.name());
        }
    }
}

#[test]
fn bigger_and_odd_shapes() {
    let mut spec = SynthSpec::tiny(Arch::Llama);
    spec.n_vocab = 1000;
    spec.dim = 96;
    spec.n_heads = 3;
    spec.n_kv_heads = 1;
    spec.head_dim = 32;
    spec.ffn_dim = 160;
    spec.n_layers = 3;
    spec.weight_type = GgmlType::Q4_0;
    let cfg = config_of(&synth_gguf(&spec).unwrap()).unwrap();
    assert_eq!((cfg.n_vocab, cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim, cfg.n_layers), (1000, 96, 3, 1, 32, 160, 3));
    spec.n_vocab = 299;
    assert!(synth_gguf(&spec).is_err(), "vocab below 300 is refused");
}

#[test]
fn synth_vocabulary_layout() {
    let spec = SynthSpec { n_vocab: 2000, ..SynthSpec::tiny(Arch::Llama) };
    let f = GgufFile::parse(&synth_gguf(&spec).unwrap()).unwrap();
    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    let scores = f.get_f32_array("tokenizer.ggml.scores").unwrap();
    let types = f.get_i64_array("tokenizer.ggml.token_type").unwrap();
    assert_eq!((tokens.len(), scores.len(), types.len()), (2000, 2000, 2000));
    assert_eq!(&tokens[..3], &["<unk>", "<s>", "</s>"]);
    assert_eq!(&types[..3], &[2, 3, 3]);
    assert_eq!((tokens[3], tokens[3 + 0x41], tokens[258]), ("<0x00>", "<0x41>", "<0xFF>"));
    assert!(types[3..259].iter().all(|&t| t == 6));
    assert!(types[259..].iter().all(|&t| t == 1));
    assert!(tokens.contains(&"▁the") && tokens.contains(&"e") && tokens.contains(&"▁"));
    let unique: std::collections::HashSet<_> = tokens.iter().collect();
    assert_eq!(unique.len(), 2000, "tokens are distinct");
    assert!(scores[260] < scores[259], "earlier pieces score higher");
    assert_eq!(f.get_str("tokenizer.ggml.model"), Some("llama"));
    assert_eq!(f.get_u64("tokenizer.ggml.bos_token_id"), Some(1));
    assert_eq!(f.get_u64("tokenizer.ggml.eos_token_id"), Some(2));
    assert_eq!(f.get_u64("tokenizer.ggml.unknown_token_id"), Some(0));
    assert_eq!(f.get_bool("tokenizer.ggml.add_bos_token"), Some(true));
}

#[test]
fn defaults_when_optional_keys_are_absent() {
    let bytes = synth_gguf(&SynthSpec::tiny(Arch::MobileLlm)).unwrap();
    let stripped = rewrite(
        &bytes,
        |m| {
            m.retain(|(k, _)| {
                ![
                    "mobilellm.attention.head_count_kv",
                    "mobilellm.attention.key_length",
                    "mobilellm.attention.value_length",
                    "mobilellm.rope.dimension_count",
                    "mobilellm.rope.freq_base",
                    "mobilellm.attention.layer_norm_rms_epsilon",
                    "mobilellm.block_repeat",
                    "tokenizer.ggml.tokens",
                ]
                .contains(&k.as_str())
            })
        },
        // Without head_count_kv the KV heads default to the query heads: widen attn_k / attn_v.
        |t| {
            for e in t.iter_mut().filter(|e| e.0.ends_with("attn_k.weight") || e.0.ends_with("attn_v.weight")) {
                e.1 = vec![64, 64];
            }
        },
    );
    let cfg = config_of(&stripped).unwrap();
    assert_eq!((cfg.n_kv_heads, cfg.head_dim, cfg.rope_base, cfg.norm_eps, cfg.block_repeat), (4, 16, 10000.0, 1e-5, 1));
    assert_eq!(cfg.n_vocab, 300, "from token_embd rows");
    // Integer widths and float types vary between writers.
    let wide = rewrite(
        &bytes,
        |m| {
            set(m, "mobilellm.block_count", MetaValue::U64(2));
            set(m, "mobilellm.embedding_length", MetaValue::I32(64));
            set(m, "mobilellm.rope.freq_base", MetaValue::F64(100000.0));
            set(m, "mobilellm.block_repeat", MetaValue::U8(3));
        },
        |_| {},
    );
    let cfg = config_of(&wide).unwrap();
    assert_eq!((cfg.n_layers, cfg.dim, cfg.rope_base, cfg.block_repeat), (2, 64, 1e5, 3));
}

#[test]
fn unsupported_variants_are_named() {
    let bytes = synth_gguf(&SynthSpec::tiny(Arch::Llama)).unwrap();
    let m = |edit: &dyn Fn(&mut Meta)| unsupported_msg(&rewrite(&bytes, |m| edit(m), |_| {}));
    assert!(m(&|m| set(m, "general.architecture", MetaValue::String("gpt2".into()))).contains("gpt2"));
    assert!(m(&|m| m.retain(|(k, _)| k != "general.architecture")).contains("general.architecture"));
    assert!(m(&|m| set(m, "llama.rope.scaling.type", MetaValue::String("yarn".into()))).contains("yarn"));
    assert!(m(&|m| set(m, "llama.attention.head_count_kv", MetaValue::U32(3))).contains("heads"));
    assert!(m(&|m| set(m, "llama.embedding_length", MetaValue::U32(0))).contains("embedding_length"));
    assert!(m(&|m| set(m, "llama.block_count", MetaValue::I32(-2))).contains("block_count"));
    assert!(m(&|m| m.retain(|(k, _)| k != "llama.feed_forward_length")).contains("feed_forward_length"));
    assert!(m(&|m| set(m, "llama.attention.key_length", MetaValue::U32(15))).contains("odd head"));
    assert!(m(&|m| set(m, "llama.rope.dimension_count", MetaValue::U32(8))).contains("rotary"));
    assert!(m(&|m| set(m, "llama.attention.layer_norm_rms_epsilon", MetaValue::F32(f32::NAN))).contains("epsilon"));
    assert!(m(&|m| set(m, "llama.expert_count", MetaValue::U32(8))).contains("experts"));
    // Linear scaling by exactly 1 is the identity and accepted.
    assert!(config_of(&rewrite(
        &bytes,
        |m| {
            set(m, "llama.rope.scaling.type", MetaValue::String("linear".into()));
            set(m, "llama.rope.scaling.factor", MetaValue::F32(1.0));
        },
        |_| {}
    ))
    .is_ok());

    let mob = synth_gguf(&SynthSpec::tiny(Arch::MobileLlm)).unwrap();
    let msg = unsupported_msg(&rewrite(&mob, |m| set(m, "mobilellm.block_repeat", MetaValue::U32(0)), |_| {}));
    assert!(msg.contains("block_repeat"), "{msg}");
}

#[test]
fn inconsistent_tensor_tables_are_named() {
    let bytes = synth_gguf(&SynthSpec::tiny(Arch::Llama)).unwrap();
    let m = |edit: &dyn Fn(&mut Table)| unsupported_msg(&rewrite(&bytes, |_| {}, |t| edit(t)));
    let shape = m(&|t| t.iter_mut().find(|e| e.0 == "blk.1.attn_k.weight").unwrap().1 = vec![64, 64]);
    assert!(shape.contains("blk.1.attn_k.weight"), "{shape}");
    let missing = m(&|t| t.retain(|e| e.0 != "blk.0.ffn_down.weight"));
    assert!(missing.contains("blk.0.ffn_down.weight"), "{missing}");
    let bias = m(&|t| t.push(("blk.0.attn_q.bias".into(), vec![64], GgmlType::F32, None)));
    assert!(bias.contains("blk.0.attn_q.bias"), "{bias}");
    let extra_block = m(&|t| t.push(("blk.2.attn_norm.weight".into(), vec![64], GgmlType::F32, None)));
    assert!(extra_block.contains("blk.2"), "{extra_block}");
    let qnorm = m(&|t| {
        let e = t.iter_mut().find(|e| e.0 == "output_norm.weight").unwrap();
        e.2 = GgmlType::Q8_0;
    });
    assert!(qnorm.contains("output_norm.weight"), "{qnorm}");
    let rope_freqs = m(&|t| t.push(("rope_freqs.weight".into(), vec![8], GgmlType::F32, None)));
    assert!(rope_freqs.contains("rope_freqs"), "{rope_freqs}");
    // A vocabulary that disagrees with the embedding rows.
    let vocab = unsupported_msg(&rewrite(
        &bytes,
        |m| {
            let toks: Vec<MetaValue> = (0..301).map(|i| MetaValue::String(format!("t{i}"))).collect();
            set(m, "tokenizer.ggml.tokens", MetaValue::Array { elem: mobilellm_web::gguf::MetaType::String, values: toks });
        },
        |_| {},
    ));
    assert!(vocab.contains("token_embd.weight"), "{vocab}");
}

#[test]
fn tensors_from_a_different_buffer_are_an_error() {
    let bytes = synth_gguf(&SynthSpec::tiny(Arch::Llama)).unwrap();
    let f = GgufFile::parse(&bytes).unwrap();
    let cfg = ModelConfig::from_gguf(&f).unwrap();
    assert!(ModelTensors::from_gguf(&f, &bytes[..bytes.len() / 2], &cfg).is_err());
}

#[test]
fn duplicate_blocks_unrolls_layer_sharing() {
    let spec = SynthSpec { n_layers: 3, block_repeat: 2, ..SynthSpec::tiny(Arch::MobileLlm) };
    let src = synth_gguf(&spec).unwrap();
    let out = duplicate_blocks(&src).unwrap();
    let (fs, fo) = (GgufFile::parse(&src).unwrap(), GgufFile::parse(&out).unwrap());
    let (cs, co) = (ModelConfig::from_gguf(&fs).unwrap(), ModelConfig::from_gguf(&fo).unwrap());
    assert_eq!(co.arch, Arch::Llama);
    assert_eq!((co.n_layers, co.block_repeat), (6, 1));
    assert_eq!(ModelConfig { arch: Arch::Llama, n_layers: 6, block_repeat: 1, ..cs.clone() }, co, "all other hyperparameters carried over");
    assert!(fo.metadata.iter().all(|(k, _)| !k.starts_with("mobilellm.")));
    assert_eq!(fo.get_str_array("tokenizer.ggml.tokens"), fs.get_str_array("tokenizer.ggml.tokens"));
    let ts = ModelTensors::from_gguf(&fs, &src, &cs).unwrap();
    let to = ModelTensors::from_gguf(&fo, &out, &co).unwrap();
    for (i, l) in to.layers.iter().enumerate() {
        let s = &ts.layers[i / 2];
        assert_eq!(l.wq.data, s.wq.data, "layer {i} q");
        assert_eq!(l.w_down.data, s.w_down.data, "layer {i} down");
        assert_eq!(l.attn_norm.data, s.attn_norm.data, "layer {i} norm");
        assert_eq!(l.wq.name, format!("blk.{i}.attn_q.weight"));
    }
    assert_eq!(to.token_embd.data, ts.token_embd.data);
    // A plain llama model comes back unchanged in meaning.
    let llama = synth_gguf(&SynthSpec::tiny(Arch::Llama)).unwrap();
    let again = duplicate_blocks(&llama).unwrap();
    assert_eq!(config_of(&again).unwrap(), config_of(&llama).unwrap());
}

#[test]
fn spec_config_matches_what_loads() {
    for arch in [Arch::Llama, Arch::MobileLlm] {
        let spec = SynthSpec { tied: arch == Arch::Llama, ..SynthSpec::tiny(arch) };
        assert_eq!(config_of(&synth_gguf(&spec).unwrap()).unwrap(), spec.config());
    }
}
