//! The engine: a loaded model (weights on the GPU, tokenizer) and sessions that prefill and
//! decode with a KV cache.

mod clock;
mod graph;
mod loaded;
mod profile;
mod session;
mod stop;

pub use clock::now_ms;
pub use profile::{DecodeProfile, OpTime};
pub use loaded::{LoadedModel, ModelWeights, TensorSummary};
pub use session::{FinishReason, GenerateRequest, GenerateResult, Session, SessionOptions, TokenEvent};
