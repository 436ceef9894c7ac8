//! The wasm-bindgen surface, used by `www/worker.js` and nothing else.
//!
//! - [`ModelLoader`]: `begin(total)` / `push(chunk)` / `finish()`: the GGUF is copied chunk by chunk
//!   straight into one pre-sized wasm buffer, so a large file is never held twice in memory.
//! - [`Model`]: the loaded model (weights on the GPU, tokenizer); chat-template rendering,
//!   tokenisation, sessions, and a teacher-forced `top_logits` for debugging and tests.
//! - [`WasmSession`]: one KV cache; `generate` streams each token's text to a JS callback;
//!   `interrupt` works while `generate` is awaiting the GPU; `reset` forgets the conversation.
//!
//! Structured values cross as JSON strings (serde_json is already a dependency; the JS side is
//! one `JSON.parse`). Every error is a JS `Error` whose `name` is [`Error::code`]. Panics are
//! logged with a readable message, which [`last_panic`] also returns so the worker can report it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use crate::cpu::kernels::{KvType, Pool};
use crate::engine::{check_memory, FinishReason, GenerateRequest, LoadedModel, Session, SessionOptions, StreamingGpuLoad, TokenEvent};
use crate::gpu::{Gpu, GpuOptions};
use crate::sampler::SamplingParams;
use crate::tokenizer::{render_chat, ChatMessage};
use crate::Error;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
        console_error_panic_hook::hook(info);
    }));
}

/// The message of the last Rust panic, if any (after a panic the module must be re-instantiated).
#[wasm_bindgen]
pub fn last_panic() -> Option<String> {
    LAST_PANIC.with(|p| p.borrow().clone())
}

/// A JS `Error` named by the error's stable code.
pub(crate) fn js_error(e: &Error) -> JsValue {
    named_error(e.code(), &e.to_string())
}

fn named_error(name: &str, message: &str) -> JsValue {
    let err = js_sys::Error::new(message);
    err.set_name(name);
    err.into()
}

fn invalid(msg: impl Into<String>) -> JsValue {
    js_error(&Error::InvalidArgument(msg.into()))
}

fn json_arg<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<T, JsValue> {
    serde_json::from_str(json).map_err(|e| invalid(format!("{what}: {e}")))
}

/// Loads a GGUF onto the WebGPU backend while it arrives (engine::StreamingGpuLoad): each
/// tensor is uploaded as soon as its bytes are in, so wasm memory holds about one tensor, never
/// the file.
#[wasm_bindgen]
pub struct GpuModelLoader {
    inner: StreamingGpuLoad,
}

#[wasm_bindgen]
impl GpuModelLoader {
    /// Opens the GPU device, then resolves to a loader for a `total`-byte file.
    pub fn begin(total: f64, force_f32: bool) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            if !(0.0..=(1u64 << 53) as f64).contains(&total) {
                return Err(invalid(format!("model size {total} is not a byte count")));
            }
            let opts = if force_f32 { GpuOptions::f32() } else { GpuOptions::default() };
            let gpu = Gpu::new(&opts).await.map_err(|e| js_error(&e))?;
            Ok(JsValue::from(GpuModelLoader { inner: StreamingGpuLoad::new(Rc::new(gpu), total as u64) }))
        })
    }

    /// The next bytes of the file; tensors complete in them are uploaded now.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        self.inner.push(chunk).map_err(|e| js_error(&e))
    }

    pub fn received(&self) -> f64 {
        self.inner.received() as f64
    }

    /// The most bytes of the file held in wasm memory at once (header, one tensor, parts of a
    /// stacked matrix).
    pub fn peak_buffered_bytes(&self) -> f64 {
        self.inner.peak_buffered_bytes() as f64
    }

    /// The model, once every byte has arrived.
    pub fn finish(self) -> Result<Model, JsValue> {
        let inner = self.inner.finish().map_err(|e| js_error(&e))?;
        Ok(Model { inner })
    }
}

/// Receives a GGUF file in chunks into a single buffer of the announced size (the CPU backend
/// computes from the file as it is).
#[wasm_bindgen]
pub struct ModelLoader {
    bytes: Vec<u8>,
    total: usize,
}

#[wasm_bindgen]
impl ModelLoader {
    /// Reserves `total` bytes up front (one allocation, no regrowth copies).
    pub fn begin(total: f64) -> Result<ModelLoader, JsValue> {
        if !(0.0..=u32::MAX as f64).contains(&total) {
            return Err(invalid(format!("model size {total} does not fit in wasm memory")));
        }
        let total = total as usize;
        // A model that cannot fit in wasm32 memory is refused before anything is allocated.
        check_memory(total as u64, "the model file").map_err(|e| js_error(&e))?;
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(total).map_err(|_| js_error(&Error::Gpu(format!("out of memory reserving {total} bytes for the model"))))?;
        Ok(ModelLoader { bytes, total })
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        if self.bytes.len() + chunk.len() > self.total {
            return Err(invalid(format!("model data exceeds the announced size of {} bytes", self.total)));
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    pub fn received(&self) -> f64 {
        self.bytes.len() as f64
    }

    /// Checks the size, then loads the model on the CPU backend, computing on `pool`'s threads
    /// (the file buffer becomes the weights, as it is). `kv_f32`: f32 KV caches instead of f16.
    pub fn finish_cpu(self, pool: ThreadPool, kv_f32: bool) -> Result<Model, JsValue> {
        let bytes = self.complete()?;
        let kv = if kv_f32 { KvType::F32 } else { KvType::F16 };
        let inner = LoadedModel::load_cpu(bytes, pool.pool, kv).map_err(|e| js_error(&e))?;
        Ok(Model { inner })
    }

    fn complete(self) -> Result<Vec<u8>, JsValue> {
        if self.bytes.len() != self.total {
            return Err(invalid(format!("model data incomplete: {} of {} bytes", self.bytes.len(), self.total)));
        }
        Ok(self.bytes)
    }
}

/// The CPU backend's threads. The calling thread is thread 0; in a build with shared memory
/// (`atomics`), threads 1.. are Web Workers the host starts, each running [`pool_worker_run`]
/// with [`ThreadPool::shared`]; without shared memory the pool has one thread.
#[wasm_bindgen]
pub struct ThreadPool {
    pool: Pool,
    shared: std::sync::Arc<crate::cpu::kernels::Shared>,
}

#[wasm_bindgen]
impl ThreadPool {
    #[wasm_bindgen(constructor)]
    pub fn new(threads: u32) -> ThreadPool {
        let threads = if cfg!(target_feature = "atomics") { threads.max(1) as usize } else { 1 };
        let (pool, shared) = Pool::new_external(threads);
        ThreadPool { pool, shared }
    }

    pub fn threads(&self) -> u32 {
        self.pool.threads() as u32
    }

    /// A handle to the pool's shared state for one worker (the worker owns it from then on).
    pub fn shared(&self) -> u32 {
        std::sync::Arc::into_raw(self.shared.clone()) as u32
    }
}

/// True when this build shares its memory between threads (the host may start pool workers).
#[wasm_bindgen]
pub fn threads_supported() -> bool {
    cfg!(target_feature = "atomics")
}

/// The compiled module and its memory, for starting pool workers on the same instance memory.
#[wasm_bindgen]
pub fn wasm_module_and_memory() -> js_sys::Array {
    js_sys::Array::of2(&wasm_bindgen::module(), &wasm_bindgen::memory())
}

/// Runs pool jobs as thread `index` until the pool is dropped (in a Web Worker: it blocks).
#[cfg(target_feature = "atomics")]
#[wasm_bindgen]
pub fn pool_worker_run(shared: u32, index: u32) {
    // SAFETY: `shared` came from ThreadPool::shared, which leaked one strong count for us.
    let shared = unsafe { std::sync::Arc::from_raw(shared as *const crate::cpu::kernels::Shared) };
    crate::cpu::kernels::worker_loop(&shared, index as usize);
}

/// The CPU kernels' self-test in this build (SIMD path vs scalar vs the f64 reference), as JSON.
#[wasm_bindgen]
pub fn cpu_selftest() -> String {
    crate::cpu::kernels::selftest()
}

#[wasm_bindgen]
pub struct Model {
    inner: Rc<LoadedModel>,
}

#[wasm_bindgen]
impl Model {
    /// JSON: architecture, shapes, vocabulary, GPU adapter and precision.
    pub fn info(&self) -> String {
        let m = &self.inner;
        let c = &m.cfg;
        serde_json::json!({
            "arch": format!("{:?}", c.arch),
            "n_vocab": c.n_vocab,
            "dim": c.dim,
            "n_layers": c.n_layers,
            "block_repeat": c.block_repeat,
            "n_heads": c.n_heads,
            "n_kv_heads": c.n_kv_heads,
            "context_length": c.context_length,
            "file_bytes": m.file_bytes,
            "has_chat_template": m.tokenizer.chat_template.is_some(),
            "backend": m.backend_name(),
            "threads": m.threads(),
            "simd": crate::cpu::kernels::Isa::best().name(),
            "adapter": m.device_summary(),
            "f16": m.gpu().is_some_and(|g| g.f16),
            "gpu_bytes": m.weight_bytes(),
            // The whole wasm heap (it never shrinks): the CPU backend's weights and KV caches live here.
            "wasm_memory_bytes": core::arch::wasm32::memory_size(0) as u64 * 65536,
        })
        .to_string()
    }

    /// Renders `messages_json` ([{role, content}]) with the GGUF's chat template (or the
    /// documented plain fallback for models without one).
    pub fn render_chat(&self, messages_json: &str, add_generation_prompt: bool) -> Result<String, JsValue> {
        let messages: Vec<ChatMessage> = json_arg("messages", messages_json)?;
        let tok = &self.inner.tokenizer;
        let bos = tok.bos_id.and_then(|id| tok.token_text(id)).unwrap_or_default();
        let eos = tok.eos_id.and_then(|id| tok.token_text(id)).unwrap_or_default();
        render_chat(tok.chat_template.as_deref(), &messages, add_generation_prompt, &bos, &eos).map_err(|e| js_error(&e))
    }

    /// Token ids of a rendered prompt. BOS is added when the model asks for it, unless the
    /// template already wrote it (llama.cpp would double it; the model never saw that in training).
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        let tok = &self.inner.tokenizer;
        let bos_written = tok.bos_id.and_then(|id| tok.token_text(id)).is_some_and(|b| !b.is_empty() && text.starts_with(&b));
        tok.encode(text, tok.add_bos && !bos_written).map_err(|e| js_error(&e))
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.tokenizer.decode(ids)
    }

    /// A session with its own KV cache; `n_ctx` 0 = the engine's default.
    pub fn new_session(&self, n_ctx: u32) -> Result<WasmSession, JsValue> {
        let opts = SessionOptions { n_ctx: (n_ctx > 0).then_some(n_ctx as usize), ..Default::default() };
        let session = Session::new(self.inner.clone(), &opts).map_err(|e| js_error(&e))?;
        let abort = session.abort_handle();
        Ok(WasmSession { inner: Rc::new(RefCell::new(session)), abort })
    }

    /// Tests: destroys the model's GPU device, as a driver reset or a GPU process crash loses it
    /// (the pending call and every later one on this model fail with DeviceLost). Nothing on the
    /// CPU backend.
    pub fn debug_lose_device(&self) {
        if let Some(gpu) = self.inner.gpu() {
            gpu.lose_device();
        }
    }

    /// Teacher-forced top-`k` logits at every position of `tokens` (a throwaway session, so the
    /// chat session's cache is untouched). JSON: [[[id, logit], ...], ...].
    pub fn top_logits(&self, tokens: Vec<u32>, k: u32) -> js_sys::Promise {
        let model = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let opts = SessionOptions { n_ctx: Some(tokens.len().max(16)), ..Default::default() };
            let mut session = Session::new(model, &opts).map_err(|e| js_error(&e))?;
            let rows = session.top_logits(&tokens, k as usize).await.map_err(|e| js_error(&e))?;
            let json: Vec<Vec<(u32, f32)>> = rows.iter().map(|r| r.iter().map(|c| (c.id, c.logit)).collect()).collect();
            Ok(JsValue::from_str(&serde_json::to_string(&json).unwrap_or_default()))
        })
    }
}

/// Generation options as the JS API names them (OpenAI style). Unset = the engine's defaults.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct GenOptions {
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<usize>,
    min_p: Option<f32>,
    repetition_penalty: Option<f32>,
    repeat_last_n: Option<usize>,
    max_tokens: Option<usize>,
    seed: Option<u64>,
    stop: Vec<String>,
    /// Keep going past end-of-generation tokens (benchmarks).
    ignore_eos: bool,
}

impl GenOptions {
    fn request(&self, n_ctx: usize) -> GenerateRequest {
        let d = SamplingParams::default();
        let params = SamplingParams {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
            repeat_penalty: self.repetition_penalty.unwrap_or(d.repeat_penalty),
            repeat_last_n: self.repeat_last_n.unwrap_or(d.repeat_last_n),
            seed: self.seed.unwrap_or(d.seed),
        };
        // No max_tokens = until the context is full (or an end-of-generation token).
        let mut req = GenerateRequest::new(params, self.max_tokens.unwrap_or(n_ctx));
        req.stop = self.stop.clone();
        req.ignore_eos = self.ignore_eos;
        req
    }
}

fn finish_name(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ContextFull => "context_full",
        FinishReason::Aborted => "abort",
    }
}

#[wasm_bindgen]
pub struct WasmSession {
    inner: Rc<RefCell<Session>>,
    /// Kept outside the RefCell: interrupt() runs while generate() holds the session.
    abort: Rc<Cell<bool>>,
}

#[wasm_bindgen]
impl WasmSession {
    pub fn n_ctx(&self) -> Result<u32, JsValue> {
        let s = self.inner.try_borrow().map_err(|_| invalid("session busy"))?;
        Ok(s.n_ctx() as u32)
    }

    /// Tokens currently held in the KV cache.
    pub fn cached_tokens(&self) -> Result<u32, JsValue> {
        let s = self.inner.try_borrow().map_err(|_| invalid("session busy"))?;
        Ok(s.cached.len() as u32)
    }

    /// Leading tokens of `prompt` a generate() now would reuse from the cache (not prefill).
    pub fn reusable_prefix(&self, prompt: &[u32]) -> Result<u32, JsValue> {
        let s = self.inner.try_borrow().map_err(|_| invalid("session busy"))?;
        Ok(s.reusable_prefix(prompt) as u32)
    }

    /// Runs `prompt` (reusing the cached prefix) and samples; calls `on_token(text, id)` per token.
    /// Resolves to JSON {prompt_tokens, prefill_tokens, tokens, text, finish, prefill_ms,
    /// decode_ms, ttft_ms}.
    // why: the mutable borrow held across the awaits is the session's busy lock; every other
    // method uses try_borrow(_mut) and reports "busy" instead of panicking.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn generate(&self, prompt: Vec<u32>, options_json: &str, on_token: js_sys::Function) -> js_sys::Promise {
        let inner = self.inner.clone();
        let abort = self.abort.clone();
        let opts: Result<GenOptions, JsValue> = json_arg("options", options_json);
        wasm_bindgen_futures::future_to_promise(async move {
            let opts = opts?;
            let mut session = inner.try_borrow_mut().map_err(|_| invalid("a generation is already running on this session"))?;
            let req = opts.request(session.n_ctx());
            abort.set(false);
            let mut cb = |ev: &TokenEvent<'_>| {
                // A throwing callback must not unwind through Rust; the worker's callback only posts.
                let _ = on_token.call2(&JsValue::NULL, &JsValue::from_str(ev.text), &JsValue::from(ev.id));
            };
            let r = session.generate(&prompt, &req, &mut cb).await.map_err(|e| js_error(&e))?;
            let json = serde_json::json!({
                "prompt_tokens": r.prompt_tokens,
                "prefill_tokens": r.prefill_tokens,
                "tokens": r.tokens,
                "text": r.text,
                "finish": finish_name(r.finish),
                "prefill_ms": r.prefill_ms,
                "decode_ms": r.decode_ms,
                "ttft_ms": r.ttft_ms,
                "cached_tokens": session.cached.len(),
                "dispatches_per_step": r.dispatches_per_step,
                "readback_bytes_per_step": r.readback_bytes_per_step,
            });
            Ok(JsValue::from_str(&json.to_string()))
        })
    }

    /// Per-kernel times of one decode step after `prompt` (replaces the cached conversation).
    /// Resolves to JSON {kv_len, step_ms, round_trip_ms, ops: [{op, per_step, ms_per_step}]}.
    // why: as in generate, the borrow across the await is the busy lock.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn profile_decode(&self, prompt: Vec<u32>, steps: u32) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut session = inner.try_borrow_mut().map_err(|_| invalid("a generation is running on this session"))?;
            let p = session.profile_decode(&prompt, steps as usize).await.map_err(|e| js_error(&e))?;
            Ok(JsValue::from_str(&serde_json::to_string(&p).unwrap_or_default()))
        })
    }

    /// Ends a running generate() at its next step (it resolves with finish "abort").
    pub fn interrupt(&self) {
        self.abort.set(true);
    }

    pub fn reset(&self) -> Result<(), JsValue> {
        let mut s = self.inner.try_borrow_mut().map_err(|_| invalid("cannot reset while generating"))?;
        s.reset();
        Ok(())
    }
}
