// The engine's Web Worker: owns the wasm module, the loaded model and one chat session, and
// answers the typed messages of protocol.js. Generation runs here so the page never janks; the
// worker stays responsive to `interrupt` because every decode step awaits the GPU.

import init, { ModelLoader, last_panic } from './pkg/mobilellm_web.js';
import { openModel, deleteCached } from './cache.js';
import { openConverted } from './convert.js';
import { Msg, MobileLLMError, serializeError, initWasm } from './protocol.js';

let ready = null;        // Promise of the wasm module's initialisation
let model = null;        // wasm Model
let session = null;      // wasm WasmSession (one per loaded model: its KV cache is the conversation)
let dead = null;         // set after a panic: the wasm instance cannot be trusted any more
const loads = new Map(); // load request id -> AbortController
// Generations the page has stopped (it has already answered them): all ids up to `upTo`, plus
// single ones. Queued generations among them are skipped; the running one is told to stop.
let interruptedUpTo = 0;
const interrupted = new Set();
let generatingId = null;
const isInterrupted = (id) => id <= interruptedUpTo || interrupted.has(id);
let queue = Promise.resolve(); // requests that touch the engine run one at a time

const post = (msg) => self.postMessage(msg);

self.onmessage = (ev) => {
  const msg = ev.data;
  switch (msg.type) {
    // Control messages act immediately, never queued behind the generation they stop.
    case Msg.INTERRUPT:
      if (Array.isArray(msg.ids)) msg.ids.forEach((i) => interrupted.add(i));
      else interruptedUpTo = Math.max(interruptedUpTo, msg.upTo ?? Number.MAX_SAFE_INTEGER);
      if (generatingId !== null && isInterrupted(generatingId)) session?.interrupt();
      return;
    case Msg.CANCEL:
      loads.get(msg.target)?.abort();
      return;
    case Msg.LOAD: {
      const ctl = new AbortController();
      loads.set(msg.id, ctl);
      run(msg.id, () => load(msg, ctl.signal)).finally(() => loads.delete(msg.id));
      return;
    }
    case Msg.GENERATE: return run(msg.id, () => generate(msg));
    case Msg.RESET: return run(msg.id, () => { session?.reset(); return null; });
    case Msg.UNLOAD: return run(msg.id, unload);
    case Msg.TOP_LOGITS: return run(msg.id, async () => JSON.parse(await need().top_logits(Uint32Array.from(msg.tokens), msg.k)));
    case Msg.TOKENIZE: return run(msg.id, () => promptIds(msg.messages, msg.raw));
    case Msg.PROFILE: return run(msg.id, async () => {
      const ids = promptIds(msg.messages).ids;
      return JSON.parse(await session.profile_decode(Uint32Array.from(ids), msg.steps || 1));
    });
    default:
      post({ id: msg.id, type: Msg.ERROR, error: { name: 'InvalidArgument', message: `unknown message type ${msg.type}` } });
  }
};

function run(id, fn) {
  const p = queue.then(async () => {
    if (dead) throw dead;
    try {
      const value = await fn();
      post({ id, type: Msg.RESULT, value });
    } catch (e) {
      post({ id, type: Msg.ERROR, error: serializeError(asEngineError(e)) });
    }
  });
  queue = p.catch(() => {});
  return p;
}

/** A wasm trap after a Rust panic becomes a readable InternalError, and poisons the worker. */
function asEngineError(e) {
  if (e instanceof WebAssembly.RuntimeError) {
    let detail = null;
    try { detail = last_panic(); } catch { /* the instance may be too broken to ask */ }
    dead = new MobileLLMError('InternalError', `engine panic: ${detail || e.message}`);
    return dead;
  }
  return e;
}

function need() {
  if (!model) throw new MobileLLMError('Unloaded', 'no model is loaded');
  return model;
}

async function load(msg, signal) {
  if (!('gpu' in navigator) || !navigator.gpu) {
    throw new MobileLLMError('WebGPUUnavailable', 'this browser does not expose WebGPU (navigator.gpu) in workers');
  }
  ready ??= initWasm(init, msg.wasmUrl).catch((e) => {
    ready = null; // the next load tries again
    throw e;
  });
  await ready;
  unload();
  const progress = (p) => post({ id: msg.id, type: Msg.PROGRESS, progress: p });
  const t0 = performance.now();
  // A Hugging Face checkpoint (hf.js) is converted here once, then cached under msg.url (its key).
  const opened = msg.source?.kind === 'checkpoint'
    ? await openConverted(msg.source, { token: msg.hfToken, signal, onProgress: progress, useCache: msg.useCache, wasmUrl: msg.wasmUrl })
    : await openModel(msg.url, { signal, onProgress: progress, useCache: msg.useCache });
  const { body, size, fromCache } = opened;
  const downloadMs = performance.now() - t0;

  // Copy the file chunk by chunk into the engine's pre-sized buffer.
  const t1 = performance.now();
  const loader = ModelLoader.begin(size);
  const reader = body.getReader();
  let loaded = 0, lastReport = 0;
  try {
    for (;;) {
      if (signal.aborted) throw new MobileLLMError('Aborted', 'model load aborted');
      const { done, value } = await reader.read();
      if (done) break;
      loader.push(value);
      loaded += value.length;
      if (performance.now() - lastReport > 100) {
        lastReport = performance.now();
        progress({ phase: fromCache ? 'cache' : 'read', loaded, total: size, fromCache });
      }
    }
  } catch (e) {
    reader.cancel().catch(() => {});
    loader.free();
    throw e;
  } finally {
    await opened.cleanup?.();
  }
  const readMs = performance.now() - t1;
  progress({ phase: 'compile', loaded: size, total: size, fromCache });
  const t2 = performance.now();
  try {
    model = await loader.finish(!!msg.forceF32);
    session = model.new_session(msg.contextLength || 0);
  } catch (e) {
    // A file the engine rejects must not stay cached: the next attempt would fail the same way.
    if (e?.name === 'InvalidModelFile' || e?.name === 'UnsupportedModel') await deleteCached(msg.url).catch(() => {});
    unload();
    throw e;
  }
  const info = JSON.parse(model.info());
  const value = {
    info: { ...info, n_ctx: session.n_ctx(), url: msg.url },
    fromCache,
    conversion: opened.conversion ?? null,
    timings: { download_ms: downloadMs, read_ms: readMs, compile_ms: performance.now() - t2, total_ms: performance.now() - t0 },
  };
  progress({ phase: 'ready', loaded: size, total: size, fromCache });
  return value;
}

function unload() {
  session?.free();
  model?.free();
  session = model = null;
  return null;
}

/** `raw` (completion mode): no chat template, the contents are the text the model continues. */
function promptIds(messages, raw = false) {
  const m = need();
  const text = raw ? messages.map((x) => x.content).join('') : m.render_chat(JSON.stringify(messages), true);
  return { text, ids: Array.from(m.encode_prompt(text)) };
}

async function generate(msg) {
  const { ids } = promptIds(msg.messages, !!msg.options?.raw);
  if (isInterrupted(msg.id)) {
    interrupted.delete(msg.id);
    return { prompt_tokens: ids.length, prefill_tokens: 0, tokens: [], text: '', finish: 'abort', prefill_ms: 0, decode_ms: 0, ttft_ms: null, prompt_ids: ids, n_ctx: session.n_ctx() };
  }
  // Lets the page answer an interrupt at once with a truthful usage (see mobilellm.js #generate).
  const prompt = Uint32Array.from(ids);
  post({ id: msg.id, type: Msg.STARTED, prompt_tokens: ids.length, cached_prefix: session.reusable_prefix(prompt) });
  const onToken = (text, token) => post({ id: msg.id, type: Msg.TOKEN, text, token });
  generatingId = msg.id;
  try {
    const r = JSON.parse(await session.generate(prompt, JSON.stringify(msg.options || {}), onToken));
    return { ...r, prompt_ids: ids, n_ctx: session.n_ctx() };
  } finally {
    generatingId = null;
    interrupted.delete(msg.id);
  }
}
