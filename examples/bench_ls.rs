//! MobileLLM-LS (immediate block-wise weight sharing) decode overhead, on random models of the
//! MobileLLM-125M shape (30 blocks of width 576, 9/3 heads of 64, FFN 1536, 32000-token vocabulary):
//!   plain      block_repeat 1: 30 block evaluations per token
//!   shared     block_repeat 2: 60 evaluations, each block twice in a row on the same weights
//!   duplicated the shared file unrolled into 60 distinct blocks (twice the weight bytes)
//! shared / plain is the cost of the second run of each block (the paper: ~3% on a phone, where
//! decode is memory-bound and the repeat finds its weights in cache); shared / duplicated is what
//! running a block's repeats back to back saves over reading its weights twice.
//!
//! cargo run --release --example bench_ls -- [--backend cpu|gpu] [--threads N] [--type q8_0|q4_1] [--runs 5] [--gen 64]
//! Prints one JSON object: decode tok/s (median) per variant and the ratios.

use std::rc::Rc;

use mobilellm_web::cpu::kernels::KvType;
use mobilellm_web::engine::{BackendKind, GenerateRequest, LoadOptions, LoadedModel, Session, SessionOptions};
use mobilellm_web::gpu::{GpuOptions, Precision};
use mobilellm_web::model::synth::{duplicate_blocks, synth_gguf, SynthSpec};
use mobilellm_web::model::Arch;
use mobilellm_web::quant::GgmlType;
use mobilellm_web::sampler::SamplingParams;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == &format!("--{name}")).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_string())
}

fn spec(ty: GgmlType, repeat: usize) -> SynthSpec {
    let mut s = SynthSpec::tiny(Arch::MobileLlm);
    (s.n_vocab, s.dim, s.n_layers, s.block_repeat) = (32000, 576, 30, repeat);
    (s.n_heads, s.n_kv_heads, s.head_dim, s.ffn_dim, s.context_length) = (9, 3, 64, 1536, 2048);
    (s.weight_type, s.embd_type, s.tied, s.seed) = (ty, GgmlType::Q8_0, true, 125);
    s
}

/// Decode tokens/s of one generation of `gen` tokens after a 16-token prompt.
fn decode_rate(model: &Rc<LoadedModel>, gen: usize) -> f64 {
    let mut s = Session::new(model.clone(), &SessionOptions { n_ctx: Some(256), prefill_chunk: 16 }).unwrap();
    let prompt: Vec<u32> = (0..16).map(|i| 300 + i * 97).collect();
    let mut req = GenerateRequest::new(SamplingParams::greedy(), gen);
    req.ignore_eos = true;
    let r = pollster::block_on(s.generate(&prompt, &req, &mut |_| {})).unwrap();
    (r.tokens.len() - 1) as f64 * 1000.0 / r.decode_ms
}

fn main() {
    let backend = BackendKind::parse(&arg("backend", "cpu")).expect("--backend cpu|gpu");
    let threads: usize = arg("threads", "0").parse().unwrap();
    let ty = GgmlType::parse_name(&arg("type", "q8_0")).expect("--type");
    let runs: usize = arg("runs", "5").parse().unwrap();
    let gen: usize = arg("gen", "64").parse().unwrap();
    let shared = synth_gguf(&spec(ty, 2)).unwrap();
    let variants = [("plain", synth_gguf(&spec(ty, 1)).unwrap()), ("duplicated", duplicate_blocks(&shared).unwrap()), ("shared", shared)];
    let opts = LoadOptions { backend, threads, gpu: GpuOptions { precision: Precision::F32, ..Default::default() }, kv_type: KvType::F16 };
    let models: Vec<(&str, Rc<LoadedModel>, usize)> =
        variants.iter().map(|(n, b)| (*n, pollster::block_on(LoadedModel::open(b.clone(), &opts)).unwrap(), b.len())).collect();
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); models.len()];
    // Warm-up, then interleaved runs so the machine's load hits every variant alike.
    models.iter().for_each(|(_, m, _)| {
        decode_rate(m, 4);
    });
    for r in 0..runs {
        for (i, (name, m, _)) in models.iter().enumerate() {
            let x = decode_rate(m, gen);
            eprintln!("run {r} {name}: {x:.2} tok/s");
            rates[i].push(x);
        }
    }
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[(s.len() - 1) / 2]
    };
    let m: Vec<f64> = rates.iter().map(|v| median(v)).collect();
    let out = serde_json::json!({
        "device": models[0].1.device_summary(),
        "weight_type": ty.name(),
        "variants": models.iter().zip(&m).map(|((n, model, bytes), r)| serde_json::json!({
            "name": n, "file_bytes": bytes, "block_evals": model.cfg.n_block_evals(), "decode_tok_s": r,
        })).collect::<Vec<_>>(),
        // Time per token of the shared model over the others' (1.0 = no overhead).
        "shared_over_plain": m[0] / m[2],
        "shared_over_duplicated": m[1] / m[2],
        "runs": runs,
        "gen": gen,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
