// The engine's Web Worker: owns the wasm module, the loaded model and one chat session, and
// answers the typed messages of protocol.js. Generation runs here so the page never janks; the
// worker stays responsive to `interrupt` because the engine yields to this worker's event loop
// between steps (awaiting the GPU, or a macrotask on the CPU backend).
//
// Backends: WebGPU, or the CPU backend (engine-variants.js picks the wasm build: threads where the
// page is cross-origin isolated, relaxed SIMD where the browser has it). On the CPU backend this
// worker is thread 0 of a pool whose other threads are pool-worker.js workers on shared memory.

import { openModel, deleteCached } from './cache.js';
import { openConverted } from './convert.js';
import { Msg, MobileLLMError, serializeError, initWasm } from './protocol.js';
import { VARIANTS, importVariant, chooseVariant, probeBackend, wasmUrlFor, canShareMemory } from './engine-variants.js';

// The messages (protocol.js) and the engine's wasm-bindgen types (pkg/mobilellm_web.d.ts).
/** @typedef {import('./protocol.js').ToWorker} ToWorker */
/** @typedef {import('./protocol.js').Reply} Reply */
/** @typedef {import('./protocol.js').LoadRequest} LoadRequest */
/** @typedef {import('./protocol.js').GenerateRequest} GenerateRequest */
/** @typedef {import('./protocol.js').ChatMessage} ChatMessage */
/** @typedef {import('./protocol.js').Progress} Progress */
/** @typedef {import('./protocol.js').ResultReply['value']} Result */
/** @typedef {import('./protocol.js').TypedWorker<import('./protocol.js').PoolStart, import('./protocol.js').PoolReply>} PoolWorker */
/** @typedef {import('./pkg/mobilellm_web.js').Model} Model */
/** @typedef {import('./pkg/mobilellm_web.js').WasmSession} WasmSession */

// glue and variant are set by prepareEngine(), which runs before every use of them.
let glue = /** @type {import('./engine-variants.js').Glue} */ (/** @type {unknown} */ (null)); // the chosen build's wasm-bindgen module, once initialised
let variant = /** @type {string} */ (/** @type {unknown} */ (null)); // its name (one build per worker: a load never switches it)
/** @type {Worker[]} */
let poolWorkers = [];    // pool-worker.js threads of the CPU backend
/** @type {Model | null} */
let model = null;        // wasm Model
/** @type {WasmSession | null} */
let session = null;      // wasm WasmSession (one per loaded model: its KV cache is the conversation)
/** @type {MobileLLMError | null} */
let dead = null;         // set after a panic: the wasm instance cannot be trusted any more
/** @type {MobileLLMError | null} */
let lost = null;         // set once the model's GPU device is lost: every later use fails with it (until a load)
/** @type {Map<number, AbortController>} */
const loads = new Map(); // load request id -> AbortController
// Generations the page has stopped (it has already answered them): all ids up to `upTo`, plus
// single ones. Queued generations among them are skipped; the running one is told to stop.
let interruptedUpTo = 0;
/** @type {Set<number>} */
const interrupted = new Set();
/** @type {number | null} */
let generatingId = null;
/** @param {number} id */
const isInterrupted = (id) => id <= interruptedUpTo || interrupted.has(id);
let queue = Promise.resolve(); // requests that touch the engine run one at a time

/** @param {Reply} msg */
const post = (msg) => self.postMessage(msg);

/** @param {MessageEvent<ToWorker>} ev */
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
    case Msg.LOSE_DEVICE:
      // At once, not queued: the point is to lose the device under a running generation.
      try {
        need().debug_lose_device();
        post({ id: msg.id, type: Msg.RESULT, value: null });
      } catch (e) {
        post({ id: msg.id, type: Msg.ERROR, error: serializeError(e) });
      }
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
    case Msg.SELFTEST: return run(msg.id, () => { need(); return JSON.parse(glue.cpu_selftest()); });
    case Msg.STATS: return run(msg.id, () => {
      const i = JSON.parse(need().info());
      return { wasm_memory_bytes: i.wasm_memory_bytes, gpu_allocated_bytes: i.backend === 'webgpu' ? i.gpu_bytes : 0, weight_bytes: i.gpu_bytes };
    });
    case Msg.PROFILE: return run(msg.id, async () => {
      const ids = promptIds(msg.messages).ids;
      if (!session) throw new MobileLLMError('Unloaded', 'no model is loaded'); // (set with the model)
      return JSON.parse(await session.profile_decode(Uint32Array.from(ids), msg.steps || 1));
    });
    default:
      post({ id: /** @type {any} */ (msg).id, type: Msg.ERROR, error: { name: 'InvalidArgument', message: `unknown message type ${/** @type {any} */ (msg).type}` } });
  }
};

/**
 * @param {number} id
 * @param {() => Result | Promise<Result>} fn
 */
function run(id, fn) {
  const p = queue.then(async () => {
    if (dead) throw dead;
    try {
      const value = await fn();
      post({ id, type: Msg.RESULT, value });
    } catch (e) {
      const err = asEngineError(e);
      // The engine says DeviceLost on this call and every later one; the worker remembers it too,
      // so calls that would not touch the GPU (tokenising) say so as well, until a new load.
      if (err?.name === 'DeviceLost') lost ??= new MobileLLMError('DeviceLost', `${err.message} (load the model again)`);
      post({ id, type: Msg.ERROR, error: serializeError(err) });
    }
  });
  queue = p.catch(() => {});
  return p;
}

/**
 * A wasm trap after a Rust panic becomes a readable InternalError, and poisons the worker.
 * @param {any} e
 */
function asEngineError(e) {
  if (e instanceof WebAssembly.RuntimeError) {
    let detail = null;
    try { detail = glue?.last_panic(); } catch { /* the instance may be too broken to ask */ }
    dead = new MobileLLMError('InternalError', `engine panic: ${detail || e.message}`);
    return dead;
  }
  return e;
}

function need() {
  if (!model) throw new MobileLLMError('Unloaded', 'no model is loaded');
  if (lost) throw lost;
  return model;
}

/** Threads the CPU backend uses when the caller does not say: the cores, at most 4 (decode is
 * memory-bound; more threads mostly add synchronisation). */
const defaultThreads = () => Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1));

/**
 * Decides the backend and build, and instantiates the build (once per worker).
 * @param {LoadRequest} msg
 */
async function prepareEngine(msg) {
  let backend = msg.backend || 'auto';
  let reason = `asked for ${backend}`;
  if (backend === 'auto') ({ backend, reason } = await probeBackend());
  else if (backend === 'webgpu' && !navigator.gpu) {
    throw new MobileLLMError('WebGPUUnavailable', 'this browser does not expose WebGPU (navigator.gpu) in workers; the CPU backend (backend: "cpu" or "auto") works everywhere');
  } else if (backend !== 'webgpu' && backend !== 'cpu') {
    throw new MobileLLMError('InvalidArgument', `backend must be "auto", "webgpu" or "cpu", not ${JSON.stringify(backend)}`);
  }
  const threads = backend === 'cpu' ? Math.max(1, Math.floor(msg.threads || defaultThreads())) : 1;
  const want = msg.build || chooseVariant({ backend, threads, pinned: typeof msg.wasmUrl === 'string' });
  if (msg.build && !VARIANTS.includes(msg.build)) throw new MobileLLMError('InvalidArgument', `build must be one of ${VARIANTS.join(', ')}`);
  if (want.startsWith('pkg-mt') && !canShareMemory()) {
    throw new MobileLLMError('InvalidArgument', `build ${want} needs a cross-origin isolated page (COOP/COEP)`);
  }
  if (variant && variant !== want) {
    throw new MobileLLMError('InvalidArgument', `this engine worker runs the ${variant} build; load the model in a new MobileLLM instance`);
  }
  if (!glue) {
    const g = await importVariant(want).catch((e) => {
      throw new MobileLLMError('DownloadFailed', `could not load the engine module ${want}/mobilellm_web.js: ${e?.message || e}`);
    });
    await initWasm(g.default, wasmUrlFor(msg.wasmUrl, want));
    glue = g;
    variant = want;
  }
  return { backend, reason, threads };
}

/** A thread pool of `threads` (this worker is thread 0) on the shared-memory build, or one
 * thread. A pool worker that fails to start means one thread, never a pool waiting for it.
 * @param {number} threads
 */
async function startPool(threads) {
  const pool = new glue.ThreadPool(threads);
  if (pool.threads() <= 1) return { pool, note: threads > 1 ? threadNote() : null };
  const [module, memory] = glue.wasm_module_and_memory();
  const started = [];
  try {
    for (let i = 1; i < pool.threads(); i++) {
      /** @type {PoolWorker} */
      const w = new Worker(new URL('./pool-worker.js', import.meta.url), { type: 'module', name: `mobilellm-pool-${i}` });
      started.push(w);
      await /** @type {Promise<void>} */ (new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('did not start within 30 s')), 30_000);
        w.onmessage = ({ data }) => { clearTimeout(timer); data.ready ? resolve() : reject(new Error(data.error)); };
        w.onerror = (e) => { clearTimeout(timer); e.preventDefault?.(); reject(new Error(e.message || 'script error')); };
        w.postMessage({ variant, module, memory, shared: pool.shared(), index: i });
      }));
    }
  } catch (e) {
    started.forEach((w) => w.terminate());
    pool.free();
    console.warn(`mobilellm: the CPU backend's thread pool did not start (${e.message}); running on one thread`);
    return { pool: new glue.ThreadPool(1), note: `thread pool failed to start (${e.message}): one thread` };
  }
  poolWorkers = started;
  return { pool, note: null };
}

const threadNote = () => (canShareMemory()
  ? 'this build has no shared memory: one thread'
  : 'the page is not cross-origin isolated (serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp): one thread');

/**
 * @param {LoadRequest} msg
 * @param {AbortSignal} signal
 * @returns {Promise<import('./protocol.js').LoadResult>}
 */
async function load(msg, signal) {
  const engine = await prepareEngine(msg);
  unload();
  /** @param {Progress} p */
  const progress = (p) => post({ id: msg.id, type: Msg.PROGRESS, progress: p });
  const t0 = performance.now();
  // A Hugging Face checkpoint (hf.js) is converted here once, then cached under msg.url (its key).
  const opened = msg.source?.kind === 'checkpoint'
    ? await openConverted(msg.source, { token: msg.hfToken, signal, onProgress: progress, useCache: msg.useCache, wasmUrl: wasmUrlFor(msg.wasmUrl, 'pkg') })
    : await openModel(msg.url, { signal, onProgress: progress, useCache: msg.useCache });
  const { body, size, fromCache } = opened;
  const downloadMs = performance.now() - t0;

  // WebGPU: each tensor goes to the GPU as soon as its bytes are in (wasm memory holds about one
  // tensor, never the file). CPU: the file is copied chunk by chunk into the engine's pre-sized
  // buffer (the CPU backend computes from it as it is).
  const t1 = performance.now();
  /** A file the engine rejects must not stay cached: the next attempt would fail the same way. @param {any} e */
  const forgetIfInvalid = async (e) => {
    if (e?.name === 'InvalidModelFile' || e?.name === 'UnsupportedModel') await deleteCached(msg.url).catch(() => {});
  };
  /** The WebGPU backend's loader (tensors to the GPU as they arrive), or null. @type {import('./pkg/mobilellm_web.js').GpuModelLoader | null} */
  let gpuLoader = null;
  /** The CPU backend's loader (the whole file in one buffer), or null. @type {import('./pkg/mobilellm_web.js').ModelLoader | null} */
  let fileLoader = null;
  try {
    if (engine.backend === 'webgpu') gpuLoader = await glue.GpuModelLoader.begin(size, !!msg.forceF32);
    else fileLoader = glue.ModelLoader.begin(size);
  } catch (e) {
    await opened.cleanup?.();
    throw e;
  }
  const loader = /** @type {{push(chunk: Uint8Array): void, free(): void}} */ (gpuLoader ?? fileLoader);
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
    await forgetIfInvalid(e);
    throw e;
  } finally {
    await opened.cleanup?.();
  }
  const readMs = performance.now() - t1;
  progress({ phase: 'compile', loaded: size, total: size, fromCache });
  const t2 = performance.now();
  let threadsNote = null;
  /** Bytes of the file the streaming GPU load held at once (null on the CPU backend). @type {number | null} */
  let peakBuffered = null;
  try {
    /** @type {Model} */
    let loadedModel;
    if (gpuLoader) {
      peakBuffered = gpuLoader.peak_buffered_bytes();
      loadedModel = gpuLoader.finish();
    } else {
      const { pool, note } = await startPool(engine.threads);
      threadsNote = note;
      loadedModel = /** @type {import('./pkg/mobilellm_web.js').ModelLoader} */ (fileLoader).finish_cpu(pool, false);
    }
    model = loadedModel;
    session = loadedModel.new_session(msg.contextLength || 0);
  } catch (e) {
    await forgetIfInvalid(e);
    unload();
    throw e;
  }
  const info = JSON.parse(model.info());
  const value = {
    info: { ...info, n_ctx: session.n_ctx(), url: msg.url },
    engine: {
      backend: info.backend, threads: info.threads, requestedThreads: engine.threads, threadsNote, simd: info.simd,
      build: variant, crossOriginIsolated: globalThis.crossOriginIsolated === true, reason: engine.reason,
      peakBufferedBytes: peakBuffered,
    },
    fromCache,
    conversion: opened.conversion ?? null,
    timings: { download_ms: downloadMs, read_ms: readMs, compile_ms: performance.now() - t2, total_ms: performance.now() - t0 },
  };
  progress({ phase: 'ready', loaded: size, total: size, fromCache });
  return value;
}

function unload() {
  session?.free();
  // Dropping the model drops its pool: the pool workers' loops return and they close.
  model?.free();
  session = model = null;
  lost = null;
  poolWorkers.forEach((w) => setTimeout(() => w.terminate(), 1000));
  poolWorkers = [];
  return null;
}

/**
 * `raw` (completion mode): no chat template, the contents are the text the model continues.
 * @param {ChatMessage[]} messages
 * @param {boolean} [raw]
 */
function promptIds(messages, raw = false) {
  const m = need();
  const text = raw ? messages.map((x) => x.content).join('') : m.render_chat(JSON.stringify(messages), true);
  return { text, ids: Array.from(m.encode_prompt(text)) };
}

/**
 * @param {GenerateRequest} msg
 * @returns {Promise<import('./protocol.js').GenerateResult>}
 */
async function generate(msg) {
  const { ids } = promptIds(msg.messages, !!msg.options?.raw);
  if (!session) throw new MobileLLMError('Unloaded', 'no model is loaded'); // (set with the model)
  if (isInterrupted(msg.id)) {
    interrupted.delete(msg.id);
    return { prompt_tokens: ids.length, prefill_tokens: 0, tokens: [], text: '', finish: 'abort', prefill_ms: 0, decode_ms: 0, ttft_ms: null, prompt_ids: ids, n_ctx: session.n_ctx() };
  }
  // Lets the page answer an interrupt at once with a truthful usage (see mobilellm.js #generate).
  const prompt = Uint32Array.from(ids);
  post({ id: msg.id, type: Msg.STARTED, prompt_tokens: ids.length, cached_prefix: session.reusable_prefix(prompt) });
  /** @type {(text: string, token: number) => void} */
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
