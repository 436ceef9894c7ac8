//! Where a decode step's time goes, per kernel. The normal step is one submit of every op; here
//! each op is submitted alone and waited for, so the wall time of a wait is that op's cost plus a
//! submit round trip (reported separately, from an empty submit, so it can be discounted).
//! Natively this is `mobilellm bench --profile`; in the browser `llm.debug.profileDecode()`.

use super::clock::now_ms;
use super::session::Session;
use crate::gpu::StepParams;
use crate::sampler::SamplingParams;
use crate::Result;

/// The time of one kind of op (same kernel, same workgroup grid) over the profiled steps.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpTime {
    /// Kernel label and workgroup grid, e.g. "matmul 192x1x1".
    pub op: String,
    /// Ops of this kind per decode step.
    pub per_step: usize,
    /// Milliseconds per decode step for all of them (each the fastest of the profiled steps), less
    /// the submit round trips.
    pub ms_per_step: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DecodeProfile {
    /// Key/value positions already cached when the profiled step runs.
    pub kv_len: usize,
    /// One whole step as the engine runs it (one submit, waited for).
    pub step_ms: f64,
    /// An empty submit and its wait (the fastest of several): the fixed cost each op's measurement
    /// includes.
    pub round_trip_ms: f64,
    /// Largest first.
    pub ops: Vec<OpTime>,
}

impl Session {
    /// Prefills `prompt` (greedy head), then times `steps` decode steps at the next position:
    /// once whole, then op by op. The cached conversation is replaced by `prompt`.
    pub async fn profile_decode(&mut self, prompt: &[u32], steps: usize) -> Result<DecodeProfile> {
        let params = SamplingParams { temperature: 0.0, ..Default::default() };
        self.reset();
        self.graph.ensure_head_last(&self.model, 1);
        if prompt.is_empty() || prompt.len() >= self.n_ctx() {
            return Err(crate::Error::InvalidArgument(format!("profile prompt of {} tokens does not fit a context of {}", prompt.len(), self.n_ctx())));
        }
        self.prefill(prompt, &params, 1).await?;
        let gpu = self.model.gpu.clone();
        let pos = self.cached.len() as u32;
        let step = StepParams::new(pos, 1);
        let steps = steps.max(1);

        let t = now_ms();
        for _ in 0..steps {
            self.graph.submit(&gpu, &step, Some((self.graph.head_last(1), 1)));
            gpu.wait_idle().await?;
        }
        let step_ms = (now_ms() - t) / steps as f64;

        // The fastest of several empty round trips: a slow outlier here would hide small ops.
        let mut round_trip_ms = f64::INFINITY;
        for _ in 0..steps.max(5) {
            let t = now_ms();
            gpu.run_ops(&[], &step, &self.graph.step);
            gpu.wait_idle().await?;
            round_trip_ms = round_trip_ms.min(now_ms() - t);
        }

        let head = self.graph.head_last(1);
        let ops: Vec<_> = self.graph.body.iter().chain(&head.ops).collect();
        let mut times: Vec<OpTime> = Vec::new();
        for op in &ops {
            let Some([x, y, z]) = op.workgroups(&step) else {
                continue;
            };
            // The fastest repetition, less the round trip: the least disturbed by other work.
            let mut best = f64::INFINITY;
            for _ in 0..steps {
                let t = now_ms();
                gpu.run_ops(&[op], &step, &self.graph.step);
                gpu.wait_idle().await?;
                best = best.min(now_ms() - t);
            }
            let ms = (best - round_trip_ms).max(0.0);
            let key = format!("{} {x}x{y}x{z}", op.label);
            match times.iter_mut().find(|o| o.op == key) {
                Some(o) => {
                    o.per_step += 1;
                    o.ms_per_step += ms;
                }
                None => times.push(OpTime { op: key, per_step: 1, ms_per_step: ms }),
            }
        }
        gpu.take_error()?;
        times.sort_by(|a, b| b.ms_per_step.total_cmp(&a.ms_per_step));
        Ok(DecodeProfile { kv_len: pos as usize, step_ms, round_trip_ms, ops: times })
    }
}
