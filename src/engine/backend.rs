//! The two backends behind one [`Session`](super::Session): the contract of a step, and the
//! dispatch to the WebGPU graph (`gpu::Graph`) or the CPU forward pass (`cpu::backend`).
//!
//! A step runs a few tokens at consecutive positions, appends their keys and values to the
//! session's KV caches, and returns what the session's head request asks for. Everything else
//! (prefix reuse, chunking, sampling, stop strings, the context policy, streaming) is the
//! session's, written once.

use super::loaded::LoadedModel;
use super::profile::DecodeProfile;
use crate::cpu::backend::{CpuRun, CpuWeights};
use crate::gpu::{GpuModel, Graph};
use crate::sampler::Candidate;
use crate::{Error, Result};

/// Most distinct recent tokens the repetition penalty looks at.
pub const MAX_HISTORY: usize = 1024;

/// The k best candidates of a row, sorted by adjusted logit (ties: smaller id first), and the
/// log-sum-exp of every adjusted logit of the row.
pub type Candidates = (Vec<Candidate>, f32);

/// How the last token's logits are adjusted before the candidates are chosen.
#[derive(Debug, Clone, Copy)]
pub struct StepSampling<'a> {
    /// 1 / temperature (1.0 for greedy: only the order matters then).
    pub inv_temperature: f32,
    /// Repetition penalty (1.0 = off), llama.cpp's rule: l > 0 ? l / p : l * p.
    pub repeat_penalty: f32,
    /// The distinct recent token ids it applies to (at most MAX_HISTORY).
    pub history: &'a [u32],
}

impl Default for StepSampling<'_> {
    fn default() -> Self {
        StepSampling { inv_temperature: 1.0, repeat_penalty: 1.0, history: &[] }
    }
}

/// What a step returns besides filling the KV caches.
#[derive(Debug, Clone, Copy)]
pub enum HeadRequest<'a> {
    /// Nothing (a prefill chunk before the last).
    None,
    /// The last token's `k` best candidates after penalty and temperature.
    Last { k: u32, sampling: &'a StepSampling<'a> },
    /// The `k` largest raw logits after every token (teacher forcing).
    All { k: u32 },
}

pub struct StepOutput {
    /// One row for `Last`, one per token for `All`, none for `None`.
    pub candidates: Vec<Candidates>,
    /// GPU dispatches recorded (0 on the CPU).
    pub dispatches: u32,
    /// Bytes read back from the device (0 on the CPU).
    pub readback_bytes: u64,
}

/// Which backend runs the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// WebGPU on a real GPU; the CPU backend when there is none, or only a software one.
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl BackendKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Some(BackendKind::Auto),
            "gpu" | "webgpu" => Some(BackendKind::Gpu),
            "cpu" => Some(BackendKind::Cpu),
            _ => None,
        }
    }
}

/// A loaded model's weights in the form its backend reads.
pub enum ModelBackend {
    Gpu(GpuModel),
    Cpu(CpuWeights),
}

/// A session's per-backend state: KV caches, activations, and how to run a step.
// why: one per session, made once and never moved in a loop; boxing the larger variant saves
// nothing measurable (wasm32 flags the size difference).
#[allow(clippy::large_enum_variant)]
pub(super) enum Exec {
    Gpu(Graph),
    Cpu(CpuRun),
}

impl Exec {
    pub fn new(model: &LoadedModel, n_ctx: usize, chunk: usize) -> Result<Exec> {
        match &model.backend {
            ModelBackend::Gpu(g) => {
                let graph = Graph::new(g, &model.cfg, n_ctx as u32, chunk as u32);
                g.gpu.take_error()?;
                Ok(Exec::Gpu(graph))
            }
            ModelBackend::Cpu(w) => Ok(Exec::Cpu(CpuRun::new(w, &model.cfg, n_ctx, chunk)?)),
        }
    }

    /// Runs `tokens` at positions pos0.. (at most the session's chunk).
    pub async fn step(&mut self, model: &LoadedModel, tokens: &[u32], pos0: usize, head: &HeadRequest<'_>) -> Result<StepOutput> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("a step needs at least one token".into()));
        }
        match (self, &model.backend) {
            (Exec::Gpu(graph), ModelBackend::Gpu(g)) => graph.step(g, &model.cfg, tokens, pos0 as u32, head).await,
            (Exec::Cpu(run), ModelBackend::Cpu(w)) => run.step(w, &model.cfg, tokens, pos0, head),
            _ => Err(Error::InvalidArgument("a session of one backend used with a model of the other".into())),
        }
    }

    /// Per-kernel times of a decode step at position `pos` (the caches hold `pos` tokens).
    pub async fn profile_decode(&mut self, model: &LoadedModel, pos: usize, steps: usize) -> Result<DecodeProfile> {
        match (self, &model.backend) {
            (Exec::Gpu(graph), ModelBackend::Gpu(g)) => graph.profile_decode(g, &model.cfg, pos as u32, steps).await,
            (Exec::Cpu(run), ModelBackend::Cpu(w)) => run.profile_decode(w, &model.cfg, pos, steps),
            _ => Err(Error::InvalidArgument("a session of one backend used with a model of the other".into())),
        }
    }
}
