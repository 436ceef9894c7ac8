//! Where a decode step's time goes, per kernel. The normal step is one submit of every op; here
//! each op is submitted alone and waited for, so the wall time of a wait is that op's cost plus a
//! submit round trip (reported separately, from an empty submit, so it can be discounted).
//! Natively this is `mobilellm bench --profile`; in the browser `llm.debug.profileDecode()`.

use super::graph::Graph;
use super::model::GpuModel;
use super::StepParams;
use crate::engine::backend::{HeadRequest, StepSampling};
use crate::engine::now_ms;
use crate::engine::profile::{add_time, DecodeProfile, OpTime};
use crate::model::ModelConfig;
use crate::Result;

impl Graph {
    /// Times `steps` decode steps at position `pos` (the KV cache holds `pos` tokens): once
    /// whole, then op by op. Writes the cache row at `pos` (the caller forgets it afterwards).
    pub async fn profile_decode(&mut self, model: &GpuModel, cfg: &ModelConfig, pos: u32, steps: usize) -> Result<DecodeProfile> {
        let gpu = model.gpu.clone();
        let step = StepParams::new(pos, 1);
        let steps = steps.max(1);
        // Builds the greedy head if needed, and warms the pipelines.
        self.step(model, cfg, &[0], pos, &HeadRequest::Last { k: 1, sampling: &StepSampling::default() }).await?;

        let t = now_ms();
        for _ in 0..steps {
            self.submit(&gpu, &step, Some((self.head_last(1), 1)));
            gpu.wait_idle().await?;
        }
        let step_ms = (now_ms() - t) / steps as f64;

        // The fastest of several empty round trips: a slow outlier here would hide small ops.
        let mut round_trip_ms = f64::INFINITY;
        for _ in 0..steps.max(5) {
            let t = now_ms();
            gpu.run_ops(&[], &step, self.step_buffer());
            gpu.wait_idle().await?;
            round_trip_ms = round_trip_ms.min(now_ms() - t);
        }

        let ops: Vec<_> = self.decode_ops().collect();
        let mut times: Vec<OpTime> = Vec::new();
        for op in &ops {
            let Some([x, y, z]) = op.workgroups(&step) else {
                continue;
            };
            // The fastest repetition, less the round trip: the least disturbed by other work.
            let mut best = f64::INFINITY;
            for _ in 0..steps {
                let t = now_ms();
                gpu.run_ops(&[op], &step, self.step_buffer());
                gpu.wait_idle().await?;
                best = best.min(now_ms() - t);
            }
            let ms = (best - round_trip_ms).max(0.0);
            add_time(&mut times, format!("{} {x}x{y}x{z}", op.label), ms);
        }
        gpu.take_error()?;
        Ok(DecodeProfile::new(pos as usize, step_ms, round_trip_ms, times))
    }
}
