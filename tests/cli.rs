//! The `mobilellm` command line as other tools call it: JSON shapes, verbatim prompt tokens, and
//! errors as one readable stderr line with a non-zero status (no panic, no backtrace).

mod common;

use std::process::Command;

use mobilellm_web::model::synth::{synth_gguf, SynthSpec};
use mobilellm_web::model::Arch;
use serde_json::Value;

fn model_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mobilellm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, synth_gguf(&SynthSpec::tiny(Arch::Llama)).unwrap()).unwrap();
    path
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mobilellm")).args(args).env("RUST_BACKTRACE", "1").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn generate_json_uses_prompt_tokens_verbatim() {
    let m = model_file("g.gguf");
    let m = m.to_str().unwrap();
    let (code, out, err) = run(&["generate", "--model", m, "--prompt-tokens", "5,6,7", "-n", "4", "--temperature", "0", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["prompt_tokens"], serde_json::json!([5, 6, 7]));
    assert!(v["tokens"].as_array().unwrap().len() <= 4);
    for key in ["text", "prefill_tok_s", "decode_tok_s"] {
        assert!(!v[key].is_null(), "missing {key}");
    }
    // Greedy is deterministic: the same call gives the same tokens.
    let (_, out2, _) = run(&["generate", "--model", m, "--prompt-tokens", "5,6,7", "-n", "4", "--temperature", "0", "--json"]);
    let v2: Value = serde_json::from_str(out2.trim()).unwrap();
    assert_eq!(v["tokens"], v2["tokens"]);
}

#[test]
fn logits_tokenize_info_shapes() {
    let m = model_file("l.gguf");
    let m = m.to_str().unwrap();
    let (code, out, err) = run(&["logits", "--model", m, "--prompt-tokens", "1,9,20,33", "--top", "3", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let pos = v["positions"].as_array().unwrap();
    assert_eq!(pos.len(), 4);
    for p in pos {
        let top = p["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let l: Vec<f64> = top.iter().map(|e| e[1].as_f64().unwrap()).collect();
        assert!(l[0] >= l[1] && l[1] >= l[2], "sorted descending: {l:?}");
    }
    let (code, out, err) = run(&["tokenize", "--model", m, "--text", "the a", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(!v["tokens"].as_array().unwrap().is_empty());
    assert_ne!(v["tokens"][0], 1, "tokenize adds no BOS");
    let (code, out, err) = run(&["info", "--model", m]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("config:") && out.contains("token_embd.weight"), "{out}");
}

#[test]
fn errors_are_one_line_without_panic() {
    let m = model_file("e.gguf");
    let bytes = std::fs::read(&m).unwrap();
    let truncated = m.with_file_name("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["generate".into(), "--model".into(), "/nonexistent.gguf".into(), "--prompt".into(), "x".into()], "IOError"),
        (vec!["generate".into(), "--model".into(), truncated.to_str().unwrap().into(), "--prompt".into(), "x".into()], "InvalidModelFile"),
        (vec!["generate".into(), "--model".into(), m.to_str().unwrap().into(), "--prompt-tokens".into(), "999999".into()], "InvalidArgument"),
        (vec!["generate".into(), "--model".into(), m.to_str().unwrap().into(), "--prompt-tokens".into(), "1,2".into(), "--ctx".into(), "1".into()], "ContextFull"),
    ];
    for (args, code_name) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = run(&a);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(code_name), "{args:?}: expected {code_name}: {err}");
        assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    let (code, _, err) = run(&["generate", "--bogus"]);
    assert_eq!(code, 2, "{err}");
}
