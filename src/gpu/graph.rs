//! The GPU backend's forward pass as recorded ops: the session's buffers (activations, KV caches,
//! one RoPE table) allocated once, and the op lists encoded for every step ([`Graph::step`]: one
//! encoder, one submit, one small readback).
//!
//! A block evaluation is five dispatches (see [`body`]), the head three or four ([`head`]):
//! embedding + 5 per block evaluation + head, so 154 per token for SmolLM2-135M's 30 blocks.

mod body;
mod head;

use std::collections::HashMap;

use self::head::Head;
use super::model::GpuModel;
use super::ops::attention::{AttnForm, AttnScratch};
use super::ops::matvec::Tiling;
use super::ops::topk::out_words_per_row;
use super::ops::AttnShape;
use super::{Gpu, Op, StepParams};
use crate::engine::backend::{Candidates, HeadRequest, StepOutput};
use crate::model::ModelConfig;
use crate::sampler::Candidate;

/// Most distinct recent tokens the repetition penalty looks at.
pub const MAX_HISTORY: u32 = 1024;

/// A session's activations, one buffer per value (llama2.c's RunState). T is the session's chunk:
/// the most tokens one step runs.
pub(crate) struct RunState {
    /// The per-step uniform (StepParams).
    pub step: wgpu::Buffer,
    pub tokens: wgpu::Buffer,  // u32 [T]             the step's token ids
    pub x: wgpu::Buffer,       // f32 [T, dim]        residual stream
    pub q: wgpu::Buffer,       // f32 [T, q_dim]      queries, rotated
    pub att: wgpu::Buffer,     // f32 [T, q_dim]      attention output, heads side by side
    pub hb: wgpu::Buffer,      // f32 [T, ffn_dim]    SwiGLU output (unfused: gate, then silu(gate) * up)
    pub logits: wgpu::Buffer,  // f32 [n_vocab]       the last token's logits
    pub history: wgpu::Buffer, // u32 [MAX_HISTORY]   distinct recent ids for the repetition penalty
    pub rope: wgpu::Buffer,    // f32 [n_ctx, head_dim / 2, 2]  (cos, sin): one table for every block
    pub attn_scratch: AttnScratch,
}

/// Keys and values of one block evaluation (act_t [n_ctx, kv_dim] each). MobileLLM-LS runs a
/// block `block_repeat` times in a row, each run with its own cache (the no-cache semantics of
/// the reference model).
pub(crate) struct KvCache {
    pub k: wgpu::Buffer,
    pub v: wgpu::Buffer,
}

pub struct Graph {
    run: RunState,
    /// Kept alive for the ops that bind them.
    _kv: Vec<KvCache>,
    /// Embedding and every block evaluation, for one-token steps (decode)...
    decode: Vec<Op>,
    /// ... and the same ops over token tiles (prefill chunks).
    prefill: Vec<Op>,
    /// Heads for the last token only, by candidate count (1 = greedy).
    heads_last: HashMap<u32, Head>,
    /// Heads over every token of the step (teacher-forced logits), by candidate count.
    heads_all: HashMap<u32, Head>,
    staging: wgpu::Buffer,
    staging_bytes: u64,
    chunk: u32,
}

impl Graph {
    pub fn new(model: &GpuModel, c: &ModelConfig, n_ctx: u32, chunk: u32) -> Graph {
        let gpu: &Gpu = &model.gpu;
        let shape = AttnShape { n_heads: c.n_heads as u32, n_kv_heads: c.n_kv_heads as u32, head_dim: c.head_dim as u32, n_ctx, rope_base: c.rope_base };
        let f32s = |n: usize| 4 * chunk as u64 * n as u64;
        let run = RunState {
            step: gpu.uniform_buffer("step", std::mem::size_of::<StepParams>() as u64),
            tokens: gpu.storage_buffer("tokens", 4 * chunk as u64),
            x: gpu.storage_buffer("x", f32s(c.dim)),
            q: gpu.storage_buffer("q", f32s(c.q_dim())),
            att: gpu.storage_buffer("att", f32s(c.q_dim())),
            hb: gpu.storage_buffer("hb", f32s(c.ffn_dim)),
            logits: gpu.storage_buffer("logits", 4 * c.n_vocab as u64),
            history: gpu.storage_buffer("history", 4 * MAX_HISTORY as u64),
            rope: gpu.storage_buffer_init("rope", bytemuck::cast_slice(&shape.rope_table())),
            attn_scratch: AttnScratch::new(gpu, &shape, chunk, AttnForm::for_adapter(gpu)),
        };
        let evaluations = c.n_layers * c.block_repeat;
        let kv: Vec<KvCache> = (0..evaluations)
            .map(|_| KvCache { k: gpu.storage_buffer("k_cache", shape.kv_cache_bytes(gpu)), v: gpu.storage_buffer("v_cache", shape.kv_cache_bytes(gpu)) })
            .collect();
        let decode = body::record(model, c, &run, &kv, &shape, Tiling::Decode);
        let prefill = body::record(model, c, &run, &kv, &shape, Tiling::Tiles);
        let staging_bytes = 4 * chunk as u64 * out_words_per_row(crate::gpu::ops::topk::MAX_CANDIDATES) as u64;
        Graph {
            staging: gpu.staging_buffer("candidates", staging_bytes),
            run,
            _kv: kv,
            decode,
            prefill,
            heads_last: HashMap::new(),
            heads_all: HashMap::new(),
            staging_bytes,
            chunk,
        }
    }

    /// The body's ops for a step of `n_tokens` tokens.
    fn body(&self, n_tokens: u32) -> &[Op] {
        if n_tokens == 1 {
            &self.decode
        } else {
            &self.prefill
        }
    }

    pub(crate) fn head_last(&self, k: u32) -> &Head {
        &self.heads_last[&k]
    }

    /// Records the body (+ head) for one step into ONE encoder and submits it ONCE; when a head is
    /// given, its candidates (`rows` rows) are copied to the staging buffer in the same submit.
    /// Returns the number of dispatches recorded.
    pub(crate) fn submit(&self, gpu: &Gpu, step: &StepParams, head: Option<(&Head, u32)>) -> u32 {
        gpu.queue.write_buffer(&self.run.step, 0, bytemuck::bytes_of(step));
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let mut dispatches = 0;
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            let head_ops = head.map(|(h, _)| h.ops.as_slice()).unwrap_or(&[]);
            for op in self.body(step.n_tokens).iter().chain(head_ops) {
                if op.workgroups(step).is_some() {
                    dispatches += 1;
                }
                op.encode(&mut pass, step);
            }
        }
        if let Some((h, rows)) = head {
            enc.copy_buffer_to_buffer(&h.out, 0, &self.staging, 0, self.candidate_bytes(h, rows));
        }
        gpu.queue.submit([enc.finish()]);
        dispatches
    }

    fn candidate_bytes(&self, h: &Head, rows: u32) -> u64 {
        (4 * rows as u64 * out_words_per_row(h.k) as u64).min(self.staging_bytes)
    }

    /// The ops of a one-token step with the greedy head, in order (profiling).
    pub(crate) fn decode_ops(&self) -> impl Iterator<Item = &Op> {
        self.decode.iter().chain(&self.head_last(1).ops)
    }

    pub(crate) fn step_buffer(&self) -> &wgpu::Buffer {
        &self.run.step
    }

    /// Runs `tokens` at positions pos0.. (one encoder, one submit) and returns what `head` asks
    /// for: nothing, the last token's candidates after penalty and temperature, or the raw top-k
    /// after every token.
    pub async fn step(&mut self, model: &GpuModel, cfg: &ModelConfig, tokens: &[u32], pos0: u32, head: &HeadRequest<'_>) -> crate::Result<StepOutput> {
        let gpu = model.gpu.clone();
        // A lost device runs nothing: every step after the loss fails the same way.
        gpu.check_lost()?;
        gpu.queue.write_buffer(&self.run.tokens, 0, bytemuck::cast_slice(tokens));
        let mut step = StepParams::new(pos0, tokens.len() as u32);
        let (k, rows) = match head {
            HeadRequest::None => {
                let dispatches = self.submit(&gpu, &step, None);
                return Ok(StepOutput { candidates: Vec::new(), dispatches, readback_bytes: 0 });
            }
            HeadRequest::Last { k, sampling } => {
                let run = &self.run;
                self.heads_last.entry(*k).or_insert_with(|| Head::last(model, cfg, run, *k));
                step.inv_temperature = sampling.inv_temperature;
                step.repeat_penalty = sampling.repeat_penalty;
                let history = &sampling.history[..sampling.history.len().min(MAX_HISTORY as usize)];
                step.n_history = if sampling.repeat_penalty == 1.0 { 0 } else { history.len() as u32 };
                if step.n_history > 0 {
                    gpu.queue.write_buffer(&self.run.history, 0, bytemuck::cast_slice(history));
                }
                (*k, 1)
            }
            HeadRequest::All { k } => {
                let (run, chunk) = (&self.run, self.chunk);
                self.heads_all.entry(*k).or_insert_with(|| Head::all(model, cfg, run, chunk, *k));
                (*k, tokens.len() as u32)
            }
        };
        let h = if matches!(head, HeadRequest::All { .. }) { &self.heads_all[&k] } else { &self.heads_last[&k] };
        let dispatches = self.submit(&gpu, &step, Some((h, rows)));
        let bytes = self.candidate_bytes(h, rows);
        let raw = gpu.read_staging(&self.staging, bytes).await?;
        gpu.take_error()?;
        let words: &[u32] = bytemuck::cast_slice(&raw);
        let row = out_words_per_row(k) as usize;
        let candidates = (0..rows as usize).map(|r| parse_row(&words[r * row..(r + 1) * row], k)).collect();
        Ok(StepOutput { candidates, dispatches, readback_bytes: bytes })
    }
}

/// One row of the top-k output: k (id, logit) pairs, then (logsumexp, 0).
fn parse_row(words: &[u32], k: u32) -> Candidates {
    let k = k as usize;
    let cands = (0..k)
        .map(|i| Candidate { id: words[2 * i], logit: f32::from_bits(words[2 * i + 1]) })
        .filter(|c| c.logit.is_finite() || c.logit == f32::NEG_INFINITY)
        .collect();
    (cands, f32::from_bits(words[2 * k]))
}
