//! RMSNorm and RoPE + KV-cache write against the CPU reference, on every precision path.

mod common;

use common::{assert_close, gpus, Rng};
use mobilellm_web::cpu::ops as cpu;
use mobilellm_web::gpu::ops::norm::{rmsnorm, RowSelect};
use mobilellm_web::gpu::ops::rope_kv::{kv_cache_bytes, rope_kv};
use mobilellm_web::gpu::ops::AttnShape;
use mobilellm_web::gpu::{Gpu, StepParams};

fn step_buffer(gpu: &Gpu) -> wgpu::Buffer {
    gpu.uniform_buffer("step", std::mem::size_of::<StepParams>() as u64)
}

/// Reads a cache buffer in its storage precision, widened to f32.
fn read_cache(gpu: &Gpu, buf: &wgpu::Buffer, n: usize) -> Vec<f32> {
    if gpu.f16 {
        let bytes = pollster::block_on(gpu.read_buffer(buf, 0, 2 * n as u64)).unwrap();
        bytemuck::cast_slice::<u8, u16>(&bytes).iter().map(|&b| half::f16::from_bits(b).to_f32()).collect()
    } else {
        pollster::block_on(gpu.read_f32(buf, n)).unwrap()
    }
}

#[test]
fn rmsnorm_matches_cpu() {
    for gpu in gpus() {
        let step = step_buffer(&gpu);
        let mut rng = Rng(7);
        for &dim in &[576u32, 7, 100, 1000, 2048] {
            for &t in &[1u32, 5, 64] {
                // Rows of different magnitudes: the scale must be per row.
                let mut x = Vec::new();
                for r in 0..t {
                    x.extend(rng.vec(dim as usize, 0.1 + 3.0 * r as f32));
                }
                let w = rng.vec(dim as usize, 2.0);
                let xb = gpu.storage_buffer_init("x", bytemuck::cast_slice(&x));
                let wb = gpu.storage_buffer_init("w", bytemuck::cast_slice(&w));
                for rows in [RowSelect::All, RowSelect::Last] {
                    let out = gpu.storage_buffer("out", 4 * (t * dim) as u64);
                    let op = rmsnorm(&gpu, &step, &xb, &wb, &out, dim, 1e-5, rows);
                    gpu.run_ops(&[&op], &StepParams::new(3, t), &step);
                    let n_out = if rows == RowSelect::All { t } else { 1 };
                    let got = pollster::block_on(gpu.read_f32(&out, (n_out * dim) as usize)).unwrap();
                    let mut want = Vec::new();
                    let first = if rows == RowSelect::All { 0 } else { t - 1 };
                    for r in first..t {
                        want.extend(cpu::rmsnorm(&x[(r * dim) as usize..((r + 1) * dim) as usize], &w, 1e-5));
                    }
                    // f32 sums of dim squares (tree) and a sqrt: a few ulp relative.
                    assert_close(&format!("rmsnorm dim {dim} T {t} {rows:?} f16={}", gpu.f16), &got, &want, 1e-6, 4e-6);
                }
            }
        }
    }
}

#[test]
fn rope_kv_matches_cpu() {
    // (n_heads, n_kv_heads, head_dim)
    let shapes = [(9u32, 3u32, 64u32), (4, 1, 16), (8, 8, 16), (3, 1, 6)];
    for gpu in gpus() {
        let step = step_buffer(&gpu);
        let mut rng = Rng(11);
        for &(nh, nkv, hd) in &shapes {
            let shape = AttnShape { n_heads: nh, n_kv_heads: nkv, head_dim: hd, n_ctx: 2100, rope_base: 10000.0 };
            let kv_dim = (nkv * hd) as usize;
            let q_dim = (nh * hd) as usize;
            let n_cache = shape.n_ctx as usize * kv_dim;
            assert_eq!(kv_cache_bytes(&gpu, &shape), n_cache as u64 * if gpu.f16 { 2 } else { 4 });
            let k_cache = gpu.storage_buffer("k_cache", kv_cache_bytes(&gpu, &shape));
            let v_cache = gpu.storage_buffer("v_cache", kv_cache_bytes(&gpu, &shape));
            for &(pos0, t) in &[(0u32, 1u32), (0, 5), (37, 64), (2000, 3), (2099, 1)] {
                let q = rng.vec(t as usize * q_dim, 1.5);
                let k = rng.vec(t as usize * kv_dim, 1.5);
                let v = rng.vec(t as usize * kv_dim, 1.5);
                let qb = gpu.storage_buffer_init("q", bytemuck::cast_slice(&q));
                let kb = gpu.storage_buffer_init("k", bytemuck::cast_slice(&k));
                let vb = gpu.storage_buffer_init("v", bytemuck::cast_slice(&v));
                // Rows outside pos0..pos0+t must keep their contents: fill with a sentinel.
                let before = read_cache(&gpu, &k_cache, n_cache);
                let op = rope_kv(&gpu, &step, &shape, &qb, &kb, &vb, &k_cache, &v_cache);
                gpu.run_ops(&[&op], &StepParams::new(pos0, t), &step);

                let mut want_q = q.clone();
                let mut want_k = k.clone();
                for i in 0..t as usize {
                    let p = pos0 as usize + i;
                    cpu::rope(&mut want_q[i * q_dim..(i + 1) * q_dim], nh as usize, hd as usize, p, shape.rope_base);
                    cpu::rope(&mut want_k[i * kv_dim..(i + 1) * kv_dim], nkv as usize, hd as usize, p, shape.rope_base);
                }
                let what = format!("rope {nh}/{nkv} hd {hd} pos0 {pos0} T {t} f16={}", gpu.f16);
                let got_q = pollster::block_on(gpu.read_f32(&qb, q.len())).unwrap();
                // Table (cos, sin) rounded to f32, then two products and a sum: ~3 ulp of |x|.
                assert_close(&format!("{what}: q"), &got_q, &want_q, 1e-6, 1e-6);

                let kc = read_cache(&gpu, &k_cache, n_cache);
                let vc = read_cache(&gpu, &v_cache, n_cache);
                let rows = pos0 as usize * kv_dim..(pos0 + t) as usize * kv_dim;
                // f16 caches: one rounding to f16 (half an ulp, 2^-11 relative) on top of the f32 error.
                let (atol, rtol) = if gpu.f16 { (1e-6, 1.0 / 1024.0) } else { (1e-6, 1e-6) };
                assert_close(&format!("{what}: k cache"), &kc[rows.clone()], &want_k, atol, rtol);
                assert_close(&format!("{what}: v cache"), &vc[rows.clone()], &v, atol, rtol);
                assert_eq!(&kc[..rows.start], &before[..rows.start], "{what}: rows before pos0 changed");
                assert_eq!(&kc[rows.end..], &before[rows.end..], "{what}: rows after changed");
            }
        }
    }
}
