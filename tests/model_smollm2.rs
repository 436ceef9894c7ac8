//! The real model, SmolLM2-135M-Instruct Q4_1 (fetched from PyPI by scripts/fetch_model.sh), against
//! (a) our exact CPU reference and (b) llama.cpp's greedy continuations (tests/data/smollm2_greedy.json),
//! teacher-forced over the 64 continuation positions of every prompt.
//!
//! Exact greedy equality with llama.cpp is not the measure: its CPU kernels quantise activations to
//! 8 bits, which flips near-ties. The measures (issue #2):
//! (a) top-1 == the reference's wherever its top-2 margin >= 0.1 logit, and |top logit| within 0.15;
//! (b) top-1 agrees with llama.cpp's token at >= 95% of positions;
//! for each engine: WebGPU on the f32 and (where the adapter has it) f16 paths, and the CPU backend
//! (whose results must not depend on its thread count).

mod common;

use std::rc::Rc;

use mobilellm_web::cpu::kernels::{KvType, Pool};
use mobilellm_web::cpu::{CpuModel, CpuSession};
use mobilellm_web::engine::{LoadedModel, Session, SessionOptions};
use mobilellm_web::gguf::GgufFile;
use mobilellm_web::model::{ModelConfig, ModelTensors};
use serde_json::Value;

pub fn model_path() -> Option<std::path::PathBuf> {
    let p = match std::env::var_os("MOBILELLM_MODEL") {
        Some(p) => p.into(),
        None => std::path::PathBuf::from(std::env::var_os("HOME")?).join(".cache/mobilellm-web/SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    if p.exists() {
        Some(p)
    } else if std::env::var("MOBILELLM_ALLOW_MISSING_MODEL").as_deref() == Ok("1") {
        eprintln!("SKIPPED: {} missing (run scripts/fetch_model.sh)", p.display());
        None
    } else {
        panic!("{} missing: run scripts/fetch_model.sh", p.display());
    }
}

struct Case {
    name: String,
    prompt: Vec<u32>,
    continuation: Vec<u32>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/smollm2_greedy.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids = |x: &Value| x.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect::<Vec<_>>();
    v["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Case { name: p["name"].as_str().unwrap().to_string(), prompt: ids(&p["prompt_tokens"]), continuation: ids(&p["tokens"]) })
        .collect()
}

fn argmax2(l: &[f32]) -> (usize, f32, f32) {
    let (mut i1, mut v1, mut v2) = (0, f32::NEG_INFINITY, f32::NEG_INFINITY);
    for (i, &x) in l.iter().enumerate() {
        if x > v1 {
            v2 = v1;
            v1 = x;
            i1 = i;
        } else if x > v2 {
            v2 = x;
        }
    }
    (i1, v1, v2)
}

#[test]
fn smollm2_teacher_forced_against_cpu_reference_and_llama_cpp() {
    let Some(path) = model_path() else { return };
    let bytes = std::fs::read(&path).unwrap();
    let file = GgufFile::parse(&bytes).unwrap();
    let cfg = ModelConfig::from_gguf(&file).unwrap();
    let tensors = ModelTensors::from_gguf(&file, &bytes, &cfg).unwrap();
    let cpu_model = CpuModel::new(&cfg, &tensors).unwrap();
    // The reference logits of every case, computed once for both precision paths.
    let cases = cases();
    let cpu_all: Vec<Vec<Vec<f32>>> = cases
        .iter()
        .map(|c| {
            let mut seq = c.prompt.clone();
            seq.extend(&c.continuation);
            CpuSession::new(&cpu_model).forward(&seq).unwrap()
        })
        .collect();
    // Both precision paths the adapter has (f32 always; f16 on lavapipe), then the CPU backend.
    let mut cpu_rows_by_threads = Vec::new();
    for engine in ["gpu-f32", "gpu-f16", "cpu-2", "cpu-1"] {
        let model = match engine {
            "gpu-f32" | "gpu-f16" => {
                let gpu = Rc::new(common::gpu(engine == "gpu-f32"));
                if engine == "gpu-f16" && !gpu.f16 {
                    continue;
                }
                LoadedModel::load(gpu, &bytes).unwrap()
            }
            _ => LoadedModel::load_cpu(bytes.clone(), Pool::new(if engine == "cpu-2" { 2 } else { 1 }), KvType::F16).unwrap(),
        };
        let label = engine;
        let mut sess = Session::new(model, &SessionOptions { n_ctx: Some(512), prefill_chunk: 64 }).unwrap();
        let (mut agree_llama, mut total, mut clear, mut clear_ok) = (0, 0, 0, 0);
        let mut max_top_diff = 0f32;
        let mut near_ties = Vec::new();
        for (case, cpu_rows) in cases.iter().zip(&cpu_all) {
            let mut seq = case.prompt.clone();
            seq.extend(&case.continuation);
            let gpu_rows = pollster::block_on(sess.top_logits(&seq, 2)).unwrap();
            if engine.starts_with("cpu") {
                cpu_rows_by_threads
                    .push((engine, gpu_rows.iter().map(|r| r.iter().map(|c| (c.id, c.logit.to_bits())).collect::<Vec<_>>()).collect::<Vec<_>>()));
            }
            for (i, &want) in case.continuation.iter().enumerate() {
                let p = case.prompt.len() - 1 + i;
                let g = &gpu_rows[p];
                let (c1, v1, v2) = argmax2(&cpu_rows[p]);
                total += 1;
                agree_llama += (g[0].id == want) as usize;
                max_top_diff = max_top_diff.max((g[0].logit - v1).abs());
                if v1 - v2 >= 0.1 {
                    clear += 1;
                    clear_ok += (g[0].id as usize == c1) as usize;
                    assert_eq!(g[0].id as usize, c1, "{label} {} pos {p}: top-1 differs from the reference (margin {})", case.name, v1 - v2);
                } else {
                    near_ties.push(format!("{}@{p} (cpu margin {:.3}, gpu {} cpu {} llama.cpp {})", case.name, v1 - v2, g[0].id, c1, want));
                }
                assert!((g[0].logit - v1).abs() <= 0.15, "{label} {} pos {p}: top logit {} reference {}", case.name, g[0].logit, v1);
            }
        }
        let rate = agree_llama as f64 / total as f64;
        println!("[{label}] top-1 agreement with llama.cpp: {agree_llama}/{total} = {:.1}%", 100.0 * rate);
        println!("[{label}] top-1 equal to the CPU reference where its margin >= 0.1: {clear_ok}/{clear}; max |top logit diff| {max_top_diff:.4}");
        println!("[{label}] near-ties (cpu margin < 0.1): {}", near_ties.len());
        for t in &near_ties {
            println!("    {t}");
        }
        assert!(rate >= 0.95, "{label}: top-1 agreement with llama.cpp {rate:.3} < 0.95");
    }
    // The CPU backend's results do not depend on its thread count: the same bits, case by case.
    let (two, one): (Vec<_>, Vec<_>) = cpu_rows_by_threads.into_iter().partition(|(e, _)| *e == "cpu-2");
    assert_eq!(two.len(), one.len());
    for ((_, a), (_, b)) in two.iter().zip(&one) {
        assert_eq!(a, b, "CPU backend: 1 and 2 threads differ");
    }
}
