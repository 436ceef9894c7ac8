//! The WebGPU backend: device, kernels (WGSL in `shaders/`), weights in GPU layout, ops, and the
//! per-session graph that runs a step.
//!
//! An [`Op`] is a small record (pipeline, bind group, how many workgroups) built once when a
//! session is created; a forward pass is a list of ops encoded into ONE compute pass. Per-step
//! values (token count, position) live in one uniform buffer ([`StepParams`]) bound at
//! `@group(0) @binding(0)` of every kernel, so nothing is created per token.

mod context;
mod graph;
mod kernel;
mod model;
mod op;
pub mod ops;
mod profile;
mod repack;
mod step;
mod weights;

pub use context::{Gpu, GpuOptions, Precision};
pub use graph::Graph;
pub use kernel::{Kernel, ShaderFeatures};
pub use model::{GpuModel, GpuModelBuilder, GpuTensor};
pub use op::{Dispatch, Op};
pub use repack::{concat_rows, interleave_rows, repack_for_gpu, GpuLayout};
pub use step::{StepParams, TokenCount};
pub use weights::GpuWeight;
