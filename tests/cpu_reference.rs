//! The CPU reference forward pass: incremental decoding equals one-shot processing, block_repeat
//! equals duplicated blocks, and one forward step of a 1-layer model matches a long-hand
//! computation written out here without the crate's ops.

mod common;

use common::Rng;
use mobilellm_web::cpu::{CpuModel, CpuSession};
use mobilellm_web::gguf::GgufFile;
use mobilellm_web::model::{duplicate_blocks, synth_gguf, Arch, LayerTensors, ModelConfig, ModelTensors, SynthSpec, TensorRef};
use mobilellm_web::quant::GgmlType;

/// A small GQA config: 4 query heads over 2 KV heads of width 8.
fn config(n_layers: usize, block_repeat: usize) -> ModelConfig {
    ModelConfig {
        arch: if block_repeat > 1 { Arch::MobileLlm } else { Arch::Llama },
        n_vocab: 50,
        dim: 32,
        n_layers,
        block_repeat,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 8,
        ffn_dim: 48,
        rope_base: 10000.0,
        norm_eps: 1e-5,
        context_length: 64,
        tied_embeddings: true,
    }
}

/// F32 weights as GGUF would store them; `tensors()` lends them out as a ModelTensors.
struct Weights {
    /// (name, rows, cols, little-endian f32 bytes), in the order of `names`.
    data: Vec<(String, usize, usize, Vec<u8>)>,
}

const BLOCK: [&str; 9] = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"];

impl Weights {
    /// Random weights; norms near 1 so activations stay O(1) through the blocks.
    fn random(cfg: &ModelConfig, tied: bool, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let (d, q, kv, f, v) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_dim, cfg.n_vocab);
        let mut data = Vec::new();
        let mut add = |name: String, rows: usize, cols: usize, rng: &mut Rng, norm: bool| {
            let vals: Vec<f32> =
                if norm { (0..cols).map(|_| 1.0 + 0.3 * rng.uniform()).collect() } else { rng.vec(rows * cols, 0.5 / (cols as f32).sqrt() * 1.7) };
            data.push((name, rows, cols, vals.iter().flat_map(|x| x.to_le_bytes()).collect()));
        };
        add("token_embd".into(), v, d, &mut rng, false);
        add("output_norm".into(), 1, d, &mut rng, true);
        if !tied {
            add("output".into(), v, d, &mut rng, false);
        }
        for l in 0..cfg.n_layers {
            let shapes = [(1, d), (q, d), (kv, d), (kv, d), (d, q), (1, d), (f, d), (f, d), (d, f)];
            for (name, (r, c)) in BLOCK.iter().zip(shapes) {
                add(format!("blk.{l}.{name}"), r, c, &mut rng, r == 1);
            }
        }
        Weights { data }
    }

    fn get(&self, name: &str) -> TensorRef<'_> {
        let (n, rows, cols, bytes) = self.data.iter().find(|t| t.0 == name).unwrap_or_else(|| panic!("no tensor {name}"));
        TensorRef { name: n, ty: GgmlType::F32, rows: *rows, cols: *cols, data: bytes }
    }

    fn floats(&self, name: &str) -> Vec<f32> {
        self.get(name).data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }

    /// ModelTensors whose block list is the given sequence of stored blocks.
    fn tensors_with(&self, blocks: &[usize]) -> ModelTensors<'_> {
        let layer = |l: usize| {
            let t = |n: &str| self.get(&format!("blk.{l}.{n}"));
            LayerTensors {
                attn_norm: t("attn_norm"),
                wq: t("attn_q"),
                wk: t("attn_k"),
                wv: t("attn_v"),
                wo: t("attn_output"),
                ffn_norm: t("ffn_norm"),
                w_gate: t("ffn_gate"),
                w_up: t("ffn_up"),
                w_down: t("ffn_down"),
            }
        };
        let has_output = self.data.iter().any(|t| t.0 == "output");
        ModelTensors {
            token_embd: self.get("token_embd"),
            output_norm: self.get("output_norm"),
            output: has_output.then(|| self.get("output")),
            layers: blocks.iter().map(|&l| layer(l)).collect(),
        }
    }

    fn tensors(&self, n_layers: usize) -> ModelTensors<'_> {
        self.tensors_with(&(0..n_layers).collect::<Vec<_>>())
    }
}

fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng(seed);
    (0..n).map(|_| rng.below(vocab as u64) as u32).collect()
}

#[test]
fn incremental_decoding_equals_one_shot() {
    for (layers, repeat) in [(2, 1), (2, 2)] {
        let cfg = config(layers, repeat);
        let w = Weights::random(&cfg, true, 11);
        let model = CpuModel::new(&cfg, &w.tensors(layers)).unwrap();
        let toks = tokens(9, cfg.n_vocab, 5);

        let one_shot = CpuSession::new(&model).forward(&toks).unwrap();
        assert_eq!(one_shot.len(), toks.len());
        assert!(one_shot.iter().all(|l| l.len() == cfg.n_vocab && l.iter().all(|v| v.is_finite())));

        let mut s = CpuSession::new(&model);
        let stepwise: Vec<Vec<f32>> = toks.iter().flat_map(|&t| s.forward(&[t]).unwrap()).collect();
        assert_eq!(s.pos, toks.len());
        assert_eq!(stepwise, one_shot, "token by token vs one shot ({layers} layers x {repeat})");

        let mut s = CpuSession::new(&model);
        let mut chunked = s.forward(&toks[..4]).unwrap();
        chunked.extend(s.forward(&[]).unwrap());
        chunked.extend(s.forward(&toks[4..7]).unwrap());
        chunked.extend(s.forward(&toks[7..]).unwrap());
        assert_eq!(chunked, one_shot, "chunks 4+3+2");

        // The cache matters: the same last token without its prefix gives other logits.
        let alone = CpuSession::new(&model).forward(&toks[8..]).unwrap();
        assert_ne!(alone[0], one_shot[8]);

        // Truncating and re-running a different suffix equals running that sequence from scratch.
        let mut s = CpuSession::new(&model);
        s.forward(&toks).unwrap();
        s.truncate(5);
        let other = [3u32, 1, 4];
        let resumed = s.forward(&other).unwrap();
        let fresh = CpuSession::new(&model).forward(&[&toks[..5], &other[..]].concat()).unwrap();
        assert_eq!(resumed, fresh[5..].to_vec());
    }
}

#[test]
fn block_repeat_equals_duplicated_blocks() {
    let shared = config(3, 2);
    let w = Weights::random(&shared, true, 23);
    let ls = CpuModel::new(&shared, &w.tensors(3)).unwrap();
    let mut plain = config(6, 1);
    plain.arch = Arch::Llama;
    let dup = CpuModel::new(&plain, &w.tensors_with(&[0, 0, 1, 1, 2, 2])).unwrap();
    let toks = tokens(7, shared.n_vocab, 9);
    let a = CpuSession::new(&ls).forward(&toks).unwrap();
    let b = CpuSession::new(&dup).forward(&toks).unwrap();
    assert_eq!(a, b);
    // And the repeat is real: running each block once gives different logits.
    let mut once = config(3, 1);
    once.arch = Arch::Llama;
    let c = CpuSession::new(&CpuModel::new(&once, &w.tensors(3)).unwrap()).forward(&toks).unwrap();
    assert_ne!(a, c);
    // Interleaved order (0,1,2,0,1,2) is a different model too: repeats are consecutive.
    let inter = CpuModel::new(&plain, &w.tensors_with(&[0, 1, 2, 0, 1, 2])).unwrap();
    assert_ne!(a, CpuSession::new(&inter).forward(&toks).unwrap());
}

#[test]
fn untied_output_uses_its_own_matrix() {
    let mut cfg = config(1, 1);
    cfg.tied_embeddings = false;
    let w = Weights::random(&cfg, false, 31);
    let toks = tokens(4, cfg.n_vocab, 2);
    let got = CpuSession::new(&CpuModel::new(&cfg, &w.tensors(1)).unwrap()).forward(&toks).unwrap();
    assert_close(&got[3], &naive_last_logits(&cfg, &w, &toks), "untied");
    // The same weights read as tied (logits from token_embd) are a different model.
    let mut as_tied = cfg.clone();
    as_tied.tied_embeddings = true;
    let tied_naive = naive_last_logits(&as_tied, &w, &toks);
    assert!(got[3].iter().zip(&tied_naive).any(|(a, b)| (a - b).abs() > 0.1));
}

#[test]
fn parallel_matmul_is_bit_identical() {
    let mut rng = Rng(99);
    for (t, rows, cols) in [(1, 7, 5), (3, 1000, 300), (5, 513, 129), (0, 10, 4), (2, 1, 1 << 18)] {
        let x = rng.vec(t * cols, 1.0);
        let w = rng.vec(rows * cols, 1.0);
        let want = mobilellm_web::cpu::ops::matmul(&x, &w, rows, cols);
        for threads in [1, 2, 3] {
            assert_eq!(mobilellm_web::cpu::ops::matmul_par(&x, &w, rows, cols, threads), want, "{t}x{rows}x{cols} on {threads}");
        }
    }
}

#[test]
fn rejects_bad_tokens_and_shapes() {
    let cfg = config(1, 1);
    let w = Weights::random(&cfg, true, 1);
    let model = CpuModel::new(&cfg, &w.tensors(1)).unwrap();
    let err = CpuSession::new(&model).forward(&[1, 50]).unwrap_err();
    assert_eq!(err.code(), "InvalidArgument", "{err}");
    let mut wrong = cfg.clone();
    wrong.ffn_dim = 40;
    assert_eq!(CpuModel::new(&wrong, &w.tensors(1)).err().map(|e| e.code()), Some("UnsupportedModel"));
    let mut wrong = cfg.clone();
    wrong.n_layers = 2;
    assert_eq!(CpuModel::new(&wrong, &w.tensors(1)).err().map(|e| e.code()), Some("UnsupportedModel"));
}

#[test]
fn one_layer_step_matches_long_hand() {
    let cfg = config(1, 1);
    let w = Weights::random(&cfg, true, 77);
    let model = CpuModel::new(&cfg, &w.tensors(1)).unwrap();
    let toks = tokens(5, cfg.n_vocab, 3);
    let mut s = CpuSession::new(&model);
    s.forward(&toks[..4]).unwrap();
    let got = s.forward(&toks[4..]).unwrap();
    assert_close(&got[0], &naive_last_logits(&cfg, &w, &toks), "1-layer step at position 4");
    // Position 0 too (attention over a single key is just its value).
    let got = CpuSession::new(&model).forward(&toks[..1]).unwrap();
    assert_close(&got[0], &naive_last_logits(&cfg, &w, &toks[..1]), "position 0");
}

#[test]
fn synthetic_quantised_models() {
    // The tiny SmolLM2-shaped model (Q4_1 blocks, Q8_0 tied embedding) through the real GGUF path.
    let bytes = synth_gguf(&SynthSpec::tiny(Arch::Llama)).unwrap();
    let model = CpuModel::from_gguf_bytes(&bytes).unwrap();
    let toks = tokens(12, model.cfg.n_vocab, 4);
    let one_shot = CpuSession::new(&model).forward(&toks).unwrap();
    let mut s = CpuSession::new(&model);
    let stepwise: Vec<Vec<f32>> = toks.iter().flat_map(|&t| s.forward(&[t]).unwrap()).collect();
    assert_eq!(stepwise, one_shot);
    // Logits spread: not all equal, not exploding.
    let last = &one_shot[11];
    let (lo, hi) = last.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(hi - lo > 0.5 && hi.abs() < 100.0 && lo.abs() < 100.0, "logit range {lo}..{hi}");
}

#[test]
fn synthetic_block_repeat_equals_duplicate_blocks() {
    let ls = synth_gguf(&SynthSpec::tiny(Arch::MobileLlm)).unwrap();
    let dup = duplicate_blocks(&ls).unwrap();
    let a = CpuModel::from_gguf_bytes(&ls).unwrap();
    let b = CpuModel::from_gguf_bytes(&dup).unwrap();
    assert_eq!((a.cfg.n_block_evals(), b.cfg.n_layers, b.cfg.block_repeat), (4, 4, 1));
    let toks = tokens(10, a.cfg.n_vocab, 8);
    let la = CpuSession::new(&a).forward(&toks).unwrap();
    let lb = CpuSession::new(&b).forward(&toks).unwrap();
    assert_eq!(la, lb);
    // Incremental decoding with repeated blocks (one cache per evaluation) agrees as well.
    let mut s = CpuSession::new(&a);
    let mut inc = s.forward(&toks[..3]).unwrap();
    for &t in &toks[3..] {
        inc.extend(s.forward(&[t]).unwrap());
    }
    assert_eq!(inc, la);
}

#[test]
fn synthetic_one_layer_matches_long_hand() {
    let spec = SynthSpec { n_layers: 1, tied: false, seed: 5, ..SynthSpec::tiny(Arch::Llama) };
    let bytes = synth_gguf(&spec).unwrap();
    let file = GgufFile::parse(&bytes).unwrap();
    let cfg = ModelConfig::from_gguf(&file).unwrap();
    let model = CpuModel::from_gguf_bytes(&bytes).unwrap();
    let weight = |name: &str| {
        let name = format!("{name}.weight");
        let t = file.tensor(&name).unwrap_or_else(|| panic!("no {name}"));
        let rows = t.dims.get(1).copied().unwrap_or(1) as usize;
        TensorRef { name: &name, ty: t.ty, rows, cols: t.dims[0] as usize, data: file.tensor_data(&bytes, t) }.to_f32().unwrap()
    };
    let toks = tokens(6, cfg.n_vocab, 12);
    let got = CpuSession::new(&model).forward(&toks).unwrap();
    assert_close(&got[5], &naive_last_logits_with(&cfg, &weight, &toks), "synthetic 1-layer, position 5");
}

/// The real SmolLM2-135M-Instruct (scripts/fetch_model.sh; MOBILELLM_MODEL overrides the path;
/// skipped when absent), teacher-forced over llama.cpp's greedy continuations of `story`, `fact`
/// and `chat_capital`, against two llama.cpp references:
/// - tests/data/smollm2_f32_top5.json: llama.cpp on the same weights dequantised to F32 (see
///   smollm2_f32_top5.md). Both sides then compute in f32 (llama.cpp keeps K/V in f16), so the top-5
///   logits must agree to 0.01 on average and 0.05 at worst, and the arg-max wherever its top two
///   logits are >= 0.05 apart;
/// - tests/data/smollm2_greedy.json: llama.cpp on the Q4_1 file, which quantises activations to
///   8 bits (logits scatter by ~0.15, up to ~1.2, logits being 15-35): arg-max agreement wherever its
///   top two are >= 0.5 apart and at >= 90% of positions, top-5 logits within 0.35 on average.
#[test]
fn real_smollm2_matches_llama_cpp() {
    let path = std::env::var("MOBILELLM_MODEL")
        .unwrap_or_else(|_| format!("{}/.cache/mobilellm-web/SmolLM2-135M-Instruct.Q4_1.gguf", std::env::var("HOME").unwrap_or_default()));
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!("SKIPPED: no model at {path} (run scripts/fetch_model.sh)");
        return;
    };
    let t0 = std::time::Instant::now();
    let model = CpuModel::from_gguf_bytes(&bytes).unwrap();
    eprintln!("load + dequantise: {:.2} s", t0.elapsed().as_secs_f64());
    let load = |file: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let (f32_ref, q4_ref) = (load("smollm2_f32_top5.json"), load("smollm2_greedy.json"));
    let ids = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect::<Vec<u32>>();
    for case in f32_ref["prompts"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let q4_case = q4_ref["prompts"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap();
        let (prompt, cont) = (ids(&case["prompt_tokens"]), ids(&case["tokens"]));
        assert_eq!((&prompt, &cont), (&ids(&q4_case["prompt_tokens"]), &ids(&q4_case["tokens"])));
        let all = [&prompt[..], &cont[..cont.len() - 1]].concat();
        let t0 = std::time::Instant::now();
        let logits = CpuSession::new(&model).forward(&all).unwrap();
        let tps = all.len() as f64 / t0.elapsed().as_secs_f64();
        let rows = &logits[prompt.len() - 1..];
        // Decoding token by token after a prefill gives the same logits, bit for bit.
        let mut s = CpuSession::new(&model);
        s.forward(&prompt).unwrap();
        let t0 = std::time::Instant::now();
        for (i, &t) in cont[..4].iter().enumerate() {
            assert_eq!(s.forward(&[t]).unwrap()[0], logits[prompt.len() + i], "{name}: decode step {i}");
        }
        let decode_tps = 4.0 / t0.elapsed().as_secs_f64();
        let f32_stats = compare_top5(&format!("{name} vs F32 llama.cpp"), rows, &case["top"], 0.05);
        let q4_stats = compare_top5(&format!("{name} vs Q4_1 llama.cpp"), rows, &q4_case["top"], 0.5);
        eprintln!("{name}: {} tokens at {tps:.1} tokens/s (decode {decode_tps:.1} tokens/s); F32 ref: {f32_stats:?}; Q4_1 ref: {q4_stats:?}", all.len());
        assert!(f32_stats.mean_err < 0.01 && f32_stats.max_err < 0.05, "{name}: {f32_stats:?} against F32 llama.cpp");
        assert!(q4_stats.mean_err < 0.35 && q4_stats.max_err < 2.0, "{name}: {q4_stats:?} against Q4_1 llama.cpp");
        assert!(q4_stats.agree * 100 >= rows.len() * 90, "{name}: {q4_stats:?} against Q4_1 llama.cpp");
    }
}

#[derive(Debug)]
#[allow(dead_code)] // read through Debug
struct Top5Stats {
    agree: usize,
    mean_err: f64,
    max_err: f32,
}

/// Our logits `rows[i]` against a reference's five largest `top[i]` = [[id, logit] x 5]. Asserts
/// our arg-max equals the reference's wherever its top two logits are >= `decisive` apart.
fn compare_top5(what: &str, rows: &[Vec<f32>], top: &serde_json::Value, decisive: f32) -> Top5Stats {
    let (mut agree, mut sum, mut n, mut max_err) = (0, 0f64, 0, 0f32);
    let top = top.as_array().unwrap();
    assert_eq!(top.len(), rows.len(), "{what}: positions");
    for (i, (row, t)) in rows.iter().zip(top).enumerate() {
        let t: Vec<(u32, f32)> = t.as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap() as f32)).collect();
        for &(id, l) in &t {
            let e = (row[id as usize] - l).abs();
            (sum, n, max_err) = (sum + e as f64, n + 1, max_err.max(e));
        }
        let argmax = (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a))).unwrap() as u32;
        agree += (argmax == t[0].0) as usize;
        if argmax != t[0].0 && t[0].1 - t[1].1 >= decisive {
            let ours: Vec<f32> = t.iter().map(|&(id, _)| row[id as usize]).collect();
            panic!("{what}: position {i}: our arg-max {argmax}, reference top-5 {t:?}, ours for those {ours:?}");
        }
    }
    Top5Stats { agree, mean_err: sum / n as f64, max_err }
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    common::assert_close(what, got, want, 1e-4, 1e-4);
}

/// The logits after the last of `toks` for a ONE-layer model, written out long-hand: plain f64
/// loops, RoPE as a complex rotation of adjacent pairs, an explicit causal softmax. Shares no
/// code with the crate beyond reading the weights.
fn naive_last_logits(cfg: &ModelConfig, w: &Weights, toks: &[u32]) -> Vec<f32> {
    naive_last_logits_with(cfg, &|n| w.floats(n), toks)
}

/// [`naive_last_logits`] with weights looked up by GGUF tensor name.
fn naive_last_logits_with(cfg: &ModelConfig, weight: &dyn Fn(&str) -> Vec<f32>, toks: &[u32]) -> Vec<f32> {
    assert_eq!(cfg.n_layers, 1);
    assert_eq!(cfg.block_repeat, 1);
    let f = |n: &str| weight(n).into_iter().map(f64::from).collect::<Vec<f64>>();
    let (emb, onorm) = (f("token_embd"), f("output_norm"));
    let head = if cfg.tied_embeddings { emb.clone() } else { f("output") };
    let (an, wq, wk, wv, wo) = (f("blk.0.attn_norm"), f("blk.0.attn_q"), f("blk.0.attn_k"), f("blk.0.attn_v"), f("blk.0.attn_output"));
    let (fnorm, wg, wu, wd) = (f("blk.0.ffn_norm"), f("blk.0.ffn_gate"), f("blk.0.ffn_up"), f("blk.0.ffn_down"));
    let (d, hd, nh, nkv) = (cfg.dim, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads);
    let eps = cfg.norm_eps as f64;
    let norm = |x: &[f64], g: &[f64]| {
        let rms = (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + eps).sqrt();
        x.iter().zip(g).map(|(v, g)| v / rms * g).collect::<Vec<f64>>()
    };
    let mv = |m: &[f64], x: &[f64]| m.chunks(x.len()).map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum()).collect::<Vec<f64>>();
    let rotate = |v: &mut [f64], heads: usize, pos: usize| {
        for h in 0..heads {
            for i in 0..hd / 2 {
                let freq = 1.0 / (cfg.rope_base as f64).powf((2 * i) as f64 / hd as f64);
                let ang = pos as f64 * freq;
                let (re, im) = (v[h * hd + 2 * i], v[h * hd + 2 * i + 1]);
                // (re + i im) * e^{i ang}
                v[h * hd + 2 * i] = re * ang.cos() - im * ang.sin();
                v[h * hd + 2 * i + 1] = re * ang.sin() + im * ang.cos();
            }
        }
    };
    // Keys and values of every position (a one-layer model needs only the embeddings for them).
    let mut keys = Vec::new();
    let mut vals = Vec::new();
    let mut last_q = Vec::new();
    let mut last_x = Vec::new();
    for (pos, &t) in toks.iter().enumerate() {
        let x: Vec<f64> = emb[t as usize * d..(t as usize + 1) * d].to_vec();
        let n = norm(&x, &an);
        let mut q = mv(&wq, &n);
        let mut k = mv(&wk, &n);
        rotate(&mut q, nh, pos);
        rotate(&mut k, nkv, pos);
        keys.push(k);
        vals.push(mv(&wv, &n));
        last_q = q;
        last_x = x;
    }
    let mut att = vec![0.0; nh * hd];
    for h in 0..nh {
        let kvh = h * nkv / nh; // query heads are grouped in consecutive runs per KV head
        let q = &last_q[h * hd..(h + 1) * hd];
        let scores: Vec<f64> = keys.iter().map(|k| q.iter().zip(&k[kvh * hd..(kvh + 1) * hd]).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()).collect();
        let z: f64 = scores.iter().map(|s| s.exp()).sum();
        for (p, s) in scores.iter().enumerate() {
            for e in 0..hd {
                att[h * hd + e] += s.exp() / z * vals[p][kvh * hd + e];
            }
        }
    }
    let mut x = last_x;
    for (xi, o) in x.iter_mut().zip(mv(&wo, &att)) {
        *xi += o;
    }
    let n = norm(&x, &fnorm);
    let hidden: Vec<f64> = mv(&wg, &n).iter().zip(mv(&wu, &n)).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
    for (xi, o) in x.iter_mut().zip(mv(&wd, &hidden)) {
        *xi += o;
    }
    mv(&head, &norm(&x, &onorm)).into_iter().map(|v| v as f32).collect()
}
