//! What a model is: its configuration (from GGUF metadata) and its tensors (views into the file),
//! listed once in [`layer`] for every backend.

mod config;
pub mod layer;
pub mod synth;
mod tensors;

pub use config::{Arch, ModelConfig};
pub use layer::{Global, Layer, Role, Slot, Weights};
pub use synth::{duplicate_blocks, synth_gguf, write_synth_gguf, SynthSpec};
pub use tensors::{LayerTensors, ModelTensors, TensorPlace, TensorPlaces, TensorRef};
