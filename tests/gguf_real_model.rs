//! The real SmolLM2-135M-Instruct Q4_1 GGUF (scripts/fetch_model.sh): header, config, tensors.
//! Missing model fails, unless MOBILELLM_ALLOW_MISSING_MODEL=1 (then a notice is printed).

use mobilellm_web::gguf::{GgufFile, GgufWriter};
use mobilellm_web::model::{Arch, ModelConfig, ModelTensors};
use mobilellm_web::quant::{dequantize, GgmlType};

fn model_bytes() -> Option<Vec<u8>> {
    let dir = std::env::var_os("MOBILELLM_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/mobilellm-web"));
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) if std::env::var("MOBILELLM_ALLOW_MISSING_MODEL").as_deref() == Ok("1") => {
            eprintln!("NOTICE: skipping real-model test, {} unreadable ({e})", path.display());
            None
        }
        Err(e) => panic!("{}: {e}; run scripts/fetch_model.sh (or set MOBILELLM_ALLOW_MISSING_MODEL=1)", path.display()),
    }
}

#[test]
fn smollm2_parses_with_expected_config_and_tensors() {
    let Some(bytes) = model_bytes() else { return };
    assert_eq!(bytes.len(), 98_362_432);
    let t0 = std::time::Instant::now();
    let f = GgufFile::parse(&bytes).unwrap();
    let parse_ms = t0.elapsed().as_millis();
    eprintln!("parsed {} tensors, {} metadata keys in {parse_ms} ms", f.tensors.len(), f.metadata.len());
    assert!(parse_ms < 5000);
    assert_eq!(f.version, 3);
    assert_eq!(f.get_str("general.architecture"), Some("llama"));
    assert_eq!(f.get_str("tokenizer.ggml.model"), Some("gpt2"));
    assert_eq!(f.get_str("tokenizer.ggml.pre"), Some("smollm"));
    assert!(f.get_str("tokenizer.chat_template").unwrap().contains("<|im_start|>"));
    assert_eq!(f.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
    assert!(f.get_str_array("tokenizer.ggml.merges").unwrap().len() > 40000);

    let cfg = ModelConfig::from_gguf(&f).unwrap();
    assert_eq!(cfg.arch, Arch::Llama);
    assert_eq!((cfg.n_layers, cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim, cfg.n_vocab), (30, 576, 9, 3, 64, 1536, 49152));
    assert!(cfg.tied_embeddings);
    assert_eq!(cfg.rope_base, 1e5);
    assert_eq!(cfg.block_repeat, 1);
    assert_eq!(cfg.context_length, 8192);
    assert!((cfg.norm_eps - 1e-5).abs() < 1e-9);

    let t = ModelTensors::from_gguf(&f, &bytes, &cfg).unwrap();
    assert_eq!(t.token_embd.ty, GgmlType::Q8_0);
    assert_eq!((t.token_embd.rows, t.token_embd.cols), (49152, 576));
    assert!(t.output.is_none());
    assert_eq!(t.layers.len(), 30);
    assert_eq!(t.layers[0].wq.ty, GgmlType::Q4_1);
    // Dequantised weights are finite and of sane magnitude.
    for r in [&t.layers[0].wq, &t.layers[29].w_down, &t.layers[5].attn_norm, &t.output_norm] {
        let v = r.to_f32().unwrap();
        assert!(v.iter().all(|x| x.is_finite() && x.abs() < 100.0), "{}", r.name);
        let rms = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
        assert!(rms > 1e-3 && rms < 20.0, "{} rms {rms}", r.name);
    }
    let embd_row = dequantize(GgmlType::Q8_0, &t.token_embd.data[..34 * 18], 576).unwrap();
    assert!(embd_row.iter().any(|&x| x != 0.0));
}

/// Re-writing the real file with our writer reproduces it byte for byte (ggml writes v3,
/// alignment 32, tensors packed in table order), which checks reader and writer together.
#[test]
fn smollm2_rewrites_byte_identical() {
    let Some(bytes) = model_bytes() else { return };
    let f = GgufFile::parse(&bytes).unwrap();
    let mut w = GgufWriter::new();
    w.metadata = f.metadata.clone();
    w.alignment = f.alignment;
    for t in &f.tensors {
        w.add_tensor(&t.name, &t.dims, t.ty);
    }
    let mut out = Vec::with_capacity(bytes.len());
    w.write(&mut out, &mut |i| Ok(f.tensor_data(&bytes, &f.tensors[i]).to_vec())).unwrap();
    assert_eq!(out.len(), bytes.len());
    let first_diff = out.iter().zip(&bytes).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "first differing byte");
}
