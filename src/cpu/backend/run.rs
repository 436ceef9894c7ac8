//! One CPU session: its KV caches and activation buffers (allocated once, sized for the prefill
//! chunk) and the step, which is the forward pass of the f32 reference (`cpu::CpuSession`, same
//! order of operations) computed by the SIMD kernels on the pool's threads.

use super::CpuWeights;
use crate::cpu::kernels::{self, Acts, Epilogue, KvCache, KvType, Product, Rope};
use crate::engine::backend::{HeadRequest, StepOutput};
use crate::engine::now_ms;
use crate::engine::profile::{add_time, DecodeProfile, OpTime};
use crate::model::ModelConfig;
use crate::{Error, Result};

pub struct CpuRun {
    caches: Vec<KvCache>, // n_layers * block_repeat, each [n_ctx, kv_dim] keys and values
    rope: Rope,           // cos/sin for positions < n_ctx
    acts: Acts,           // the current product's input, prepared (quantised) once
    chunk: usize,         // most tokens per step
    x: Vec<f32>,          // [chunk, dim] residual stream
    xn: Vec<f32>,         // [chunk, dim] normalised x
    q: Vec<f32>,          // [chunk, q_dim]
    k: Vec<f32>,          // [chunk, kv_dim]
    v: Vec<f32>,          // [chunk, kv_dim]
    att: Vec<f32>,        // [chunk, q_dim] attention output
    hb: Vec<f32>,         // [chunk, ffn_dim] silu(gate) * up
    logits: Vec<f32>,     // [rows, n_vocab]: 1 row while generating, chunk rows for teacher forcing
    /// Per-kernel times of the last step, when profiling.
    timing: Option<Vec<OpTime>>,
}

/// Allocates `n` zeros, or a typed error instead of an abort when memory runs out (wasm32).
fn zeros<T: Clone + Default>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::ModelTooLarge(format!("out of memory allocating {what} ({n} elements)")))?;
    v.resize(n, T::default());
    Ok(v)
}

impl CpuRun {
    pub fn new(w: &CpuWeights, cfg: &ModelConfig, n_ctx: usize, chunk: usize) -> Result<Self> {
        let evals = cfg.n_block_evals();
        let elem = match w.kv_type {
            KvType::F32 => 4,
            KvType::F16 => 2,
        };
        let cache_bytes = 2 * elem * (n_ctx * cfg.kv_dim()) as u64 * evals as u64;
        crate::engine::check_memory(cache_bytes, "the KV cache")?;
        let caches = (0..evals).map(|_| KvCache::new(w.kv_type, n_ctx, cfg.kv_dim())).collect();
        Ok(CpuRun {
            caches,
            rope: Rope::new(cfg.head_dim, cfg.rope_base, n_ctx),
            acts: Acts::new(),
            chunk,
            x: zeros(chunk * cfg.dim, "activations")?,
            xn: zeros(chunk * cfg.dim, "activations")?,
            q: zeros(chunk * cfg.q_dim(), "activations")?,
            k: zeros(chunk * cfg.kv_dim(), "activations")?,
            v: zeros(chunk * cfg.kv_dim(), "activations")?,
            att: zeros(chunk * cfg.q_dim(), "activations")?,
            hb: zeros(chunk * cfg.ffn_dim, "activations")?,
            logits: zeros(cfg.n_vocab, "logits")?,
            timing: None,
        })
    }

    /// Runs `tokens` at positions pos0.. and returns what `head` asks for.
    pub fn step(&mut self, w: &CpuWeights, cfg: &ModelConfig, tokens: &[u32], pos0: usize, head: &HeadRequest<'_>) -> Result<StepOutput> {
        let n = tokens.len();
        if n > self.chunk {
            return Err(Error::InvalidArgument(format!("{n} tokens in one step; the session's chunk is {}", self.chunk)));
        }
        let mut clock = Lap::new(self.timing.is_some());
        let (dim, qd, kvd, ffn) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_dim);
        let t = w.tensors();
        let pool = &w.pool;

        // The embedding rows (the tied embedding is the same tensor the logits read).
        let embd = w.matrix(&t.token_embd);
        let row_bytes = embd.data.len() / embd.rows;
        for (i, &tok) in tokens.iter().enumerate() {
            let row = &embd.data[tok as usize * row_bytes..][..row_bytes];
            self.x[i * dim..(i + 1) * dim].copy_from_slice(&crate::quant::dequantize(embd.ty, row, dim)?);
        }
        clock.lap(&mut self.timing, "embed");

        for e in 0..cfg.n_block_evals() {
            // MobileLLM-LS: block e / repeat, run `repeat` times in a row, its own cache each run.
            let layer = &t.layers[e / cfg.block_repeat];

            // x += Wo · attention(rope(Wq·n), rope(Wk·n), Wv·n), n = rmsnorm(x, attn_norm)
            norm_rows(&self.x[..n * dim], w.norm(&layer.attn_norm), cfg.norm_eps, &mut self.xn[..n * dim]);
            self.acts.prepare(&self.xn[..n * dim], n, dim);
            clock.lap(&mut self.timing, "rmsnorm");
            kernels::matmul(
                pool,
                &self.acts,
                &mut [
                    Product { w: w.matrix(&layer.wq), out: &mut self.q[..n * qd], epilogue: Epilogue::Store },
                    Product { w: w.matrix(&layer.wk), out: &mut self.k[..n * kvd], epilogue: Epilogue::Store },
                    Product { w: w.matrix(&layer.wv), out: &mut self.v[..n * kvd], epilogue: Epilogue::Store },
                ],
            );
            clock.lap(&mut self.timing, "matmul qkv");
            for i in 0..n {
                self.rope.apply(&mut self.q[i * qd..(i + 1) * qd], cfg.n_heads, pos0 + i);
                self.rope.apply(&mut self.k[i * kvd..(i + 1) * kvd], cfg.n_kv_heads, pos0 + i);
                self.caches[e].write(pos0 + i, &self.k[i * kvd..(i + 1) * kvd], &self.v[i * kvd..(i + 1) * kvd]);
            }
            clock.lap(&mut self.timing, "rope + kv write");
            kernels::attention(pool, &self.q[..n * qd], &self.caches[e], pos0, n, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, &mut self.att[..n * qd]);
            clock.lap(&mut self.timing, "attention");
            self.acts.prepare(&self.att[..n * qd], n, qd);
            kernels::matmul(pool, &self.acts, &mut [Product { w: w.matrix(&layer.wo), out: &mut self.x[..n * dim], epilogue: Epilogue::Accumulate }]);
            clock.lap(&mut self.timing, "matmul o");

            // x += Wdown · (silu(Wgate·n) * Wup·n), n = rmsnorm(x, ffn_norm)
            norm_rows(&self.x[..n * dim], w.norm(&layer.ffn_norm), cfg.norm_eps, &mut self.xn[..n * dim]);
            self.acts.prepare(&self.xn[..n * dim], n, dim);
            clock.lap(&mut self.timing, "rmsnorm");
            kernels::matmul_swiglu(pool, &self.acts, w.matrix(&layer.w_gate), w.matrix(&layer.w_up), &mut self.hb[..n * ffn]);
            clock.lap(&mut self.timing, "matmul gate+up (swiglu)");
            self.acts.prepare(&self.hb[..n * ffn], n, ffn);
            kernels::matmul(pool, &self.acts, &mut [Product { w: w.matrix(&layer.w_down), out: &mut self.x[..n * dim], epilogue: Epilogue::Accumulate }]);
            clock.lap(&mut self.timing, "matmul down");
        }

        let candidates = match head {
            HeadRequest::None => Vec::new(),
            HeadRequest::Last { k, sampling } => {
                self.logits_of(w, cfg, n - 1..n, &mut clock)?;
                let c = kernels::top_candidates(
                    pool,
                    &self.logits[..cfg.n_vocab],
                    sampling.history,
                    sampling.repeat_penalty,
                    sampling.inv_temperature,
                    *k as usize,
                );
                clock.lap(&mut self.timing, "top-k");
                vec![c]
            }
            HeadRequest::All { k } => {
                self.logits_of(w, cfg, 0..n, &mut clock)?;
                let v = cfg.n_vocab;
                (0..n).map(|i| kernels::top_candidates(pool, &self.logits[i * v..(i + 1) * v], &[], 1.0, 1.0, *k as usize)).collect()
            }
        };
        Ok(StepOutput { candidates, dispatches: 0, readback_bytes: 0 })
    }

    /// logits[i] = lm_head · rmsnorm(x[r], output_norm) for the i-th row r of `rows`.
    fn logits_of(&mut self, w: &CpuWeights, cfg: &ModelConfig, rows: std::ops::Range<usize>, clock: &mut Lap) -> Result<()> {
        let (dim, v) = (cfg.dim, cfg.n_vocab);
        let t = w.tensors();
        let x = &self.x[rows.start * dim..rows.end * dim];
        let rows = rows.len();
        norm_rows(x, w.norm(&t.output_norm), cfg.norm_eps, &mut self.xn[..rows * dim]);
        self.acts.prepare(&self.xn[..rows * dim], rows, dim);
        if self.logits.len() < rows * v {
            self.logits = zeros(rows * v, "logits")?;
        }
        clock.lap(&mut self.timing, "rmsnorm");
        kernels::matmul(&w.pool, &self.acts, &mut [Product { w: w.matrix(t.lm_head()), out: &mut self.logits[..rows * v], epilogue: Epilogue::Store }]);
        clock.lap(&mut self.timing, "matmul logits");
        Ok(())
    }

    /// Times `steps` decode steps at position `pos` kernel by kernel; reports the fastest step's
    /// breakdown. Writes the cache row at `pos` (the caller forgets it afterwards).
    pub fn profile_decode(&mut self, w: &CpuWeights, cfg: &ModelConfig, pos: usize, steps: usize) -> Result<DecodeProfile> {
        let sampling = Default::default();
        let head = HeadRequest::Last { k: 1, sampling: &sampling };
        let mut best: Option<(f64, Vec<OpTime>)> = None;
        for _ in 0..steps.max(1) {
            self.timing = Some(Vec::new());
            let t0 = now_ms();
            let r = self.step(w, cfg, &[0], pos, &head);
            let ms = now_ms() - t0;
            let times = self.timing.take().unwrap_or_default();
            r?;
            if best.as_ref().is_none_or(|(b, _)| ms < *b) {
                best = Some((ms, times));
            }
        }
        let (step_ms, ops) = best.unwrap_or_default();
        Ok(DecodeProfile::new(pos, step_ms, 0.0, ops))
    }
}

/// `kernels::rmsnorm` on each row of x: [T, w.len()].
fn norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    for (row, o) in x.chunks(w.len()).zip(out.chunks_mut(w.len())) {
        kernels::rmsnorm(row, w, eps, o);
    }
}

/// Wall-clock laps between the kernels of a profiled step (does nothing otherwise).
struct Lap {
    last: Option<f64>,
}

impl Lap {
    fn new(on: bool) -> Self {
        Lap { last: on.then(now_ms) }
    }

    /// Charges the time since the previous lap to `label`.
    fn lap(&mut self, timing: &mut Option<Vec<OpTime>>, label: &str) {
        if let (Some(last), Some(times)) = (self.last, timing.as_mut()) {
            let now = now_ms();
            add_time(times, label.to_string(), now - last);
            self.last = Some(now);
        }
    }
}
