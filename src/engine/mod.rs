//! The engine: a loaded model (weights in one backend's form, tokenizer) and sessions that
//! prefill and decode with a KV cache through that backend (see [`backend`]).

pub mod backend;
mod clock;
mod loaded;
pub mod profile;
mod session;
mod stop;

pub use backend::{BackendKind, ModelBackend};
pub use clock::now_ms;
pub use loaded::{LoadedModel, TensorSummary};
pub use profile::{DecodeProfile, OpTime};
pub use session::{FinishReason, GenerateRequest, GenerateResult, Session, SessionOptions, TokenEvent};
