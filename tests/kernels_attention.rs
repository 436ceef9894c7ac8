//! GQA causal attention in both forms (Heads: software adapters; Split + combine: GPUs) against
//! the CPU reference, decode and prefill, on every precision path. The caches are written directly
//! in their storage precision; on the f16 path the reference reads the same f16-rounded values, so
//! both paths are held to f32 accumulation error rather than to f16 storage error.

mod common;

use common::{assert_close, gpus, Rng};
use mobilellm_web::cpu::ops as cpu;
use mobilellm_web::gpu::ops::attention::{attention_with, AttnForm, AttnIo, AttnScratch};
use mobilellm_web::gpu::ops::AttnShape;
use mobilellm_web::gpu::{Gpu, StepParams};

/// Random cache contents, rounded to the storage precision, and the buffer holding them.
fn cache(gpu: &Gpu, shape: &AttnShape, rng: &mut Rng) -> (Vec<f32>, wgpu::Buffer) {
    let n = (shape.n_ctx * shape.n_kv_heads * shape.head_dim) as usize;
    let vals = rng.vec(n, 1.0);
    let buf = gpu.storage_buffer("cache", shape.kv_cache_bytes(gpu));
    if gpu.f16 {
        let h: Vec<half::f16> = vals.iter().map(|&v| half::f16::from_f32(v)).collect();
        gpu.queue.write_buffer(&buf, 0, bytemuck::cast_slice(&h));
        (h.iter().map(|v| v.to_f32()).collect(), buf)
    } else {
        gpu.queue.write_buffer(&buf, 0, bytemuck::cast_slice(&vals));
        (vals, buf)
    }
}

fn check(gpu: &Gpu, heads: (u32, u32, u32), cases: &[(u32, u32)], seed: u64) {
    let (nh, nkv, hd) = heads;
    let shape = AttnShape { n_heads: nh, n_kv_heads: nkv, head_dim: hd, n_ctx: 2112, rope_base: 10000.0 };
    let mut rng = Rng(seed);
    let (k, kb) = cache(gpu, &shape, &mut rng);
    let (v, vb) = cache(gpu, &shape, &mut rng);
    let max_tokens = 64;
    let q_dim = (nh * hd) as usize;
    let step = gpu.uniform_buffer("step", std::mem::size_of::<StepParams>() as u64);
    let qb = gpu.storage_buffer("q", (max_tokens as usize * q_dim * 4) as u64);
    let out = gpu.storage_buffer("out", (max_tokens as usize * q_dim * 4) as u64);
    for form in [AttnForm::Heads, AttnForm::Split] {
        let scratch = AttnScratch::new(gpu, &shape, max_tokens, form);
        let io = AttnIo { q: &qb, k_cache: &kb, v_cache: &vb, out: &out };
        let ops = attention_with(gpu, &step, &shape, &io, &scratch, form);
        let ops: Vec<_> = ops.iter().collect();
        for &(pos0, t) in cases {
            // Scale 3 makes the softmax peaked (scores ~ N(0, 1)), not a plain average.
            let q = rng.vec(t as usize * q_dim, 3.0);
            gpu.queue.write_buffer(&qb, 0, bytemuck::cast_slice(&q));
            gpu.run_ops(&ops, &StepParams::new(pos0, t), &step);
            let got = pollster::block_on(gpu.read_f32(&out, t as usize * q_dim)).unwrap();
            let mut want = Vec::new();
            for i in 0..t as usize {
                let len = pos0 as usize + i + 1;
                want.extend(cpu::attention(&q[i * q_dim..(i + 1) * q_dim], &k, &v, len, nh as usize, nkv as usize, hd as usize));
            }
            let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
            eprintln!("attention {form:?} {nh}/{nkv} hd {hd} pos0 {pos0} T {t} f16={}: max abs error {worst:.2e}", gpu.f16);
            // Errors are f32 rounding: scores are hd-term dot products, exp has a few ulp, the sums
            // run over the positions (in tiles of 128 and <= 32 chunks for Split); the output is a
            // convex combination of |v| <= 1. Observed worst 4e-7 on both paths (the f16
            // reference reads the same f16 cache).
            assert_close(&format!("attention {form:?} {nh}/{nkv} hd {hd} pos0 {pos0} T {t} f16={}", gpu.f16), &got, &want, 2e-6, 2e-6);
        }
    }
}

/// Decode: one token at kv_len 1, 37, 300, 2048 (Split: 1, 1, 1 and 4 chunks), and around the
/// Heads form's blocks of four positions.
#[test]
fn attention_decode_matches_cpu() {
    let cases = [(0u32, 1u32), (36, 1), (299, 1), (2047, 1), (63, 1), (64, 1), (1, 1), (2, 1), (700, 1)];
    for gpu in gpus() {
        for heads in [(9, 3, 64), (4, 1, 16), (8, 8, 16), (2, 1, 6), (4, 2, 256), (20, 5, 64), (12, 2, 16)] {
            check(&gpu, heads, &cases, 1);
        }
    }
}

/// Prefill: T tokens after pos0 cached ones, causal within the step.
#[test]
fn attention_prefill_matches_cpu() {
    let cases = [(0u32, 5u32), (32, 5), (0, 64), (236, 64), (1990, 7), (2000, 64)];
    for gpu in gpus() {
        for heads in [(9, 3, 64), (4, 1, 16), (8, 8, 16), (2, 1, 6)] {
            check(&gpu, heads, &cases, 2);
        }
    }
}

/// Two steps in a row with different shapes reuse the same ops and scratch (nothing stale).
#[test]
fn attention_alternating_steps() {
    for gpu in gpus() {
        check(&gpu, (9, 3, 64), &[(300, 1), (0, 64), (2047, 1), (5, 1), (1000, 33), (1040, 1)], 3);
    }
}
