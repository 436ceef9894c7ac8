//! LEGACY (phase 1): the unfused products the current engine graph records; superseded by
//! ops::matvec. Embedding gather moved to ops::embed.
//!
//! The weight type is an override constant selecting the dequantiser inside one shader per family
//! (shaders/embed.wgsl, shaders/matmul.wgsl). The SwiGLU product is matmul.wgsl with GATED = true:
//! gate and up share the kernel's dequantiser, tiling and reduction.

use crate::gpu::op::split_workgroups;
use crate::gpu::{Gpu, GpuWeight, Kernel, Op, StepParams, TokenCount};
use crate::quant::GgmlType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    /// y = x·Wᵀ
    Store,
    /// y += x·Wᵀ (the residual add fused into the producing matmul)
    Accumulate,
}

/// Mirrors the constants of shaders/matmul.wgsl.
const WG: u32 = 64;
const TT: u32 = 8;
const SLOTS: u32 = 4;

/// The shaders' WTYPE code.
fn wtype(ty: GgmlType) -> f64 {
    match ty {
        GgmlType::F32 => 0.0,
        GgmlType::F16 => 1.0,
        GgmlType::BF16 => 2.0,
        GgmlType::Q8_0 => 3.0,
        GgmlType::Q4_0 => 4.0,
        GgmlType::Q4_1 => 5.0,
    }
}

fn shape_constants(w: &GpuWeight) -> Vec<(&'static str, f64)> {
    vec![
        ("WTYPE", wtype(w.ty)),
        ("ROWS", w.rows as f64),
        ("COLS", w.cols as f64),
        ("ROW_UNITS", (w.row_words / 4) as f64),
    ]
}

/// Threads sharing a row group (TPR), for `rows` rows of `row_units` units each, `rows_per_group`
/// rows per group (4, or 2 gate + 2 up when gated).
/// - GPUs: enough lanes that each does a handful of 16-byte units (long loops of independent,
///   coalesced loads: the group reads TPR * 16 contiguous bytes of a row), few enough that short
///   rows keep lanes busy and the shared-memory reduction short.
/// - Software adapters run a workgroup's invocations as SIMD lanes of one CPU thread, where the
///   reduction through shared memory costs more than wide rows save: 2 lanes per row, as long as
///   that still leaves at least 16 workgroups to spread over the CPU's threads. Measured on an idle
///   lavapipe (bench_matmul), 49152x576 Q8_0: 31 ms at TPR 8, 26 at 4, 19 at 2; SmolLM2 decode in
///   SwiftShader (Chromium): 1.9 s per step with the GPU rule, 1.3 s with TPR 2 everywhere.
fn threads_per_row(gpu: &Gpu, rows: u32, row_units: u32, rows_per_group: u32) -> u32 {
    const CPU_TPR: u32 = 2;
    const CPU_MIN_WORKGROUPS: u32 = 16;
    if gpu.cpu_like && rows.div_ceil(WG / CPU_TPR * rows_per_group) >= CPU_MIN_WORKGROUPS {
        return CPU_TPR;
    }
    let n = (row_units / 4).max(1);
    (1u32 << (31 - n.leading_zeros())).clamp(4, WG)
}

pub use super::embed::embed;

/// Builds one matmul.wgsl op; `up` turns on the gated (SwiGLU) form.
fn product(gpu: &Gpu, label: &'static str, step: &wgpu::Buffer, w: &GpuWeight, up: Option<&GpuWeight>, x: &wgpu::Buffer, y: &wgpu::Buffer, epilogue: Epilogue, tokens: TokenCount) -> Op {
    let rows_per_group = if up.is_some() { SLOTS / 2 } else { SLOTS };
    let tpr = threads_per_row(gpu, w.rows, w.row_words / 4, rows_per_group);
    let mut constants = shape_constants(w);
    constants.extend([
        ("TPR", tpr as f64),
        ("ACCUMULATE", (epilogue == Epilogue::Accumulate) as u32 as f64),
        ("ONE_TOKEN", (tokens == TokenCount::One) as u32 as f64),
        ("GATED", up.is_some() as u32 as f64),
    ]);
    let pipeline = gpu.pipeline(Kernel::Matmul, "main", &constants);
    // Without `up`, W is bound a second time: the shader names the bindings in every form.
    let w2 = up.unwrap_or(w);
    let bind_group = gpu.bind_group(label, &pipeline, &[step, &w.data, &w.scales, x, y, &w2.data, &w2.scales]);
    let row_tiles = w.rows.div_ceil(WG / tpr * rows_per_group);
    let [gx, gy] = split_workgroups(row_tiles);
    Op::new(label, pipeline, bind_group, Box::new(move |s: &StepParams| [gx, gy, tokens.resolve(s).div_ceil(TT)]))
}

/// y[t, r] (=|+=) sum_c x[t, c] * W[r, c] for t < tokens. x: f32 [T, w.cols]; y: f32 [T, w.rows].
/// x is read as vec4s: its size must be a multiple of 16 bytes (true of any [T, 32k] buffer).
pub fn matmul(gpu: &Gpu, step: &wgpu::Buffer, w: &GpuWeight, x: &wgpu::Buffer, y: &wgpu::Buffer, epilogue: Epilogue, tokens: TokenCount) -> Op {
    product(gpu, "matmul", step, w, None, x, y, epilogue, tokens)
}

/// out[t, r] = silu(x·gateᵀ)[t, r] * (x·upᵀ)[t, r]. x: f32 [T, cols]; out: f32 [T, gate.rows].
/// As for [`matmul`], x's size must be a multiple of 16 bytes.
pub fn matmul_swiglu(gpu: &Gpu, step: &wgpu::Buffer, gate: &GpuWeight, up: &GpuWeight, x: &wgpu::Buffer, out: &wgpu::Buffer) -> Op {
    assert!(
        gate.ty == up.ty && gate.rows == up.rows && gate.cols == up.cols,
        "matmul_swiglu: gate and up must share type and shape"
    );
    product(gpu, "matmul_swiglu", step, gate, Some(up), x, out, Epilogue::Store, TokenCount::Step)
}
