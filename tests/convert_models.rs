//! Converter end to end: random checkpoints written by tests/fixtures/make_checkpoint.py (numpy
//! only) in every container and storage type are converted to GGUF, loaded with the crate's
//! model code, and run with the CPU reference. The logits must equal an independent forward pass
//! written here over the ORIGINAL tensors with Hugging Face semantics (rotate-half RoPE, no row
//! permutation, MobileLLM-LS blocks run twice), which checks names, shapes, the Q/K permutation,
//! tying and block repetition all at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mobilellm_web::convert::{convert_dir, convert_files, ConvertProgress, ConvertReport, OutputType};
use mobilellm_web::cpu::{CpuModel, CpuSession};
use mobilellm_web::gguf::GgufFile;
use mobilellm_web::model::{Arch, ModelConfig, ModelTensors};
use mobilellm_web::quant::GgmlType;
use mobilellm_web::Error;

#[path = "convert_models/hf_reference.rs"]
mod hf_reference;
#[path = "convert_models/q4_k_m.rs"]
mod q4_k_m;

use hf_reference::{hf_forward, Original};

const TOKENS: &[u32] = &[1, 17, 260, 5, 42, 42, 128, 2, 77, 299];

/// Runs the fixture script into a fresh directory under the test target dir.
fn fixture(name: &str, args: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("convert").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_checkpoint.py");
    let out = Command::new("python3").arg(&script).arg(&dir).args(args).output().expect("python3 runs");
    assert!(out.status.success(), "fixture {name} failed (needs numpy): {}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn convert(dir: &Path, ty: impl Into<OutputType>) -> (Vec<u8>, ConvertReport) {
    let mut out = Vec::new();
    let report = convert_dir(dir, &mut out, ty, &mut |_| {}).unwrap_or_else(|e| panic!("convert {}: {e}", dir.display()));
    assert_eq!(report.bytes_written as usize, out.len());
    (out, report)
}

/// Logits of the converted GGUF through the crate's loader and CPU reference.
fn gguf_logits(bytes: &[u8]) -> (ModelConfig, Vec<Vec<f32>>) {
    gguf_logits_for(bytes, TOKENS)
}

fn gguf_logits_for(bytes: &[u8], tokens: &[u32]) -> (ModelConfig, Vec<Vec<f32>>) {
    let file = GgufFile::parse(bytes).expect("converted GGUF parses");
    let cfg = ModelConfig::from_gguf(&file).expect("converted GGUF has a valid config");
    let tensors = ModelTensors::from_gguf(&file, bytes, &cfg).expect("converted GGUF has every tensor");
    let model = CpuModel::new(&cfg, &tensors).unwrap();
    let logits = CpuSession::new(&model).forward(tokens).unwrap();
    (cfg, logits)
}

fn assert_logits_close(what: &str, got: &[Vec<f32>], want: &[Vec<f32>], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: positions");
    for (pos, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: vocab");
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert!((a - b).abs() <= atol + rtol * b.abs(), "{what}: pos {pos} token {i}: got {a}, want {b}");
        }
    }
}

/// ||got - want|| / ||want|| over all logits (for quantised conversions).
fn rel_error(got: &[Vec<f32>], want: &[Vec<f32>]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (g, w) in got.iter().zip(want) {
        for (a, b) in g.iter().zip(w) {
            num += ((a - b) as f64).powi(2);
            den += (*b as f64).powi(2);
        }
    }
    (num / den).sqrt()
}

fn tensor_type(bytes: &[u8], name: &str) -> Option<GgmlType> {
    GgufFile::parse(bytes).unwrap().tensor(name).map(|t| t.ty)
}

// ------------------------------------------------------------------ tests

#[test]
fn mobilellm_safetensors_f16_matches_hf_reference() {
    let dir = fixture("mobilellm_st", &["--kind", "mobilellm", "--format", "safetensors", "--dtype", "f16"]);
    let (gguf, report) = convert(&dir, GgmlType::F32);
    assert_eq!((report.arch.as_str(), report.source_format.as_str(), report.block_repeat), ("llama", "safetensors", 1));
    // share_embedding with tie_word_embeddings=false and no lm_head: tied all the same.
    assert!(report.tied_embeddings);
    assert_eq!(tensor_type(&gguf, "output.weight"), None);
    assert_eq!(tensor_type(&gguf, "blk.0.attn_q.weight"), Some(GgmlType::F32));
    assert_eq!(tensor_type(&gguf, "blk.1.ffn_norm.weight"), Some(GgmlType::F32));
    let (cfg, got) = gguf_logits(&gguf);
    assert_eq!((cfg.arch, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.n_vocab), (Arch::Llama, 2, 4, 2, 300));
    assert!(cfg.tied_embeddings);
    let want = hf_forward(&Original::load(&dir), TOKENS, 1);
    assert_logits_close("mobilellm f16 -> F32", &got, &want, 1e-4, 1e-4);
}

#[test]
fn mobilellm_pytorch_bin_f16_matches_hf_reference() {
    let dir = fixture("mobilellm_bin", &["--kind", "mobilellm", "--format", "bin", "--dtype", "f16", "--seed", "7"]);
    // fp16 storage converted to F16 is lossless, so the logits match as tightly as F32.
    let (gguf, report) = convert(&dir, GgmlType::F16);
    assert_eq!(report.source_format, "pytorch");
    assert_eq!(tensor_type(&gguf, "token_embd.weight"), Some(GgmlType::F16));
    let (_, got) = gguf_logits(&gguf);
    let want = hf_forward(&Original::load(&dir), TOKENS, 1);
    assert_logits_close("mobilellm .bin -> F16", &got, &want, 1e-4, 1e-4);
}

#[test]
fn layer_shared_mobilellm_runs_each_block_twice() {
    let ls = fixture("mobilellm_ls", &["--kind", "mobilellm-ls", "--format", "bin", "--layers", "3", "--seed", "3"]);
    let (gguf, report) = convert(&ls, GgmlType::F32);
    assert_eq!((report.arch.as_str(), report.block_repeat, report.n_layers), ("mobilellm", 2, 3));
    let file = GgufFile::parse(&gguf).unwrap();
    assert_eq!(file.get_u64("mobilellm.block_repeat"), Some(2));
    assert_eq!(file.get_u64("mobilellm.block_count"), Some(3));
    assert!(file.tensor("blk.2.attn_q.weight").is_some() && file.tensor("blk.3.attn_q.weight").is_none());
    let (cfg, got) = gguf_logits(&gguf);
    assert_eq!((cfg.arch, cfg.block_repeat, cfg.n_block_evals()), (Arch::MobileLlm, 2, 6));
    let want = hf_forward(&Original::load(&ls), TOKENS, 2);
    assert_logits_close("MobileLLM-LS vs HF with repeated blocks", &got, &want, 1e-4, 1e-4);
    // Running shared blocks once each is a different model: the test above can tell them apart.
    let once = hf_forward(&Original::load(&ls), TOKENS, 1);
    assert!(rel_error(&once, &want) > 1e-2, "repeat must matter for this fixture");

    // The same weights stored with every block duplicated (no sharing) convert to a plain llama
    // of 6 blocks with identical logits.
    let dup = fixture("mobilellm_ls_dup", &["--kind", "mobilellm", "--format", "bin", "--layers", "3", "--seed", "3", "--duplicate-blocks"]);
    let (dup_gguf, dup_report) = convert(&dup, GgmlType::F32);
    assert_eq!((dup_report.arch.as_str(), dup_report.n_layers), ("llama", 6));
    let (_, dup_logits) = gguf_logits(&dup_gguf);
    assert_logits_close("LS vs unrolled duplicate", &got, &dup_logits, 1e-5, 1e-5);
}

#[test]
fn pytorch_views_of_one_shared_storage_are_gathered() {
    // Every tensor a strided (column-major) view at its own offset of a single storage.
    let dir = fixture("llama_views", &["--kind", "llama", "--format", "bin", "--views", "--dtype", "f32", "--seed", "21"]);
    let (gguf, _) = convert(&dir, GgmlType::F32);
    let (_, got) = gguf_logits(&gguf);
    let want = hf_forward(&Original::load(&dir), TOKENS, 1);
    assert_logits_close("strided views", &got, &want, 1e-4, 1e-4);
}

#[test]
fn llama_tied_sharded_bf16_matches_hf_reference() {
    let dir = fixture("llama_tied_sharded", &["--kind", "llama-tied", "--format", "sharded", "--dtype", "bf16", "--seed", "11"]);
    assert!(dir.join("model-00002-of-00002.safetensors").exists());
    let (gguf, report) = convert(&dir, GgmlType::F32);
    assert!(report.tied_embeddings);
    assert_eq!(tensor_type(&gguf, "output.weight"), None);
    let (_, got) = gguf_logits(&gguf);
    let want = hf_forward(&Original::load(&dir), TOKENS, 1);
    assert_logits_close("llama tied bf16", &got, &want, 1e-4, 1e-4);
}

#[test]
fn llama_tied_sharded_pytorch_bf16_matches_hf_reference() {
    let dir = fixture("llama_tied_sharded_bin", &["--kind", "llama-tied", "--format", "sharded-bin", "--dtype", "bf16", "--seed", "17"]);
    assert!(dir.join("pytorch_model-00002-of-00002.bin").exists());
    let (gguf, report) = convert(&dir, GgmlType::BF16);
    assert_eq!(report.source_format, "pytorch");
    // bf16 storage to BF16 is lossless.
    assert_eq!(tensor_type(&gguf, "blk.1.ffn_up.weight"), Some(GgmlType::BF16));
    let (_, got) = gguf_logits(&gguf);
    let want = hf_forward(&Original::load(&dir), TOKENS, 1);
    assert_logits_close("llama tied bf16 .bin shards", &got, &want, 1e-4, 1e-4);
}

#[test]
fn llama_untied_f32_with_gqa_matches_hf_reference() {
    let dir = fixture(
        "llama_untied",
        &["--kind", "llama", "--format", "safetensors", "--dtype", "f32", "--heads", "8", "--kv-heads", "2", "--dim", "128", "--seed", "5"],
    );
    let (gguf, report) = convert(&dir, GgmlType::F32);
    assert!(!report.tied_embeddings);
    assert_eq!(tensor_type(&gguf, "output.weight"), Some(GgmlType::F32));
    let (cfg, got) = gguf_logits(&gguf);
    assert!(!cfg.tied_embeddings);
    assert_eq!((cfg.n_heads, cfg.n_kv_heads, cfg.head_dim), (8, 2, 16));
    let want = hf_forward(&Original::load(&dir), TOKENS, 1);
    assert_logits_close("llama untied f32", &got, &want, 1e-4, 1e-4);
}

#[test]
fn quantised_conversions_stay_close_to_the_reference() {
    let dir = fixture("mobilellm_quant", &["--kind", "mobilellm", "--format", "safetensors", "--ffn", "80", "--seed", "9"]);
    let want = hf_forward(&Original::load(&dir), TOKENS, 1);
    for (ty, max_err) in [(GgmlType::Q8_0, 0.02), (GgmlType::Q4_1, 0.2), (GgmlType::Q4_0, 0.25)] {
        let (gguf, report) = convert(&dir, ty);
        assert_eq!(tensor_type(&gguf, "blk.0.attn_k.weight"), Some(ty));
        assert_eq!(tensor_type(&gguf, "token_embd.weight"), Some(ty));
        // ffn_down's rows are 80 wide: not whole 32-element blocks, so it stays F16.
        assert_eq!(tensor_type(&gguf, "blk.0.ffn_down.weight"), Some(GgmlType::F16));
        assert_eq!(report.f16_fallback, vec!["blk.0.ffn_down.weight", "blk.1.ffn_down.weight"]);
        assert_eq!(tensor_type(&gguf, "output_norm.weight"), Some(GgmlType::F32));
        let (_, got) = gguf_logits(&gguf);
        let err = rel_error(&got, &want);
        assert!(err < max_err, "{ty:?}: relative logit error {err}");
        assert!(err > 0.0, "{ty:?} should not be lossless");
    }
}

#[test]
fn file_map_conversion_equals_directory_conversion() {
    let dir = fixture("mobilellm_map", &["--kind", "mobilellm", "--format", "bin", "--seed", "13"]);
    let mut events: Vec<ConvertProgress> = Vec::new();
    let mut from_dir = Vec::new();
    let report = convert_dir(&dir, &mut from_dir, GgmlType::Q8_0, &mut |p| events.push(p)).unwrap();
    // One event per tensor, in order, with growing byte counts.
    assert_eq!(events.len(), report.n_tensors);
    assert_eq!(report.n_tensors, 1 + 2 * 9 + 1);
    for (i, e) in events.iter().enumerate() {
        assert_eq!((e.done, e.total), (i + 1, report.n_tensors));
    }
    assert!(events.windows(2).all(|w| w[0].bytes_written < w[1].bytes_written));
    let last = events.last().unwrap().bytes_written;
    assert!(last <= report.bytes_written && report.bytes_written - last < 32, "{last} vs {}", report.bytes_written);
    assert_eq!(events.last().unwrap().name, "output_norm.weight");

    // The browser hands over files with folder prefixes; the ref/ folder is simply ignored.
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            files.insert(format!("picked/{}", path.file_name().unwrap().to_str().unwrap()), std::fs::read(&path).unwrap());
        }
    }
    let mut from_map = Vec::new();
    let map_report = convert_files(&files, &mut from_map, GgmlType::Q8_0, &mut |_| {}).unwrap();
    assert_eq!(map_report.n_params, report.n_params);
    // general.name differs (directory name vs "model"); everything else is the same bytes.
    let (a, b) = (GgufFile::parse(&from_dir).unwrap(), GgufFile::parse(&from_map).unwrap());
    assert_eq!(a.tensors, b.tensors);
    for t in &a.tensors {
        assert_eq!(a.tensor_data(&from_dir, t), b.tensor_data(&from_map, t), "{}", t.name);
    }
    let strip = |f: &GgufFile| f.metadata.iter().filter(|(k, _)| k != "general.name").cloned().collect::<Vec<_>>();
    assert_eq!(strip(&a), strip(&b));
}

#[test]
fn malicious_pickle_is_refused_without_running_it() {
    let marker = Path::new("/tmp/mobilellm_convert_pwned");
    let _ = std::fs::remove_file(marker);
    let dir = fixture("malicious", &["--kind", "mobilellm", "--format", "bin", "--malicious", "--no-reference"]);
    let err = convert_dir(&dir, &mut Vec::new(), GgmlType::F32, &mut |_| {}).expect_err("a pickle calling os.system must be refused");
    let msg = err.to_string();
    assert!(matches!(err, Error::Convert(_)), "{msg}");
    assert!(msg.contains("posix.system") || msg.contains("os.system"), "the error names the global: {msg}");
    assert!(!marker.exists());
}

#[test]
fn broken_checkpoints_give_errors_not_panics() {
    let dir = fixture("broken", &["--kind", "mobilellm", "--format", "bin", "--no-reference"]);
    let bin = std::fs::read(dir.join("pytorch_model.bin")).unwrap();
    let config = std::fs::read(dir.join("config.json")).unwrap();
    let tok = std::fs::read(dir.join("tokenizer.model")).unwrap();
    let run = |bin: Vec<u8>, config: Vec<u8>| {
        let files = BTreeMap::from([("pytorch_model.bin".to_string(), bin), ("config.json".to_string(), config), ("tokenizer.model".to_string(), tok.clone())]);
        convert_files(&files, &mut Vec::new(), GgmlType::F32, &mut |_| {})
    };
    assert!(run(bin.clone(), config.clone()).is_ok());
    // Truncations at many points of the archive, and corrupted bytes, must all be clean errors.
    for cut in [10, 100, 1000, bin.len() / 2, bin.len() - 30, bin.len() - 1] {
        assert!(matches!(run(bin[..cut].to_vec(), config.clone()), Err(Error::Convert(_))), "cut at {cut}");
    }
    for at in (0..bin.len()).step_by(97) {
        let mut b = bin.clone();
        b[at] ^= 0xA5;
        let _ = run(b, config.clone()); // any Result is fine; a panic is not
    }
    // A config whose shapes disagree with the tensors names the tensor.
    let wrong = String::from_utf8(config.clone()).unwrap().replace("\"intermediate_size\": 96", "\"intermediate_size\": 64");
    let err = run(bin.clone(), wrong.into_bytes()).unwrap_err().to_string();
    assert!(err.contains("mlp.gate_proj") && err.contains("shape"), "{err}");
    // Unknown model types are refused up front.
    let other = String::from_utf8(config).unwrap().replace("\"mobilellm\"", "\"gpt2\"");
    assert!(run(bin, other.into_bytes()).unwrap_err().to_string().contains("gpt2"));
}

#[test]
fn broken_safetensors_and_tokenizers_give_errors_not_panics() {
    let dir = fixture("broken_st", &["--kind", "llama", "--format", "safetensors", "--no-reference"]);
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let (st, config, tok) = (read("model.safetensors"), read("config.json"), read("tokenizer.model"));
    let run = |st: &[u8], tok: &[u8]| {
        let files = BTreeMap::from([
            ("model.safetensors".to_string(), st.to_vec()),
            ("config.json".to_string(), config.clone()),
            ("tokenizer.model".to_string(), tok.to_vec()),
        ]);
        convert_files(&files, &mut Vec::new(), GgmlType::Q8_0, &mut |_| {})
    };
    assert!(run(&st, &tok).is_ok());
    let header_len = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    for cut in [0, 7, 8, 100, header_len, header_len + 8, st.len() - 1] {
        assert!(matches!(run(&st[..cut], &tok), Err(Error::Convert(_))), "safetensors cut at {cut}");
    }
    // A header claiming more than the file holds.
    let mut huge = st.clone();
    huge[..8].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    assert!(run(&huge, &tok).is_err());
    // Corrupted header bytes and tokenizer bytes: any Result, never a panic.
    for at in (8..8 + header_len).step_by(13) {
        let mut b = st.clone();
        b[at] = b[at].wrapping_add(1);
        let _ = run(&b, &tok);
    }
    for at in (0..tok.len()).step_by(7) {
        let mut t = tok.clone();
        t[at] ^= 0xFF;
        let _ = run(&st, &t);
    }
    for cut in (0..tok.len()).step_by(11) {
        let _ = run(&st, &tok[..cut]);
    }
}

/// llama.cpp's top-8 logits at every position of `tokens` (and `greedy` tokens it generates
/// after them), from tests/fixtures/llama_cpp_logits.mjs over tools/reference's node-llama-cpp.
fn llama_cpp_logits(model: &Path, tokens: &[u32], greedy: usize) -> serde_json::Value {
    let list = tokens.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_cpp_logits.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(model).arg(&list);
    if greedy > 0 {
        cmd.arg(greedy.to_string());
    }
    let out = cmd.output().expect("node runs");
    assert!(out.status.success(), "node-llama-cpp failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The converted GGUF in llama.cpp itself (node-llama-cpp from tools/reference, CPU): its logits
/// must equal the Hugging Face reference too, which pins the Q/K permutation and the metadata
/// keys to llama.cpp's conventions, not just to this crate's loader. Its greedy continuation must
/// equal the reference's up to the first near-tie. Needs tools/reference's npm packages
/// (scripts/setup.sh installs them).
#[test]
fn llama_cpp_runs_the_converted_gguf_like_hf() {
    let dir = fixture(
        "llama_cpp_check",
        &["--kind", "mobilellm", "--format", "bin", "--dim", "64", "--heads", "4", "--kv-heads", "2", "--ffn", "128", "--vocab", "512", "--seed", "31"],
    );
    let (gguf, _) = convert(&dir, GgmlType::F32);
    let path = dir.join("converted.gguf");
    std::fs::write(&path, &gguf).unwrap();
    let tokens = [1u32, 300, 17, 511, 260, 42, 42, 99];
    const GREEDY: usize = 16;
    let json = llama_cpp_logits(&path, &tokens, GREEDY);
    let want = hf_forward(&Original::load(&dir), &tokens, 1);
    let mut checked = 0;
    for (pos, top) in json["top"].as_array().unwrap().iter().enumerate() {
        for pair in top.as_array().unwrap() {
            let (id, logit) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap() as f32);
            let w = want[pos][id];
            // llama.cpp keeps the KV cache in f16: about 1e-4 relative error on these logits.
            assert!((logit - w).abs() <= 1e-2 + 5e-4 * w.abs(), "pos {pos} token {id}: llama.cpp {logit}, HF reference {w}");
            checked += 1;
        }
        // llama.cpp's arg-max is the reference's arg-max.
        let best = want[pos].iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(top[0][0].as_u64().unwrap() as usize, best, "pos {pos}");
    }
    assert_eq!(checked, tokens.len() * 8);

    // Greedy decoding: llama.cpp's tokens against the reference's arg-max, one token at a time,
    // up to the first position where the reference's top-2 margin is too small to call.
    let got: Vec<u32> = json["greedy"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
    assert_eq!(got.len(), GREEDY, "llama.cpp generated {got:?}");
    let original = Original::load(&dir);
    let mut seq = tokens.to_vec();
    let mut agreed = 0;
    for &g in &got {
        let logits = hf_forward(&original, &seq, 1).pop().unwrap();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        if logits[order[0]] - logits[order[1]] < 1e-2 {
            break;
        }
        assert_eq!(g as usize, order[0], "greedy token {agreed}: llama.cpp {g}, reference {}", order[0]);
        agreed += 1;
        seq.push(g);
    }
    eprintln!("llama.cpp greedy agrees with the HF reference on {agreed}/{GREEDY} tokens");
    assert!(agreed >= 8, "only {agreed} greedy tokens before a near-tie");
}
