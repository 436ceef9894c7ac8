//! An op: one dispatch of one kernel with its bindings, recorded once and encoded every step.

use super::StepParams;

/// Workgroup count as a function of the step (token count, positions).
pub type Dispatch = Box<dyn Fn(&StepParams) -> [u32; 3]>;

pub struct Op {
    pub label: &'static str,
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub dispatch: Dispatch,
}

impl Op {
    pub fn new(label: &'static str, pipeline: wgpu::ComputePipeline, bind_group: wgpu::BindGroup, dispatch: Dispatch) -> Self {
        Op { label, pipeline, bind_group, dispatch }
    }

    /// The workgroup grid for `step`, or None when the op has nothing to do (a zero count).
    pub fn workgroups(&self, step: &StepParams) -> Option<[u32; 3]> {
        let grid = (self.dispatch)(step);
        grid.iter().all(|&n| n > 0).then_some(grid)
    }

    /// Records the dispatch into `pass`; skipped when the workgroup count is zero.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>, step: &StepParams) {
        let Some([x, y, z]) = self.workgroups(step) else {
            return;
        };
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(x, y, z);
    }
}

/// Splits a 1-D workgroup count over x and y so neither exceeds the 65535 limit;
/// kernels recover the linear index as `wg.x + wg.y * num_workgroups.x`.
pub fn split_workgroups(n: u32) -> [u32; 2] {
    const MAX: u32 = 65535;
    if n <= MAX {
        [n, 1]
    } else {
        let y = n.div_ceil(MAX);
        [n.div_ceil(y), y]
    }
}
