// Resumable downloads. Models are 0.1-3 GB; on a phone's connection a transfer may be cut several
// times, and starting again from byte 0 each time may never finish. So a download writes into a
// *target* that keeps what has arrived (an OPFS file that survives the page, or memory), and a cut
// continues from there with an HTTP Range request:
//   - the first response's size and validators (ETag, Last-Modified) are kept with the bytes;
//   - a continuation sends `Range: bytes=<stored>-` and checks that the 206 answer is the same
//     file: the same total size and the same validators. A changed file, a server that ignores
//     Range (200) or a 416 restart from byte 0, so the stored bytes are always one file's prefix;
//   - without a validator, or without a known size, nothing can be checked: restart from 0;
//   - network errors, HTTP 5xx, 408 and 429 are retried with exponential backoff. Only failures
//     that made no progress count toward the limit, so a flaky link that keeps moving is never
//     given up on; HTTP 4xx and wrong content fail at once.
// If-Range is not sent: it is not a CORS-safelisted header (Range is), so it would need a
// preflight that many model hosts do not answer; checking the 206 here is equivalent.

import { MobileLLMError } from './protocol.js';

/**
 * What identifies a file: its size (null: unknown) and validators, from its first response.
 * @typedef {{total: number | null, etag: string | null, lastModified: string | null}} DownloadMeta
 */
/**
 * Where a download's bytes go (partial.js PartialFile, MemoryPartial; cache.js StreamTarget).
 * @typedef {{size: number, meta: DownloadMeta | null, restart(meta: DownloadMeta): unknown,
 *   setMeta(meta: DownloadMeta): unknown, write(chunk: Uint8Array): unknown}} DownloadTarget
 */
/** @typedef {MobileLLMError & {transient?: boolean, resumable?: boolean}} DownloadError  transient: retry; resumable: keep the bytes */

/** Up to 5 attempts without progress, 0.5 s, 1 s, 2 s, 4 s apart (plus up to 25% jitter). */
export const RETRY = Object.freeze({ attempts: 5, baseMs: 500, maxMs: 8000 });

/**
 * A failure worth retrying (the connection, not the file): `transient` marks it.
 * @param {string} message
 */
export function transientError(message) {
  const e = /** @type {DownloadError} */ (new MobileLLMError('DownloadFailed', message));
  e.transient = true;
  return e;
}

const aborted = () => new MobileLLMError('Aborted', 'model download aborted');

/**
 * @param {number} ms
 * @param {AbortSignal} [signal]
 * @returns {Promise<void>}
 */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(aborted());
    const onAbort = () => { clearTimeout(t); reject(aborted()); };
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * What identifies the file behind a 200 or 206 response: {total, etag, lastModified}.
 * @param {Response} res
 * @returns {DownloadMeta}
 */
export function describeResponse(res, offset = 0) {
  const h = res.headers;
  const encoded = (h.get('content-encoding') || 'identity') !== 'identity';
  const len = Number(h.get('content-length'));
  let total = !encoded && h.get('content-length') !== null && Number.isFinite(len) ? offset + len : null;
  const range = /^bytes\s+(\d+)-(\d+)\/(\d+)$/.exec(h.get('content-range') || '');
  if (res.status === 206 && range) total = Number(range[3]);
  // A weak ETag promises equivalent content, not the same bytes: useless for splicing ranges.
  const etag = h.get('etag');
  return { total, etag: etag && !etag.startsWith('W/') ? etag : null, lastModified: h.get('last-modified') };
}

/**
 * Whether a 206 continues exactly the file `expect` describes, at `offset`.
 * @param {Response} res
 * @param {number} offset
 * @param {DownloadMeta} expect
 */
function continues(res, offset, expect) {
  const range = /^bytes\s+(\d+)-/.exec(res.headers.get('content-range') || '');
  if (range && Number(range[1]) !== offset) return false;
  const got = describeResponse(res, offset);
  if (got.total !== expect.total) return false;
  // Each validator the first response had must come back unchanged (hosts send them consistently).
  if (expect.etag && got.etag !== expect.etag) return false;
  if (expect.lastModified && got.lastModified !== expect.lastModified) return false;
  return true;
}

/**
 * Stored bytes can be continued only when the file's size and a validator are known.
 * @type {(meta: DownloadMeta | null | undefined) => boolean}
 */
export const canResume = (meta) => !!meta && meta.total != null && !!(meta.etag || meta.lastModified);

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/**
 * Downloads one file into `target`, continuing from what it already holds.
 * @param {DownloadTarget} target
 *   restart(meta) empties it and records the new file's description, setMeta only records it,
 *   write appends (partial.js has the OPFS and memory targets).
 * @param {{request: (headers: Record<string, string>) => Promise<Response>, refuse?: (res: Response) => Error|null,
 *   signal?: AbortSignal, onProgress?: (p: {loaded: number, total?: number, rate: number}) => void,
 *   onStart?: (meta: DownloadMeta) => void, label?: string, retry?: typeof RETRY}} opts
 *   request: the fetch (with these extra headers); refuse: the error for a status that is not
 *   retried (return null when a missing file is fine: the download then resolves null);
 *   onStart: once, when the file's description is first known.
 * @returns the file's description {total, etag, lastModified}, total being the final size.
 */
export async function resumableDownload(target, { request, refuse, signal, onProgress, onStart, label = 'the file', retry = RETRY }) {
  let failures = 0;
  let best = target.size;
  let started = false;
  const t0 = performance.now();
  let fetched = 0; // bytes received by this call: the rate
  for (;;) {
    try {
      const opened = await open(target, request, refuse, signal, label);
      if (!opened) return null;
      if (!started) { started = true; onStart?.(/** @type {DownloadMeta} */ (target.meta)); } // open() described the file
      let skip = opened.skip;
      for await (let chunk of readBody(opened.res, signal, label)) {
        if (skip) { // the byte that confirmed a complete file is still the same
          const n = Math.min(skip, chunk.length);
          skip -= n;
          chunk = chunk.subarray(n);
          if (!chunk.length) continue;
        }
        await target.write(chunk);
        fetched += chunk.length;
        const secs = (performance.now() - t0) / 1000;
        onProgress?.({ loaded: target.size, total: /** @type {DownloadMeta} */ (target.meta).total ?? undefined, rate: secs > 0 ? fetched / secs : 0 });
      }
      const total = /** @type {DownloadMeta} */ (target.meta).total;
      if (total != null && target.size > total) {
        throw new MobileLLMError('DownloadFailed', `${label}: received more than the announced ${total} bytes`);
      }
      if (total != null && target.size < total) throw transientError(`${label}: the connection ended after ${target.size} of ${total} bytes`);
      break;
    } catch (e) {
      if (signal?.aborted) throw aborted();
      if (!e?.transient) throw e;
      const progressed = target.size > best;
      best = Math.max(best, target.size);
      failures = progressed ? 1 : failures + 1;
      if (failures >= retry.attempts) {
        const err = /** @type {DownloadError} */ (new MobileLLMError('DownloadFailed', `${e.message} (gave up after ${retry.attempts} attempts without progress)`));
        err.resumable = true; // what is stored is good: keep it for the next attempt
        throw err;
      }
      const delay = Math.min(retry.maxMs, retry.baseMs * 2 ** (failures - 1));
      await sleep(delay * (1 + Math.random() / 4), signal);
    }
  }
  // The size is now known for sure (a file sent without Content-Length ends when the body does).
  const meta = /** @type {DownloadMeta} */ (target.meta);
  if (meta.total == null) await target.setMeta({ ...meta, total: target.size });
  return target.meta;
}

/**
 * Sends the request for what `target` is missing. Resolves to {res, skip}: a response whose body,
 * after `skip` bytes, continues the stored bytes (the target restarted when that is not possible),
 * or null (refused as absent). Stored bytes that are already the whole file are confirmed with
 * their last byte (skip 1): a file of several (checkpoint shards) must not mix two versions.
 * @param {DownloadTarget} target
 * @param {(headers: Record<string, string>) => Promise<Response>} request
 * @param {((res: Response) => Error | null) | undefined} refuse
 * @param {AbortSignal | undefined} signal
 * @param {string} label
 * @returns {Promise<{res: Response, skip: number} | null>}
 */
async function open(target, request, refuse, signal, label) {
  const have = canResume(target.meta) ? target.size : 0;
  // have > 0: canResume() found the file's description
  let offset = have && have === /** @type {DownloadMeta} */ (target.meta).total ? have - 1 : have;
  let res = await send(request, offset ? { Range: `bytes=${offset}-` } : {}, signal, label);
  if (offset && (res.status === 416 || (res.status === 206 && !continues(res, offset, /** @type {DownloadMeta} */ (target.meta))))) {
    // The file changed (or shrank): what we have is worthless. Start over in full.
    res.body?.cancel().catch(() => {});
    offset = 0;
    res = await send(request, {}, signal, label);
  }
  if (res.status === 200 || (res.status === 206 && offset)) {
    if (!res.body) throw transientError(`${label}: the response has no body`);
    if (res.status === 200) await target.restart(describeResponse(res));
    return { res, skip: res.status === 206 ? have - offset : 0 };
  }
  res.body?.cancel().catch(() => {});
  if (RETRY_STATUS.has(res.status)) throw transientError(`could not fetch ${label}: HTTP ${res.status} ${res.statusText}`.trim());
  const err = refuse ? refuse(res) : httpError(res, label);
  if (err === null) return null;
  throw err;
}

/** @type {(res: Response, label: string) => MobileLLMError} */
export const httpError = (res, label) => new MobileLLMError('DownloadFailed', `could not fetch ${label}: HTTP ${res.status} ${res.statusText}`.trim());

/**
 * @param {(headers: Record<string, string>) => Promise<Response>} request
 * @param {Record<string, string>} headers
 * @param {AbortSignal | undefined} signal
 * @param {string} label
 */
async function send(request, headers, signal, label) {
  try {
    return await request(headers);
  } catch (e) {
    if (signal?.aborted || e?.name === 'AbortError' || e?.name === 'Aborted') throw aborted();
    if (e instanceof MobileLLMError) throw e;
    throw transientError(`could not fetch ${label}: ${e?.message || e} (network error or missing CORS headers)`);
  }
}

/**
 * The body's chunks; a broken connection becomes a transient error.
 * @param {Response} res
 * @param {AbortSignal | undefined} signal
 * @param {string} label
 */
async function* readBody(res, signal, label) {
  const reader = /** @type {ReadableStream<Uint8Array>} */ (res.body).getReader(); // open() checked it
  try {
    for (;;) {
      let step;
      try {
        step = await reader.read();
      } catch (e) {
        if (signal?.aborted || e?.name === 'AbortError') throw aborted();
        throw transientError(`${label}: the connection broke (${e?.message || e})`);
      }
      if (step.done) return;
      yield step.value;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
