//! Sampling reduction on the GPU (Kernel::TopK): repetition penalty, temperature, top-k.
//!
//! Ops: `penalty` (in place on the logits; dispatched only when the step has a penalty), then
//! `select_topk` over slices of SLICE logits per row, then `select_topk` merge rounds over
//! groups of lists until one list per row remains. Every list, intermediate or final, has the
//! output format of [`out_words_per_row`], so a merge round reads what the previous wrote.

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

fn bind<'a>(gpu: &Gpu, label: &str, pipeline: &wgpu::ComputePipeline, bufs: &[(u32, &'a wgpu::Buffer)]) -> wgpu::BindGroup {
    let entries: Vec<_> = bufs.iter().map(|&(binding, b)| wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() }).collect();
    gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout: &pipeline.get_bind_group_layout(0), entries: &entries })
}

/// For each row r < rows of `logits` (f32 [rows, vocab]):
/// 1. repetition penalty (llama.cpp's rule: l > 0 ? l / p : l * p) on the first `n_history`
///    token ids of `history` (u32, distinct), modifying `logits` in place (skipped when p == 1);
/// 2. temperature: l * inv_temperature;
/// 3. the k largest, written to `out` as described in [`out_words_per_row`].
///
/// When vocab < k the list ends with (0xffffffff, -inf) entries.
pub fn topk(gpu: &Gpu, step: &wgpu::Buffer, logits: &wgpu::Buffer, vocab: u32, history: &wgpu::Buffer, k: u32, rows: TokenCount, max_rows: u32, out: &wgpu::Buffer) -> Vec<Op> {
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
        Box::new(move |s: &StepParams| {
            if s.repeat_penalty == 1.0 || s.n_history == 0 {
                [0, 0, 0]
            } else {
                [s.n_history.div_ceil(64), rows_of(s), 1]
            }
        }),
    ));

    // Pass 1 over vocabulary slices, then merge rounds of `lpw` lists each.
    let words = out_words_per_row(k) as u64;
    let lpw = (SLICE / k).max(2);
    let mut lists = vocab.div_ceil(SLICE);
    let mut input = logits.clone();
    let mut merge = false;
    loop {
        let (in_lists, n_out) = if merge { (lists, lists.div_ceil(lpw)) } else { (1, lists) };
        let target = if n_out == 1 { out.clone() } else { gpu.storage_buffer("topk_lists", max_rows as u64 * n_out as u64 * words * 4) };
        let pipeline = gpu.pipeline(Kernel::TopK, "select_topk", &base(merge, in_lists, lpw));
        let bg = bind(gpu, "topk_select", &pipeline, &[(0, step), (3, &input), (4, &target)]);
        ops.push(Op::new("topk_select", pipeline, bg, Box::new(move |s: &StepParams| [n_out, rows_of(s), 1])));
        if n_out == 1 {
            break;
        }
        lists = n_out;
        input = target;
        merge = true;
    }
    ops
}
