// In-browser conversion of a Hugging Face checkpoint, as seen from the engine's worker: a cached
// conversion is opened directly (no request at all); otherwise a conversion worker
// (convert-worker.js) downloads, converts and caches it, and is terminated before the model is
// loaded, so the converter's memory is gone by the time the engine uploads the weights. A
// cancelled load terminates the conversion worker at once.

import { openCached } from './cache.js';
import { MobileLLMError, deserializeError } from './protocol.js';

/** @typedef {import('./protocol.js').ConvertRequest} ConvertRequest */
/** @typedef {import('./protocol.js').ConvertReply} ConvertReply */
/** @typedef {import('./protocol.js').TypedWorker<ConvertRequest, ConvertReply>} ConvertWorker */
/** @typedef {import('./protocol.js').Progress} Progress */

const noop = async () => {};

/**
 * Opens the converted model for `source` (hf.js resolveModelSource). Resolves to {body, size,
 * fromCache, conversion?, cleanup()}, like cache.js openModel plus `cleanup`, to be called once
 * `body` has been read.
 * @param {import('./hf.js').CheckpointSource} source
 * @param {{token?: string, signal?: AbortSignal, onProgress?: (p: Progress) => void, useCache?: boolean, wasmUrl?: string}} [opts]
 * @returns {Promise<import('./cache.js').OpenedModel & {cleanup: () => Promise<void>}>}
 */
export async function openConverted(source, { token, signal, onProgress, useCache = true, wasmUrl } = {}) {
  if (useCache) {
    const hit = await openCached(source.key);
    if (hit) return { ...hit, cleanup: noop };
  }
  signal?.throwIfAborted?.();
  /** @type {ConvertWorker} */
  const child = new Worker(new URL('./convert-worker.js', import.meta.url), { type: 'module', name: 'mobilellm-convert' });
  const replies = listen(child, onProgress);
  let keep = false;
  try {
    const onAbort = () => replies.fail(new MobileLLMError('Aborted', 'model load aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
    child.postMessage({ type: 'convert', source, token, useCache, wasmUrl });
    const r = await replies.next('result').finally(() => signal?.removeEventListener('abort', onAbort));
    if (r.stored) {
      const hit = await openCached(source.key);
      if (!hit) throw new MobileLLMError('DownloadFailed', 'the converted model vanished from the cache right after it was stored');
      return { ...hit, fromCache: false, conversion: r.conversion, cleanup: noop };
    }
    // Uncached: the worker keeps its scratch file until the engine has read it.
    keep = true;
    return {
      body: r.gguf.stream(), size: r.gguf.size, fromCache: false, conversion: r.conversion,
      cleanup: async () => {
        child.postMessage({ type: 'cleanup' });
        await Promise.race([replies.next('cleaned'), new Promise((ok) => setTimeout(ok, 5000))]).catch(() => {});
        child.terminate();
      },
    };
  } finally {
    if (!keep) child.terminate();
  }
}

/**
 * The conversion worker's replies: progress is forwarded, the rest awaited by type.
 * @param {ConvertWorker} child
 * @param {((p: Progress) => void) | undefined} onProgress
 */
function listen(child, onProgress) {
  /** @typedef {{type: 'result' | 'cleaned', resolve: (value: any) => void, reject: (e: unknown) => void}} Waiter */
  /** @type {Waiter | null} */
  let waiter = null;
  /** @type {unknown} */
  let failed = null;
  const settle = (/** @type {(w: Waiter) => void} */ fn) => { const w = waiter; waiter = null; w && fn(w); };
  const fail = (/** @type {unknown} */ e) => { failed ??= e; settle((w) => w.reject(e)); };
  child.onmessage = (ev) => {
    const m = ev.data;
    if (m.type === 'progress') onProgress?.(m.progress);
    else if (m.type === 'error') fail(deserializeError(m.error));
    else if (waiter && m.type === waiter.type) settle((w) => w.resolve(m.value));
  };
  child.onerror = (ev) => {
    ev.preventDefault?.();
    fail(new MobileLLMError('InternalError', `the conversion worker failed: ${ev.message || 'script error'}`));
  };
  return {
    fail,
    /**
     * The next reply of `type`: the result's value, or nothing for 'cleaned'.
     * @template {'result' | 'cleaned'} T
     * @param {T} type
     * @returns {Promise<Extract<ConvertReply, {type: T}>['value']>}
     */
    next: (type) => (failed ? Promise.reject(failed) : new Promise((resolve, reject) => { waiter = { type, resolve, reject }; })),
  };
}
