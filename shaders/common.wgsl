// Prepended to every kernel (see src/gpu/kernel.rs). Mirrors StepParams in src/gpu/step.rs.
struct Step {
    n_tokens: u32,        // tokens in this pass
    pos0: u32,            // position of the first of them
    kv_len: u32,          // pos0 + n_tokens
    n_history: u32,       // ids in the repetition-penalty history
    inv_temperature: f32,
    repeat_penalty: f32,
    _pad0: u32,
    _pad1: u32,
}
