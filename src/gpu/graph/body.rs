//! The body of a step: the embedding gather, then every block evaluation in five dispatches
//! (shaders/matvec.wgsl and attention.wgsl):
//!   1. RMSNorm + Q/K/V (one product over the stacked rows) + RoPE + K/V written to the cache
//!   2. attention over the cache (Split form on GPUs: + a combine where a step spans chunks)
//!   3. O projection + residual add into x
//!   4. RMSNorm + gate/up (interleaved rows) + SwiGLU
//!   5. down projection + residual add into x
//!
//! A file whose Q/K/V (or gate/up) types differ runs those products apart: 3 (or 2) dispatches.

use super::{KvCache, RunState};
use crate::gpu::model::{GpuModel, GpuTensor};
use crate::gpu::ops::attention::{attention, AttnIo};
use crate::gpu::ops::embed::embed;
use crate::gpu::ops::matvec::{matvec, qkv, Epilogue, Norm, Product, QkvTarget, Rows, Tiling};
use crate::gpu::ops::AttnShape;
use crate::gpu::{Gpu, Op};
use crate::model::{Layer, ModelConfig};

/// The ops of every step of one tiling: the embedding, then each block `block_repeat` times in a
/// row, each run with its own KV cache (`kv` in evaluation order).
pub(super) fn record(model: &GpuModel, c: &ModelConfig, run: &RunState, kv: &[KvCache], shape: &AttnShape, tiling: Tiling) -> Vec<Op> {
    let gpu: &Gpu = &model.gpu;
    let mut ops = vec![embed(gpu, &run.step, model.weights.token_embd.matrix(), &run.tokens, &run.x)];
    let mut caches = kv.iter();
    for layer in &model.weights.layers {
        for _ in 0..c.block_repeat {
            let cache = caches.next().expect("one KV cache per block evaluation");
            block(gpu, c, run, layer, cache, shape, tiling, &mut ops);
        }
    }
    ops
}

#[allow(clippy::too_many_arguments)]
fn block(gpu: &Gpu, c: &ModelConfig, run: &RunState, l: &Layer<GpuTensor>, cache: &KvCache, shape: &AttnShape, tiling: Tiling, ops: &mut Vec<Op>) {
    let step = &run.step;
    let rows = Rows::All(tiling);
    let attn_norm = Some(Norm { weight: l.attn_norm.norm(), eps: c.norm_eps });
    let ffn_norm = Some(Norm { weight: l.ffn_norm.norm(), eps: c.norm_eps });

    // 1. RMSNorm + Q/K/V + RoPE + KV write: the stacked matrix, or Q, K and V one by one.
    let target = |row_base| QkvTarget { shape: *shape, q: &run.q, k_cache: &cache.k, v_cache: &cache.v, rope: &run.rope, row_base };
    let (q_rows, kv_rows) = (c.q_dim() as u32, c.kv_dim() as u32);
    let parts: Vec<(&GpuTensor, u32)> = if l.wk.is_merged() { vec![(&l.wq, 0)] } else { vec![(&l.wq, 0), (&l.wk, q_rows), (&l.wv, q_rows + kv_rows)] };
    for (w, row_base) in parts {
        let p = Product { weight: w.matrix(), x: &run.x, norm: attn_norm, rows };
        ops.push(qkv(gpu, step, &p, &target(row_base)));
    }

    // 2. attention.
    let io = AttnIo { q: &run.q, k_cache: &cache.k, v_cache: &cache.v, out: &run.att };
    ops.extend(attention(gpu, step, shape, &io, &run.attn_scratch));

    // 3. O projection + residual.
    let p = Product { weight: l.wo.matrix(), x: &run.att, norm: None, rows };
    ops.push(matvec(gpu, step, &p, &run.x, Epilogue::Accumulate));

    // 4. RMSNorm + gate/up + SwiGLU: interleaved rows, or gate then up (silu(gate) * up in place).
    let gate = Product { weight: l.w_gate.matrix(), x: &run.x, norm: ffn_norm, rows };
    if l.w_up.is_merged() {
        ops.push(matvec(gpu, step, &gate, &run.hb, Epilogue::SwigluPairs));
    } else {
        ops.push(matvec(gpu, step, &gate, &run.hb, Epilogue::Store));
        let up = Product { weight: l.w_up.matrix(), ..gate };
        ops.push(matvec(gpu, step, &up, &run.hb, Epilogue::SwigluGate));
    }

    // 5. down projection + residual.
    let p = Product { weight: l.w_down.matrix(), x: &run.hb, norm: None, rows };
    ops.push(matvec(gpu, step, &p, &run.x, Epilogue::Accumulate));
}
