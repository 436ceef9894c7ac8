//! The whole engine on small random models the test builds itself (every weight type, `llama`
//! and `mobilellm` with block_repeat 2, GQA ratios 1 to 4, Q/K/V and gate/up of different types):
//! GPU logits against the CPU reference, for chunked prefill and for single-token (decode) steps,
//! and layer sharing against duplicated blocks.

mod common;

use std::rc::Rc;

use mobilellm_web::cpu::{CpuModel, CpuSession};
use mobilellm_web::engine::{GenerateRequest, LoadedModel, Session, SessionOptions};
use mobilellm_web::gguf::{GgufFile, GgufWriter};
use mobilellm_web::model::synth::{duplicate_blocks, synth_gguf, SynthSpec};
use mobilellm_web::model::{Arch, ModelConfig, ModelTensors};
use mobilellm_web::quant::{dequantize, quantize, GgmlType};
use mobilellm_web::sampler::SamplingParams;

/// Logits compared as |gpu - cpu| <= ATOL + RTOL * |cpu|. The f32 path differs from the f64-accumulated
/// reference only by f32 rounding through a few layers; the f16 path stores K/V (and may multiply) in f16,
/// whose 11-bit mantissa gives ~5e-4 relative error per value, accumulated over the layers.
const ATOL_F32: f32 = 2e-3;
const RTOL_F32: f32 = 2e-3;
const ATOL_F16: f32 = 3e-2;
const RTOL_F16: f32 = 3e-2;

fn cpu_logits(bytes: &[u8], tokens: &[u32]) -> Vec<Vec<f32>> {
    let file = GgufFile::parse(bytes).unwrap();
    let cfg = ModelConfig::from_gguf(&file).unwrap();
    let tensors = ModelTensors::from_gguf(&file, bytes, &cfg).unwrap();
    let model = CpuModel::new(&cfg, &tensors).unwrap();
    CpuSession::new(&model).forward(tokens).unwrap()
}

fn tokens(n: usize, vocab: u32, seed: u64) -> Vec<u32> {
    let mut rng = common::Rng(seed);
    (0..n).map(|_| 3 + rng.below(vocab as u64 - 3) as u32).collect()
}

/// Compares the GPU's top-k at every position with the CPU logits at the same ids, and the
/// GPU's top-1 with the CPU's argmax wherever the CPU's top-2 margin is clear.
fn check_against_cpu(what: &str, gpu_rows: &[Vec<mobilellm_web::sampler::Candidate>], cpu: &[Vec<f32>], atol: f32, rtol: f32) {
    assert_eq!(gpu_rows.len(), cpu.len(), "{what}: positions");
    for (p, (g, c)) in gpu_rows.iter().zip(cpu).enumerate() {
        assert!(!g.is_empty(), "{what} pos {p}: no candidates");
        let got: Vec<f32> = g.iter().map(|x| x.logit).collect();
        let want: Vec<f32> = g.iter().map(|x| c[x.id as usize]).collect();
        common::assert_close(&format!("{what} pos {p}"), &got, &want, atol, rtol);
        let mut sorted: Vec<(usize, f32)> = c.iter().cloned().enumerate().collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
        if sorted[0].1 - sorted[1].1 > 2.0 * (atol + rtol * sorted[0].1.abs()) {
            assert_eq!(g[0].id as usize, sorted[0].0, "{what} pos {p}: top-1");
        }
    }
}

fn gpu_top(bytes: &[u8], force_f32: bool, chunk: usize, toks: &[u32], k: usize) -> (Vec<Vec<mobilellm_web::sampler::Candidate>>, bool) {
    let gpu = Rc::new(common::gpu(force_f32));
    let f16 = gpu.f16;
    let model = LoadedModel::load(gpu, bytes).unwrap();
    let mut s = Session::new(model, &SessionOptions { n_ctx: Some(256), prefill_chunk: chunk }).unwrap();
    (pollster::block_on(s.top_logits(toks, k)).unwrap(), f16)
}

fn spec(arch: Arch, wt: GgmlType, et: GgmlType, seed: u64) -> SynthSpec {
    let mut s = SynthSpec::tiny(arch);
    s.weight_type = wt;
    s.embd_type = et;
    s.seed = seed;
    s
}

#[test]
fn every_weight_type_prefill_and_decode_match_cpu() {
    // The K-quants need rows of 256: tests/kquant_models.rs runs them at that width.
    for (i, &wt) in GgmlType::ALL.iter().filter(|t| !t.is_k_quant()).enumerate() {
        let sp = spec(Arch::Llama, wt, if wt == GgmlType::F32 { GgmlType::Q8_0 } else { wt }, 10 + i as u64);
        let bytes = synth_gguf(&sp).unwrap();
        let toks = tokens(70, sp.n_vocab as u32, 99 + i as u64);
        let cpu = cpu_logits(&bytes, &toks);
        for force_f32 in [true, false] {
            // chunk 32: prefill crosses chunk boundaries; chunk 1: every position is a decode step.
            for chunk in [32, 1] {
                let (rows, f16) = gpu_top(&bytes, force_f32, chunk, &toks, 16);
                let (a, r) = if f16 { (ATOL_F16, RTOL_F16) } else { (ATOL_F32, RTOL_F32) };
                check_against_cpu(&format!("{} f16={f16} chunk={chunk}", wt.name()), &rows, &cpu, a, r);
                if f16 == force_f32 && !force_f32 {
                    break; // adapter without f16: the second pass would repeat the first
                }
            }
        }
    }
}

#[test]
fn gqa_shapes_and_untied_output_match_cpu() {
    // 9 query heads over 3 KV heads with head_dim 64 (the MobileLLM-125M attention shape), untied.
    let mut sp = spec(Arch::Llama, GgmlType::Q4_1, GgmlType::Q8_0, 7);
    sp.n_heads = 9;
    sp.n_kv_heads = 3;
    sp.head_dim = 64;
    sp.dim = 576;
    sp.ffn_dim = 160;
    sp.tied = false;
    let bytes = synth_gguf(&sp).unwrap();
    let toks = tokens(40, sp.n_vocab as u32, 5);
    let cpu = cpu_logits(&bytes, &toks);
    let (rows, _) = gpu_top(&bytes, true, 16, &toks, 8);
    check_against_cpu("9/3 heads untied", &rows, &cpu, ATOL_F32, RTOL_F32);
}

/// GQA ratios 1 (every query head its own KV head), 3 (SmolLM2, MobileLLM) and 4, through
/// prefill tiles (chunk 16) and decode steps (chunk 1).
#[test]
fn gqa_ratios_1_3_4_match_cpu() {
    for (i, (n_heads, n_kv_heads)) in [(4, 4), (6, 2), (8, 2)].into_iter().enumerate() {
        let mut sp = spec(Arch::Llama, GgmlType::Q4_1, GgmlType::Q8_0, 30 + i as u64);
        (sp.n_heads, sp.n_kv_heads, sp.head_dim) = (n_heads, n_kv_heads, 16);
        let bytes = synth_gguf(&sp).unwrap();
        let toks = tokens(24, sp.n_vocab as u32, 40 + i as u64);
        let cpu = cpu_logits(&bytes, &toks);
        for chunk in [16, 1] {
            let (rows, _) = gpu_top(&bytes, true, chunk, &toks, 8);
            check_against_cpu(&format!("{n_heads}/{n_kv_heads} heads chunk {chunk}"), &rows, &cpu, ATOL_F32, RTOL_F32);
        }
    }
}

/// `bytes` with the named block tensors re-encoded as other types (their values go through the
/// original type's dequantiser first, so the CPU reference reads the same numbers).
fn retype(bytes: &[u8], new_type: impl Fn(&str) -> Option<GgmlType>) -> Vec<u8> {
    let file = GgufFile::parse(bytes).unwrap();
    let mut w = GgufWriter::new();
    w.alignment = file.alignment;
    for (k, v) in &file.metadata {
        w.add_meta(k, v.clone());
    }
    for t in &file.tensors {
        w.add_tensor(&t.name, &t.dims, new_type(&t.name).unwrap_or(t.ty));
    }
    let mut out = Vec::new();
    w.write(&mut out, &mut |i| {
        let t = &file.tensors[i];
        let data = file.try_tensor_data(bytes, t).unwrap();
        Ok(match new_type(&t.name) {
            Some(ty) => quantize(ty, &dequantize(t.ty, data, t.n_elements() as usize).unwrap()).unwrap(),
            None => data.to_vec(),
        })
    })
    .unwrap();
    out
}

/// A file whose Q, K and V (and gate and up) types differ cannot stack them into one product:
/// the GPU runs them unfused (3 + 2 dispatches instead of 1 + 1 per block), with the same results.
#[test]
fn mixed_qkv_and_gate_up_types_run_unfused_and_match_cpu() {
    let sp = spec(Arch::Llama, GgmlType::Q4_1, GgmlType::Q8_0, 51);
    let fused = synth_gguf(&sp).unwrap();
    let mixed = retype(&fused, |name| match name.rsplit('.').nth(1) {
        Some("attn_k") => Some(GgmlType::Q8_0),
        Some("attn_v") => Some(GgmlType::F16),
        Some("ffn_up") => Some(GgmlType::Q4_0),
        _ => None,
    });
    let toks = tokens(24, sp.n_vocab as u32, 52);
    let cpu = cpu_logits(&mixed, &toks);
    for chunk in [16, 1] {
        let (rows, _) = gpu_top(&mixed, true, chunk, &toks, 8);
        check_against_cpu(&format!("mixed types chunk {chunk}"), &rows, &cpu, ATOL_F32, RTOL_F32);
    }
    // Dispatches per decoded token: the embedding, 5 per block (8 unfused), and the greedy head's
    // logits and one top-k pass (300 logits fit one slice).
    let per_token = |bytes: &[u8]| {
        let model = LoadedModel::load(Rc::new(common::gpu(true)), bytes).unwrap();
        let mut s = Session::new(model, &SessionOptions { n_ctx: Some(64), prefill_chunk: 8 }).unwrap();
        let mut req = GenerateRequest::new(SamplingParams::greedy(), 3);
        req.ignore_eos = true;
        pollster::block_on(s.generate(&toks[..5], &req, &mut |_| {})).unwrap().dispatches_per_step
    };
    assert_eq!(per_token(&fused), 1 + 5 * sp.n_layers as u32 + 2);
    assert_eq!(per_token(&mixed), 1 + 8 * sp.n_layers as u32 + 2);
}

#[test]
fn block_repeat_equals_duplicated_blocks() {
    let sp = spec(Arch::MobileLlm, GgmlType::Q8_0, GgmlType::Q8_0, 3);
    let mut sp = sp;
    sp.block_repeat = 2;
    let shared = synth_gguf(&sp).unwrap();
    let plain = duplicate_blocks(&shared).unwrap();
    let toks = tokens(40, sp.n_vocab as u32, 11);
    let (a, _) = gpu_top(&shared, true, 16, &toks, 8);
    let (b, _) = gpu_top(&plain, true, 16, &toks, 8);
    for (p, (x, y)) in a.iter().zip(&b).enumerate() {
        let ids_a: Vec<u32> = x.iter().map(|c| c.id).collect();
        let ids_b: Vec<u32> = y.iter().map(|c| c.id).collect();
        assert_eq!(ids_a, ids_b, "pos {p}");
        let la: Vec<f32> = x.iter().map(|c| c.logit).collect();
        let lb: Vec<f32> = y.iter().map(|c| c.logit).collect();
        common::assert_close(&format!("pos {p}"), &la, &lb, 1e-5, 1e-5);
    }
    // And the shared model against the CPU reference.
    let cpu = cpu_logits(&shared, &toks);
    check_against_cpu("block_repeat 2", &a, &cpu, ATOL_F32, RTOL_F32);
}

#[test]
fn greedy_generation_matches_cpu_and_reuses_the_cache() {
    let sp = spec(Arch::Llama, GgmlType::Q4_0, GgmlType::Q8_0, 21);
    let bytes = synth_gguf(&sp).unwrap();
    let prompt = tokens(12, sp.n_vocab as u32, 77);
    let gpu = Rc::new(common::gpu(true));
    let model = LoadedModel::load(gpu, &bytes).unwrap();
    let mut s = Session::new(model, &SessionOptions { n_ctx: Some(128), prefill_chunk: 8 }).unwrap();
    let mut req = GenerateRequest::new(SamplingParams::greedy(), 20);
    req.ignore_eos = true;
    let res = pollster::block_on(s.generate(&prompt, &req, &mut |_| {})).unwrap();
    assert_eq!(res.tokens.len(), 20);
    // CPU greedy over the same prompt, step by step.
    let file = GgufFile::parse(&bytes).unwrap();
    let cfg = ModelConfig::from_gguf(&file).unwrap();
    let tensors = ModelTensors::from_gguf(&file, &bytes, &cfg).unwrap();
    let cpu_model = CpuModel::new(&cfg, &tensors).unwrap();
    let mut cs = CpuSession::new(&cpu_model);
    let mut logits = cs.forward(&prompt).unwrap().pop().unwrap();
    for (i, &t) in res.tokens.iter().enumerate() {
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        if logits[order[0]] - logits[order[1]] > 1e-2 {
            assert_eq!(t as usize, order[0], "greedy token {i}");
        } else {
            break; // a near-tie: the continuations may legitimately part here
        }
        logits = cs.forward(&[t]).unwrap().pop().unwrap();
    }
    // A second call extending the conversation prefills only the new tokens.
    let mut longer = prompt.clone();
    longer.extend(&res.tokens[..10]);
    longer.extend(tokens(5, sp.n_vocab as u32, 1));
    let res2 = pollster::block_on(s.generate(&longer, &GenerateRequest { max_tokens: 3, ..req.clone() }, &mut |_| {})).unwrap();
    assert_eq!(res2.prompt_tokens, longer.len());
    assert_eq!(res2.prefill_tokens, 5, "only the 5 new tokens are run");
    // Too long a prompt is a typed error, not a panic.
    let huge = tokens(200, sp.n_vocab as u32, 2);
    match pollster::block_on(s.generate(&huge, &req, &mut |_| {})) {
        Err(mobilellm_web::Error::ContextFull { needed: 200, capacity: 128 }) => {}
        other => panic!("expected ContextFull, got {:?}", other.map(|r| r.tokens)),
    }
}

#[test]
fn seeded_sampling_is_reproducible() {
    let sp = spec(Arch::Llama, GgmlType::Q8_0, GgmlType::Q8_0, 5);
    let bytes = synth_gguf(&sp).unwrap();
    let prompt = tokens(6, sp.n_vocab as u32, 8);
    let gpu = Rc::new(common::gpu(true));
    let model = LoadedModel::load(gpu, &bytes).unwrap();
    let mut s = Session::new(model, &SessionOptions { n_ctx: Some(64), prefill_chunk: 8 }).unwrap();
    let params = SamplingParams { temperature: 1.5, top_k: 0, top_p: 0.98, min_p: 0.0, repeat_penalty: 1.1, repeat_last_n: 16, seed: 42 };
    let mut req = GenerateRequest::new(params.clone(), 24);
    req.ignore_eos = true;
    let a = pollster::block_on(s.generate(&prompt, &req, &mut |_| {})).unwrap();
    s.reset();
    let b = pollster::block_on(s.generate(&prompt, &req, &mut |_| {})).unwrap();
    assert_eq!(a.tokens, b.tokens, "same seed, same tokens");
    s.reset();
    req.params.seed = 43;
    let c = pollster::block_on(s.generate(&prompt, &req, &mut |_| {})).unwrap();
    assert_ne!(a.tokens, c.tokens, "another seed gives another sample at temperature 1.5");
}
