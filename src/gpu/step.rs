//! Per-step parameters shared by every kernel: one uniform written before each submit and bound at
//! `@group(0) @binding(0)`. The Rust struct and the WGSL `struct Step` come from one declaration
//! (the macro below), so their layouts cannot drift apart.

/// Declares a `#[repr(C)]` struct of 4-byte scalars and its WGSL text (`Self::WGSL`), in the same
/// field order. Only u32 and f32 fields: every field is 4 bytes, so the std140-style uniform
/// layout has no hidden padding as long as the field count is a multiple of 4 (checked in tests).
macro_rules! uniform_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident as $wgsl_name:literal {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// The WGSL declaration of this struct (prepended to every kernel).
            pub const WGSL: &'static str = concat!(
                "struct ", $wgsl_name, " {\n",
                $( "    ", stringify!($field), ": ", stringify!($ty), ",\n", )*
                "}\n"
            );
        }
    };
}

uniform_struct! {
    /// Written with `queue.write_buffer` once before each submit.
    pub struct StepParams as "Step" {
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
        /// Chunks the GPU form of attention splits each token's positions into, and positions
        /// per chunk (ops::attention::split_for).
        pub attn_chunks: u32,
        pub attn_chunk_len: u32,
    }
}

impl StepParams {
    pub fn new(pos0: u32, n_tokens: u32) -> Self {
        let kv_len = pos0 + n_tokens;
        let (attn_chunks, attn_chunk_len) = super::ops::attention::split_for(kv_len, n_tokens);
        StepParams { n_tokens, pos0, kv_len, n_history: 0, inv_temperature: 1.0, repeat_penalty: 1.0, attn_chunks, attn_chunk_len }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wgsl_struct_matches_the_rust_layout() {
        let fields = StepParams::WGSL.lines().filter(|l| l.trim_end().ends_with(',')).count();
        assert_eq!(4 * fields, std::mem::size_of::<StepParams>(), "every field is 4 bytes");
        assert_eq!(std::mem::size_of::<StepParams>() % 16, 0, "a uniform is a whole number of 16-byte rows");
        assert!(StepParams::WGSL.starts_with("struct Step {\n    n_tokens: u32,\n    pos0: u32,"));
    }
}
