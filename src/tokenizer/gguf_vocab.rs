//! `Tokenizer::from_gguf`: tokenizer.ggml.model = `llama` (SentencePiece-style) or `gpt2`
//! (byte-level BPE with the pre-tokenizer named by tokenizer.ggml.pre).
//!
//! Encoding follows llama.cpp's `llama_tokenize(text, add_special, parse_special = true)`:
//! special tokens written in the text are split out first ([`special`]); each remaining text
//! fragment goes through the SPM merge loop ([`spm`]) or the `tokenizers` byte-level BPE
//! pipeline ([`bpe`]).

use super::special::{partition, Fragment};
use super::vocab::{TokenType, Vocab};
use super::{bpe, spm};
use crate::gguf::GgufFile;

pub struct Tokenizer {
    /// The `tokenizers` pipeline: for `gpt2`, pre-tokenizer + byte-level BPE used to encode text
    /// fragments; for `llama`, the vocabulary only (encoding uses the SPM merge loop).
    pub inner: tokenizers::Tokenizer,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// End-of-generation ids: eos, eot (`tokenizer.ggml.eot_token_id`) and similar.
    pub eog_ids: Vec<u32>,
    /// `tokenizer.ggml.add_bos_token` (llama default: true; gpt2 default: false).
    pub add_bos: bool,
    /// `tokenizer.chat_template`, if any.
    pub chat_template: Option<String>,
    vocab: Vocab,
    kind: Kind,
}

enum Kind {
    Spm { add_space_prefix: bool, byte_ids: Box<[Option<u32>; 256]> },
    Bpe,
}

impl Tokenizer {
    pub fn from_gguf(file: &GgufFile) -> crate::Result<Self> {
        let model = file.get_str("tokenizer.ggml.model").ok_or_else(|| crate::Error::Tokenizer("tokenizer.ggml.model missing".into()))?;
        let (vocab, kind, inner, default_add_bos) = match model {
            "llama" => {
                let vocab = Vocab::from_gguf(file, [Some(1), Some(2), Some(0)])?;
                let add_space_prefix = file.get_bool("tokenizer.ggml.add_space_prefix").unwrap_or(true);
                let byte_ids = Box::new(spm::byte_ids(&vocab));
                let inner = vocab_only(&vocab)?;
                (vocab, Kind::Spm { add_space_prefix, byte_ids }, inner, true)
            }
            "gpt2" => {
                let pre_name = file.get_str("tokenizer.ggml.pre").unwrap_or("default");
                let pre = bpe::pre_tokenizer(pre_name).ok_or_else(|| crate::Error::Tokenizer(format!("unsupported pre-tokenizer {pre_name:?}")))?;
                // llama.cpp's defaults for `gpt2` when the ids are not in the file: bos = eos = 11.
                let vocab = Vocab::from_gguf(file, [Some(11), Some(11), None])?;
                let merges = file.get_str_array("tokenizer.ggml.merges").ok_or_else(|| crate::Error::Tokenizer("tokenizer.ggml.merges missing".into()))?;
                let inner = bpe::build(&vocab, &merges, &pre)?;
                (vocab, Kind::Bpe, inner, pre.add_bos)
            }
            other => return Err(crate::Error::Tokenizer(format!("unsupported tokenizer model {other:?} (llama and gpt2 are supported)"))),
        };
        let add_bos = file.get_bool("tokenizer.ggml.add_bos_token").unwrap_or(default_add_bos) && vocab.bos_id.is_some();
        Ok(Tokenizer {
            inner,
            bos_id: vocab.bos_id,
            eos_id: vocab.eos_id,
            eog_ids: vocab.eog_ids.clone(),
            add_bos,
            chat_template: file.get_str("tokenizer.chat_template").map(str::to_string),
            vocab,
            kind,
        })
    }

    /// Token ids of `text` as llama.cpp's `llama_tokenize(text, add_special, parse_special=true)`:
    /// special tokens written in the text are recognised; BOS is prepended when `add_bos`.
    pub fn encode(&self, text: &str, add_bos: bool) -> crate::Result<Vec<u32>> {
        let specials = self.vocab.specials.iter().map(|&id| (id, self.vocab.texts[id as usize].as_str()));
        let frags = partition(text, specials);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_bos {
            out.push(self.bos_id.ok_or_else(|| crate::Error::Tokenizer("add_bos requested but the vocabulary has no BOS token".into()))?);
        }
        match &self.kind {
            Kind::Spm { add_space_prefix, byte_ids } => {
                // The dummy prefix goes before the text and after every special token.
                let mut prev_special = true;
                for f in frags {
                    match f {
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                        Fragment::Text(a, b) => {
                            let mut s = String::with_capacity(b - a + 3);
                            if *add_space_prefix && prev_special {
                                s.push('▁');
                            }
                            s.push_str(&text[a..b].replace(' ', "▁"));
                            spm::tokenize(&self.vocab, byte_ids, &s, &mut out);
                            prev_special = false;
                        }
                    }
                }
            }
            Kind::Bpe => {
                for f in frags {
                    match f {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text(a, b) => {
                            let enc = self.inner.encode(&text[a..b], false).map_err(|e| crate::Error::Tokenizer(e.to_string()))?;
                            out.extend_from_slice(enc.get_ids());
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The bytes a token stands for (byte-fallback tokens give their byte; special tokens their text).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(text) = self.vocab.texts.get(id as usize) else { return Vec::new() };
        match self.vocab.types[id as usize] {
            TokenType::Control | TokenType::Unknown | TokenType::UserDefined => text.as_bytes().to_vec(),
            TokenType::Byte => match byte_token_value(text) {
                Some(b) => vec![b],
                None => text.as_bytes().to_vec(),
            },
            // llama.cpp renders unused/undefined tokens as nothing.
            TokenType::Unused | TokenType::Undefined => Vec::new(),
            TokenType::Normal => match self.kind {
                Kind::Spm { .. } => text.replace('▁', " ").into_bytes(),
                Kind::Bpe => {
                    let mut out = Vec::with_capacity(text.len());
                    for c in text.chars() {
                        match bpe::char_to_byte(c) {
                            Some(b) => out.push(b),
                            // Not from the byte-level alphabet: keep the character itself.
                            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                        }
                    }
                    out
                }
            },
        }
    }

    /// Text of `ids` (invalid UTF-8 becomes U+FFFD). As llama.cpp's detokenizer, the dummy-prefix
    /// space of a SentencePiece vocabulary is removed from the first token.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let b = self.token_bytes(id);
            let strip = i == 0 && matches!(self.kind, Kind::Spm { add_space_prefix: true, .. }) && b.first() == Some(&b' ');
            bytes.extend_from_slice(if strip { &b[1..] } else { &b });
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog_ids.contains(&id)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

/// `<0xNN>` -> NN.
fn byte_token_value(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// A `tokenizers` model holding just the vocabulary (id <-> text), for `llama` vocabularies.
fn vocab_only(vocab: &Vocab) -> crate::Result<tokenizers::Tokenizer> {
    let v: tokenizers::models::bpe::Vocab = vocab.texts.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let model = tokenizers::models::bpe::BPE::builder()
        .vocab_and_merges(v, Vec::new())
        .byte_fallback(true)
        .build()
        .map_err(|e| crate::Error::Tokenizer(e.to_string()))?;
    Ok(tokenizers::Tokenizer::new(model))
}
