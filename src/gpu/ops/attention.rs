//! GQA causal attention over the KV cache (Kernel::Attention), in the form that suits the adapter:
//! - [`AttnForm::Heads`] (software adapters): `attn_heads`, one invocation per (KV head's group of
//!   query heads, token) over every visible position; one dispatch, no barriers. Beyond
//!   [`heads_fit`] it falls back to the Split form's ops.
//! - [`AttnForm::Split`] (GPUs): `attn_split` over (chunk, head group, token) with a running-max
//!   softmax per chunk, then `attn_combine` over (head, token) merging chunk partials, dispatched
//!   only for steps whose positions span several chunks ([`split_for`], written into the step
//!   uniform, so the shader follows the same choice).

use super::AttnShape;
use crate::gpu::{Gpu, Kernel, Op, StepParams};

/// Positions per tile (= invocations per workgroup) of `attn_split`.
const WG: u32 = 128;
/// Most chunks a token's context is split into (decode).
const MAX_SPLIT: u32 = 32;
/// Fewest tiles per chunk: shorter contexts run in one pass and skip the combine dispatch. A
/// guess, not measured on a real GPU (on software adapters the Heads form never splits).
const MIN_CHUNK_TILES: u32 = 4;
/// Invocations per workgroup of `attn_heads`: one SIMD group of lavapipe (8 lanes).
const HEADS_WG: u32 = 8;
/// Loop iterations one `attn_heads` invocation may run. lavapipe (gallivm) ends every loop of an
/// invocation once 65535 iterations have run in total (its guard against endless loops), so a
/// longer walk would silently stop early; kept below that with room for the other loops.
const HEADS_LOOP_BUDGET: u32 = 60000;
/// Largest head_dim either form supports (`attn_split` needs head_dim / 2 <= WG).
const MAX_HEAD_DIM: u32 = 256;
/// Most query heads one `attn_split` workgroup handles (they share the K/V reads of their KV head).
const MAX_HPW: u32 = 4;

/// The constants shaders/attention.wgsl takes from here (emitted into its prelude).
pub(crate) fn wgsl_constants() -> Vec<(&'static str, u32)> {
    vec![("WG", WG), ("HEADS_WG", HEADS_WG), ("MAX_HEAD_DIM", MAX_HEAD_DIM)]
}

/// (number of chunks, positions per chunk) of the Split form for a step: enough chunks for a
/// long context to fill the GPU, none for a short one; fewer when the step's tokens already give
/// enough workgroups (the scratch holds max(max_tokens, MAX_SPLIT) partial rows).
pub fn split_for(kv_len: u32, n_tokens: u32) -> (u32, u32) {
    let tiles = kv_len.div_ceil(WG).max(1);
    let limit = (MAX_SPLIT / n_tokens.max(1)).max(1);
    let n = (tiles / MIN_CHUNK_TILES).clamp(1, limit);
    let chunk_len = tiles.div_ceil(n) * WG;
    (kv_len.div_ceil(chunk_len).max(1), chunk_len)
}

/// Whether `attn_heads` can walk kv_len positions within [`HEADS_LOOP_BUDGET`]: a round of four
/// positions runs two loops of head_dim / 2 iterations.
pub fn heads_fit(kv_len: u32, head_dim: u32) -> bool {
    kv_len.div_ceil(4) * (head_dim + 1) + 3 * head_dim <= HEADS_LOOP_BUDGET
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnForm {
    Heads,
    Split,
}

impl AttnForm {
    pub fn for_adapter(gpu: &Gpu) -> AttnForm {
        if gpu.cpu_like {
            AttnForm::Heads
        } else {
            AttnForm::Split
        }
    }
}

/// The Split form's partial results, allocated once per session and shared by every layer (the
/// layers' attention dispatches run one after another).
pub struct AttnScratch {
    /// o [rows, n_heads, head_dim / 2] as vec2s.
    part_o: wgpu::Buffer,
    /// (max, sum) [rows, n_heads].
    part_ml: wgpu::Buffer,
}

impl AttnScratch {
    /// For steps of up to `max_tokens` tokens (the Heads form needs it only for contexts where it
    /// falls back to Split: 16-byte placeholders when the cache is shorter).
    pub fn new(gpu: &Gpu, shape: &AttnShape, max_tokens: u32, form: AttnForm) -> Self {
        let splits = form == AttnForm::Split || !heads_fit(shape.n_ctx, shape.head_dim);
        // Partial rows: t * n_split + chunk < T * max(1, MAX_SPLIT / T) <= max(T, MAX_SPLIT).
        let rows = if splits { max_tokens.max(MAX_SPLIT) as u64 } else { 0 };
        AttnScratch {
            part_o: gpu.storage_buffer("attn_part_o", rows * shape.n_heads as u64 * shape.head_dim as u64 * 4),
            part_ml: gpu.storage_buffer("attn_part_ml", rows * shape.n_heads as u64 * 8),
        }
    }
}

/// Largest divisor of the GQA group size that fits one workgroup.
fn heads_per_workgroup(group: u32) -> u32 {
    (1..=group.min(MAX_HPW)).rev().find(|d| group.is_multiple_of(*d)).unwrap_or(1)
}

fn bind_group(gpu: &Gpu, label: &str, pipeline: &wgpu::ComputePipeline, bufs: &[(u32, &wgpu::Buffer)]) -> wgpu::BindGroup {
    let entries: Vec<_> = bufs.iter().map(|&(binding, b)| wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() }).collect();
    gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout: &pipeline.get_bind_group_layout(0), entries: &entries })
}

/// The q, K/V caches and output an attention op reads and writes.
pub struct AttnIo<'a> {
    /// f32 [T, n_heads * head_dim] (rotated).
    pub q: &'a wgpu::Buffer,
    /// act_t [n_ctx, n_kv_heads * head_dim] each.
    pub k_cache: &'a wgpu::Buffer,
    pub v_cache: &'a wgpu::Buffer,
    /// f32 [T, n_heads * head_dim].
    pub out: &'a wgpu::Buffer,
}

/// out[t, h] = softmax(q[t,h]·K[0..=pos0+t, h/group]ᵀ / sqrt(hd)) · V[...], in the adapter's
/// form. The ops in order (only those a step needs are dispatched: see the module comment).
pub fn attention(gpu: &Gpu, step: &wgpu::Buffer, shape: &AttnShape, io: &AttnIo, scratch: &AttnScratch) -> Vec<Op> {
    attention_with(gpu, step, shape, io, scratch, AttnForm::for_adapter(gpu))
}

/// [`attention`] in a given form (tests and benchmarks of both).
pub fn attention_with(gpu: &Gpu, step: &wgpu::Buffer, shape: &AttnShape, io: &AttnIo, scratch: &AttnScratch, form: AttnForm) -> Vec<Op> {
    assert!(shape.head_dim.is_multiple_of(2) && shape.head_dim <= MAX_HEAD_DIM, "head_dim must be even and <= {MAX_HEAD_DIM}");
    assert!(shape.n_kv_heads > 0 && shape.n_heads.is_multiple_of(shape.n_kv_heads), "n_heads must be a multiple of n_kv_heads");
    let hpw = heads_per_workgroup(shape.n_heads / shape.n_kv_heads);
    let constants = [
        ("HEAD_DIM", shape.head_dim as f64),
        ("N_HEADS", shape.n_heads as f64),
        ("N_KV_HEADS", shape.n_kv_heads as f64),
        ("HPW", hpw as f64),
        ("SCALE", 1.0 / (shape.head_dim as f64).sqrt()),
    ];
    let n_heads = shape.n_heads;
    let head_dim = shape.head_dim;
    let mut ops = Vec::new();
    // Whether a step runs the Split ops (always in the Split form; past the budget in Heads).
    let heads = form == AttnForm::Heads;
    let splits = move |s: &StepParams| !heads || !heads_fit(s.kv_len, head_dim);
    if heads {
        let pipeline = gpu.pipeline(Kernel::Attention, "attn_heads", &constants);
        let bg = bind_group(gpu, "attn_heads", &pipeline, &[(0, step), (1, io.q), (2, io.k_cache), (3, io.v_cache), (4, io.out)]);
        let groups = (n_heads / hpw).div_ceil(HEADS_WG);
        ops.push(Op::new("attention", pipeline, bg, Box::new(move |s: &StepParams| if splits(s) { [0, 0, 0] } else { [groups, s.n_tokens, 1] })));
        if heads_fit(shape.n_ctx, head_dim) {
            return ops; // every step of this cache fits: the Split ops would never run
        }
    }

    let split = gpu.pipeline(Kernel::Attention, "attn_split", &constants);
    let bufs = [(0, step), (1, io.q), (2, io.k_cache), (3, io.v_cache), (4, io.out), (5, &scratch.part_o), (6, &scratch.part_ml)];
    let split_bg = bind_group(gpu, "attn_split", &split, &bufs);
    let groups = n_heads / hpw;
    ops.push(Op::new("attention", split, split_bg, Box::new(move |s: &StepParams| if splits(s) { [s.attn_chunks, groups, s.n_tokens] } else { [0, 0, 0] })));

    let combine = gpu.pipeline(Kernel::Attention, "attn_combine", &constants);
    let combine_bg = bind_group(gpu, "attn_combine", &combine, &[(0, step), (4, io.out), (5, &scratch.part_o), (6, &scratch.part_ml)]);
    ops.push(Op::new(
        "attn_combine",
        combine,
        combine_bg,
        Box::new(move |s: &StepParams| if splits(s) && s.attn_chunks > 1 { [n_heads, s.n_tokens, 1] } else { [0, 0, 0] }),
    ));
    ops
}
