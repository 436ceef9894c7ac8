//! The engine: a loaded model (weights in one backend's form, tokenizer) and sessions that
//! prefill and decode with a KV cache through that backend (see [`backend`]).

pub mod backend;
mod clock;
mod loaded;
mod memory;
pub mod profile;
mod session;
mod stop;
mod streaming;

pub use backend::{BackendKind, ModelBackend};
pub use clock::now_ms;
pub use loaded::{LoadOptions, LoadedModel, TensorSummary};
pub use memory::check_memory;
pub use profile::{DecodeProfile, OpTime};
pub use session::{FinishReason, GenerateRequest, GenerateResult, Session, SessionOptions, TokenEvent};
pub use streaming::StreamingGpuLoad;
