// The typed message protocol between the page (mobilellm.js) and the engine's worker (worker.js),
// and the one error class both sides use. Every request carries an `id`; the worker answers with
// any number of `progress` / `token` messages for that id, then exactly one `result` or `error`.
//
// Page -> worker (Request):
/** @typedef {{id: number, type: 'load', url: string, backend: 'auto'|'webgpu'|'cpu', threads?: number, build?: string, forceF32: boolean, contextLength: number, useCache: boolean, wasmUrl?: string | Record<string, string>, source?: object, hfToken?: string}} LoadRequest */
//   backend 'auto': the worker probes WebGPU (engine-variants.js probeBackend); the result's
//   `engine` says what runs: {backend, threads, requestedThreads, threadsNote, simd, build, crossOriginIsolated, reason}.
//   source: hf.js resolveModelSource() of a Hugging Face checkpoint (kind 'checkpoint'): the worker
//   downloads, converts and caches it under `url` (the conversion key); hfToken goes to huggingface.co only.
/** @typedef {{id: number, type: 'generate', messages: {role: string, content: string}[], options: object}} GenerateRequest */
//   options.raw: completion mode: no chat template, the messages' contents are the text to continue.
/** @typedef {{id: number, type: 'reset'} | {id: number, type: 'unload'}} SimpleRequest */
/** @typedef {{id: number, type: 'topLogits', tokens: number[], k: number}} TopLogitsRequest */
/** @typedef {{id: number, type: 'tokenize', messages: {role: string, content: string}[], raw?: boolean}} TokenizeRequest */
/** @typedef {{id: number, type: 'selftest'}} SelftestRequest  (the CPU kernels' self-test in the loaded build) */
/** @typedef {{type: 'interrupt', upTo: number} | {type: 'cancel', target: number}} ControlMessage  (no reply) */
//
// Worker -> page (Reply):
/** @typedef {{phase: 'download'|'convert'|'store'|'cache'|'read'|'compile'|'ready', loaded?: number, total?: number, rate?: number, fromCache?: boolean, file?: string}} Progress */
//   convert: loaded/total are tensors; download of a checkpoint names the `file`.
/** @typedef {{id: number, type: 'progress', progress: Progress}} ProgressReply */
/** @typedef {{id: number, type: 'started', prompt_tokens: number, cached_prefix: number}} StartedReply  (generate: the prompt is tokenised) */
/** @typedef {{id: number, type: 'token', text: string, token: number}} TokenReply */
/** @typedef {{id: number, type: 'result', value: any}} ResultReply */
/** @typedef {{id: number, type: 'error', error: {name: string, message: string}}} ErrorReply */

export const Msg = Object.freeze({
  LOAD: 'load',
  GENERATE: 'generate',
  RESET: 'reset',
  UNLOAD: 'unload',
  TOP_LOGITS: 'topLogits',
  TOKENIZE: 'tokenize',
  PROFILE: 'profileDecode',
  SELFTEST: 'selftest',
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
 * WebGPUUnavailable, GPUError, ContextFull, Aborted, InvalidArgument, ConversionError (a checkpoint
 * the converter refuses), ...) plus DownloadFailed (also: a checkpoint file is missing),
 * GatedModel (HTTP 401/403: a Hugging Face access token is needed or was refused), Unloaded and
 * InternalError (a panic inside the engine; the message says where).
 */
export class MobileLLMError extends Error {
  constructor(name, message, options) {
    super(message, options);
    this.name = name;
  }
}

/** Errors cross postMessage as plain {name, message}: structured clone drops custom names. */
export function serializeError(e) {
  if (e && typeof e === 'object' && typeof e.name === 'string') {
    // DOMException AbortError (fetch/stream aborted) is our Aborted.
    const name = e.name === 'AbortError' ? 'Aborted' : e.name;
    return { name, message: String(e.message ?? e) };
  }
  return { name: 'InternalError', message: String(e) };
}

export function deserializeError(e) {
  return new MobileLLMError(e.name || 'InternalError', e.message || 'unknown error');
}

/**
 * Instantiates the wasm module (default: pkg/mobilellm_web_bg.wasm, which wasm-bindgen resolves
 * from its own import.meta.url). A missing or broken .wasm is a DownloadFailed naming it.
 */
export function initWasm(init, wasmUrl) {
  return init(wasmUrl ? { module_or_path: wasmUrl } : undefined).catch((e) => {
    throw new MobileLLMError('DownloadFailed', `could not load the engine's .wasm from ${wasmUrl || 'pkg/mobilellm_web_bg.wasm'}: ${e?.message || e}`);
  });
}
