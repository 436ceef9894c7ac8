//! The vocabulary as llama.cpp's `llama_vocab::load` sees it: token texts, scores and attributes
//! from `tokenizer.ggml.*`, plus the list of tokens that are matched verbatim in the text
//! ("special" tokens: control, user-defined, unknown), longest first.

use std::collections::HashMap;

use crate::gguf::GgufFile;

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenType {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_gguf(v: i64) -> Self {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }

    /// Matched as a whole token when written in the text (llama.cpp's `cache_special_tokens`).
    pub(super) fn is_special(self) -> bool {
        matches!(self, TokenType::Control | TokenType::UserDefined | TokenType::Unknown)
    }
}

/// Token texts that llama.cpp promotes to end-of-generation (and to control) by their text
/// (a subset of its list: the ones small chat models use).
const EOG_TEXTS: &[&str] =
    &["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>"];

/// FIM tokens llama.cpp adds to the end-of-generation set: (metadata key, texts it looks for).
const FIM_EOG: &[(&str, &[&str])] = &[
    ("tokenizer.ggml.fim_pad_token_id", &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]),
    ("tokenizer.ggml.fim_rep_token_id", &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]),
    ("tokenizer.ggml.fim_sep_token_id", &["<|file_sep|>"]),
];

pub(super) struct Vocab {
    pub texts: Vec<String>,
    pub scores: Vec<f32>,
    pub types: Vec<TokenType>,
    pub to_id: HashMap<String, u32>,
    /// Special tokens, longest text first (ties: lower id first).
    pub specials: Vec<u32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub eog_ids: Vec<u32>,
}

fn bad(msg: impl Into<String>) -> crate::Error {
    crate::Error::Tokenizer(msg.into())
}

impl Vocab {
    /// `defaults` = [bos, eos, unk]: llama.cpp's per-model ids used when the GGUF has no
    /// `tokenizer.ggml.*_token_id` (llama: 1, 2, 0; gpt2: 11, 11, none).
    pub fn from_gguf(file: &GgufFile, defaults: [Option<u32>; 3]) -> crate::Result<Self> {
        let tokens = file.get_str_array("tokenizer.ggml.tokens").ok_or_else(|| bad("tokenizer.ggml.tokens missing or not a string array"))?;
        let n = tokens.len();
        if n == 0 {
            return Err(bad("empty vocabulary"));
        }
        let scores = match file.get("tokenizer.ggml.scores") {
            None => vec![0.0; n],
            Some(_) => file.get_f32_array("tokenizer.ggml.scores").ok_or_else(|| bad("tokenizer.ggml.scores is not a numeric array"))?,
        };
        let types: Vec<TokenType> = match file.get("tokenizer.ggml.token_type") {
            None => vec![TokenType::Normal; n],
            Some(_) => file
                .get_i64_array("tokenizer.ggml.token_type")
                .ok_or_else(|| bad("tokenizer.ggml.token_type is not an integer array"))?
                .into_iter()
                .map(TokenType::from_gguf)
                .collect(),
        };
        if scores.len() < n || types.len() < n {
            return Err(bad(format!("{n} tokens but {} scores and {} token types", scores.len(), types.len())));
        }
        let mut texts = Vec::with_capacity(n);
        let mut to_id = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            // llama.cpp renames empty tokens so that every text maps to one id.
            let text = if t.is_empty() { format!("[EMPTY_{i}]") } else { (*t).to_string() };
            if to_id.insert(text.clone(), i as u32).is_some() {
                return Err(bad(format!("duplicate token text {text:?} (id {i})")));
            }
            texts.push(text);
        }
        let mut v = Vocab {
            texts,
            scores: scores[..n].to_vec(),
            types: types[..n].to_vec(),
            to_id,
            specials: Vec::new(),
            bos_id: None,
            eos_id: None,
            unk_id: None,
            eog_ids: Vec::new(),
        };

        let id = |key: &str, default: Option<u32>| -> Option<u32> {
            match file.get_u64(key) {
                Some(x) if (x as usize) < n => Some(x as u32),
                // Out of range ids are ignored (llama.cpp keeps the default and warns).
                _ => default.filter(|&d| (d as usize) < n),
            }
        };
        v.bos_id = id("tokenizer.ggml.bos_token_id", defaults[0]);
        v.eos_id = id("tokenizer.ggml.eos_token_id", defaults[1]);
        v.unk_id = id("tokenizer.ggml.unknown_token_id", defaults[2]);
        let eot = id("tokenizer.ggml.eot_token_id", None);
        let eom = id("tokenizer.ggml.eom_token_id", None);

        // End of generation: eos, eot, eom and the tokens llama.cpp recognises by their text,
        // which it also marks as control so they are matched in the text.
        let mut eog: Vec<u32> = Vec::new();
        for &t in EOG_TEXTS {
            if let Some(&i) = v.to_id.get(t) {
                eog.push(i);
                if !v.types[i as usize].is_special() {
                    v.types[i as usize] = TokenType::Control;
                }
            }
        }
        // FIM pad/repo/file-separator tokens also end generation in llama.cpp (from metadata, else
        // found by their text); SmolLM2's "<reponame>" is one.
        for (key, names) in FIM_EOG {
            let found = id(key, None).or_else(|| names.iter().find_map(|t| v.to_id.get(*t).copied()));
            if let Some(i) = found {
                eog.push(i);
                if !v.types[i as usize].is_special() {
                    v.types[i as usize] = TokenType::Control;
                }
            }
        }
        eog.extend([v.eos_id, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();
        v.eog_ids = eog;

        let mut specials: Vec<u32> = (0..n as u32).filter(|&i| v.types[i as usize].is_special()).collect();
        // Longest first, so "<|im_start|>" wins over a shorter token inside it; the stable sort
        // makes equal-length ties deterministic (llama.cpp's std::sort leaves them unspecified).
        specials.sort_by_key(|&i| std::cmp::Reverse(v.texts[i as usize].len()));
        v.specials = specials;
        Ok(v)
    }

    pub fn get(&self, text: &str) -> Option<u32> {
        self.to_id.get(text).copied()
    }
}
