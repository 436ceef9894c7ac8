//! mobilellm-web: MobileLLM / Llama-shaped small language models on WebGPU (browser) and wgpu (native).
//!
//! Read ARCHITECTURE.md first. Data flows one way:
//! GGUF bytes -> [`gguf`] -> [`model`] config + tensors -> [`gpu`] upload -> [`engine::Session`]
//! (prefill, decode) -> [`sampler`] -> token ids -> [`tokenizer`] (streaming detokenisation).
//! [`cpu`] is a plain f32 reference forward pass used as the oracle in tests.

pub mod convert;
pub mod cpu;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod gpu;
pub mod model;
pub mod quant;
pub mod sampler;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod wasm;
#[cfg(target_arch = "wasm32")]
pub mod wasm_convert;

pub use error::{Error, Result};
