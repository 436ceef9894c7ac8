//! A model of MobileLLM-1.5B's shape (54 layers of width 1600, 25 query / 5 KV heads of 64, FFN
//! 4352, tied embeddings; random Q8_0 weights, 1.6 GB) with llama.cpp's Llama-2 vocabulary:
//! streamed from disk onto the GPU in 1 MiB chunks, it holds about one tensor in memory at a time,
//! stays within GGUF + KV cache + 10% of GPU memory, and decodes greedy tokens equal to the CPU
//! reference's. Writes the model and the expected outputs under target/big-model/ for the
//! browser test (tests/browser/big.test.mjs), which loads the same file in Chromium.

mod common;

use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mobilellm_web::cpu::CpuModel;
use mobilellm_web::engine::{GenerateRequest, Session, SessionOptions, StreamingGpuLoad};
use mobilellm_web::gguf::GgufFile;
use mobilellm_web::model::synth::{write_synth_gguf, SynthSpec};
use mobilellm_web::model::Arch;
use mobilellm_web::quant::GgmlType;
use mobilellm_web::sampler::SamplingParams;

const PROMPT: &str = "Once upon a time";
const STEPS: usize = 6;
const N_CTX: usize = 256;

fn spec() -> SynthSpec {
    SynthSpec {
        arch: Arch::MobileLlm,
        n_vocab: 32000,
        dim: 1600,
        n_layers: 54,
        block_repeat: 1,
        n_heads: 25,
        n_kv_heads: 5,
        head_dim: 64,
        ffn_dim: 4352,
        context_length: 2048,
        rope_base: 10000.0,
        norm_eps: 1e-5,
        tied: true,
        weight_type: GgmlType::Q8_0,
        embd_type: GgmlType::Q8_0,
        overrides: Vec::new(),
        random_blocks: false,
        seed: 15,
    }
}

fn vocab_file() -> PathBuf {
    let cache = common::cache_dir();
    cache.join("vocab/ggml-vocab-llama-spm.gguf")
}

/// target/big-model/mobilellm-1.5b-q8_0.gguf, written once (then reused: same seed, same bytes).
fn big_model() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/big-model");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mobilellm-1.5b-q8_0.gguf");
    if !path.exists() {
        let vocab_bytes = std::fs::read(vocab_file()).expect("the Llama-2 vocabulary: run scripts/fetch_vocab.sh");
        let vocab = GgufFile::parse(&vocab_bytes).unwrap();
        let part = dir.join("mobilellm-1.5b-q8_0.gguf.part");
        let mut out = BufWriter::new(std::fs::File::create(&part).unwrap());
        write_synth_gguf(&spec(), Some(&vocab), &mut out).unwrap();
        drop(out);
        std::fs::rename(&part, &path).unwrap();
    }
    path
}

#[test]
fn mobilellm_1_5b_shape_streams_to_the_gpu_and_decodes_as_the_cpu_reference() {
    let t0 = std::time::Instant::now();
    let path = big_model();
    eprintln!("model file ready after {:.1} s", t0.elapsed().as_secs_f64());
    let file_len = std::fs::metadata(&path).unwrap().len();
    assert!(file_len > 1_500_000_000, "{file_len} bytes: the 1.5B shape in Q8_0");

    // GPU: the file read in 1 MiB chunks, as a download delivers it.
    let gpu = Rc::new(common::gpu(true));
    let mut load = StreamingGpuLoad::new(gpu.clone(), file_len);
    let mut f = std::fs::File::open(&path).unwrap();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        load.push(&chunk[..n]).unwrap();
    }
    let peak = load.peak_buffered_bytes() as u64;
    let model = load.finish().unwrap();
    // About one tensor: the embedding (32000 x 1600 Q8_0, 54 MB) is the largest.
    let largest = model.tensors.iter().map(|t| t.bytes).max().unwrap();
    assert!(peak <= 2 * largest + (8 << 20), "peak buffered {peak} bytes, largest tensor {largest}");

    // As the browser's completions.create encodes it.
    let prompt = model.tokenizer.encode(PROMPT, model.tokenizer.add_bos).unwrap();
    let mut s = Session::new(model.clone(), &SessionOptions { n_ctx: Some(N_CTX), prefill_chunk: 32 }).unwrap();
    let mut req = GenerateRequest::new(SamplingParams::greedy(), STEPS);
    req.ignore_eos = true;
    let res = pollster::block_on(s.generate(&prompt, &req, &mut |_| {})).unwrap();
    assert_eq!(res.tokens.len(), STEPS);
    let mut all = prompt.clone();
    all.extend(&res.tokens);
    // The text after the prompt's, as a stream decodes it (SentencePiece drops a leading space
    // only at the start of the text).
    let (whole, head) = (model.tokenizer.decode(&all), model.tokenizer.decode(&prompt));
    let continuation = whole.strip_prefix(head.as_str()).expect("the prompt's text is a prefix").to_string();
    let gpu_top = pollster::block_on(s.top_logits(&all, 8)).unwrap();
    // GPU memory: the weights (repacked: scales widened) and the KV cache, within 10% of the file + KV.
    let cfg = &model.cfg;
    let kv = (2 * cfg.n_layers * cfg.block_repeat * N_CTX * cfg.n_kv_heads * cfg.head_dim * 4) as u64;
    let gpu_bytes = gpu.allocated_bytes();
    assert!(gpu_bytes <= (file_len + kv) * 11 / 10, "GPU buffers {gpu_bytes} > 1.1 x (file {file_len} + KV {kv})");
    eprintln!("measured: file {file_len} B, peak buffered {peak} B, GPU buffers {gpu_bytes} B (KV {kv} B)");
    eprintln!("GPU load + {STEPS} greedy steps + teacher-forced logits done after {:.1} s", t0.elapsed().as_secs_f64());
    drop(s);
    drop(model);
    drop(gpu);

    // The CPU reference (f64 accumulation over f32 weights: 6.4 GB for this shape).
    let bytes = std::fs::read(&path).unwrap();
    let cpu = CpuModel::from_gguf_bytes(&bytes).unwrap();
    drop(bytes);
    let cpu_logits = mobilellm_web::cpu::CpuSession::new(&cpu).forward(&all).unwrap();
    let mut clear = 0;
    let mut expect_top = Vec::new();
    for (p, logits) in cpu_logits.iter().enumerate() {
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let margin = logits[order[0]] - logits[order[1]];
        // The GPU's candidates carry the CPU's logits at the same ids.
        for c in &gpu_top[p] {
            let want = logits[c.id as usize];
            assert!((c.logit - want).abs() <= 2e-2 + 2e-3 * want.abs(), "pos {p}: id {} GPU {} CPU {want}", c.id, c.logit);
        }
        if margin > 5e-2 {
            assert_eq!(gpu_top[p][0].id as usize, order[0], "pos {p}: top-1");
            clear += 1;
        }
        // Generated positions: the greedy token is the reference's argmax.
        if p + 1 >= prompt.len() && p + 1 < all.len() && margin > 5e-2 {
            assert_eq!(all[p + 1] as usize, order[0], "greedy step {}", p + 1 - prompt.len());
        }
        expect_top.push(serde_json::json!({
            "top": order[..8].iter().map(|&i| serde_json::json!([i, logits[i]])).collect::<Vec<_>>(),
            "margin": margin,
        }));
    }
    eprintln!("CPU reference done after {:.1} s", t0.elapsed().as_secs_f64());
    assert!(clear * 2 >= all.len(), "only {clear} of {} positions have a clear top-1", all.len());
    let expect = serde_json::json!({
        "file_bytes": file_len, "prompt": PROMPT, "continuation": continuation, "tokens": all, "prompt_len": prompt.len(),
        "n_ctx": N_CTX, "kv_bytes": kv, "cpu": expect_top, "native_peak_buffered": peak, "native_gpu_bytes": gpu_bytes,
    });
    std::fs::write(path.with_extension("expect.json"), serde_json::to_string_pretty(&expect).unwrap()).unwrap();
}
