//! Plain f32 reference forward pass (dot products accumulated in f64): the oracle for every GPU
//! test, readable top to bottom, in the spirit of llama2.c's run.c.
//!
//! Per token: embedding row -> for each block evaluation (n_layers * block_repeat of them; with
//! MobileLLM-LS block i runs block_repeat times in a row, same weights, its own KV cache each run):
//!   x += Wo · attention(rope(Wq·n), rope(Wk·n), Wv·n)      with n = rmsnorm(x, attn_norm)
//!   x += Wdown · (silu(Wgate·n) * Wup·n)                   with n = rmsnorm(x, ffn_norm)
//! -> rmsnorm(x, output_norm) -> logits = lm_head · x (token_embd when tied).
//!
//! Tokens of one `forward` call are processed layer by layer (all rows through block 0, then
//! block 1, ...), each token attending to the cache up to its own position. Every row is
//! computed exactly as if it were fed alone, so chunked and token-by-token runs agree bit for bit.

pub mod backend;
pub mod kernels;
pub mod ops;

use crate::model::{Layer, ModelConfig, ModelTensors, TensorRef, Weights};
use crate::Error;

/// One transformer block's weights, f32 row-major [rows, cols].
pub type CpuLayer = Layer<Vec<f32>>;

/// All weights dequantised to f32.
pub struct CpuModel {
    pub cfg: ModelConfig,
    /// Every tensor as f32 (`output` None when tied: the logits use token_embd, no second copy).
    pub weights: Weights<Vec<f32>>,
    /// Threads for the large matrix products.
    pub threads: usize,
}

/// Dequantises `t` after checking it is [rows, cols].
fn load(t: &TensorRef<'_>, rows: usize, cols: usize) -> crate::Result<Vec<f32>> {
    if t.rows != rows || t.cols != cols {
        return Err(Error::UnsupportedModel(format!("tensor {} is [{}, {}], expected [{rows}, {cols}]", t.name, t.rows, t.cols)));
    }
    t.to_f32()
}

impl CpuModel {
    pub fn new(cfg: &ModelConfig, tensors: &ModelTensors<'_>) -> crate::Result<Self> {
        if cfg.n_kv_heads == 0 || !cfg.n_heads.is_multiple_of(cfg.n_kv_heads) || !cfg.head_dim.is_multiple_of(2) || cfg.block_repeat == 0 {
            return Err(Error::UnsupportedModel(format!(
                "{} heads over {} KV heads of width {}, block_repeat {}",
                cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.block_repeat
            )));
        }
        if tensors.layers.len() != cfg.n_layers {
            return Err(Error::UnsupportedModel(format!("{} blocks in the file, config says {}", tensors.layers.len(), cfg.n_layers)));
        }
        let weights = tensors.map(|slot, t| {
            let (rows, cols) = slot.shape(cfg);
            load(t, rows, cols)
        })?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(2);
        Ok(CpuModel { cfg: cfg.clone(), weights, threads })
    }

    /// Parses a whole GGUF file and dequantises it (tests and the CLI's `--cpu` check).
    pub fn from_gguf_bytes(bytes: &[u8]) -> crate::Result<Self> {
        let file = crate::gguf::GgufFile::parse(bytes)?;
        let cfg = ModelConfig::from_gguf(&file)?;
        let tensors = ModelTensors::from_gguf(&file, bytes, &cfg)?;
        Self::new(&cfg, &tensors)
    }

    /// The matrix of the logits: output.weight, or token_embd when tied.
    pub fn lm_head(&self) -> &[f32] {
        self.weights.lm_head()
    }

    fn matmul(&self, x: &[f32], w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        ops::matmul_par(x, w, rows, cols, self.threads)
    }
}

/// Keys and values of one block evaluation, one row of kv_dim per position.
#[derive(Default, Clone)]
struct KvCache {
    k: Vec<f32>,
    v: Vec<f32>,
}

/// A sequence being processed, with its own KV cache (one per block evaluation).
pub struct CpuSession<'m> {
    pub model: &'m CpuModel,
    /// Tokens processed so far.
    pub pos: usize,
    caches: Vec<KvCache>, // n_block_evals
}

impl<'m> CpuSession<'m> {
    pub fn new(model: &'m CpuModel) -> Self {
        CpuSession { model, pos: 0, caches: vec![KvCache::default(); model.cfg.n_block_evals()] }
    }

    /// Forgets everything after the first `len` tokens (prefix reuse).
    pub fn truncate(&mut self, len: usize) {
        let len = len.min(self.pos);
        let kv = self.model.cfg.kv_dim();
        for c in &mut self.caches {
            c.k.truncate(len * kv);
            c.v.truncate(len * kv);
        }
        self.pos = len;
    }

    /// Runs `tokens` at positions pos..pos+len and returns the logits after each of them.
    pub fn forward(&mut self, tokens: &[u32]) -> crate::Result<Vec<Vec<f32>>> {
        let m = self.model;
        let cfg = &m.cfg;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= cfg.n_vocab) {
            return Err(Error::InvalidArgument(format!("token id {bad} outside the vocabulary of {}", cfg.n_vocab)));
        }
        let dim = cfg.dim;
        // x: [T, dim], the residual stream of every token in this call.
        let mut x: Vec<f32> = tokens.iter().flat_map(|&t| &m.weights.token_embd[t as usize * dim..][..dim]).copied().collect();
        for e in 0..cfg.n_block_evals() {
            let layer = &m.weights.layers[e / cfg.block_repeat];
            let attn = self.attention_block(e, layer, &x);
            add(&mut x, &attn);
            let ffn = self.ffn_block(layer, &x);
            add(&mut x, &ffn);
        }
        let h = rmsnorm_rows(&x, &m.weights.output_norm, cfg.norm_eps);
        let logits = m.matmul(&h, m.lm_head(), cfg.n_vocab, dim);
        self.pos += tokens.len();
        Ok(logits.chunks(cfg.n_vocab).map(<[f32]>::to_vec).collect())
    }

    /// Wo · attention over the cache of block evaluation `e`, for every row of `x`; appends the
    /// rows' keys and values to that cache.
    fn attention_block(&mut self, e: usize, layer: &CpuLayer, x: &[f32]) -> Vec<f32> {
        let m = self.model;
        let cfg = &m.cfg;
        let (dim, qd, kvd, hd) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.head_dim);
        let n = rmsnorm_rows(x, &layer.attn_norm, cfg.norm_eps);
        let mut q = m.matmul(&n, &layer.wq, qd, dim);
        let mut k = m.matmul(&n, &layer.wk, kvd, dim);
        let v = m.matmul(&n, &layer.wv, kvd, dim);
        let cache = &mut self.caches[e];
        let mut out = Vec::with_capacity(q.len());
        for (i, (qi, ki)) in q.chunks_mut(qd).zip(k.chunks_mut(kvd)).enumerate() {
            let pos = self.pos + i;
            ops::rope(qi, cfg.n_heads, hd, pos, cfg.rope_base);
            ops::rope(ki, cfg.n_kv_heads, hd, pos, cfg.rope_base);
            cache.k.extend_from_slice(ki);
            cache.v.extend_from_slice(&v[i * kvd..(i + 1) * kvd]);
            out.extend(ops::attention(qi, &cache.k, &cache.v, pos + 1, cfg.n_heads, cfg.n_kv_heads, hd));
        }
        m.matmul(&out, &layer.wo, dim, qd)
    }

    /// Wdown · swiglu(Wgate·n, Wup·n) with n = rmsnorm(x, ffn_norm), for every row of `x`.
    fn ffn_block(&self, layer: &CpuLayer, x: &[f32]) -> Vec<f32> {
        let m = self.model;
        let cfg = &m.cfg;
        let n = rmsnorm_rows(x, &layer.ffn_norm, cfg.norm_eps);
        let gate = m.matmul(&n, &layer.w_gate, cfg.ffn_dim, cfg.dim);
        let up = m.matmul(&n, &layer.w_up, cfg.ffn_dim, cfg.dim);
        m.matmul(&ops::swiglu(&gate, &up), &layer.w_down, cfg.dim, cfg.ffn_dim)
    }
}

/// [`ops::rmsnorm`] on each row of x: [T, w.len()].
fn rmsnorm_rows(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    x.chunks(w.len()).flat_map(|row| ops::rmsnorm(row, w, eps)).collect()
}

/// x += y elementwise (the residual connection).
fn add(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}
