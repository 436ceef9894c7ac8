//! RoPE and KV-cache write (Kernel::RopeKv).

use super::AttnShape;
use crate::gpu::{Gpu, Kernel, Op};

const WG: u32 = 64;

/// Bytes of one K (or V) cache buffer: n_ctx * n_kv_heads * head_dim elements (f16 on the f16
/// path, else f32).
pub fn kv_cache_bytes(gpu: &Gpu, shape: &AttnShape) -> u64 {
    let elem = if gpu.f16 { 2 } else { 4 };
    shape.n_ctx as u64 * shape.n_kv_heads as u64 * shape.head_dim as u64 * elem
}

/// (cos, sin) of pos * base^(-2i/head_dim) for pos < n_ctx, i < head_dim/2, computed in f64
/// exactly as the CPU reference does, then rounded once to f32.
fn rope_table(shape: &AttnShape) -> Vec<f32> {
    let half = (shape.head_dim / 2) as usize;
    let mut t = Vec::with_capacity(shape.n_ctx as usize * half * 2);
    for pos in 0..shape.n_ctx as usize {
        for i in 0..half {
            let theta = pos as f64 * (shape.rope_base as f64).powf(-2.0 * i as f64 / shape.head_dim as f64);
            let (s, c) = theta.sin_cos();
            t.push(c as f32);
            t.push(s as f32);
        }
    }
    t
}

/// Rotates q (in place) and k with llama's RoPE (adjacent pairs (2i, 2i+1), angle
/// pos * base^(-2i/head_dim), pos = pos0 + t), then writes rotated k and v into the caches at
/// rows pos0..pos0+T. q: f32 [T, n_heads*hd]; k, v: f32 [T, n_kv*hd]; caches: [n_ctx, n_kv*hd].
pub fn rope_kv(gpu: &Gpu, step: &wgpu::Buffer, shape: &AttnShape, q: &wgpu::Buffer, k: &wgpu::Buffer, v: &wgpu::Buffer, k_cache: &wgpu::Buffer, v_cache: &wgpu::Buffer) -> Op {
    assert!(shape.head_dim % 2 == 0, "head_dim must be even");
    assert!(shape.n_heads % shape.n_kv_heads == 0, "n_heads must be a multiple of n_kv_heads");
    let pipeline = gpu.pipeline(
        Kernel::RopeKv,
        "rope_kv",
        &[
            ("HEAD_DIM", shape.head_dim as f64),
            ("N_HEADS", shape.n_heads as f64),
            ("N_KV_HEADS", shape.n_kv_heads as f64),
            ("N_CTX", shape.n_ctx as f64),
        ],
    );
    // The table lives as long as the bind group that references it.
    let table = gpu.storage_buffer_init("rope_table", bytemuck::cast_slice(&rope_table(shape)));
    let bind_group = gpu.bind_group("rope_kv", &pipeline, &[step, q, k, v, k_cache, v_cache, &table]);
    let pairs = (shape.n_heads + 2 * shape.n_kv_heads) * shape.head_dim / 2;
    let groups_x = pairs.div_ceil(WG);
    Op::new("rope_kv", pipeline, bind_group, Box::new(move |s| [groups_x, s.n_tokens, 1]))
}
