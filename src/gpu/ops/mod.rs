//! Op constructors, one module per kernel family. Each returns [`super::Op`]s built once per
//! session; buffers are passed in, so the engine owns every allocation.
//!
//! Conventions shared by all kernels:
//! - `@group(0) @binding(0)` is the `Step` uniform (shaders/common.wgsl); other bindings follow
//!   in the order of the constructor's buffer arguments.
//! - Activations are f32 row-major `[tokens, features]`.
//! - Static shapes are pipeline override constants; per-step values come from `Step`.

pub mod attention;
pub mod matmul;
pub mod norm;
pub mod rope_kv;
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
