//! The GGUF `llama` (SentencePiece-style) vocabulary from tokenizer.model, or from a
//! SentencePiece-style tokenizer.json (BPE with byte fallback), plus tokenizer_config.json's
//! flags. Written with llama.cpp's keys (tokenizer.ggml.*).

use std::collections::HashMap;

use serde_json::Value;

use super::hf_config::HfConfig;
use super::source::Files;
use super::spm::{self, BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, USER_DEFINED};
use crate::gguf::{GgufWriter, MetaType, MetaValue};
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Vocab {
    pub tokens: Vec<String>,
    pub scores: Vec<f32>,
    pub types: Vec<i32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub chat_template: Option<String>,
    /// "tokenizer.model" or "tokenizer.json".
    pub source: &'static str,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Convert(msg.into())
}

fn read_json(files: &dyn Files, name: &str) -> Result<Option<Value>> {
    match files.open(name)? {
        None => Ok(None),
        Some(src) => serde_json::from_slice(&src.read_all()?).map(Some).map_err(|e| bad(format!("{name}: {e}"))),
    }
}

fn id_of(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

impl Vocab {
    pub fn load(files: &dyn Files, cfg: &HfConfig) -> Result<Self> {
        let mut v = if let Some(src) = files.open("tokenizer.model")? {
            from_spm(&spm::parse(&src.read_all()?)?)
        } else if let Some(json) = read_json(files, "tokenizer.json")? {
            from_tokenizer_json(&json)?
        } else {
            return Err(bad("no tokenizer: expected tokenizer.model (SentencePiece) or tokenizer.json"));
        };
        if let Some(Value::Object(added)) = read_json(files, "added_tokens.json")? {
            for (text, id) in added {
                let id = id_of(&id).ok_or_else(|| bad("added_tokens.json: ids must be integers"))? as usize;
                if id >= cfg.n_vocab {
                    return Err(bad(format!("added_tokens.json: id {id} is outside the vocabulary ({})", cfg.n_vocab)));
                }
                v.pad_to(id + 1);
                v.tokens[id] = text;
                v.scores[id] = -1000.0;
                v.types[id] = USER_DEFINED;
            }
        }
        if v.tokens.len() > cfg.n_vocab {
            return Err(bad(format!("the tokenizer has {} tokens but config.json's vocab_size is {}", v.tokens.len(), cfg.n_vocab)));
        }
        // Embedding rows without a token (vocab_size rounded up) get placeholders, as llama.cpp does.
        v.pad_to(cfg.n_vocab);
        let n = v.tokens.len() as u32;
        if let Some(id) = cfg.bos_token_id.filter(|&i| i < n) {
            v.bos = Some(id);
        }
        if let Some(id) = cfg.eos_token_id.filter(|&i| i < n) {
            v.eos = Some(id);
        }
        if let Some(tc) = read_json(files, "tokenizer_config.json")? {
            if let Some(b) = tc.get("add_bos_token").and_then(|b| b.as_bool()) {
                v.add_bos = b;
            }
            if let Some(b) = tc.get("add_eos_token").and_then(|b| b.as_bool()) {
                v.add_eos = b;
            }
            if let Some(t) = tc.get("chat_template").and_then(|t| t.as_str()) {
                v.chat_template = Some(t.to_string());
            }
        }
        Ok(v)
    }

    fn pad_to(&mut self, n: usize) {
        let mut i = 1;
        while self.tokens.len() < n {
            self.tokens.push(format!("[PAD{i}]"));
            self.scores.push(-1000.0);
            self.types.push(UNUSED);
            i += 1;
        }
    }

    pub fn write_metadata(&self, w: &mut GgufWriter) {
        w.add_meta("tokenizer.ggml.model", MetaValue::String("llama".into()));
        let arr = |elem, values| MetaValue::Array { elem, values };
        w.add_meta("tokenizer.ggml.tokens", arr(MetaType::String, self.tokens.iter().map(|t| MetaValue::String(t.clone())).collect()));
        w.add_meta("tokenizer.ggml.scores", arr(MetaType::F32, self.scores.iter().map(|&s| MetaValue::F32(s)).collect()));
        w.add_meta("tokenizer.ggml.token_type", arr(MetaType::I32, self.types.iter().map(|&t| MetaValue::I32(t)).collect()));
        for (key, id) in [("bos", self.bos), ("eos", self.eos), ("unknown", self.unk), ("padding", self.pad)] {
            if let Some(id) = id {
                w.add_meta(&format!("tokenizer.ggml.{key}_token_id"), MetaValue::U32(id));
            }
        }
        w.add_meta("tokenizer.ggml.add_bos_token", MetaValue::Bool(self.add_bos));
        w.add_meta("tokenizer.ggml.add_eos_token", MetaValue::Bool(self.add_eos));
        w.add_meta("tokenizer.ggml.add_space_prefix", MetaValue::Bool(self.add_space_prefix));
        w.add_meta("tokenizer.ggml.remove_extra_whitespaces", MetaValue::Bool(self.remove_extra_whitespaces));
        if let Some(t) = &self.chat_template {
            w.add_meta("tokenizer.chat_template", MetaValue::String(t.clone()));
        }
    }
}

fn from_spm(m: &spm::SpmModel) -> Vocab {
    let n = m.pieces.len() as i64;
    let id = |i: i32| (i >= 0 && (i as i64) < n).then_some(i as u32);
    Vocab {
        tokens: m.pieces.iter().map(|p| p.0.clone()).collect(),
        scores: m.pieces.iter().map(|p| p.1).collect(),
        types: m.pieces.iter().map(|p| p.2).collect(),
        bos: id(m.bos_id),
        eos: id(m.eos_id),
        unk: id(m.unk_id),
        pad: id(m.pad_id),
        add_bos: true,
        add_eos: false,
        add_space_prefix: m.add_dummy_prefix,
        remove_extra_whitespaces: m.remove_extra_whitespaces,
        chat_template: None,
        source: "tokenizer.model",
    }
}

/// A Llama-style fast tokenizer: BPE over "▁"-escaped text with byte fallback. SentencePiece
/// scores are recovered from the merge ranks: the token made by merge r scores -r, so picking
/// the highest-scoring pair (llama.cpp's SPM algorithm) replays the merges in order.
fn from_tokenizer_json(json: &Value) -> Result<Vocab> {
    let model = json.get("model").ok_or_else(|| bad("tokenizer.json has no model"))?;
    let ty = model.get("type").and_then(|t| t.as_str()).unwrap_or("");
    let byte_fallback = model.get("byte_fallback").and_then(|b| b.as_bool()).unwrap_or(false);
    if ty != "BPE" || !byte_fallback {
        return Err(bad(format!(
            "tokenizer.json: model type {ty:?} (byte_fallback {byte_fallback}) is not a SentencePiece-style BPE; \
             only llama vocabularies are supported"
        )));
    }
    let vocab = model.get("vocab").and_then(|v| v.as_object()).ok_or_else(|| bad("tokenizer.json: model.vocab missing"))?;
    let mut by_id: HashMap<u32, String> = HashMap::new();
    for (tok, id) in vocab {
        by_id.insert(id_of(id).ok_or_else(|| bad("tokenizer.json: vocab ids must be integers"))?, tok.clone());
    }
    let mut special: HashMap<u32, bool> = HashMap::new();
    for t in json.get("added_tokens").and_then(|a| a.as_array()).map(|a| a.as_slice()).unwrap_or(&[]) {
        let (Some(id), Some(content)) = (t.get("id").and_then(id_of), t.get("content").and_then(|c| c.as_str())) else {
            return Err(bad("tokenizer.json: malformed added_tokens entry"));
        };
        by_id.insert(id, content.to_string());
        special.insert(id, t.get("special").and_then(|s| s.as_bool()).unwrap_or(false));
    }
    let n = by_id.keys().max().map_or(0, |&m| m as usize + 1);
    if n != by_id.len() {
        return Err(bad("tokenizer.json: token ids are not contiguous"));
    }
    let tokens: Vec<String> = (0..n as u32).map(|i| by_id.remove(&i).unwrap()).collect();
    let index: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();

    let mut scores = vec![0f32; n];
    let mut merged = vec![false; n];
    for (rank, m) in model.get("merges").and_then(|m| m.as_array()).map(|a| a.as_slice()).unwrap_or(&[]).iter().enumerate() {
        // Merges are "a b" strings (older files) or ["a", "b"] pairs.
        let joined = match m {
            Value::String(s) => s.split_once(' ').map(|(a, b)| format!("{a}{b}")),
            Value::Array(p) if p.len() == 2 => Some(format!("{}{}", p[0].as_str().unwrap_or(""), p[1].as_str().unwrap_or(""))),
            _ => None,
        }
        .ok_or_else(|| bad("tokenizer.json: malformed merge"))?;
        if let Some(&i) = index.get(joined.as_str()) {
            if !merged[i] {
                merged[i] = true;
                scores[i] = -(rank as f32);
            }
        }
    }
    let unk_text = model.get("unk_token").and_then(|u| u.as_str());
    let types = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| match special.get(&(i as u32)) {
            _ if Some(t.as_str()) == unk_text => UNKNOWN,
            Some(true) => CONTROL,
            Some(false) => USER_DEFINED,
            None if t.len() == 6 && t.starts_with("<0x") && t.ends_with('>') => BYTE,
            None => NORMAL,
        })
        .collect();
    let find = |s: &str| index.get(s).map(|&i| i as u32);
    Ok(Vocab {
        bos: find("<s>"),
        eos: find("</s>"),
        unk: unk_text.and_then(find),
        pad: None,
        add_bos: true,
        add_eos: false,
        add_space_prefix: prepends_space(json),
        remove_extra_whitespaces: false,
        chat_template: None,
        source: "tokenizer.json",
        tokens,
        scores,
        types,
    })
}

/// Llama fast tokenizers add the leading "▁" with a Prepend normalizer (older files) or a
/// Metaspace pre-tokenizer whose prepend_scheme is not "never".
fn prepends_space(json: &Value) -> bool {
    let text = |v: &Value| v.to_string();
    let norm = json.get("normalizer").map(text).unwrap_or_default();
    if norm.contains("\"Prepend\"") {
        return true;
    }
    let pre = json.get("pre_tokenizer").map(text).unwrap_or_default();
    pre.contains("\"Metaspace\"") && !pre.contains("\"never\"") && !pre.contains("\"add_prefix_space\":false")
}
