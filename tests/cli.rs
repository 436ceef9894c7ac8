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
        (
            vec!["generate".into(), "--model".into(), m.to_str().unwrap().into(), "--prompt-tokens".into(), "1,2".into(), "--ctx".into(), "1".into()],
            "ContextFull",
        ),
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

/// `bench --profile`: every dispatch of a decode step is accounted for once, by kernel.
#[test]
fn bench_profile_accounts_for_every_dispatch() {
    let m = model_file("b.gguf");
    let m = m.to_str().unwrap();
    let (code, out, err) = run(&["bench", "--model", m, "--prompt-len", "6", "--gen", "3", "--profile", "--json", "--f32", "--backend", "gpu"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let p = &v["decode_profile"];
    let ops = p["ops"].as_array().unwrap();
    let per_step: u64 = ops.iter().map(|o| o["per_step"].as_u64().unwrap()).sum();
    assert_eq!(per_step, v["dispatches_per_token"].as_u64().unwrap(), "{p}");
    assert_eq!(p["kv_len"].as_u64(), Some(6));
    for kernel in ["embed", "norm_qkv_rope", "attention", "matvec_residual", "norm_gate_up_swiglu", "norm_matvec", "topk_select"] {
        assert!(ops.iter().any(|o| o["op"].as_str().unwrap().split(' ').next() == Some(kernel)), "no {kernel} in {p}");
    }
    assert!(p["step_ms"].as_f64().unwrap() > 0.0);
    // Sorted, largest first.
    let ms: Vec<f64> = ops.iter().map(|o| o["ms_per_step"].as_f64().unwrap()).collect();
    assert!(ms.windows(2).all(|w| w[0] >= w[1]), "{ms:?}");
    // Without --profile there is no profile.
    let (_, out, _) = run(&["bench", "--model", m, "--prompt-len", "4", "--gen", "2", "--json", "--backend", "gpu"]);
    assert!(serde_json::from_str::<Value>(out.trim()).unwrap()["decode_profile"].is_null());
}

/// The CPU backend from the command line: `--backend cpu --threads N` everywhere a model runs,
/// `bench` says which backend and how many threads, its profile names the CPU kernels, and the
/// greedy tokens and logits do not depend on the thread count.
#[test]
fn cpu_backend_flags_bench_and_thread_independence() {
    let m = model_file("c.gguf");
    let m = m.to_str().unwrap();
    let (code, out, err) = run(&["bench", "--model", m, "--prompt-len", "6", "--gen", "3", "--profile", "--json", "--backend", "cpu", "--threads", "2"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["backend"], "cpu");
    assert_eq!(v["threads"], 2);
    assert_eq!(v["dispatches_per_token"], 0);
    let ops = v["decode_profile"]["ops"].as_array().unwrap();
    for kernel in ["embed", "rmsnorm", "matmul qkv", "attention", "matmul gate+up (swiglu)", "matmul down", "matmul logits", "top-k"] {
        assert!(ops.iter().any(|o| o["op"] == kernel), "no {kernel} in {ops:?}");
    }
    let mut outputs = Vec::new();
    for threads in ["1", "3"] {
        let (code, g, err) =
            run(&["generate", "--model", m, "--prompt-tokens", "5,6,7", "-n", "6", "--temperature", "0", "--json", "--backend", "cpu", "--threads", threads]);
        assert_eq!(code, 0, "{err}");
        let (code, l, err) = run(&["logits", "--model", m, "--prompt-tokens", "1,9,20,33", "--top", "5", "--json", "--backend", "cpu", "--threads", threads]);
        assert_eq!(code, 0, "{err}");
        let g: Value = serde_json::from_str(g.trim()).unwrap();
        outputs.push((g["tokens"].clone(), l.trim().to_string()));
    }
    assert_eq!(outputs[0], outputs[1], "1 and 3 threads differ");
    // Bad flag values are usage errors (status 2).
    for bad in [["--backend", "tpu"], ["--kv", "q8"], ["--threads", "x"]] {
        let (code, _, err) = run(&["generate", "--model", m, "--prompt-tokens", "5", bad[0], bad[1]]);
        assert_eq!(code, 2, "{bad:?}: {err}");
    }
}
