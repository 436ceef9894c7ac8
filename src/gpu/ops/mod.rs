//! Op constructors, one module per kernel family. Each returns [`super::Op`]s built once per
//! session; buffers are passed in, so the engine owns every allocation.
//!
//! Conventions shared by all kernels:
//! - `@group(0) @binding(0)` is the `Step` uniform (shaders/common.wgsl); other bindings follow
//!   in the order of the constructor's buffer arguments.
//! - Activations are f32 row-major `[tokens, features]`.
//! - Static shapes are pipeline override constants; per-step values come from `Step`.

pub mod attention;
pub mod embed;
pub mod matvec;
pub mod topk;

/// Attention geometry shared by rope_kv and attention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnShape {
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// KV cache capacity in positions.
    pub n_ctx: u32,
    pub rope_base: f32,
}

impl AttnShape {
    /// Bytes of one K (or V) cache: n_ctx * n_kv_heads * head_dim elements (f16 on the f16 path,
    /// else f32).
    pub fn kv_cache_bytes(&self, gpu: &crate::gpu::Gpu) -> u64 {
        let elem = if gpu.f16 { 2 } else { 4 };
        self.n_ctx as u64 * self.n_kv_heads as u64 * self.head_dim as u64 * elem
    }

    /// (cos, sin) of pos * base^(-2i/head_dim) for pos < n_ctx, i < head_dim/2, as f32 pairs
    /// [n_ctx, head_dim / 2]: computed in f64 exactly as the CPU reference does, then rounded
    /// once (f32 sin/cos of pos * freq on the GPU would lose ~pos * 2^-24 radians). One table
    /// serves every layer of a session.
    pub fn rope_table(&self) -> Vec<f32> {
        let half = (self.head_dim / 2) as usize;
        let mut t = Vec::with_capacity(self.n_ctx as usize * half * 2);
        for pos in 0..self.n_ctx as usize {
            for i in 0..half {
                let theta = pos as f64 * (self.rope_base as f64).powf(-2.0 * i as f64 / self.head_dim as f64);
                let (s, c) = theta.sin_cos();
                t.push(c as f32);
                t.push(s as f32);
            }
        }
        t
    }
}
