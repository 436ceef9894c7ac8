//! The subcommands. Each loads what it needs, runs the engine and prints text or one JSON object.

use std::io::Write;
use std::rc::Rc;

use mobilellm_web::cpu::kernels::KvType;
use mobilellm_web::engine::{BackendKind, DecodeProfile, GenerateRequest, LoadOptions, LoadedModel, ModelBackend, Session, SessionOptions};
use mobilellm_web::gpu::{GpuOptions, Precision};
use mobilellm_web::sampler::SamplingParams;
use mobilellm_web::tokenizer::{render_chat, ChatMessage};
use mobilellm_web::Error;
use serde_json::json;

use crate::args::Args;

pub enum CliError {
    Usage(String),
    Engine(Error),
}

impl From<String> for CliError {
    fn from(s: String) -> Self {
        CliError::Usage(s)
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Engine(e)
    }
}

pub type CliResult = Result<(), CliError>;

fn read_model_file(path: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Io(format!("{path}: {e}")))
}

/// Flags every model-loading command takes: the backend and its settings.
pub const LOAD_SWITCHES: [&str; 2] = ["f32", "f16"];
pub const LOAD_VALUES: [&str; 4] = ["model", "backend", "threads", "kv"];

fn load_options(args: &Args) -> Result<LoadOptions, CliError> {
    let precision = match (args.has("f32"), args.has("f16")) {
        (true, true) => return Err(CliError::Usage("--f32 and --f16 exclude each other".into())),
        (true, false) => Precision::F32,
        (false, true) => Precision::F16,
        (false, false) => Precision::Auto,
    };
    let backend = match args.str("backend") {
        None => BackendKind::Auto,
        Some(s) => BackendKind::parse(s).ok_or_else(|| CliError::Usage(format!("--backend {s:?}: use auto, gpu or cpu")))?,
    };
    let kv_type = match args.str("kv").unwrap_or("f16") {
        "f16" => KvType::F16,
        "f32" => KvType::F32,
        other => return Err(CliError::Usage(format!("--kv {other:?}: use f16 or f32"))),
    };
    let threads = args.num("threads", 0usize)?;
    Ok(LoadOptions { backend, gpu: GpuOptions { precision, ..Default::default() }, threads, kv_type })
}

fn load(args: &Args) -> Result<Rc<LoadedModel>, CliError> {
    let opts = load_options(args)?;
    let bytes = read_model_file(args.required("model")?)?;
    Ok(pollster::block_on(LoadedModel::open(bytes, &opts))?)
}

/// `base` plus the loading flags.
fn with_load(base: &[&'static str], load: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(load).copied().collect()
}

fn session(model: &Rc<LoadedModel>, args: &Args) -> Result<Session, CliError> {
    let n_ctx = match args.str("ctx") {
        Some(_) => Some(args.num::<usize>("ctx", 0)?),
        None => None,
    };
    Ok(Session::new(model.clone(), &SessionOptions { n_ctx, ..Default::default() })?)
}

/// The prompt as token ids: verbatim ids, or text (optionally as one chat message) tokenised with
/// BOS as the GGUF's metadata says.
fn prompt_tokens(model: &LoadedModel, args: &Args) -> Result<Vec<u32>, CliError> {
    if let Some(ids) = args.tokens("prompt-tokens")? {
        return Ok(ids);
    }
    let text = args.str("prompt").ok_or_else(|| CliError::Usage("--prompt or --prompt-tokens is required".into()))?;
    let tok = &model.tokenizer;
    let text = if args.has("chat") {
        let mut messages = Vec::new();
        if let Some(system) = args.str("system") {
            messages.push(ChatMessage { role: "system".into(), content: system.into() });
        }
        messages.push(ChatMessage { role: "user".into(), content: text.into() });
        let bos = tok.bos_id.and_then(|i| tok.token_text(i)).unwrap_or_default();
        let eos = tok.eos_id.and_then(|i| tok.token_text(i)).unwrap_or_default();
        render_chat(tok.chat_template.as_deref(), &messages, true, &bos, &eos)?
    } else {
        text.to_string()
    };
    Ok(tok.encode(&text, tok.add_bos)?)
}

fn sampling(args: &Args) -> Result<SamplingParams, CliError> {
    let d = SamplingParams::default();
    Ok(SamplingParams {
        temperature: args.num("temperature", d.temperature)?,
        top_k: args.num("top-k", d.top_k)?,
        top_p: args.num("top-p", d.top_p)?,
        min_p: args.num("min-p", d.min_p)?,
        repeat_penalty: args.num("repeat-penalty", d.repeat_penalty)?,
        repeat_last_n: args.num("repeat-last-n", d.repeat_last_n)?,
        seed: args.num("seed", d.seed)?,
    })
}

pub fn generate(raw: &[String]) -> CliResult {
    let args = Args::parse(
        raw,
        &with_load(&["chat", "json"], &LOAD_SWITCHES),
        &with_load(
            &["prompt", "prompt-tokens", "system", "n", "temperature", "top-k", "top-p", "min-p", "repeat-penalty", "repeat-last-n", "seed", "stop", "ctx"],
            &LOAD_VALUES,
        ),
    )?;
    let params = sampling(&args)?;
    let model = load(&args)?;
    let prompt = prompt_tokens(&model, &args)?;
    let mut sess = session(&model, &args)?;
    let mut req = GenerateRequest::new(params, args.num("n", 128usize)?);
    req.stop = args.all("stop");
    let json_out = args.has("json");
    let mut stdout = std::io::stdout();
    let res = pollster::block_on(sess.generate(&prompt, &req, &mut |ev| {
        if !json_out {
            let _ = stdout.write_all(ev.text.as_bytes());
            let _ = stdout.flush();
        }
    }))?;
    if json_out {
        let out = json!({
            "prompt_tokens": prompt,
            "tokens": res.tokens,
            "text": res.text,
            "finish_reason": res.finish.as_str(),
            "prefill_tok_s": rate(res.prefill_tokens, res.prefill_ms),
            "decode_tok_s": rate(res.tokens.len().saturating_sub(1), res.decode_ms),
            "ttft_ms": res.ttft_ms,
        });
        println!("{out}");
    } else {
        println!();
    }
    Ok(())
}

fn rate(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

pub fn logits(raw: &[String]) -> CliResult {
    let args = Args::parse(raw, &with_load(&["json"], &LOAD_SWITCHES), &with_load(&["prompt-tokens", "top", "ctx"], &LOAD_VALUES))?;
    let tokens = args.tokens("prompt-tokens")?.ok_or_else(|| CliError::Usage("--prompt-tokens is required".into()))?;
    let k = args.num("top", 5usize)?;
    let model = load(&args)?;
    let mut sess = session(&model, &args)?;
    let rows = pollster::block_on(sess.top_logits(&tokens, k))?;
    let positions: Vec<_> = rows.iter().map(|r| json!({"top": r.iter().map(|c| json!([c.id, c.logit])).collect::<Vec<_>>()})).collect();
    println!("{}", json!({ "positions": positions }));
    Ok(())
}

pub fn tokenize(raw: &[String]) -> CliResult {
    let args = Args::parse(raw, &["json"], &["model", "text"])?;
    let text = args.required("text")?.to_string();
    let bytes = read_model_file(args.required("model")?)?;
    // Tokenising needs no GPU: parse the file and build the tokenizer only.
    let file = mobilellm_web::gguf::GgufFile::parse(&bytes).map_err(Error::from)?;
    let tok = mobilellm_web::tokenizer::Tokenizer::from_gguf(&file)?;
    let ids = tok.encode(&text, false)?;
    if args.has("json") {
        println!("{}", json!({ "tokens": ids }));
    } else {
        println!("{}", ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" "));
    }
    Ok(())
}

pub fn info(raw: &[String]) -> CliResult {
    let args = Args::parse(raw, &with_load(&["json"], &LOAD_SWITCHES), &LOAD_VALUES)?;
    let model = load(&args)?;
    let c = &model.cfg;
    println!("model: {}", model.name.as_deref().unwrap_or("(unnamed)"));
    println!("file: {} bytes", model.file_bytes);
    println!("backend: {} ({})", model.backend_name(), model.device_summary());
    println!(
        "config: arch {:?}, vocab {}, dim {}, blocks {} x repeat {}, heads {} / kv {}, head_dim {}, ffn {}, rope base {}, eps {}, context {}, tied embeddings {}",
        c.arch, c.n_vocab, c.dim, c.n_layers, c.block_repeat, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim, c.rope_base, c.norm_eps, c.context_length, c.tied_embeddings
    );
    let mut by_type: std::collections::BTreeMap<&str, (usize, u64)> = Default::default();
    for t in &model.tensors {
        let e = by_type.entry(t.ty.name()).or_default();
        e.0 += 1;
        e.1 += t.bytes;
    }
    for (ty, (n, bytes)) in by_type {
        println!("tensors {ty}: {n} ({bytes} bytes)");
    }
    for t in &model.tensors {
        println!("  {:<28} {:<5} {:?} {} bytes", t.name, t.ty.name(), t.dims, t.bytes);
    }
    println!("memory for weights: {} bytes", model.weight_bytes());
    Ok(())
}

pub fn bench(raw: &[String]) -> CliResult {
    let args = Args::parse(raw, &with_load(&["json", "profile"], &LOAD_SWITCHES), &with_load(&["prompt-len", "gen", "ctx"], &LOAD_VALUES))?;
    let prompt_len = args.num("prompt-len", 128usize)?;
    let gen = args.num("gen", 128usize)?;
    let t0 = mobilellm_web::engine::now_ms();
    let model = load(&args)?;
    let load_ms = mobilellm_web::engine::now_ms() - t0;
    let weights_bytes = model.weight_bytes();
    let mut sess = session(&model, &args)?;
    // A deterministic prompt of ordinary tokens (no special ids).
    let n_vocab = model.cfg.n_vocab as u32;
    // Ids from 300 up in a real vocabulary (past the special and byte tokens); small test
    // vocabularies use their upper three quarters.
    let lo = (n_vocab / 4).min(300);
    let prompt: Vec<u32> = (0..prompt_len as u32).map(|i| lo + (i * 7919) % (n_vocab - lo).max(1)).collect();
    let mut req = GenerateRequest::new(SamplingParams::greedy(), gen);
    req.ignore_eos = true;
    // Warm-up (pipeline compilation), then the measured run from an empty cache.
    pollster::block_on(sess.generate(&prompt[..prompt_len.min(8)], &GenerateRequest { max_tokens: 2, ..req.clone() }, &mut |_| {}))?;
    sess.reset();
    let res = pollster::block_on(sess.generate(&prompt, &req, &mut |_| {}))?;
    // Per-kernel times of a decode step after the prompt (each the fastest of three).
    let profile = if args.has("profile") { Some(pollster::block_on(sess.profile_decode(&prompt, 3))?) } else { None };
    let decode_tok_s = rate(res.tokens.len().saturating_sub(1), res.decode_ms);
    // GPU: weight bytes a decode step reads, and what the measured rate makes of them (compare
    // with the device's memory bandwidth: the roofline of a memory-bound step).
    let weight_bytes_per_token = match &model.backend {
        ModelBackend::Gpu(g) => Some(g.bytes_per_token(&model.cfg)),
        ModelBackend::Cpu(_) => None,
    };
    let out = json!({
        "backend": model.backend_name(),
        "threads": model.threads(),
        "adapter": model.device_summary(),
        "model_file_bytes": model.file_bytes,
        "load_ms": load_ms,
        "prompt_tokens": prompt_len,
        "generated_tokens": res.tokens.len(),
        "prefill_tok_s": rate(res.prefill_tokens, res.prefill_ms),
        "decode_tok_s": decode_tok_s,
        "ttft_ms": res.ttft_ms,
        "gpu_weight_bytes": weights_bytes,
        "gpu_total_bytes": model.weight_bytes(),
        "dispatches_per_token": res.dispatches_per_step,
        "weight_bytes_per_token": weight_bytes_per_token,
        "weight_gb_s": weight_bytes_per_token.map(|b| b as f64 * decode_tok_s / 1e9),
        "kernel_shares": profile.as_ref().map(kernel_shares),
        "submits_per_token": 1,
        "readback_bytes_per_token": res.readback_bytes_per_step,
        "n_ctx": sess.n_ctx(),
        "decode_profile": profile,
    });
    if args.has("json") {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    }
    Ok(())
}

/// Each kernel's share of a profiled decode step (ops of one label summed over their shapes),
/// largest first: where a step's time goes, fused kernel by fused kernel.
fn kernel_shares(p: &DecodeProfile) -> serde_json::Value {
    let total: f64 = p.ops.iter().map(|o| o.ms_per_step).sum();
    let mut shares: Vec<(String, f64)> = Vec::new();
    for o in &p.ops {
        let kernel = o.op.split(' ').next().unwrap_or(&o.op).to_string();
        match shares.iter_mut().find(|(k, _)| *k == kernel) {
            Some((_, ms)) => *ms += o.ms_per_step,
            None => shares.push((kernel, o.ms_per_step)),
        }
    }
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    serde_json::Value::Array(
        shares.into_iter().map(|(k, ms)| json!({"kernel": k, "ms": round(ms), "share": round(if total > 0.0 { ms / total } else { 0.0 })})).collect(),
    )
}

pub fn convert(raw: &[String]) -> CliResult {
    let args = Args::parse(raw, &[], &["hf", "out", "type"])?;
    let dir = std::path::PathBuf::from(args.required("hf")?);
    let out_path = args.required("out")?.to_string();
    let ty_name = args.str("type").unwrap_or("f16");
    let ty =
        mobilellm_web::convert::output_type(ty_name).ok_or_else(|| CliError::Usage(format!("--type {ty_name:?}: use f32, f16, q8_0, q4_0, q4_1 or q4_k_m")))?;
    // Write to a temporary name and rename at the end: a failed conversion leaves no broken file.
    let tmp_path = format!("{out_path}.part");
    let file = std::fs::File::create(&tmp_path).map_err(|e| Error::Io(format!("{tmp_path}: {e}")))?;
    let mut out = std::io::BufWriter::new(file);
    let result = mobilellm_web::convert::convert_dir(&dir, &mut out, ty, &mut |p| {
        eprint!("\rconvert: {}/{} tensors, {} MB  {:<40}", p.done, p.total, p.bytes_written >> 20, p.name);
    })
    .and_then(|r| out.flush().map(|_| r).map_err(Error::from));
    eprintln!();
    match result {
        Ok(report) => {
            std::fs::rename(&tmp_path, &out_path).map_err(|e| Error::Io(format!("{out_path}: {e}")))?;
            eprintln!("convert: {report}");
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp_path);
            Err(e.into())
        }
    }
}
