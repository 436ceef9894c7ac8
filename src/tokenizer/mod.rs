//! Tokenizer built from the GGUF's own vocabulary (on the `tokenizers` crate), streaming
//! detokenisation that never splits a UTF-8 character, and chat-template rendering.

mod bpe;
mod chat;
mod chat_compat;
mod gguf_vocab;
mod special;
mod spm;
mod stream;
mod vocab;

pub use chat::{render_chat, ChatMessage};
pub use gguf_vocab::Tokenizer;
pub use stream::StreamDecoder;
