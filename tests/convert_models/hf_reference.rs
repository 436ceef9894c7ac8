//! The independent reference of the converter tests: a Hugging Face forward pass over the
//! checkpoint's ORIGINAL tensors (ref/ written by tests/fixtures/make_checkpoint.py), with Hugging
//! Face semantics (rotate-half RoPE, no row permutation, MobileLLM-LS blocks run twice).

use std::collections::HashMap;
use std::path::Path;

/// The checkpoint's tensors as stored (ref/ written by the fixture), Hugging Face layout.
pub struct Original {
    pub t: HashMap<String, Vec<f32>>,
    pub cfg: serde_json::Value,
}

impl Original {
    pub fn load(dir: &Path) -> Self {
        let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("ref/index.json")).unwrap()).unwrap();
        let raw = std::fs::read(dir.join("ref/data.f32")).unwrap();
        let all: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        let mut t = HashMap::new();
        for (name, e) in index.as_object().unwrap() {
            let n: usize = e["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).product();
            let off = e["offset"].as_u64().unwrap() as usize;
            t.insert(name.clone(), all[off..off + n].to_vec());
        }
        let cfg = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        Original { t, cfg }
    }

    pub fn get(&self, name: &str) -> &[f32] {
        self.t.get(name).unwrap_or_else(|| panic!("reference tensor {name}"))
    }

    fn n(&self, key: &str) -> usize {
        self.cfg[key].as_u64().unwrap() as usize
    }
}

fn matvec(w: &[f32], x: &[f64]) -> Vec<f64> {
    w.chunks(x.len()).map(|row| row.iter().zip(x).map(|(&a, b)| a as f64 * b).sum()).collect()
}

fn rmsnorm(x: &[f64], w: &[f32], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, &g)| v * r * g as f64).collect()
}

/// HF's apply_rotary_pos_emb: x * cos + rotate_half(x) * sin, pairs (i, i + hd/2).
fn rope_rotate_half(x: &mut [f64], hd: usize, pos: usize, base: f64) {
    for head in x.chunks_mut(hd) {
        for i in 0..hd / 2 {
            let theta = pos as f64 * base.powf(-2.0 * i as f64 / hd as f64);
            let (s, c) = theta.sin_cos();
            let (a, b) = (head[i], head[i + hd / 2]);
            head[i] = a * c - b * s;
            head[i + hd / 2] = b * c + a * s;
        }
    }
}

/// LlamaForCausalLM / MobileLLMForCausalLM forward over the original tensors. `repeat` = 2 runs
/// every block twice in a row (MobileLLM-LS), each run with its own KV cache.
pub fn hf_forward(o: &Original, tokens: &[u32], repeat: usize) -> Vec<Vec<f32>> {
    let (dim, nh, nkv, nl) = (o.n("hidden_size"), o.n("num_attention_heads"), o.n("num_key_value_heads"), o.n("num_hidden_layers"));
    let hd = dim / nh;
    let eps = o.cfg["rms_norm_eps"].as_f64().unwrap();
    let base = o.cfg["rope_theta"].as_f64().unwrap();
    let embed = o.get("model.embed_tokens.weight");
    let lm_head = o.t.get("lm_head.weight").map(|v| v.as_slice()).unwrap_or(embed);
    // Keys and values per block evaluation, one row per position.
    let mut caches: Vec<[Vec<Vec<f64>>; 2]> = vec![[vec![], vec![]]; nl * repeat];
    let mut out = Vec::new();
    for (pos, &tok) in tokens.iter().enumerate() {
        let mut x: Vec<f64> = embed[tok as usize * dim..][..dim].iter().map(|&v| v as f64).collect();
        for (e, cache) in caches.iter_mut().enumerate() {
            let p = format!("model.layers.{}.", e / repeat);
            let w = |n: &str| o.get(&format!("{p}{n}"));
            let h = rmsnorm(&x, w("input_layernorm.weight"), eps);
            let mut q = matvec(w("self_attn.q_proj.weight"), &h);
            let mut k = matvec(w("self_attn.k_proj.weight"), &h);
            let v = matvec(w("self_attn.v_proj.weight"), &h);
            rope_rotate_half(&mut q, hd, pos, base);
            rope_rotate_half(&mut k, hd, pos, base);
            cache[0].push(k);
            cache[1].push(v);
            let [ks, vs] = &*cache;
            let mut attn = vec![0f64; nh * hd];
            for head in 0..nh {
                let kvh = head / (nh / nkv);
                let qh = &q[head * hd..(head + 1) * hd];
                let scores: Vec<f64> =
                    ks.iter().map(|k| qh.iter().zip(&k[kvh * hd..(kvh + 1) * hd]).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()).collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let ex: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = ex.iter().sum();
                for (p, v) in ex.iter().zip(vs) {
                    for d in 0..hd {
                        attn[head * hd + d] += p / z * v[kvh * hd + d];
                    }
                }
            }
            let o_out = matvec(w("self_attn.o_proj.weight"), &attn);
            x.iter_mut().zip(&o_out).for_each(|(a, b)| *a += b);
            let h = rmsnorm(&x, w("post_attention_layernorm.weight"), eps);
            let g = matvec(w("mlp.gate_proj.weight"), &h);
            let u = matvec(w("mlp.up_proj.weight"), &h);
            let act: Vec<f64> = g.iter().zip(&u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            let d = matvec(w("mlp.down_proj.weight"), &act);
            x.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
        }
        let h = rmsnorm(&x, o.get("model.norm.weight"), eps);
        out.push(matvec(lm_head, &h).into_iter().map(|v| v as f32).collect());
    }
    out
}
