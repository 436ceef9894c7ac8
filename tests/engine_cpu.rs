//! The CPU backend end to end on small random models the test builds itself: every weight type,
//! prefill chunks and single-token steps, GQA ratios 1, 3 and 4, untied output, MobileLLM-LS
//! layer sharing, both KV-cache types, against the f64-accumulating CPU reference; results
//! bit-identical whatever the thread count; the file kept as the weights (no f32 copy).

mod common;

use mobilellm_web::cpu::kernels::{KvType, Pool};
use mobilellm_web::cpu::{CpuModel, CpuSession};
use mobilellm_web::engine::{GenerateRequest, LoadedModel, Session, SessionOptions};
use mobilellm_web::model::synth::{duplicate_blocks, synth_gguf, SynthSpec};
use mobilellm_web::model::Arch;
use mobilellm_web::quant::GgmlType;
use mobilellm_web::sampler::{Candidate, SamplingParams};

/// |cpu backend - reference| <= ATOL + RTOL * |reference|. With f32 KV caches the only
/// approximation is the 16-bit quantisation of each product's input (relative error ~3e-5 of a
/// block's largest value), carried through a few layers. f16 KV caches round every key and value
/// to 11 significant bits (~5e-4 relative), as llama.cpp does.
const TOL_KV_F32: (f32, f32) = (2e-3, 2e-3);
const TOL_KV_F16: (f32, f32) = (3e-2, 3e-2);

fn reference(bytes: &[u8], toks: &[u32]) -> Vec<Vec<f32>> {
    let model = CpuModel::from_gguf_bytes(bytes).unwrap();
    CpuSession::new(&model).forward(toks).unwrap()
}

fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = common::Rng(seed);
    (0..n).map(|_| 3 + rng.below(vocab as u64 - 3) as u32).collect()
}

fn top(bytes: &[u8], threads: usize, kv: KvType, chunk: usize, toks: &[u32], k: usize) -> Vec<Vec<Candidate>> {
    let model = LoadedModel::load_cpu(bytes.to_vec(), Pool::new(threads), kv).unwrap();
    assert_eq!(model.backend_name(), "cpu");
    let mut s = Session::new(model, &SessionOptions { n_ctx: Some(256), prefill_chunk: chunk }).unwrap();
    pollster::block_on(s.top_logits(toks, k)).unwrap()
}

/// The backend's top-k logits against the reference's at the same ids, and its top-1 against the
/// reference's argmax wherever that is clear.
fn check(what: &str, rows: &[Vec<Candidate>], want: &[Vec<f32>], (atol, rtol): (f32, f32)) {
    assert_eq!(rows.len(), want.len(), "{what}: positions");
    for (p, (g, c)) in rows.iter().zip(want).enumerate() {
        assert!(!g.is_empty(), "{what} pos {p}: no candidates");
        let got: Vec<f32> = g.iter().map(|x| x.logit).collect();
        let at: Vec<f32> = g.iter().map(|x| c[x.id as usize]).collect();
        common::assert_close(&format!("{what} pos {p}"), &got, &at, atol, rtol);
        let mut sorted: Vec<(usize, f32)> = c.iter().cloned().enumerate().collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
        if sorted[0].1 - sorted[1].1 > 2.0 * (atol + rtol * sorted[0].1.abs()) {
            assert_eq!(g[0].id as usize, sorted[0].0, "{what} pos {p}: top-1");
        }
    }
}

fn bits(rows: &[Vec<Candidate>]) -> Vec<Vec<(u32, u32)>> {
    rows.iter().map(|r| r.iter().map(|c| (c.id, c.logit.to_bits())).collect()).collect()
}

fn spec(arch: Arch, wt: GgmlType, et: GgmlType, seed: u64) -> SynthSpec {
    let mut s = SynthSpec::tiny(arch);
    s.weight_type = wt;
    s.embd_type = et;
    s.seed = seed;
    s
}

#[test]
fn every_classic_weight_type_prefill_and_decode_match_the_reference() {
    for (i, &wt) in GgmlType::CLASSIC.iter().enumerate() {
        let sp = spec(Arch::Llama, wt, if wt == GgmlType::F32 { GgmlType::Q8_0 } else { wt }, 10 + i as u64);
        let bytes = synth_gguf(&sp).unwrap();
        let toks = tokens(70, sp.n_vocab, 99 + i as u64);
        let want = reference(&bytes, &toks);
        for (kv, tol) in [(KvType::F32, TOL_KV_F32), (KvType::F16, TOL_KV_F16)] {
            // chunk 32: prefill across chunk boundaries; chunk 1: every position a decode step.
            for chunk in [32, 1] {
                let rows = top(&bytes, 2, kv, chunk, &toks, 16);
                check(&format!("{} kv {kv:?} chunk {chunk}", wt.name()), &rows, &want, tol);
            }
        }
    }
}

/// The Q5 and K-quant types as random valid blocks, at width 256 (the K-quants' super-block) with
/// 301 tokens (a tail of one row in the logits): prefill and decode against the reference with
/// both cache types, the tied embedding in the type itself (so it is also the logits matrix) or
/// an untied Q6_K output, block matrices of another K-quant in one layer, and the same bits on
/// 1 and 3 threads.
#[test]
fn q5_and_k_quant_weights_match_the_reference() {
    for (i, &wt) in GgmlType::K_AND_Q5.iter().enumerate() {
        let mut sp = spec(Arch::Llama, wt, wt, 40 + i as u64);
        (sp.dim, sp.n_heads, sp.n_kv_heads, sp.head_dim, sp.ffn_dim, sp.n_vocab) = (256, 4, 2, 64, 512, 301);
        sp.random_blocks = true;
        if i % 2 == 1 {
            sp.tied = false;
            sp.overrides = vec![("output.weight".into(), GgmlType::Q6_K), ("blk.1.ffn_down".into(), GgmlType::Q4_K)];
        }
        let bytes = synth_gguf(&sp).unwrap();
        let toks = tokens(40, sp.n_vocab, 60 + i as u64);
        let want = reference(&bytes, &toks);
        for (kv, tol, chunk) in [(KvType::F32, TOL_KV_F32, 16), (KvType::F16, TOL_KV_F16, 1)] {
            let rows = top(&bytes, 3, kv, chunk, &toks, 16);
            check(&format!("{} tied {} kv {kv:?} chunk {chunk}", wt.name(), sp.tied), &rows, &want, tol);
            assert_eq!(bits(&rows), bits(&top(&bytes, 1, kv, chunk, &toks, 16)), "{}: 1 and 3 threads differ", wt.name());
        }
    }
}

#[test]
fn gqa_ratios_and_untied_output_match_the_reference() {
    for (heads, kv_heads, head_dim, dim) in [(4, 4, 16, 64), (9, 3, 64, 576), (8, 2, 32, 256)] {
        let mut sp = spec(Arch::Llama, GgmlType::Q4_1, GgmlType::Q8_0, 7 + heads as u64);
        (sp.n_heads, sp.n_kv_heads, sp.head_dim, sp.dim, sp.ffn_dim, sp.tied) = (heads, kv_heads, head_dim, dim, 160, heads != 4);
        let bytes = synth_gguf(&sp).unwrap();
        let toks = tokens(40, sp.n_vocab, 5);
        let rows = top(&bytes, 2, KvType::F32, 16, &toks, 8);
        check(&format!("{heads}/{kv_heads} heads of {head_dim}"), &rows, &reference(&bytes, &toks), TOL_KV_F32);
    }
}

#[test]
fn block_repeat_equals_duplicated_blocks_bit_for_bit() {
    let mut sp = spec(Arch::MobileLlm, GgmlType::Q8_0, GgmlType::Q8_0, 3);
    sp.block_repeat = 2;
    let shared = synth_gguf(&sp).unwrap();
    let plain = duplicate_blocks(&shared).unwrap();
    let toks = tokens(40, sp.n_vocab, 11);
    let a = top(&shared, 2, KvType::F16, 16, &toks, 8);
    let b = top(&plain, 2, KvType::F16, 16, &toks, 8);
    // The same arithmetic in the same order: not close, equal.
    assert_eq!(bits(&a), bits(&b));
    check("block_repeat 2", &a, &reference(&shared, &toks), TOL_KV_F16);
}

#[test]
fn results_are_bit_identical_whatever_the_thread_count() {
    let mut sp = spec(Arch::Llama, GgmlType::Q4_1, GgmlType::Q8_0, 5);
    (sp.dim, sp.ffn_dim, sp.n_heads, sp.n_kv_heads, sp.head_dim) = (128, 352, 6, 2, 16);
    let bytes = synth_gguf(&sp).unwrap();
    let toks = tokens(37, sp.n_vocab, 9);
    for chunk in [16, 1] {
        let one = bits(&top(&bytes, 1, KvType::F16, chunk, &toks, 32));
        for threads in [2, 3, 4] {
            assert_eq!(bits(&top(&bytes, threads, KvType::F16, chunk, &toks, 32)), one, "{threads} threads, chunk {chunk}");
        }
    }
}

#[test]
fn greedy_generation_matches_the_reference_and_reuses_the_cache() {
    let sp = spec(Arch::Llama, GgmlType::Q4_0, GgmlType::Q8_0, 21);
    let bytes = synth_gguf(&sp).unwrap();
    let prompt = tokens(12, sp.n_vocab, 77);
    let model = LoadedModel::load_cpu(bytes.clone(), Pool::new(2), KvType::F32).unwrap();
    // The file is the weights: the backend holds exactly its bytes, no dequantised copy.
    assert_eq!(model.weight_bytes(), bytes.len() as u64);
    let mut s = Session::new(model, &SessionOptions { n_ctx: Some(128), prefill_chunk: 8 }).unwrap();
    let mut req = GenerateRequest::new(SamplingParams::greedy(), 20);
    req.ignore_eos = true;
    let r = pollster::block_on(s.generate(&prompt, &req, &mut |_| {})).unwrap();
    assert_eq!(r.tokens.len(), 20);
    // Teacher-forced reference on prompt + generated tokens: each token is the argmax after its prefix
    // (wherever the reference's margin is clear).
    let mut seq = prompt.clone();
    seq.extend(&r.tokens);
    let want = reference(&bytes, &seq);
    for (i, &tok) in r.tokens.iter().enumerate() {
        let row = &want[prompt.len() - 1 + i];
        let mut sorted: Vec<(usize, f32)> = row.iter().cloned().enumerate().collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
        if sorted[0].1 - sorted[1].1 > 1e-2 {
            assert_eq!(tok as usize, sorted[0].0, "token {i}");
        }
    }
    // A second call whose prompt extends the conversation prefills only the new tokens.
    let mut next = seq.clone();
    next.extend(tokens(3, sp.n_vocab, 5));
    let r2 = pollster::block_on(s.generate(&next, &GenerateRequest::new(SamplingParams::greedy(), 4), &mut |_| {})).unwrap();
    assert!(r2.prefill_tokens <= 4, "prefilled {} tokens", r2.prefill_tokens);
}

#[test]
fn context_limits_and_bad_tokens_are_typed_errors() {
    let sp = spec(Arch::Llama, GgmlType::Q8_0, GgmlType::Q8_0, 2);
    let bytes = synth_gguf(&sp).unwrap();
    let model = LoadedModel::load_cpu(bytes, Pool::new(1), KvType::F16).unwrap();
    let mut s = Session::new(model, &SessionOptions { n_ctx: Some(16), prefill_chunk: 8 }).unwrap();
    let long = tokens(17, sp.n_vocab, 1);
    let e = pollster::block_on(s.generate(&long, &GenerateRequest::new(SamplingParams::greedy(), 4), &mut |_| {})).unwrap_err();
    assert_eq!(e.code(), "ContextFull");
    let e = pollster::block_on(s.generate(&[5, 100_000], &GenerateRequest::new(SamplingParams::greedy(), 4), &mut |_| {})).unwrap_err();
    assert_eq!(e.code(), "InvalidArgument");
    // A prompt that fills the context generates until it is full, then stops with that reason.
    let fits = tokens(14, sp.n_vocab, 3);
    let mut req = GenerateRequest::new(SamplingParams::greedy(), 100);
    req.ignore_eos = true;
    let r = pollster::block_on(s.generate(&fits, &req, &mut |_| {})).unwrap();
    assert_eq!(r.finish.as_str(), "context_full");
    assert_eq!(s.cached.len(), 16);
}
