//! Streaming detokenisation: emits text only once it forms complete UTF-8 characters.
//!
//! A character can be spread over several tokens (byte-fallback `<0xNN>` tokens in `llama`
//! vocabularies, partial byte sequences in byte-level `gpt2` ones), so token bytes are buffered
//! and only the longest complete prefix is emitted. Bytes that can never become valid UTF-8 are
//! emitted as U+FFFD right away rather than blocking the stream. Pieces are the tokens' own text
//! (llama.cpp's `token_to_piece` with lstrip = 0): no dummy-prefix space is removed.

use super::Tokenizer;

pub struct StreamDecoder<'t> {
    tok: &'t Tokenizer,
    pending: Vec<u8>,
}

impl<'t> StreamDecoder<'t> {
    pub fn new(tok: &'t Tokenizer) -> Self {
        StreamDecoder { tok, pending: Vec::new() }
    }

    /// Adds one token; returns the text that became complete (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        self.pending.extend_from_slice(&self.tok.token_bytes(id));
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).expect("valid prefix"));
                    match e.error_len() {
                        // An incomplete character at the end: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Invalid bytes: replace them and carry on with the rest.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Flushes what is left (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}
