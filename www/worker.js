// The engine's Web Worker: owns the wasm module, the loaded model and one chat session, and
// answers the typed messages of protocol.js. Generation runs here so the page never janks; the
// worker stays responsive to `interrupt` because every decode step awaits the GPU.

import init, { ModelLoader, last_panic } from './pkg/mobilellm_web.js';
import { openModel, deleteCached } from './cache.js';
import { Msg, MobileLLMError, serializeError } from './protocol.js';

let ready = null;        // Promise of the wasm module's initialisation
let model = null;        // wasm Model
let session = null;      // wasm WasmSession (one per loaded model: its KV cache is the conversation)
let dead = null;         // set after a panic: the wasm instance cannot be trusted any more
const loads = new Map(); // load request id -> AbortController
let queue = Promise.resolve(); // requests that touch the engine run one at a time

const post = (msg) => self.postMessage(msg);

self.onmessage = (ev) => {
  const msg = ev.data;
  switch (msg.type) {
    // Control messages act immediately, never queued behind the generation they stop.
    case Msg.INTERRUPT:
      session?.interrupt();
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
    case Msg.TOKENIZE: return run(msg.id, () => promptIds(msg.messages));
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
  ready ??= init();
  await ready;
  unload();
  const progress = (p) => post({ id: msg.id, type: Msg.PROGRESS, progress: p });
  const t0 = performance.now();
  const { body, size, fromCache } = await openModel(msg.url, { signal, onProgress: progress, useCache: msg.useCache });
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

function promptIds(messages) {
  const m = need();
  const text = m.render_chat(JSON.stringify(messages), true);
  return { text, ids: Array.from(m.encode_prompt(text)) };
}

async function generate(msg) {
  const m = need();
  const { ids } = promptIds(msg.messages);
  const onToken = (text, token) => post({ id: msg.id, type: Msg.TOKEN, text, token });
  const r = JSON.parse(await session.generate(Uint32Array.from(ids), JSON.stringify(msg.options || {}), onToken));
  return { ...r, prompt_ids: ids, n_ctx: session.n_ctx() };
}
