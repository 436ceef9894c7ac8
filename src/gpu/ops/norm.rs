//! RMSNorm (Kernel::RmsNorm).

use crate::gpu::op::split_workgroups;
use crate::gpu::{Gpu, Kernel, Op};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowSelect {
    /// out[t] = norm(x[t]) for every token of the step.
    All,
    /// out[0] = norm(x[n_tokens - 1]): only the last token (logits during generation).
    Last,
}

/// out = x / sqrt(mean(x²) + eps) * weight, per row. x, out: f32 [T, dim]; weight: f32 [dim].
pub fn rmsnorm(gpu: &Gpu, step: &wgpu::Buffer, x: &wgpu::Buffer, weight: &wgpu::Buffer, out: &wgpu::Buffer, dim: u32, eps: f32, rows: RowSelect) -> Op {
    let last = rows == RowSelect::Last;
    let pipeline = gpu.pipeline(
        Kernel::RmsNorm,
        "rmsnorm",
        &[("DIM", dim as f64), ("EPS", eps as f64), ("LAST", if last { 1.0 } else { 0.0 })],
    );
    let bind_group = gpu.bind_group("rmsnorm", &pipeline, &[step, x, weight, out]);
    // One workgroup per row; the kernel recovers the row as wg.x + wg.y * num_workgroups.x.
    let dispatch: crate::gpu::Dispatch = if last {
        Box::new(|_| [1, 1, 1])
    } else {
        Box::new(|s| {
            let [x, y] = split_workgroups(s.n_tokens);
            [x, y, 1]
        })
    };
    Op::new("rmsnorm", pipeline, bind_group, dispatch)
}
