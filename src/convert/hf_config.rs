//! The parts of a Hugging Face config.json that decide the GGUF: `model_type` "llama" or
//! "mobilellm", shapes, RoPE and norm constants, embedding tying and MobileLLM's layer sharing.

use serde_json::Value;

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HfConfig {
    pub model_type: String,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub n_vocab: usize,
    pub context_length: usize,
    pub norm_eps: f32,
    pub rope_base: f32,
    /// The config asks for the output projection to be the input embedding: llama's
    /// `tie_word_embeddings`, or MobileLLM's `share_embedding` (whose checkpoints set
    /// tie_word_embeddings=false yet have no lm_head).
    pub tied: bool,
    /// 2 for MobileLLM-LS (`layer_sharing`): each block runs twice in a row.
    pub block_repeat: usize,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Convert(format!("config.json: {}", msg.into()))
}

fn get_usize(v: &Value, key: &str) -> Result<Option<usize>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x.as_u64().filter(|&n| n > 0).map(|n| Some(n as usize)).ok_or_else(|| bad(format!("{key} must be a positive integer"))),
    }
}

fn req_usize(v: &Value, key: &str) -> Result<usize> {
    get_usize(v, key)?.ok_or_else(|| bad(format!("{key} is missing")))
}

fn get_f32(v: &Value, key: &str, default: f32) -> Result<f32> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x.as_f64().map(|f| f as f32).ok_or_else(|| bad(format!("{key} must be a number"))),
    }
}

fn get_bool(v: &Value, key: &str) -> bool {
    v.get(key).and_then(|b| b.as_bool()).unwrap_or(false)
}

/// Token ids may be an int or a list of ints (the first is taken).
fn get_token(v: &Value, key: &str) -> Option<u32> {
    match v.get(key)? {
        Value::Array(a) => a.first()?.as_u64().map(|n| n as u32),
        x => x.as_u64().map(|n| n as u32),
    }
}

impl HfConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let model_type = v.get("model_type").and_then(|m| m.as_str()).unwrap_or("").to_string();
        if model_type != "llama" && model_type != "mobilellm" {
            return Err(bad(format!("model_type {model_type:?} is not supported (llama, mobilellm)")));
        }
        if let Some(act) = v.get("hidden_act").and_then(|a| a.as_str()) {
            if act != "silu" {
                return Err(bad(format!("hidden_act {act:?} is not supported (silu)")));
            }
        }
        for key in ["attention_bias", "mlp_bias"] {
            if get_bool(&v, key) {
                return Err(bad(format!("{key}: biases are not supported")));
            }
        }
        // Linear/dynamic/llama3 RoPE scaling changes the frequencies: refuse rather than mis-convert.
        match v.get("rope_scaling") {
            None | Some(Value::Null) => {}
            Some(s) => {
                let ty = s.get("rope_type").or_else(|| s.get("type")).and_then(|t| t.as_str()).unwrap_or("?");
                if ty != "default" {
                    return Err(bad(format!("rope_scaling type {ty:?} is not supported")));
                }
            }
        }
        let dim = req_usize(&v, "hidden_size")?;
        let n_heads = req_usize(&v, "num_attention_heads")?;
        let n_kv_heads = get_usize(&v, "num_key_value_heads")?.unwrap_or(n_heads);
        let head_dim = get_usize(&v, "head_dim")?.unwrap_or(dim / n_heads);
        if n_heads % n_kv_heads != 0 {
            return Err(bad(format!("num_attention_heads {n_heads} is not a multiple of num_key_value_heads {n_kv_heads}")));
        }
        if head_dim % 2 != 0 {
            return Err(bad(format!("head_dim {head_dim} must be even for RoPE")));
        }
        let mobilellm = model_type == "mobilellm";
        let tied = get_bool(&v, "tie_word_embeddings") || (mobilellm && v.get("share_embedding").and_then(|b| b.as_bool()).unwrap_or(true));
        Ok(HfConfig {
            dim,
            n_layers: req_usize(&v, "num_hidden_layers")?,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: req_usize(&v, "intermediate_size")?,
            n_vocab: req_usize(&v, "vocab_size")?,
            context_length: get_usize(&v, "max_position_embeddings")?.unwrap_or(2048),
            norm_eps: get_f32(&v, "rms_norm_eps", 1e-5)?,
            rope_base: get_f32(&v, "rope_theta", 10000.0)?,
            tied,
            block_repeat: if mobilellm && get_bool(&v, "layer_sharing") { 2 } else { 1 },
            bos_token_id: get_token(&v, "bos_token_id"),
            eos_token_id: get_token(&v, "eos_token_id"),
            model_type,
        })
    }
}
