// The typed message protocol between the page (mobilellm.js) and the engine's worker (worker.js),
// and the one error class both sides use. Every request carries an `id`; the worker answers with
// any number of `progress` / `started` / `token` messages for that id, then exactly one `result` or `error`.
// The other workers' messages are typed here too: the CPU backend's pool workers (worker.js ->
// pool-worker.js), the checkpoint converter (convert.js -> convert-worker.js) and the service worker
// (offline.js -> sw.js). Both ends of every channel are checked against these types
// (scripts/typecheck.sh: TypeScript over the JSDoc), so a field renamed on one side is a type error.
//
// Page -> worker (Request):
/** @typedef {'auto' | 'webgpu' | 'cpu'} BackendChoice */
/** @typedef {{role: string, content: string}} ChatMessage */
/** @typedef {import('./hf.js').CheckpointSource} CheckpointSource */
/**
 * @typedef {{id: number, type: 'load', url: string, backend: BackendChoice, threads?: number, build?: string,
 *   forceF32: boolean, contextLength: number, useCache: boolean, wasmUrl?: string | Record<string, string>,
 *   source?: CheckpointSource, hfToken?: string}} LoadRequest
 */
//   backend 'auto': the worker probes WebGPU (engine-variants.js probeBackend); the result's
//   `engine` says what runs: {backend, threads, requestedThreads, threadsNote, simd, build, crossOriginIsolated, reason}.
//   source: hf.js resolveModelSource() of a Hugging Face checkpoint (kind 'checkpoint'): the worker
//   downloads, converts and caches it under `url` (the conversion key); hfToken goes to huggingface.co only.
/**
 * @typedef {{temperature?: number, top_p?: number, top_k?: number, min_p?: number, repetition_penalty?: number,
 *   max_tokens?: number, seed?: number, ignore_eos?: boolean, raw?: boolean, stop?: string[]}} GenerateOptions
 */
/** @typedef {{id: number, type: 'generate', messages: ChatMessage[], options: GenerateOptions}} GenerateRequest */
//   options.raw: completion mode: no chat template, the messages' contents are the text to continue.
/** @typedef {{id: number, type: 'reset'} | {id: number, type: 'unload'}} SimpleRequest */
/** @typedef {{id: number, type: 'topLogits', tokens: number[], k: number}} TopLogitsRequest */
/** @typedef {{id: number, type: 'tokenize', messages: ChatMessage[], raw?: boolean}} TokenizeRequest */
/** @typedef {{id: number, type: 'profileDecode', messages: ChatMessage[], steps: number}} ProfileRequest */
/** @typedef {{id: number, type: 'selftest'}} SelftestRequest  (the CPU kernels' self-test in the loaded build) */
/** @typedef {{id: number, type: 'stats'}} StatsRequest  (memory now: {wasm_memory_bytes, gpu_allocated_bytes, weight_bytes}) */
/** @typedef {{id: number, type: 'loseDevice'}} LoseDeviceRequest  (tests: destroy the GPU device now, not queued behind a generation) */
/** @typedef {LoadRequest | GenerateRequest | SimpleRequest | TopLogitsRequest | TokenizeRequest | ProfileRequest | SelftestRequest | StatsRequest | LoseDeviceRequest} Request */
/**
 * Control messages (no reply): interrupt the generations up to `upTo`, or the single `ids`; cancel a load.
 * @typedef {{type: 'interrupt', upTo: number, ids?: undefined} | {type: 'interrupt', ids: number[], upTo?: undefined}
 *   | {type: 'cancel', target: number}} ControlMessage
 */
/** Everything the page posts to the engine's worker. @typedef {Request | ControlMessage} ToWorker */
/**
 * A request as the page writes it: #request adds the id.
 * @template T
 * @typedef {T extends unknown ? Omit<T, 'id'> : never} WithoutId
 */
/** @typedef {WithoutId<Request>} RequestBody */
//
// Worker -> page (Reply):
/** @typedef {{phase: 'download'|'convert'|'store'|'cache'|'read'|'compile'|'ready', loaded?: number, total?: number, rate?: number, fromCache?: boolean, file?: string, bytes?: number}} Progress */
//   convert: loaded/total are tensors, bytes the GGUF written so far; download of a checkpoint names the `file`.
/** @typedef {{id: number, type: 'progress', progress: Progress}} ProgressReply */
/** @typedef {{id: number, type: 'started', prompt_tokens: number, cached_prefix: number}} StartedReply  (generate: the prompt is tokenised) */
/** @typedef {{id: number, type: 'token', text: string, token: number}} TokenReply */
/** @typedef {{id: number, type: 'result', value: Results[Request['type']]}} ResultReply */
/** @typedef {{name: string, message: string}} SerializedError */
/** @typedef {{id: number, type: 'error', error: SerializedError}} ErrorReply */
/** Everything the engine's worker posts to the page. @typedef {ProgressReply | StartedReply | TokenReply | ResultReply | ErrorReply} Reply */
//
// What each request resolves to (the `value` of its `result`):
/**
 * @typedef {{
 *   load: LoadResult, generate: GenerateResult, reset: null, unload: null, topLogits: [number, number][][],
 *   tokenize: {text: string, ids: number[]}, profileDecode: DecodeProfile, selftest: SelftestReport,
 *   stats: {wasm_memory_bytes: number, gpu_allocated_bytes: number, weight_bytes: number}, loseDevice: null,
 * }} Results
 */
/**
 * Model.info() (Rust, src/wasm.rs) plus the session's n_ctx and the model's URL.
 * @typedef {{arch: string, n_vocab: number, dim: number, n_layers: number, block_repeat: number, n_heads: number,
 *   n_kv_heads: number, context_length: number, n_ctx: number, file_bytes: number, has_chat_template: boolean,
 *   backend: 'webgpu' | 'cpu', threads: number, simd: string, adapter: string, f16: boolean, gpu_bytes: number,
 *   wasm_memory_bytes: number, url: string}} ModelInfo
 */
/**
 * @typedef {{backend: 'webgpu' | 'cpu', threads: number, requestedThreads: number, threadsNote: string | null,
 *   simd: string, build: string, crossOriginIsolated: boolean, reason: string, peakBufferedBytes: number | null}} EngineInfo
 */
/**
 * A converted checkpoint (convert-worker.js): the converter's report (src/wasm_convert.rs) and the costs.
 * @typedef {{report: {arch: string, type: string, n_tensors: number, [field: string]: unknown}, download_bytes: number,
 *   scratch: 'opfs' | 'memory', timings: {download_ms: number, convert_ms: number, store_ms: number},
 *   wasm_memory_bytes: number}} ConversionStats
 */
/**
 * @typedef {{info: ModelInfo, engine: EngineInfo, fromCache: boolean, conversion: ConversionStats | null,
 *   timings: {download_ms: number, read_ms: number, compile_ms: number, total_ms: number}}} LoadResult
 */
/**
 * WasmSession.generate() (Rust) plus the prompt's ids and n_ctx; the page's partial answer to an
 * interrupt has the same shape with what it knows (nulls) and `partial`.
 * @typedef {{prompt_tokens: number, prefill_tokens: number | null, tokens: number[], text: string, finish: string,
 *   prefill_ms: number | null, decode_ms: number | null, ttft_ms: number | null, cached_tokens?: number | null,
 *   dispatches_per_step?: number, readback_bytes_per_step?: number, prompt_ids: number[] | null,
 *   n_ctx: number | null, partial?: boolean}} GenerateResult
 */
/** @typedef {{kv_len: number, step_ms: number, round_trip_ms: number, ops: {op: string, per_step: number, ms_per_step: number}[]}} DecodeProfile */
/** @typedef {{ok: boolean, simd: string, cases: {name: string, max_abs_err: number, max_rel_err: number, bit_equal_scalar: boolean}[]}} SelftestReport */
//
// Engine worker -> pool worker (pool-worker.js), once: the module and memory to run on; the pool
// worker answers {ready} once it waits for jobs, or {error}.
/** @typedef {{variant: string, module: WebAssembly.Module, memory: WebAssembly.Memory, shared: number, index: number}} PoolStart */
/** @typedef {{ready: true, error?: undefined} | {error: string, ready?: undefined}} PoolReply */
//
// Engine worker (convert.js) -> conversion worker (convert-worker.js), and its replies: progress,
// then one result or error; after 'cleanup', 'cleaned'.
/** @typedef {{type: 'convert', source: CheckpointSource, token?: string, useCache: boolean, wasmUrl?: string} | {type: 'cleanup'}} ConvertRequest */
/**
 * stored: the GGUF is in the model cache under source.key; else it is handed over (the scratch
 * file stays until 'cleanup').
 * @typedef {{stored: true, conversion: ConversionStats, gguf?: undefined} | {stored: false, conversion: ConversionStats, gguf: Blob}} ConvertResult
 */
/**
 * @typedef {{type: 'progress', progress: Progress} | {type: 'result', value: ConvertResult}
 *   | {type: 'error', error: SerializedError} | {type: 'cleaned', value?: undefined}} ConvertReply
 */
//
// Page (offline.js) -> service worker (sw.js): 'version' is answered on the transferred port.
/** @typedef {{type: 'version'} | {type: 'skip-waiting'}} SwRequest */
/** @typedef {{version: string, cache: string, files: number}} SwVersion */
//
/**
 * A Worker whose messages are typed: what it is sent (`In`) and what it posts back (`Out`).
 * @template In, Out
 * @typedef {Omit<Worker, 'postMessage' | 'onmessage'> & {
 *   postMessage(message: In, transfer: Transferable[]): void,
 *   postMessage(message: In, options?: StructuredSerializeOptions): void,
 *   onmessage: ((ev: MessageEvent<Out>) => any) | null,
 * }} TypedWorker
 */
/** @typedef {TypedWorker<ToWorker, Reply>} EngineWorker */
/**
 * A worker's own end of its channel (its `self`), typed the same way: what it receives (`In`) and
 * what it posts (`Out`).
 * @template In, Out
 * @typedef {{postMessage(message: Out, transfer?: Transferable[]): void, onmessage: ((ev: MessageEvent<In>) => any) | null}} WorkerSelf
 */

export const Msg = Object.freeze({
  LOAD: 'load',
  GENERATE: 'generate',
  RESET: 'reset',
  UNLOAD: 'unload',
  TOP_LOGITS: 'topLogits',
  TOKENIZE: 'tokenize',
  PROFILE: 'profileDecode',
  SELFTEST: 'selftest',
  STATS: 'stats',
  LOSE_DEVICE: 'loseDevice',
  INTERRUPT: 'interrupt',
  CANCEL: 'cancel',
  STARTED: 'started',
  PROGRESS: 'progress',
  TOKEN: 'token',
  RESULT: 'result',
  ERROR: 'error',
});

/**
 * Every failure of the API. `name` is a stable code to branch on:
 * the engine's (InvalidModelFile, UnsupportedModel, TokenizerError, ChatTemplateError,
 * WebGPUUnavailable, GPUError, DeviceLost (the GPU device is gone: every later call fails the same
 * way until the model is loaded again), ContextFull, Aborted, InvalidArgument, ConversionError (a checkpoint
 * the converter refuses), ...) plus DownloadFailed (also: a checkpoint file is missing),
 * GatedModel (HTTP 401/403: a Hugging Face access token is needed or was refused), Unloaded and
 * InternalError (a panic inside the engine; the message says where).
 */
export class MobileLLMError extends Error {
  /**
   * @param {string} name
   * @param {string} message
   * @param {ErrorOptions} [options]
   */
  constructor(name, message, options) {
    super(message, options);
    this.name = name;
  }
}

/**
 * Errors cross postMessage as plain {name, message}: structured clone drops custom names.
 * @param {any} e  whatever was thrown
 * @returns {SerializedError}
 */
export function serializeError(e) {
  if (e && typeof e === 'object' && typeof e.name === 'string') {
    // DOMException AbortError (fetch/stream aborted) is our Aborted.
    const name = e.name === 'AbortError' ? 'Aborted' : e.name;
    return { name, message: String(e.message ?? e) };
  }
  return { name: 'InternalError', message: String(e) };
}

/** @param {SerializedError} e */
export function deserializeError(e) {
  return new MobileLLMError(e.name || 'InternalError', e.message || 'unknown error');
}

/**
 * Instantiates the wasm module (default: pkg/mobilellm_web_bg.wasm, which wasm-bindgen resolves
 * from its own import.meta.url). A missing or broken .wasm is a DownloadFailed naming it.
 * @param {(input?: {module_or_path: string}) => Promise<{memory: WebAssembly.Memory}>} init  a build's
 *   wasm-bindgen init (its default export)
 * @param {string} [wasmUrl]
 * @returns {Promise<{memory: WebAssembly.Memory}>} the instance's exports
 */
export function initWasm(init, wasmUrl) {
  return init(wasmUrl ? { module_or_path: wasmUrl } : undefined).catch((e) => {
    throw new MobileLLMError('DownloadFailed', `could not load the engine's .wasm from ${wasmUrl || 'pkg/mobilellm_web_bg.wasm'}: ${e?.message || e}`);
  });
}
