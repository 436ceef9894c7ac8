// MobileLLM: run a GGUF language model in the browser, on the GPU through WebGPU or on the CPU
// (wasm SIMD, threads where the page is cross-origin isolated), with an OpenAI-style API.
//
//   import { MobileLLM } from './mobilellm.js';
//   const llm = await MobileLLM.load(url, { onProgress, signal });   // backend 'auto' chooses
//   console.log(llm.backend, llm.loadStats.engine.threads);          // 'webgpu' or 'cpu', threads
//   const stream = await llm.chat.completions.create({ messages, stream: true, temperature: 0.7 });
//   for await (const chunk of stream) out += chunk.choices[0].delta.content ?? '';
//   // A Hugging Face checkpoint is converted in the worker once, then cached; base models have
//   // no chat template: continue raw text with completions.create.
//   const base = await MobileLLM.load('facebook/MobileLLM-125M', { hfToken });
//   const r = await base.completions.create({ prompt: 'The capital of France is', max_tokens: 16 });
//
// The engine runs in a Web Worker (worker.js); this module only sends typed messages
// (protocol.js). One worker = one model = one KV-cached conversation: pass the whole message
// history on every call, and the already-processed prefix is not computed again.

import { Msg, MobileLLMError, deserializeError } from './protocol.js';
import { listCached, deleteCached } from './cache.js';
import { resolveModelSource, describeCacheKey, CONVERT_TYPES, DEFAULT_CONVERT_TYPE } from './hf.js';

export { MobileLLMError, listCached, deleteCached, resolveModelSource, describeCacheKey, CONVERT_TYPES, DEFAULT_CONVERT_TYPE };

// The worker's messages are typed in protocol.js; the public API's types are declared for users
// in npm/index.d.ts.
/** @typedef {import('./protocol.js').EngineWorker} EngineWorker */
/** @typedef {import('./protocol.js').ChatMessage} ChatMessage */
/** @typedef {import('./protocol.js').GenerateOptions} GenerateOptions */
/** @typedef {import('./protocol.js').GenerateResult} GenerateResult */
/** @typedef {import('./protocol.js').Progress} Progress */
/** @typedef {import('./protocol.js').Results} Results */
/**
 * What a pending request is told: its result or error, and the replies on the way.
 * @typedef {{resolve: (value: any) => void, reject: (e: unknown) => void, onProgress?: (p: Progress) => void,
 *   onStart?: (s: import('./protocol.js').StartedReply) => void, onToken?: (text: string, token: number) => void}} Pending
 */
/**
 * chat.completions.create's request (checked at run time too: callers may be plain JS).
 * @typedef {{messages: readonly ChatMessage[], stream?: boolean | null, temperature?: number | null,
 *   top_p?: number | null, top_k?: number | null, min_p?: number | null, repetition_penalty?: number | null,
 *   max_tokens?: number | null, seed?: number | null, stop?: string | string[] | null, signal?: AbortSignal,
 *   ignore_eos?: boolean, raw?: boolean}} ChatRequest
 */
/** completions.create's request: a prompt instead of messages. @typedef {Omit<ChatRequest, 'messages' | 'raw'> & {prompt: string}} CompletionRequest */
/** @typedef {{id: string, created: number, model: string}} CompletionMeta */
/** A stream's next chunk, its end, or its error. @typedef {{chunk?: object, token?: number, last?: boolean, error?: unknown}} StreamItem */
/**
 * What a generation has received so far (the answer to an interrupt).
 * @typedef {{tokens: number[], text: string, promptTokens: number | null, cachedPrefix?: number, t0: number,
 *   tFirst: number | null}} Seen
 */

/** True when the browser exposes WebGPU (it may still have no usable adapter). */
export function hasWebGPU() {
  return typeof navigator !== 'undefined' && !!navigator.gpu;
}

/** @type {Record<string, string>} */
const FINISH = { stop: 'stop', length: 'length', context_full: 'length', abort: 'abort' };

let nextCompletionId = 1;

export class MobileLLM {
  /** @type {EngineWorker} */
  #worker;
  #nextId = 1;
  /** @type {Map<number, Pending>} */
  #pending = new Map(); // request id -> {resolve, reject, onProgress?, onToken?}
  /** @type {unknown} the error every call fails with once closed */
  #closed = null;
  /** @type {Map<number, () => void>} */
  #stoppers = new Map(); // generation request id -> "answer now with what you have"

  /**
   * Model and device description once loaded: arch, n_ctx, n_vocab, backend, adapter, f16, url, ...
   * @type {import('./protocol.js').ModelInfo}
   */
  info = /** @type {any} */ (null); // (set by load() before the instance is handed out)
  /**
   * How the model was obtained and what runs it: {fromCache, timings: {download_ms, read_ms,
   * compile_ms, total_ms}, engine: {backend, threads, requestedThreads, threadsNote, simd, build,
   * crossOriginIsolated, reason}}.
   * @type {Omit<import('./protocol.js').LoadResult, 'info'>}
   */
  loadStats = /** @type {any} */ (null); // (set by load() too)
  /** 'webgpu' or 'cpu': the backend running the model. */
  get backend() { return this.loadStats?.engine?.backend ?? null; }
  chat = { completions: { create: (/** @type {ChatRequest} */ req) => this.#create(req) } };
  /**
   * Completion mode, for base models: `prompt` is the raw text the model continues (no chat
   * template). OpenAI-style `text_completion` objects ({choices: [{text, finish_reason}]}), or with
   * `stream: true` an async iterable of them; the options are chat.completions.create's.
   * (chat.completions.create({messages, raw: true}) is the same on the concatenated contents.)
   */
  completions = { create: (/** @type {CompletionRequest} */ req) => this.#createCompletion(req) };
  /** Debugging and tests: teacher-forced logits and prompt tokenisation, on the same engine. */
  debug = {
    /** @param {Iterable<number> | ArrayLike<number>} tokens */
    topLogits: (tokens, k = 2) => this.#request({ type: Msg.TOP_LOGITS, tokens: Array.from(tokens), k }),
    /** @param {readonly ChatMessage[]} messages */
    promptTokens: (messages) => this.#request({ type: Msg.TOKENIZE, messages: checkMessages(messages) }),
    /** Memory now: the engine's wasm heap, the GPU buffers it created (WebGPU), the weights. */
    stats: () => this.#request({ type: Msg.STATS }),
    /** The CPU kernels' self-test inside the loaded wasm build: {ok, simd, cases: [...]}. */
    cpuSelftest: () => this.#request({ type: Msg.SELFTEST }),
    /**
     * Per-kernel times of one decode step after `messages` (forgets the cached conversation).
     * @param {readonly ChatMessage[]} messages
     */
    profileDecode: (messages, steps = 1) => this.#request({ type: Msg.PROFILE, messages: checkMessages(messages), steps }),
    /**
     * Destroys the model's GPU device at once, as a driver reset or a GPU process crash would lose
     * it: the running generation and every later call reject with DeviceLost until the model is
     * loaded again (tests of that path; nothing on the CPU backend).
     */
    loseDevice: () => this.#request({ type: Msg.LOSE_DEVICE }),
  };

  /** @param {EngineWorker} worker */
  constructor(worker) {
    this.#worker = worker;
    worker.onmessage = (ev) => this.#onMessage(ev.data);
    worker.onerror = (ev) => {
      ev.preventDefault?.();
      this.#failAll(new MobileLLMError('InternalError', `worker failed: ${ev.message || 'script error'}`));
    };
  }

  /**
   * Downloads (or reads from the cache) and loads a GGUF model, or a Hugging Face checkpoint,
   * which is downloaded, converted to GGUF in the worker and cached (a reload skips all three).
   * @param {string | URL} url  a GGUF URL (any CORS-enabled URL; relative URLs resolve against the page),
   *   a Hugging Face repository ("facebook/MobileLLM-125M", "hf:owner/name@revision",
   *   "https://huggingface.co/owner/name"), or a checkpoint folder URL ending with "/" (see hf.js)
   * @param {{onProgress?: (p: Progress) => void,
   *          signal?: AbortSignal, backend?: 'auto' | 'webgpu' | 'cpu', threads?: number, build?: string,
   *          forceF32?: boolean, contextLength?: number, useCache?: boolean,
   *          workerUrl?: string | URL, wasmUrl?: string | URL | Record<string, string | URL>,
   *          hfToken?: string, hubUrl?: string, revision?: string, convertType?: string}} [opts]
   *   backend: 'auto' (default) runs on WebGPU when the browser offers a hardware adapter, else on
   *   the CPU (no WebGPU, no adapter, or a software one such as SwiftShader); threads: the CPU
   *   backend's threads (default: the cores, at most 4; more than one needs a cross-origin isolated
   *   page, see loadStats.engine.threadsNote).
   *   build (testing, debugging): one wasm build instead of the automatic choice (pkg,
   *   pkg-relaxed, pkg-mt, pkg-mt-relaxed; the pkg-mt ones need cross-origin isolation).
   *   workerUrl/wasmUrl: files hosted elsewhere (wasmUrl: the single-thread build's .wasm, or an
   *   object mapping build names pkg, pkg-relaxed, pkg-mt, pkg-mt-relaxed to URLs). Checkpoints: hfToken for gated repositories (sent
   *   to huggingface.co only, never stored), hubUrl (default https://huggingface.co), revision
   *   (default main), convertType q8_0 (default) | q4_k_m | q4_1 | q4_0 | f16 | f32.
   */
  static async load(url, opts = {}) {
    const { onProgress, signal, forceF32 = false, contextLength = 0, useCache = true, hfToken, hubUrl, revision, convertType } = opts;
    const backend = opts.backend ?? 'auto';
    if (!['auto', 'webgpu', 'cpu'].includes(backend)) {
      throw new MobileLLMError('InvalidArgument', `backend must be "auto", "webgpu" or "cpu", not ${JSON.stringify(backend)}`);
    }
    if (opts.threads != null && !(Number.isInteger(opts.threads) && opts.threads >= 1)) {
      throw new MobileLLMError('InvalidArgument', 'threads must be a positive integer');
    }
    if (backend === 'webgpu' && !hasWebGPU()) {
      throw new MobileLLMError('WebGPUUnavailable', 'this browser does not support WebGPU; backend "cpu" (or "auto") runs on the CPU instead');
    }
    signal?.throwIfAborted?.();
    // A GGUF URL, or a Hugging Face checkpoint (repository or folder) converted in the worker
    // and cached under `source.key` (hf.js).
    const source = resolveModelSource(url instanceof URL ? url.href : url, { hubUrl, revision, convertType, baseHref: globalThis.location?.href });
    const abs = source.kind === 'gguf' ? source.url : source.key;
    const checkpoint = source.kind === 'checkpoint' ? source : undefined;
    const wasmUrl = absoluteWasmUrls(opts.wasmUrl);
    // Written out in full so that bundlers (Vite, webpack) recognise the default worker and emit it
    // with the .wasm it imports; apps that host the files elsewhere pass workerUrl / wasmUrl.
    /** @type {EngineWorker} */
    const worker = opts.workerUrl
      ? new Worker(opts.workerUrl, { type: 'module', name: 'mobilellm' })
      : new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'mobilellm' });
    const llm = new MobileLLM(worker);
    let id = 0;
    const onAbort = () => worker.postMessage({ type: Msg.CANCEL, target: id });
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const p = llm.#request({
        type: Msg.LOAD, url: abs, backend, threads: opts.threads, build: opts.build, forceF32, contextLength, useCache, wasmUrl, source: checkpoint, hfToken: checkpoint && hfToken ? String(hfToken) : undefined,
      }, { onProgress });
      id = llm.#nextId - 1;
      const r = await p;
      // Aborted after the download, while the GPU upload ran: honour it now.
      if (signal?.aborted) throw new MobileLLMError('Aborted', 'model load aborted');
      llm.info = r.info;
      llm.loadStats = { fromCache: r.fromCache, timings: r.timings, conversion: r.conversion ?? null, engine: r.engine };
      return llm;
    } catch (e) {
      llm.#terminate(e);
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Stops the running generation now: its stream ends at once with finish_reason "abort" and the
   * tokens received so far. The engine stops at its next step boundary in the background.
   */
  interrupt() {
    if (this.#closed) return;
    this.#worker.postMessage({ type: Msg.INTERRUPT, upTo: this.#nextId - 1 });
    for (const stop of [...this.#stoppers.values()]) stop();
  }

  /**
   * Stops one generation (a stream left early, an aborted signal); others queued keep going.
   * @param {number | undefined} id  undefined: a generation never sent (its signal was aborted already)
   */
  #stopOne(id) {
    if (this.#closed || id === undefined) return;
    this.#worker.postMessage({ type: Msg.INTERRUPT, ids: [id] });
    this.#stoppers.get(id)?.();
  }

  /** Forgets the cached conversation (the next call prefills its whole prompt). */
  resetChat() {
    return this.#request({ type: Msg.RESET });
  }

  /** Frees the model's GPU memory and ends the worker. The object is unusable afterwards. */
  async unload() {
    if (this.#closed) return;
    this.interrupt();
    await this.#request({ type: Msg.UNLOAD }).catch(() => {});
    this.#terminate(new MobileLLMError('Unloaded', 'the model was unloaded'));
  }

  /** @param {unknown} reason */
  #terminate(reason) {
    if (this.#closed) return;
    this.#closed = reason;
    this.#worker.terminate();
    this.#failAll(reason);
  }

  /** @param {unknown} err */
  #failAll(err) {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  /**
   * Sends a request (protocol.js); resolves to its result, telling `handlers` the replies on the way.
   * @template {import('./protocol.js').RequestBody} M
   * @param {M} msg
   * @param {Omit<Pending, 'resolve' | 'reject'>} [handlers]
   * @returns {Promise<Results[M['type']]>}
   */
  #request(msg, handlers = {}) {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, ...handlers });
      this.#worker.postMessage({ ...msg, id });
    });
  }

  /** @param {import('./protocol.js').Reply} msg */
  #onMessage(msg) {
    const p = this.#pending.get(msg.id);
    if (!p) return;
    switch (msg.type) {
      case Msg.PROGRESS: p.onProgress?.(msg.progress); break;
      case Msg.STARTED: p.onStart?.(msg); break;
      case Msg.TOKEN: p.onToken?.(msg.text, msg.token); break;
      case Msg.RESULT: this.#pending.delete(msg.id); p.resolve(msg.value); break;
      case Msg.ERROR: this.#pending.delete(msg.id); p.reject(deserializeError(msg.error)); break;
    }
  }

  /** @param {ChatRequest} req */
  async #create(req) {
    if (!req || typeof req !== 'object') throw new MobileLLMError('InvalidArgument', 'create() takes a request object');
    const messages = checkMessages(req.messages);
    /** @type {GenerateOptions} */
    const options = {};
    for (const k of /** @type {const} */ (['temperature', 'top_p', 'top_k', 'min_p', 'repetition_penalty', 'max_tokens', 'seed'])) {
      if (req[k] !== undefined && req[k] !== null) {
        if (typeof req[k] !== 'number' || !Number.isFinite(req[k])) throw new MobileLLMError('InvalidArgument', `${k} must be a finite number`);
        options[k] = req[k];
      }
    }
    if (req.ignore_eos) options.ignore_eos = true; // benchmarks: decode exactly max_tokens
    if (req.raw) options.raw = true; // completion mode: no chat template (worker.js promptIds)
    if (req.stop != null) options.stop = Array.isArray(req.stop) ? req.stop.map(String) : [String(req.stop)];
    const meta = { id: `chatcmpl-${Date.now().toString(36)}-${nextCompletionId++}`, created: Math.floor(Date.now() / 1000), model: this.info?.url ?? 'mobilellm' };
    return req.stream ? this.#stream(messages, options, req.signal, meta) : this.#complete(messages, options, req.signal, meta);
  }

  /** @param {CompletionRequest} req */
  async #createCompletion(req) {
    if (!req || typeof req !== 'object' || typeof req.prompt !== 'string' || !req.prompt) {
      throw new MobileLLMError('InvalidArgument', 'completions.create() needs a non-empty string prompt');
    }
    /** @type {any} a chat.completion, or a stream of chunks when req.stream */
    const r = await this.#create({ ...req, messages: [{ role: 'user', content: req.prompt }], raw: true });
    /**
     * @param {{id: string, choices: {index: number, message?: {content: string}, delta?: {content?: string},
     *   finish_reason: string | null, logprobs: null}[]}} c  a chat.completion or chunk
     */
    const asText = (c) => ({
      ...c, id: c.id.replace(/^chatcmpl-/, 'cmpl-'), object: 'text_completion',
      choices: c.choices.map(({ index, message, delta, finish_reason, logprobs }) => ({ index, text: (message ?? delta)?.content ?? '', finish_reason, logprobs })),
    });
    if (!req.stream) return asText(r);
    return {
      [Symbol.asyncIterator]() { return this; },
      async next() { const n = await r.next(); return n.done ? n : { done: false, value: asText(n.value) }; },
      return: () => r.return(),
      finished: r.finished,
    };
  }

  /**
   * Starts a generation; `onToken(text, id)` per token. Resolves to the worker's result, or at
   * once to the partial result when interrupt() is called: a decode step already submitted to the
   * GPU cannot be cancelled (several seconds on a software adapter), so the caller gets its answer
   * now and the worker finishes that step in the background; requests after it queue behind it.
   * Rejects with Aborted when `signal` fires.
   * @param {ChatMessage[]} messages
   * @param {GenerateOptions} options
   * @param {AbortSignal | undefined} signal
   * @param {((text: string, token: number) => void) | null} onToken
   * @returns {Promise<GenerateResult> & {requestId?: number}}
   */
  #generate(messages, options, signal, onToken) {
    if (signal?.aborted) return Promise.reject(new MobileLLMError('Aborted', 'generation aborted'));
    /** @type {Seen} */
    const seen = { tokens: [], text: '', promptTokens: null, t0: performance.now(), tFirst: null };
    let settled = false;
    const p = this.#request({ type: Msg.GENERATE, messages, options }, {
      onStart: (s) => { seen.promptTokens = s.prompt_tokens; seen.cachedPrefix = s.cached_prefix; },
      onToken: (text, id) => {
        if (settled) return; // the caller was already answered (interrupted)
        seen.tokens.push(id);
        seen.text += text;
        seen.tFirst ??= performance.now();
        onToken?.(text, id);
      },
    });
    const id = this.#nextId - 1;
    /** @type {Promise<GenerateResult> & {requestId?: number}} */
    const result = new Promise((resolve, reject) => {
      /** @type {(fn: (v: any) => void, v: unknown) => void} */
      const finish = (fn, v) => {
        if (settled) return;
        settled = true;
        this.#stoppers.delete(id);
        signal?.removeEventListener('abort', onAbort);
        fn(v);
      };
      const stopNow = () => finish(resolve, partialResult(seen));
      const onAbort = () => {
        finish(reject, new MobileLLMError('Aborted', 'generation aborted'));
        this.#stopOne(id);
      };
      this.#stoppers.set(id, stopNow);
      signal?.addEventListener('abort', onAbort, { once: true });
      p.then((r) => finish(resolve, r), (e) => finish(reject, e));
    });
    result.requestId = id;
    return result;
  }

  /**
   * @param {ChatMessage[]} messages
   * @param {GenerateOptions} options
   * @param {AbortSignal | undefined} signal
   * @param {CompletionMeta} meta
   */
  async #complete(messages, options, signal, meta) {
    const r = await this.#generate(messages, options, signal, null);
    return {
      ...meta,
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: r.text }, finish_reason: FINISH[r.finish] ?? r.finish, logprobs: null }],
      usage: usage(r),
      timings: timings(r),
      debug: debugInfo(r),
    };
  }

  /**
   * An async iterable of chat.completion.chunk objects; the last one has finish_reason and usage.
   * @param {ChatMessage[]} messages
   * @param {GenerateOptions} options
   * @param {AbortSignal | undefined} signal
   * @param {CompletionMeta} meta
   */
  async #stream(messages, options, signal, meta) {
    /** @type {StreamItem[]} */
    const queue = [];
    /** @type {((value?: unknown) => void) | null} */
    let wake = null;
    let ended = false;
    /** @param {StreamItem} item */
    const push = (item) => { queue.push(item); wake?.(); wake = null; };
    let first = true;
    /**
     * @param {{role?: string, content?: string}} delta
     * @param {string | null} [finish_reason]
     */
    const chunk = (delta, finish_reason = null, extra = {}) => ({
      ...meta, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason, logprobs: null }], ...extra,
    });
    const done = this.#generate(messages, options, signal, (text, token) => {
      if (!text) return; // a token in the middle of a UTF-8 character: its text comes with the next
      push({ chunk: chunk(first ? { role: 'assistant', content: text } : { content: text }), token });
      first = false;
    });
    done.then(
      (r) => push({ chunk: chunk({}, FINISH[r.finish] ?? r.finish, { usage: usage(r), timings: timings(r), debug: debugInfo(r) }), last: true }),
      (e) => push({ error: e }),
    );
    const llm = this;
    const finished = done.then((r) => ({ usage: usage(r), timings: timings(r), finish_reason: FINISH[r.finish] ?? r.finish, debug: debugInfo(r) }));
    finished.catch(() => {}); // the iterator reports the error; this is only for callers who ask
    return {
      [Symbol.asyncIterator]() { return this; },
      async next() {
        if (ended) return { done: true, value: undefined };
        while (!queue.length) await new Promise((r) => (wake = r));
        const item = /** @type {StreamItem} */ (queue.shift()); // (the loop above waited for one)
        if (item.error) { ended = true; throw item.error; }
        if (item.last) ended = true;
        return { done: false, value: item.chunk };
      },
      /** Leaving a for-await loop early stops the generation. */
      async return() {
        if (!ended) { ended = true; llm.#stopOne(done.requestId); await done.catch(() => {}); }
        return { done: true, value: undefined };
      },
      /** Resolves to the final response (usage, timings) once the generation ends. */
      finished,
    };
  }
}

/**
 * wasmUrl made absolute against the page: a string, or each entry of a build -> URL object.
 * @param {string | URL | Record<string, string | URL> | undefined} w
 * @returns {string | Record<string, string> | undefined}
 */
function absoluteWasmUrls(w) {
  if (!w) return undefined;
  const abs = (/** @type {string | URL} */ u) => new URL(u, globalThis.location?.href).href;
  if (typeof w === 'string' || w instanceof URL) return abs(w);
  return Object.fromEntries(Object.entries(w).map(([k, v]) => [k, abs(v)]));
}

/**
 * @param {unknown} messages  checked here: callers may be plain JS
 * @returns {ChatMessage[]}
 */
function checkMessages(messages) {
  if (!Array.isArray(messages) || messages.length === 0) throw new MobileLLMError('InvalidArgument', 'messages must be a non-empty array');
  return messages.map((m, i) => {
    if (!m || typeof m.role !== 'string' || typeof m.content !== 'string') {
      throw new MobileLLMError('InvalidArgument', `messages[${i}] needs string role and content`);
    }
    return { role: m.role, content: m.content };
  });
}

/**
 * What an interrupted generation had produced when the caller stopped waiting for it.
 * @param {Seen} seen
 * @returns {GenerateResult}
 */
function partialResult(seen) {
  const now = performance.now();
  const prompt = seen.promptTokens ?? 0;
  return {
    prompt_tokens: prompt,
    prefill_tokens: seen.cachedPrefix == null ? null : prompt - seen.cachedPrefix,
    tokens: seen.tokens,
    text: seen.text,
    finish: 'abort',
    prefill_ms: null,
    decode_ms: seen.tFirst == null ? null : now - seen.tFirst,
    ttft_ms: seen.tFirst == null ? null : seen.tFirst - seen.t0,
    cached_tokens: null,
    prompt_ids: null,
    n_ctx: null,
    partial: true,
  };
}

/** @param {GenerateResult} r */
function usage(r) {
  return { prompt_tokens: r.prompt_tokens, completion_tokens: r.tokens.length, total_tokens: r.prompt_tokens + r.tokens.length, prefill_tokens: r.prefill_tokens };
}

/** @param {GenerateResult} r */
function timings(r) {
  const decoded = Math.max(0, r.tokens.length - 1); // the first token comes out of the prefill
  return {
    prefill_ms: r.prefill_ms,
    decode_ms: r.decode_ms,
    ttft_ms: r.ttft_ms,
    // (null times: an interrupted call answered early)
    prefill_tokens_per_s: r.prefill_ms != null && r.prefill_ms > 0 ? (Number(r.prefill_tokens) / r.prefill_ms) * 1000 : null,
    decode_tokens_per_s: r.decode_ms != null && r.decode_ms > 0 && decoded > 0 ? (decoded / r.decode_ms) * 1000 : null,
  };
}

/** @param {GenerateResult} r */
function debugInfo(r) {
  return {
    prompt_token_ids: r.prompt_ids, completion_token_ids: r.tokens, cached_tokens: r.cached_tokens, n_ctx: r.n_ctx,
    dispatches_per_step: r.dispatches_per_step, readback_bytes_per_step: r.readback_bytes_per_step,
  };
}
