//! GQA causal attention over the KV cache (Kernel::Attention).
//!
//! Two ops: `attn_split` over (chunk, head group, token) with a running-max softmax per chunk,
//! then `attn_combine` over (head, token) merging chunk partials. The chunking (`split_for`)
//! depends on the step's kv_len and n_tokens and must match the same function in
//! shaders/attention.wgsl. Short contexts (one chunk) skip the combine entirely.

use super::AttnShape;
use crate::gpu::{Gpu, Kernel, Op, StepParams};

/// Positions per tile (= invocations per workgroup) in the shader.
const WG: u32 = 128;
/// Most chunks a token's context is split into (decode).
const MAX_SPLIT: u32 = 32;

/// The constants shaders/attention.wgsl takes from here (emitted into its prelude).
pub(crate) fn wgsl_constants() -> Vec<(&'static str, u32)> {
    vec![("WG", WG), ("MAX_SPLIT", MAX_SPLIT)]
}
/// Most query heads one workgroup handles (they share the K/V reads of their KV head).
const MAX_HPW: u32 = 4;
const MAX_HEAD_DIM: u32 = 256;

/// (number of chunks, positions per chunk) for a step; mirrors `split_for` in the shader.
pub fn split_for(kv_len: u32, n_tokens: u32) -> (u32, u32) {
    let tiles = kv_len.div_ceil(WG);
    let limit = (MAX_SPLIT / n_tokens.max(1)).max(1);
    let n = tiles.min(limit).max(1);
    let chunk_len = tiles.div_ceil(n) * WG;
    (kv_len.div_ceil(chunk_len), chunk_len)
}

/// Largest divisor of the GQA group size that fits one workgroup.
fn heads_per_workgroup(group: u32) -> u32 {
    (1..=group.min(MAX_HPW)).rev().find(|d| group % d == 0).unwrap_or(1)
}

fn entries<'a>(bufs: &[(u32, &'a wgpu::Buffer)]) -> Vec<wgpu::BindGroupEntry<'a>> {
    bufs.iter().map(|&(binding, b)| wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() }).collect()
}

/// out[t, h] = softmax(q[t,h]·K[0..=pos0+t, h/group]ᵀ / sqrt(hd)) · V[...]. Returns the ops in
/// order (e.g. split-K partials then a combine for long contexts). `max_tokens` bounds T (the
/// prefill chunk), so scratch buffers are allocated here once.
pub fn attention(gpu: &Gpu, step: &wgpu::Buffer, shape: &AttnShape, max_tokens: u32, q: &wgpu::Buffer, k_cache: &wgpu::Buffer, v_cache: &wgpu::Buffer, out: &wgpu::Buffer) -> Vec<Op> {
    assert!(shape.head_dim % 2 == 0 && shape.head_dim <= MAX_HEAD_DIM, "head_dim must be even and <= {MAX_HEAD_DIM}");
    assert!(shape.n_kv_heads > 0 && shape.n_heads % shape.n_kv_heads == 0, "n_heads must be a multiple of n_kv_heads");
    let hpw = heads_per_workgroup(shape.n_heads / shape.n_kv_heads);
    let constants = [
        ("HEAD_DIM", shape.head_dim as f64),
        ("N_HEADS", shape.n_heads as f64),
        ("N_KV_HEADS", shape.n_kv_heads as f64),
        ("HPW", hpw as f64),
        ("SCALE", 1.0 / (shape.head_dim as f64).sqrt()),
    ];
    // Partial rows: t * n_split + chunk < T * max(1, MAX_SPLIT / T) <= max(T, MAX_SPLIT).
    let rows = max_tokens.max(MAX_SPLIT) as u64;
    let part_o = gpu.storage_buffer("attn_part_o", rows * shape.n_heads as u64 * shape.head_dim as u64 * 4);
    let part_ml = gpu.storage_buffer("attn_part_ml", rows * shape.n_heads as u64 * 8);

    let split = gpu.pipeline(Kernel::Attention, "attn_split", &constants);
    let split_bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("attn_split"),
        layout: &split.get_bind_group_layout(0),
        entries: &entries(&[(0, step), (1, q), (2, k_cache), (3, v_cache), (4, out), (5, &part_o), (6, &part_ml)]),
    });
    let groups = shape.n_heads / hpw;
    let split_op = Op::new(
        "attn_split",
        split,
        split_bg,
        Box::new(move |s: &StepParams| [split_for(s.kv_len, s.n_tokens).0, groups, s.n_tokens]),
    );

    let combine = gpu.pipeline(Kernel::Attention, "attn_combine", &constants);
    let combine_bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("attn_combine"),
        layout: &combine.get_bind_group_layout(0),
        entries: &entries(&[(0, step), (4, out), (5, &part_o), (6, &part_ml)]),
    });
    let n_heads = shape.n_heads;
    let combine_op = Op::new(
        "attn_combine",
        combine,
        combine_bg,
        Box::new(move |s: &StepParams| if split_for(s.kv_len, s.n_tokens).0 > 1 { [n_heads, s.n_tokens, 1] } else { [0, 0, 0] }),
    );
    vec![split_op, combine_op]
}
