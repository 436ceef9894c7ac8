//! Sampling reduction on the GPU (Kernel::TopK): repetition penalty, temperature, top-k.
//!
//! Ops: `penalty` (in place on the logits; dispatched only when the step has a penalty), then
//! `select_topk` over slices of SLICE logits per row, then `select_topk` merge rounds over
//! groups of lists until one list per row remains. Every list, intermediate or final, has the
//! output format of [`out_words_per_row`], so a merge round reads what the previous wrote; the
//! intermediate levels alternate between the two buffers of a [`TopkScratch`] the caller owns.

use crate::gpu::{Gpu, Kernel, Op, StepParams, TokenCount};

/// Largest candidate count the engine asks for (top_k above this is clamped; with top_k off,
/// top-p / min-p choose among these many).
pub const MAX_CANDIDATES: u32 = 256;

/// Invocations of a `select_topk` workgroup, and logits each of them reads.
const WG: u32 = 256;
const ELEMS: u32 = 16;
/// Candidates one `select_topk` workgroup reads.
const SLICE: u32 = WG * ELEMS;

/// The constants shaders/topk.wgsl takes from here (emitted into its prelude).
pub(crate) fn wgsl_constants() -> Vec<(&'static str, u32)> {
    vec![("WG", WG), ("ELEMS", ELEMS), ("SLICE", SLICE)]
}

/// Words per row in the output buffer for `k` candidates: k pairs (id: u32, logit: f32 bits),
/// sorted by logit descending (ties: smaller id first), then (logsumexp over the whole
/// vocabulary of the adjusted logits as f32 bits, 0).
pub fn out_words_per_row(k: u32) -> u32 {
    2 * k + 2
}

/// (vocabulary slices, then lists per merge round) down to one list per row.
fn levels(vocab: u32, k: u32) -> Vec<u32> {
    let lpw = lists_per_workgroup(k);
    let mut out = vec![vocab.div_ceil(SLICE)];
    while *out.last().unwrap() > 1 {
        let n = out.last().unwrap().div_ceil(lpw);
        out.push(n);
    }
    out
}

/// Input lists one merge workgroup reads.
fn lists_per_workgroup(k: u32) -> u32 {
    (SLICE / k).max(2)
}

/// The intermediate lists of a top-k reduction: two buffers the levels alternate between (a
/// level is read while the next is written, and one dispatch may not bind a buffer both ways).
pub struct TopkScratch {
    lists: [wgpu::Buffer; 2],
}

impl TopkScratch {
    /// For `max_rows` rows of `vocab` logits and `k` candidates (16-byte placeholders when one
    /// pass over the vocabulary already gives a single list).
    pub fn new(gpu: &Gpu, vocab: u32, k: u32, max_rows: u32) -> Self {
        let widest = levels(vocab, k).into_iter().filter(|&n| n > 1).max().unwrap_or(0);
        let bytes = max_rows as u64 * widest as u64 * out_words_per_row(k) as u64 * 4;
        TopkScratch { lists: [gpu.storage_buffer("topk_lists_a", bytes), gpu.storage_buffer("topk_lists_b", bytes)] }
    }
}

fn bind(gpu: &Gpu, label: &str, pipeline: &wgpu::ComputePipeline, bufs: &[(u32, &wgpu::Buffer)]) -> wgpu::BindGroup {
    let entries: Vec<_> = bufs.iter().map(|&(binding, b)| wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() }).collect();
    gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout: &pipeline.get_bind_group_layout(0), entries: &entries })
}

/// For each row r < rows of `logits` (f32 [rows, vocab]):
/// 1. repetition penalty (llama.cpp's rule: l > 0 ? l / p : l * p) on the first `n_history`
///    token ids of `history` (u32, distinct), modifying `logits` in place (skipped when p == 1);
/// 2. temperature: l * inv_temperature;
/// 3. the k largest, written to `out` as described in [`out_words_per_row`].
///
/// When vocab < k the list ends with (0xffffffff, -inf) entries. `scratch` comes from
/// `TopkScratch::new(gpu, vocab, k, max_rows)` with max_rows at least the rows of any step.
#[allow(clippy::too_many_arguments)]
pub fn topk(
    gpu: &Gpu,
    step: &wgpu::Buffer,
    logits: &wgpu::Buffer,
    vocab: u32,
    history: &wgpu::Buffer,
    k: u32,
    rows: TokenCount,
    scratch: &TopkScratch,
    out: &wgpu::Buffer,
) -> Vec<Op> {
    assert!((1..=MAX_CANDIDATES).contains(&k), "k must be in 1..={MAX_CANDIDATES}");
    assert!(vocab > 0);
    let rows_of = move |s: &StepParams| rows.resolve(s);
    let sort_n = k.next_power_of_two();
    let base = |merge: bool, in_lists: u32, lpw: u32| {
        vec![
            ("VOCAB", vocab as f64),
            ("K", k as f64),
            ("SORT_N", sort_n as f64),
            ("MERGE", if merge { 1.0 } else { 0.0 }),
            ("IN_LISTS", in_lists as f64),
            ("LPW", lpw as f64),
        ]
    };
    let mut ops = Vec::new();

    let penalty = gpu.pipeline(Kernel::TopK, "penalty", &base(false, 1, 1));
    let bg = bind(gpu, "topk_penalty", &penalty, &[(0, step), (1, logits), (2, history)]);
    ops.push(Op::new(
        "topk_penalty",
        penalty,
        bg,
        Box::new(move |s: &StepParams| if s.repeat_penalty == 1.0 || s.n_history == 0 { [0, 0, 0] } else { [s.n_history.div_ceil(64), rows_of(s), 1] }),
    ));

    // Pass 1 over vocabulary slices, then merge rounds of `lpw` lists each; the intermediate
    // levels alternate between the scratch buffers, the last writes `out`.
    let lpw = lists_per_workgroup(k);
    let levels = levels(vocab, k);
    for (i, &n_out) in levels.iter().enumerate() {
        let (merge, in_lists) = if i == 0 { (false, 1) } else { (true, levels[i - 1]) };
        let input = if i == 0 { logits } else { &scratch.lists[(i - 1) % 2] };
        let target = if n_out == 1 { out } else { &scratch.lists[i % 2] };
        let pipeline = gpu.pipeline(Kernel::TopK, "select_topk", &base(merge, in_lists, lpw));
        let bg = bind(gpu, "topk_select", &pipeline, &[(0, step), (3, input), (4, target)]);
        ops.push(Op::new("topk_select", pipeline, bg, Box::new(move |s: &StepParams| [n_out, rows_of(s), 1])));
    }
    ops
}
