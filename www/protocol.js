// The typed message protocol between the page (mobilellm.js) and the engine's worker (worker.js),
// and the one error class both sides use. Every request carries an `id`; the worker answers with
// any number of `progress` / `token` messages for that id, then exactly one `result` or `error`.
//
// Page -> worker (Request):
/** @typedef {{id: number, type: 'load', url: string, forceF32: boolean, contextLength: number, useCache: boolean}} LoadRequest */
/** @typedef {{id: number, type: 'generate', messages: {role: string, content: string}[], options: object}} GenerateRequest */
/** @typedef {{id: number, type: 'reset'} | {id: number, type: 'unload'}} SimpleRequest */
/** @typedef {{id: number, type: 'topLogits', tokens: number[], k: number}} TopLogitsRequest */
/** @typedef {{id: number, type: 'tokenize', messages: {role: string, content: string}[]}} TokenizeRequest */
/** @typedef {{type: 'interrupt'} | {type: 'cancel', target: number}} ControlMessage  (no reply) */
//
// Worker -> page (Reply):
/** @typedef {{phase: 'download'|'cache'|'compile'|'ready', loaded?: number, total?: number, rate?: number, fromCache?: boolean}} Progress */
/** @typedef {{id: number, type: 'progress', progress: Progress}} ProgressReply */
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
  INTERRUPT: 'interrupt',
  CANCEL: 'cancel',
  PROGRESS: 'progress',
  TOKEN: 'token',
  RESULT: 'result',
  ERROR: 'error',
});

/**
 * Every failure of the API. `name` is a stable code to branch on:
 * the engine's (InvalidModelFile, UnsupportedModel, TokenizerError, ChatTemplateError,
 * WebGPUUnavailable, GPUError, ContextFull, Aborted, InvalidArgument, ...) plus DownloadFailed,
 * Unloaded and InternalError (a panic inside the engine; the message says where).
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
