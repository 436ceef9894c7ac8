//! Per-step parameters shared by every kernel (mirrors `struct Step` in shaders/common.wgsl).

/// Written with `queue.write_buffer` once before each submit; bound at @group(0) @binding(0).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepParams {
    /// Tokens processed by this pass (1 for decode, up to the chunk size for prefill).
    pub n_tokens: u32,
    /// Position of the first of them in the sequence.
    pub pos0: u32,
    /// Keys/values valid after this pass: pos0 + n_tokens.
    pub kv_len: u32,
    /// How many entries of the history buffer the repetition penalty applies to.
    pub n_history: u32,
    /// 1 / temperature (1.0 for greedy: the ordering is all that matters then).
    pub inv_temperature: f32,
    /// Repetition penalty (1.0 = off).
    pub repeat_penalty: f32,
    pub _pad0: u32,
    pub _pad1: u32,
}

impl StepParams {
    pub fn new(pos0: u32, n_tokens: u32) -> Self {
        StepParams { n_tokens, pos0, kv_len: pos0 + n_tokens, inv_temperature: 1.0, repeat_penalty: 1.0, ..Default::default() }
    }
}

/// How many rows (tokens) an op processes: those of the step, or exactly one (e.g. the logits of
/// the last token during generation). Ops implement this with an override constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCount {
    Step,
    One,
}

impl TokenCount {
    pub fn resolve(self, step: &StepParams) -> u32 {
        match self {
            TokenCount::Step => step.n_tokens,
            TokenCount::One => 1,
        }
    }
}
