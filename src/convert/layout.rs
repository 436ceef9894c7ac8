//! From Hugging Face tensor names and layout to llama.cpp's: names (`model.layers.N.self_attn.
//! q_proj.weight` -> `blk.N.attn_q.weight`), the GGUF tensor plan, and the Q/K row permutation.

use super::hf_config::HfConfig;
use crate::{Error, Result};

/// What to do with one checkpoint tensor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlannedTensor {
    pub hf_name: String,
    pub gguf_name: String,
    /// PyTorch order: [rows, cols] for matrices, [n] for vectors.
    pub shape: Vec<u64>,
    /// Heads to un-rotate-half (Q: n_heads, K: n_kv_heads).
    pub permute_heads: Option<usize>,
}

/// llama.cpp's name for a checkpoint tensor, Ok(None) for tensors the GGUF does not carry.
pub(crate) fn gguf_name(hf: &str) -> Result<Option<String>> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Ok(Some(n.to_string()));
    }
    // Precomputed RoPE tables some checkpoints keep as buffers: recomputed at run time.
    if hf.ends_with("rotary_emb.inv_freq") {
        return Ok(None);
    }
    let unknown = || Error::Convert(format!("unexpected tensor {hf} in the checkpoint (biases and other extras are not supported)"));
    let rest = hf.strip_prefix("model.layers.").ok_or_else(unknown)?;
    let (idx, part) = rest.split_once('.').ok_or_else(unknown)?;
    let idx: usize = idx.parse().map_err(|_| unknown())?;
    let short = match part {
        "input_layernorm.weight" => "attn_norm",
        "self_attn.q_proj.weight" => "attn_q",
        "self_attn.k_proj.weight" => "attn_k",
        "self_attn.v_proj.weight" => "attn_v",
        "self_attn.o_proj.weight" => "attn_output",
        "post_attention_layernorm.weight" => "ffn_norm",
        "mlp.gate_proj.weight" => "ffn_gate",
        "mlp.up_proj.weight" => "ffn_up",
        "mlp.down_proj.weight" => "ffn_down",
        _ => return Err(unknown()),
    };
    Ok(Some(format!("blk.{idx}.{short}.weight")))
}

/// The GGUF's tensors in llama.cpp's order (embedding, blocks, norm, output), every shape checked
/// against the config. `hf_shape(name)` gives a checkpoint tensor's shape, None if absent.
/// Returns the plan and whether the output projection is tied to the embedding.
pub(crate) fn plan(cfg: &HfConfig, hf_shape: &dyn Fn(&str) -> Option<Vec<u64>>, names: &[String]) -> Result<(Vec<PlannedTensor>, bool)> {
    // Every tensor must be understood and belong to a block the config declares.
    for n in names {
        if let Some(g) = gguf_name(n)? {
            if let Some(idx) = g.strip_prefix("blk.").and_then(|r| r.split('.').next()).and_then(|i| i.parse::<usize>().ok()) {
                if idx >= cfg.n_layers {
                    return Err(Error::Convert(format!("{n}: block {idx} but config.json has num_hidden_layers {}", cfg.n_layers)));
                }
            }
        }
    }
    let (d, q, kv, f, v) =
        (cfg.dim as u64, (cfg.n_heads * cfg.head_dim) as u64, (cfg.n_kv_heads * cfg.head_dim) as u64, cfg.ffn_dim as u64, cfg.n_vocab as u64);
    let has_lm_head = hf_shape("lm_head.weight").is_some();
    // MobileLLM has no lm_head at all (share_embedding); a llama with tie_word_embeddings may
    // still store a copy, which we drop since the model reads the embedding.
    let tied = cfg.tied || !has_lm_head;
    let mut wanted: Vec<(String, Vec<u64>, Option<usize>)> = vec![("model.embed_tokens.weight".into(), vec![v, d], None)];
    for i in 0..cfg.n_layers {
        let p = format!("model.layers.{i}.");
        wanted.push((format!("{p}input_layernorm.weight"), vec![d], None));
        wanted.push((format!("{p}self_attn.q_proj.weight"), vec![q, d], Some(cfg.n_heads)));
        wanted.push((format!("{p}self_attn.k_proj.weight"), vec![kv, d], Some(cfg.n_kv_heads)));
        wanted.push((format!("{p}self_attn.v_proj.weight"), vec![kv, d], None));
        wanted.push((format!("{p}self_attn.o_proj.weight"), vec![d, q], None));
        wanted.push((format!("{p}post_attention_layernorm.weight"), vec![d], None));
        wanted.push((format!("{p}mlp.gate_proj.weight"), vec![f, d], None));
        wanted.push((format!("{p}mlp.up_proj.weight"), vec![f, d], None));
        wanted.push((format!("{p}mlp.down_proj.weight"), vec![d, f], None));
    }
    wanted.push(("model.norm.weight".into(), vec![d], None));
    if !tied {
        wanted.push(("lm_head.weight".into(), vec![v, d], None));
    }
    let mut out = Vec::with_capacity(wanted.len());
    for (hf_name, shape, permute_heads) in wanted {
        let got = hf_shape(&hf_name).ok_or_else(|| Error::Convert(format!("tensor {hf_name} is missing from the checkpoint")))?;
        if got != shape {
            return Err(Error::Convert(format!("{hf_name} has shape {got:?}, config.json implies {shape:?}")));
        }
        let gguf_name = gguf_name(&hf_name)?.expect("planned tensors all have GGUF names");
        out.push(PlannedTensor { hf_name, gguf_name, shape, permute_heads });
    }
    Ok((out, tied))
}

/// Hugging Face applies RoPE with rotate-half (pairs (i, i + head_dim/2) within a head);
/// llama.cpp's `llama` rotates adjacent pairs (2i, 2i + 1). Reordering the rows of Wq and Wk
/// so that row h*hd + 2i + j comes from row h*hd + j*hd/2 + i gives the same attention scores -
/// the same permutation as llama.cpp's converter (reshape(n_head, 2, hd/2, dim).swapaxes(1, 2)).
pub(crate) fn permute_rows(w: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
    let rows = w.len() / cols;
    let hd = rows / n_heads;
    let half = hd / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let dst = h * hd + 2 * i + j;
                let src = h * hd + j * half + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_interleaves_halves() {
        // 2 heads of head_dim 4, one column: rows [a0 a1 b0 b1] per head become [a0 b0 a1 b1].
        let w: Vec<f32> = (0..8).map(|x| x as f32).collect();
        assert_eq!(permute_rows(&w, 2, 1), vec![0., 2., 1., 3., 4., 6., 5., 7.]);
    }

    #[test]
    fn names_map_to_llama_cpp() {
        assert_eq!(gguf_name("model.layers.12.mlp.down_proj.weight").unwrap().unwrap(), "blk.12.ffn_down.weight");
        assert_eq!(gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq").unwrap(), None);
        assert!(gguf_name("model.layers.0.self_attn.q_proj.bias").is_err());
    }
}
