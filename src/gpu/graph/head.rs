//! The head of a step: the final RMSNorm fused into the logits product (the tied embedding, or
//! `output`), then the top-k reduction (penalty, temperature, candidates): three dispatches, four
//! with a repetition penalty.

use super::RunState;
use crate::gpu::model::GpuModel;
use crate::gpu::ops::matvec::{matvec, Epilogue, Norm, Product, Rows, Tiling};
use crate::gpu::ops::topk::{out_words_per_row, topk, TopkScratch};
use crate::gpu::{Gpu, Op, TokenCount};
use crate::model::ModelConfig;

pub(crate) struct Head {
    pub ops: Vec<Op>,
    /// Candidates per row: k pairs then (logsumexp, 0); see topk::out_words_per_row.
    pub out: wgpu::Buffer,
    pub k: u32,
    // Kept alive for the ops that bind them.
    _scratch: TopkScratch,
    _logits: Option<wgpu::Buffer>,
}

impl Head {
    /// The last token's `k` best candidates (decode, and the last prefill chunk).
    pub fn last(model: &GpuModel, c: &ModelConfig, run: &RunState, k: u32) -> Head {
        let gpu: &Gpu = &model.gpu;
        let vocab = c.n_vocab as u32;
        let out = gpu.storage_buffer("candidates_last", 4 * out_words_per_row(k) as u64);
        let scratch = TopkScratch::new(gpu, vocab, k, 1);
        let norm = Some(Norm { weight: model.weights.output_norm.norm(), eps: c.norm_eps });
        let product = Product { weight: model.lm_head(), x: &run.x, norm, rows: Rows::Last };
        let mut ops = vec![matvec(gpu, &run.step, &product, &run.logits, Epilogue::Store)];
        ops.extend(topk(gpu, &run.step, &run.logits, vocab, &run.history, k, TokenCount::One, &scratch, &out));
        Head { ops, out, k, _scratch: scratch, _logits: None }
    }

    /// The `k` largest logits after every token of a step of up to `chunk` tokens (teacher
    /// forcing). Its logits [chunk, n_vocab] are allocated here: only scoring asks for them.
    pub fn all(model: &GpuModel, c: &ModelConfig, run: &RunState, chunk: u32, k: u32) -> Head {
        let gpu: &Gpu = &model.gpu;
        let vocab = c.n_vocab as u32;
        let out = gpu.storage_buffer("candidates_all", 4 * (chunk * out_words_per_row(k)) as u64);
        let logits = gpu.storage_buffer("logits_all", 4 * chunk as u64 * vocab as u64);
        let scratch = TopkScratch::new(gpu, vocab, k, chunk);
        let norm = Some(Norm { weight: model.weights.output_norm.norm(), eps: c.norm_eps });
        let product = Product { weight: model.lm_head(), x: &run.x, norm, rows: Rows::All(Tiling::Tiles) };
        let mut ops = vec![matvec(gpu, &run.step, &product, &logits, Epilogue::Store)];
        ops.extend(topk(gpu, &run.step, &logits, vocab, &run.history, k, TokenCount::Step, &scratch, &out));
        Head { ops, out, k, _scratch: scratch, _logits: Some(logits) }
    }
}
