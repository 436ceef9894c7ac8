//! Tokenizer built from the GGUF's own vocabulary (on the `tokenizers` crate), streaming
//! detokenisation that never splits a UTF-8 character, and chat-template rendering.

mod bpe;
mod chat;
mod chat_compat;
mod chat_limits;
mod gguf_vocab;
mod special;
mod spm;
mod stream;
mod vocab;

pub use chat::{input_bytes as chat_input_bytes, render_chat, render_chat_with_stats, ChatLimits, ChatMessage, RenderStats};
pub use gguf_vocab::Tokenizer;
pub use stream::StreamDecoder;
