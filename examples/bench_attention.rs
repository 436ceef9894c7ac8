//! Times decode attention (kv_len 128 / 1024 / 4096) and a 64-token prefill in both forms
//! (Heads: software adapters; Split: GPUs), and the top-k reduction over a 49152-token
//! vocabulary (k = 1 and 256) on the default adapter.
//! Shapes are SmolLM2-135M's: 9 query heads, 3 KV heads, head_dim 64.
//!
//! cargo run --example bench_attention [-- --f32]

use std::time::Instant;

use mobilellm_web::gpu::ops::attention::{attention_with, AttnForm, AttnIo, AttnScratch};
use mobilellm_web::gpu::ops::topk::{out_words_per_row, topk, TopkScratch};
use mobilellm_web::gpu::ops::AttnShape;
use mobilellm_web::gpu::{Gpu, GpuOptions, Op, Precision, StepParams, TokenCount};

/// Milliseconds per run of `ops`: `reps` copies encoded into one pass, after a warm-up.
fn time_ops(gpu: &Gpu, ops: &[Op], step: &StepParams, step_buf: &wgpu::Buffer, reps: usize) -> f64 {
    let once: Vec<&Op> = ops.iter().collect();
    let many: Vec<&Op> = (0..reps).flat_map(|_| ops.iter()).collect();
    gpu.run_ops(&once, step, step_buf);
    gpu.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let t0 = Instant::now();
    gpu.run_ops(&many, step, step_buf);
    gpu.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    t0.elapsed().as_secs_f64() * 1e3 / reps as f64
}

fn main() {
    let force_f32 = std::env::args().any(|a| a == "--f32");
    let gpu = pollster::block_on(Gpu::new(&GpuOptions { precision: if force_f32 { Precision::F32 } else { Precision::F16 }, ..Default::default() }))
        .expect("GPU adapter");
    println!("adapter: {}", gpu.adapter_summary());
    let step = gpu.uniform_buffer("step", std::mem::size_of::<StepParams>() as u64);

    let shape = AttnShape { n_heads: 9, n_kv_heads: 3, head_dim: 64, n_ctx: 4096, rope_base: 100000.0 };
    let max_tokens = 64;
    let zeros = |n: u64| vec![0u8; n as usize];
    // Small non-zero cache contents (all-zero bytes would be fine too, timing is data-independent).
    let kc = gpu.storage_buffer_init("k", &zeros(shape.kv_cache_bytes(&gpu)));
    let vc = gpu.storage_buffer_init("v", &zeros(shape.kv_cache_bytes(&gpu)));
    let q_bytes = (max_tokens * shape.n_heads * shape.head_dim * 4) as u64;
    let q = gpu.storage_buffer_init("q", &zeros(q_bytes));
    let out = gpu.storage_buffer("out", q_bytes);
    let io = AttnIo { q: &q, k_cache: &kc, v_cache: &vc, out: &out };
    for form in [AttnForm::for_adapter(&gpu), if gpu.cpu_like { AttnForm::Split } else { AttnForm::Heads }] {
        let scratch = AttnScratch::new(&gpu, &shape, max_tokens, form);
        let attn = attention_with(&gpu, &step, &shape, &io, &scratch, form);
        for kv_len in [128u32, 256, 1024, 4096] {
            let ms = time_ops(&gpu, &attn, &StepParams::new(kv_len - 1, 1), &step, 50);
            println!("{form:?} decode attention, kv_len {kv_len:5}: {ms:8.3} ms");
        }
        for pos0 in [0u32, 1024] {
            let ms = time_ops(&gpu, &attn, &StepParams::new(pos0, 64), &step, 5);
            println!("{form:?} prefill attention, 64 tokens at pos0 {pos0:4}: {ms:8.3} ms");
        }
    }

    let vocab = 49152u32;
    let logits: Vec<f32> = (0..vocab).map(|i| ((i as f32 * 0.618).fract() - 0.5) * 20.0).collect();
    let lb = gpu.storage_buffer_init("logits", bytemuck::cast_slice(&logits));
    let history: Vec<u32> = (0..64).map(|i| i * 700).collect();
    let hb = gpu.storage_buffer_init("history", bytemuck::cast_slice(&history));
    for k in [1u32, 256] {
        let out = gpu.storage_buffer("cands", out_words_per_row(k) as u64 * 4);
        let scratch = TopkScratch::new(&gpu, vocab, k, 1);
        let ops = topk(&gpu, &step, &lb, vocab, &hb, k, TokenCount::One, &scratch, &out);
        let mut p = StepParams::new(100, 1);
        p.n_history = 64;
        p.inv_temperature = 1.0 / 0.8;
        // Penalty off: repeated runs would otherwise compound it (timing is the same).
        let ms = time_ops(&gpu, &ops, &p, &step, 20);
        println!("topk vocab {vocab}, k {k:3}: {ms:8.3} ms");
    }
}
