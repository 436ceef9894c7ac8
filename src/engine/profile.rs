//! Where a decode step's time goes, per kernel, on either backend: `mobilellm bench --profile`
//! natively, `llm.debug.profileDecode()` in the browser. The GPU backend submits each op alone
//! and waits for it (gpu::profile); the CPU backend times each kernel of a normal step.

use super::session::Session;
use crate::sampler::SamplingParams;
use crate::Result;

/// The time of one kind of op (same kernel, same shape) over the profiled steps.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpTime {
    /// Kernel label and shape, e.g. "matmul 192x1x1" (GPU: the workgroup grid).
    pub op: String,
    /// Ops of this kind per decode step.
    pub per_step: usize,
    /// Milliseconds per decode step for all of them (each the fastest of the profiled steps), less
    /// the submit round trips on the GPU.
    pub ms_per_step: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DecodeProfile {
    /// Key/value positions already cached when the profiled step runs.
    pub kv_len: usize,
    /// One whole step as the engine runs it (GPU: one submit, waited for).
    pub step_ms: f64,
    /// GPU: an empty submit and its wait (the fastest of several), the fixed cost each op's
    /// measurement includes. CPU: 0.
    pub round_trip_ms: f64,
    /// Largest first.
    pub ops: Vec<OpTime>,
}

impl DecodeProfile {
    pub fn new(kv_len: usize, step_ms: f64, round_trip_ms: f64, mut ops: Vec<OpTime>) -> Self {
        ops.sort_by(|a, b| b.ms_per_step.total_cmp(&a.ms_per_step));
        DecodeProfile { kv_len, step_ms, round_trip_ms, ops }
    }
}

/// Adds `ms` to the entry named `key` (one more op of that kind per step), or starts it.
pub fn add_time(times: &mut Vec<OpTime>, key: String, ms: f64) {
    match times.iter_mut().find(|o| o.op == key) {
        Some(o) => {
            o.per_step += 1;
            o.ms_per_step += ms;
        }
        None => times.push(OpTime { op: key, per_step: 1, ms_per_step: ms }),
    }
}

impl Session {
    /// Prefills `prompt` (greedy), then times `steps` decode steps at the next position. The
    /// cached conversation is replaced by `prompt`.
    pub async fn profile_decode(&mut self, prompt: &[u32], steps: usize) -> Result<DecodeProfile> {
        if prompt.is_empty() || prompt.len() >= self.n_ctx() {
            return Err(crate::Error::InvalidArgument(format!("profile prompt of {} tokens does not fit a context of {}", prompt.len(), self.n_ctx())));
        }
        self.reset();
        let params = SamplingParams { temperature: 0.0, ..Default::default() };
        self.prefill(prompt, &params, 1).await?;
        let pos = self.cached.len();
        let profile = self.exec.profile_decode(&self.model, pos, steps).await;
        // The profiled steps wrote the cache row at `pos`; nothing after the prompt is kept.
        profile
    }
}
