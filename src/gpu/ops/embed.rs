//! Embedding gather (Kernel::Embed): rows of a (quantised) table, decoded by weights.wgsl.

use crate::gpu::{Gpu, GpuWeight, Kernel, Op, StepParams};

/// Invocations per workgroup (one per 16-byte unit of a row).
const EMBED_WG: u32 = 64;

pub(crate) fn wgsl_constants() -> Vec<(&'static str, u32)> {
    vec![("EMBED_WG", EMBED_WG)]
}

/// out[t, :] = table[tokens[t], :] dequantised (bit-exact). tokens: u32 [T]; out: f32 [T, table.cols].
pub fn embed(gpu: &Gpu, step: &wgpu::Buffer, table: &GpuWeight, tokens: &wgpu::Buffer, out: &wgpu::Buffer) -> Op {
    let constants = [("ROWS", table.rows as f64), ("COLS", table.cols as f64), ("ROW_UNITS", (table.row_words / 4) as f64)];
    let pipeline = gpu.pipeline(Kernel::Embed(table.ty), "main", &constants);
    let bind_group = gpu.bind_group("embed", &pipeline, &[step, &table.data, &table.scales, tokens, out]);
    let groups = (table.row_words / 4).div_ceil(EMBED_WG);
    Op::new("embed", pipeline, bind_group, Box::new(move |s: &StepParams| [groups, s.n_tokens, 1]))
}
