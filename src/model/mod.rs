//! What a model is: its configuration (from GGUF metadata) and its tensors (views into the file).

mod config;
pub mod synth;
mod tensors;

pub use config::{Arch, ModelConfig};
pub use tensors::{LayerTensors, ModelTensors, TensorRef};
pub use synth::{duplicate_blocks, synth_gguf, SynthSpec};
