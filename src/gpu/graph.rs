//! The GPU backend's forward pass as recorded ops: activation buffers and KV caches allocated
//! once per session, and the op lists encoded for every prefill chunk and decode step
//! ([`Graph::step`]: one encoder, one submit, one small readback).

use std::collections::HashMap;

use super::model::GpuModel;
use crate::engine::backend::{Candidates, HeadRequest, StepOutput};
use crate::model::ModelConfig;
use crate::sampler::Candidate;
use crate::gpu::ops::attention::attention;
use crate::gpu::ops::matmul::{embed, matmul, matmul_swiglu, Epilogue};
use crate::gpu::ops::norm::{rmsnorm, RowSelect};
use crate::gpu::ops::rope_kv::{kv_cache_bytes, rope_kv};
use crate::gpu::ops::topk::{out_words_per_row, topk};
use crate::gpu::ops::AttnShape;
use crate::gpu::{Gpu, Op, StepParams, TokenCount};

/// Where the head (final norm + logits + top-k) reads and writes.
pub struct Head {
    pub ops: Vec<Op>,
    /// Candidates per row: k pairs then (logsumexp, 0); see topk::out_words_per_row.
    pub out: wgpu::Buffer,
    pub k: u32,
}

pub struct Graph {
    pub step: wgpu::Buffer,
    pub tokens: wgpu::Buffer,  // u32 [chunk]
    pub history: wgpu::Buffer, // u32 [MAX_HISTORY]
    /// Embedding, then every block evaluation (n_layers * block_repeat).
    pub body: Vec<Op>,
    /// Heads for the last token only, by candidate count (1 = greedy).
    heads_last: HashMap<u32, Head>,
    /// Heads over every token of the step (teacher-forced logits), by candidate count.
    heads_all: HashMap<u32, Head>,
    pub staging: wgpu::Buffer,
    staging_bytes: u64,
    pub chunk: u32,
    // Buffers the heads bind; kept to build heads lazily.
    x: wgpu::Buffer,
    xlast: wgpu::Buffer,
    xnorm_all: wgpu::Buffer,
    logits_last: wgpu::Buffer,
    logits_all: wgpu::Buffer,
    _acts: Vec<wgpu::Buffer>,
    _kv: Vec<(wgpu::Buffer, wgpu::Buffer)>,
}

/// Most distinct recent tokens the repetition penalty looks at.
pub const MAX_HISTORY: u32 = 1024;

impl Graph {
    pub fn new(model: &GpuModel, c: &ModelConfig, n_ctx: u32, chunk: u32) -> Graph {
        let gpu: &Gpu = &model.gpu;
        let f = |n: usize| 4 * (chunk as u64) * n as u64;
        let step = gpu.uniform_buffer("step", std::mem::size_of::<StepParams>() as u64);
        let tokens = gpu.storage_buffer("tokens", 4 * chunk as u64);
        let history = gpu.storage_buffer("history", 4 * MAX_HISTORY as u64);
        let x = gpu.storage_buffer("x", f(c.dim));
        let xn = gpu.storage_buffer("xn", f(c.dim));
        let q = gpu.storage_buffer("q", f(c.q_dim()));
        let k = gpu.storage_buffer("k", f(c.kv_dim()));
        let v = gpu.storage_buffer("v", f(c.kv_dim()));
        let att = gpu.storage_buffer("att", f(c.q_dim()));
        let hb = gpu.storage_buffer("ffn", f(c.ffn_dim));
        let xlast = gpu.storage_buffer("xlast", 4 * c.dim as u64);
        let xnorm_all = gpu.storage_buffer("xnorm_all", f(c.dim));
        let logits_last = gpu.storage_buffer("logits_last", 4 * c.n_vocab as u64);
        let logits_all = gpu.storage_buffer("logits_all", f(c.n_vocab));
        let shape = AttnShape {
            n_heads: c.n_heads as u32,
            n_kv_heads: c.n_kv_heads as u32,
            head_dim: c.head_dim as u32,
            n_ctx,
            rope_base: c.rope_base,
        };
        let w = &model.weights;
        let mut body = vec![embed(gpu, &step, w.token_embd.matrix(), &tokens, &x)];
        let mut kv = Vec::new();
        let eps = c.norm_eps;
        let dim = c.dim as u32;
        for b in &w.layers {
            // MobileLLM-LS: the same weights run block_repeat times in a row, each run with its own
            // keys and values (the no-cache semantics of the reference model).
            for _ in 0..c.block_repeat {
                let kc = gpu.storage_buffer("k_cache", kv_cache_bytes(gpu, &shape));
                let vc = gpu.storage_buffer("v_cache", kv_cache_bytes(gpu, &shape));
                body.push(rmsnorm(gpu, &step, &x, b.attn_norm.norm(), &xn, dim, eps, RowSelect::All));
                body.push(matmul(gpu, &step, b.wq.matrix(), &xn, &q, Epilogue::Store, TokenCount::Step));
                body.push(matmul(gpu, &step, b.wk.matrix(), &xn, &k, Epilogue::Store, TokenCount::Step));
                body.push(matmul(gpu, &step, b.wv.matrix(), &xn, &v, Epilogue::Store, TokenCount::Step));
                body.push(rope_kv(gpu, &step, &shape, &q, &k, &v, &kc, &vc));
                body.extend(attention(gpu, &step, &shape, chunk, &q, &kc, &vc, &att));
                body.push(matmul(gpu, &step, b.wo.matrix(), &att, &x, Epilogue::Accumulate, TokenCount::Step));
                body.push(rmsnorm(gpu, &step, &x, b.ffn_norm.norm(), &xn, dim, eps, RowSelect::All));
                body.push(matmul_swiglu(gpu, &step, b.w_gate.matrix(), b.w_up.matrix(), &xn, &hb));
                body.push(matmul(gpu, &step, b.w_down.matrix(), &hb, &x, Epilogue::Accumulate, TokenCount::Step));
                kv.push((kc, vc));
            }
        }
        let staging_bytes = 4 * (chunk as u64) * out_words_per_row(crate::gpu::ops::topk::MAX_CANDIDATES) as u64;
        let staging = gpu.staging_buffer("candidates", staging_bytes);
        Graph {
            step,
            tokens,
            history,
            body,
            heads_last: HashMap::new(),
            heads_all: HashMap::new(),
            staging,
            staging_bytes,
            chunk,
            x,
            xlast,
            xnorm_all,
            logits_last,
            logits_all,
            _acts: vec![xn, q, k, v, att, hb],
            _kv: kv,
        }
    }

    pub fn head_last(&self, k: u32) -> &Head {
        &self.heads_last[&k]
    }

    pub fn head_all(&self, k: u32) -> &Head {
        &self.heads_all[&k]
    }

    /// Builds (once) the head that normalises the last token and returns its top `k` candidates.
    fn ensure_head_last(&mut self, model: &GpuModel, c: &ModelConfig, k: u32) {
        let gpu: &Gpu = &model.gpu;
        let (step, x, xlast, logits, history) = (&self.step, &self.x, &self.xlast, &self.logits_last, &self.history);
        self.heads_last.entry(k).or_insert_with(|| {
            let out = gpu.storage_buffer("candidates_last", 4 * out_words_per_row(k) as u64);
            let mut ops = vec![
                rmsnorm(gpu, step, x, model.weights.output_norm.norm(), xlast, c.dim as u32, c.norm_eps, RowSelect::Last),
                matmul(gpu, step, model.lm_head(), xlast, logits, Epilogue::Store, TokenCount::One),
            ];
            ops.extend(topk(gpu, step, logits, c.n_vocab as u32, history, k, TokenCount::One, 1, &out));
            Head { ops, out, k }
        });
    }

    /// Builds (once) the head that returns the top `k` logits after every token of the step.
    fn ensure_head_all(&mut self, model: &GpuModel, c: &ModelConfig, k: u32) {
        let gpu: &Gpu = &model.gpu;
        let chunk = self.chunk;
        let (step, x, xn, logits, history) = (&self.step, &self.x, &self.xnorm_all, &self.logits_all, &self.history);
        self.heads_all.entry(k).or_insert_with(|| {
            let out = gpu.storage_buffer("candidates_all", 4 * (chunk * out_words_per_row(k)) as u64);
            let mut ops = vec![
                rmsnorm(gpu, step, x, model.weights.output_norm.norm(), xn, c.dim as u32, c.norm_eps, RowSelect::All),
                matmul(gpu, step, model.lm_head(), xn, logits, Epilogue::Store, TokenCount::Step),
            ];
            ops.extend(topk(gpu, step, logits, c.n_vocab as u32, history, k, TokenCount::Step, chunk, &out));
            Head { ops, out, k }
        });
    }

    /// Records body (+ head) for one step into ONE encoder and submits it ONCE; when a head is
    /// given, its candidates (`rows` rows) are copied to the staging buffer in the same submit.
    /// Returns the number of dispatches recorded.
    pub fn submit(&self, gpu: &Gpu, step: &StepParams, head: Option<(&Head, u32)>) -> u32 {
        gpu.queue.write_buffer(&self.step, 0, bytemuck::bytes_of(step));
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let mut dispatches = 0;
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            let head_ops = head.map(|(h, _)| h.ops.as_slice()).unwrap_or(&[]);
            for op in self.body.iter().chain(head_ops) {
                if op.workgroups(step).is_some() {
                    dispatches += 1;
                }
                op.encode(&mut pass, step);
            }
        }
        if let Some((h, rows)) = head {
            let bytes = self.candidate_bytes(h, rows);
            enc.copy_buffer_to_buffer(&h.out, 0, &self.staging, 0, bytes);
        }
        gpu.queue.submit([enc.finish()]);
        dispatches
    }

    pub fn candidate_bytes(&self, h: &Head, rows: u32) -> u64 {
        (4 * rows as u64 * out_words_per_row(h.k) as u64).min(self.staging_bytes)
    }

    /// Runs `tokens` at positions pos0.. (one encoder, one submit) and returns what `head` asks
    /// for: nothing, the last token's candidates after penalty and temperature, or the raw top-k
    /// after every token.
    pub async fn step(&mut self, model: &GpuModel, cfg: &ModelConfig, tokens: &[u32], pos0: u32, head: &HeadRequest<'_>) -> crate::Result<StepOutput> {
        let gpu = model.gpu.clone();
        gpu.queue.write_buffer(&self.tokens, 0, bytemuck::cast_slice(tokens));
        let mut step = StepParams::new(pos0, tokens.len() as u32);
        let (k, rows) = match head {
            HeadRequest::None => {
                let dispatches = self.submit(&gpu, &step, None);
                return Ok(StepOutput { candidates: Vec::new(), dispatches, readback_bytes: 0 });
            }
            HeadRequest::Last { k, sampling } => {
                self.ensure_head_last(model, cfg, *k);
                step.inv_temperature = sampling.inv_temperature;
                step.repeat_penalty = sampling.repeat_penalty;
                let history = &sampling.history[..sampling.history.len().min(MAX_HISTORY as usize)];
                step.n_history = if sampling.repeat_penalty == 1.0 { 0 } else { history.len() as u32 };
                if step.n_history > 0 {
                    gpu.queue.write_buffer(&self.history, 0, bytemuck::cast_slice(history));
                }
                (*k, 1)
            }
            HeadRequest::All { k } => {
                self.ensure_head_all(model, cfg, *k);
                (*k, tokens.len() as u32)
            }
        };
        let h = if matches!(head, HeadRequest::All { .. }) { self.head_all(k) } else { self.head_last(k) };
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
