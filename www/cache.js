// Model download and storage in the Cache API.
//
// Entries are keyed by a synthetic URL naming the model URL *and* its size, so a changed file at
// the same URL is a different entry, and a cached model is found without any network request.
// An entry is only ever written whole, from a download that is complete (the announced size) and
// starts with the GGUF magic, so an incomplete file is never served as a model.
//
// Downloads resume (download.js): the bytes go first to a partial file on OPFS
// (`mobilellm-downloads/<folderName(url)>/model.gguf`, partial.js), which a cut connection, a
// cancelled load or a closed tab leaves in place. Retries within the load and any later load of
// the same URL continue it with Range requests; once complete it is copied into the cache and
// deleted. deleteCached(url) removes it too. Without OPFS the download streams into the cache
// (a retry within the load still continues where it was; a later load starts over).
// The model is read back from the cache in chunks, so the page never holds the file twice.

import { MobileLLMError } from './protocol.js';
import { resumableDownload, canResume } from './download.js';
import { PartialFile, hasOpfs, folderName, opfsFolder, removeFolder, sweepFolders, holdLock } from './partial.js';

/** @typedef {import('./download.js').DownloadMeta} DownloadMeta */
/** @typedef {import('./protocol.js').Progress} Progress */
/** @typedef {(p: Progress, force?: boolean) => void} Report */
/**
 * A model file to read: its bytes, its size and whether it came from the cache (convert.js adds
 * the conversion's stats and a cleanup to call once the body is read).
 * @typedef {{body: ReadableStream<Uint8Array>, size: number, fromCache: boolean,
 *   conversion?: import('./protocol.js').ConversionStats, cleanup?: () => Promise<void>}} OpenedModel
 */
/** @typedef {{url: string, size: number, cachedAt: string | null}} CachedModel */

export const CACHE_NAME = 'mobilellm-models-v1';
const KEY_BASE = 'https://mobilellm.cache/model';
const GGUF_MAGIC = [0x47, 0x47, 0x55, 0x46]; // "GGUF"
/** OPFS folder of partial model downloads, and of the conversions' checkpoint files (scratch.js). */
export const DOWNLOADS_DIR = 'mobilellm-downloads';
export const CONVERT_DIR = 'mobilellm-convert';
export const LOCK_PREFIX = 'mobilellm-download:';
const CONVERT_KEY_RE = /^convert:[a-z0-9_]+:(.+)$/;

const hasCaches = () => typeof caches !== 'undefined';

/**
 * @param {string} url
 * @param {number} size
 */
function cacheKey(url, size) {
  return `${KEY_BASE}?size=${size}&url=${encodeURIComponent(url)}`;
}

/**
 * @param {string} keyUrl
 * @returns {{url: string, size: number} | null}
 */
function parseKey(keyUrl) {
  const u = new URL(keyUrl);
  if (`${u.origin}${u.pathname}` !== KEY_BASE) return null;
  // cacheKey() always writes the url parameter.
  return { url: /** @type {string} */ (u.searchParams.get('url')), size: Number(u.searchParams.get('size')) };
}

/**
 * Models in the cache: [{url, size, cachedAt}] (partial downloads are not models).
 * @returns {Promise<CachedModel[]>}
 */
export async function listCached() {
  if (!hasCaches()) return [];
  const cache = await caches.open(CACHE_NAME);
  const out = [];
  for (const req of await cache.keys()) {
    const k = parseKey(req.url);
    if (!k) continue;
    const res = await cache.match(req);
    out.push({ ...k, cachedAt: res?.headers.get('x-mobilellm-cached-at') || null });
  }
  return out;
}

/**
 * Deletes every cached copy of `url` and its partial download (for a conversion key, the
 * checkpoint files kept for it); returns how many cache entries were removed.
 * @param {string} url
 */
export async function deleteCached(url) {
  let n = 0;
  if (hasCaches()) {
    const cache = await caches.open(CACHE_NAME);
    for (const req of await cache.keys()) {
      const k = parseKey(req.url);
      if (k && k.url === url && (await cache.delete(req))) n++;
    }
  }
  await removeFolder(DOWNLOADS_DIR, folderName(url)).catch(() => {});
  const base = CONVERT_KEY_RE.exec(url)?.[1];
  if (base) await removeFolder(CONVERT_DIR, folderName(base)).catch(() => {});
  return n;
}

/**
 * @param {Cache} cache
 * @param {string} url
 * @returns {Promise<OpenedModel | null>}
 */
async function findCached(cache, url) {
  for (const req of await cache.keys()) {
    const k = parseKey(req.url);
    if (k && k.url === url) {
      const res = await cache.match(req);
      if (res && res.body) return { body: res.body, size: k.size, fromCache: true };
    }
  }
  return null;
}

/**
 * A cached model by its key (URL, or a conversion key from hf.js), without any network request.
 * @param {string} url
 */
export async function openCached(url) {
  if (!hasCaches()) return null;
  return findCached(await caches.open(CACHE_NAME), url);
}

/**
 * Stores a model made in the browser (a converted checkpoint, a Blob or disk-backed File) under
 * `url`, replacing older entries for it. Resolves false when there is no room (QuotaExceeded).
 * @param {string} url
 * @param {Blob} blob
 */
export async function storeModel(url, blob) {
  if (!hasCaches()) return false;
  const cache = await caches.open(CACHE_NAME);
  for (const req of await cache.keys()) if (parseKey(req.url)?.url === url) await cache.delete(req);
  const key = cacheKey(url, blob.size);
  try {
    await cache.put(key, new Response(blob, { headers: entryHeaders(blob.size) }));
    return true;
  } catch (e) {
    await cache.delete(key).catch(() => {});
    if (e?.name === 'QuotaExceededError') return false;
    throw new MobileLLMError('DownloadFailed', `could not store the converted model in the cache: ${e?.message || e}`);
  }
}

/**
 * Reports progress at most every 100 ms (and always when forced).
 * @param {((p: Progress) => void) | undefined} onProgress
 * @returns {Report}
 */
function throttled(onProgress) {
  let last = 0;
  return (p, force = false) => {
    const now = performance.now();
    if (force || now - last >= 100) {
      last = now;
      onProgress?.(p);
    }
  };
}

/**
 * Rejects a file whose first bytes (written at `offset`) are not "GGUF": a wrong link fails fast.
 * @param {number} offset
 * @param {Uint8Array} chunk
 */
function checkMagic(offset, chunk) {
  for (let i = 0; offset + i < 4 && i < chunk.length; i++) {
    if (chunk[i] !== GGUF_MAGIC[offset + i]) throw new MobileLLMError('InvalidModelFile', 'not a GGUF file (the first bytes are not "GGUF")');
  }
}

/**
 * download.js options for the model at `url`.
 * @param {string} url
 * @param {AbortSignal | undefined} signal
 * @param {Report} report
 */
function downloadOptions(url, signal, report) {
  return {
    request: (/** @type {Record<string, string>} */ headers) => fetch(url, { signal, cache: 'no-store', headers }),
    signal,
    label: url,
    onProgress: (/** @type {{loaded: number, total?: number, rate: number}} */ p) => report({ phase: 'download', ...p }),
  };
}

/**
 * Opens the model at `url`: from the cache when present (no request), else downloaded (and cached
 * when `useCache`). Resolves to {body: ReadableStream<Uint8Array>, size, fromCache}.
 * @param {string} url
 * @param {{signal?: AbortSignal, onProgress?: (p: Progress) => void, useCache?: boolean}} [opts]
 * @returns {Promise<OpenedModel>}
 */
export async function openModel(url, { signal, onProgress, useCache = true } = {}) {
  const report = throttled(onProgress);
  const cache = useCache && hasCaches() ? await caches.open(CACHE_NAME) : null;
  if (cache) {
    const hit = await findCached(cache, url);
    if (hit) return hit;
    if (hasOpfs()) {
      const done = await downloadToDisk(url, cache, signal, report);
      if (done) return done;
    }
  }
  return streamModel(url, cache, signal, report);
}

/**
 * The OPFS path: resumable across loads. Resolves null when OPFS cannot hold it (no room).
 * @param {string} url
 * @param {Cache} cache
 * @param {AbortSignal | undefined} signal
 * @param {Report} report
 * @returns {Promise<OpenedModel | null>}
 */
async function downloadToDisk(url, cache, signal, report) {
  const name = folderName(url);
  await sweepFolders(DOWNLOADS_DIR, LOCK_PREFIX).catch(() => {});
  // One download of a URL at a time (two tabs): the second waits, then finds it cached.
  const release = await holdLock(LOCK_PREFIX + name, signal).catch(() => {
    throw new MobileLLMError('Aborted', 'model download aborted');
  });
  /** @type {PartialFile | null} */
  let part = null;
  try {
    const hit = await findCached(cache, url);
    if (hit) return hit;
    const dir = await opfsFolder(DOWNLOADS_DIR, name, true);
    part = dir && (await PartialFile.open(dir, 'model.gguf', url).catch(() => null));
    if (!part) return null;
    const opened = part; // (for the closures: `part` is a variable)
    const target = {
      get size() { return opened.size; },
      get meta() { return opened.meta; },
      restart: (/** @type {DownloadMeta} */ m) => opened.restart(m),
      setMeta: (/** @type {DownloadMeta} */ m) => opened.setMeta(m),
      write: (/** @type {Uint8Array} */ chunk) => { checkMagic(opened.size, chunk); opened.write(chunk); },
    };
    try {
      await resumableDownload(target, downloadOptions(url, signal, report));
    } catch (e) {
      // Kept for the next attempt: bytes of a known file after a broken connection or a cancel.
      // Not: a refusal (404), a wrong file, bytes without a validator to check a continuation.
      const keep = (e?.resumable || e?.name === 'Aborted') && canResume(part.meta) && part.size > 0;
      part.close();
      if (!keep) await removeFolder(DOWNLOADS_DIR, name);
      // A disk too full to hold it: load it without storing.
      if (e?.name === 'QuotaExceededError') return null;
      throw e;
    }
    const size = part.size;
    report({ phase: 'download', loaded: size, total: size, rate: 0 }, true);
    const file = await part.file();
    const key = cacheKey(url, size);
    try {
      await cache.put(key, new Response(file, { headers: entryHeaders(size) }));
    } catch (e) {
      await cache.delete(key).catch(() => {});
      // No room for a second copy: load the complete file from OPFS, where it stays (the next
      // load tries again, without downloading).
      if (e?.name === 'QuotaExceededError') return { body: file.stream(), size, fromCache: false };
      throw new MobileLLMError('DownloadFailed', `could not store ${url} in the cache: ${e?.message || e}`);
    }
    await removeFolder(DOWNLOADS_DIR, name);
    const stored = await cache.match(key);
    if (!stored?.body) throw new MobileLLMError('DownloadFailed', 'the model vanished from the cache right after it was stored');
    return { body: stored.body, size, fromCache: false };
  } finally {
    part?.close();
    release();
  }
}

/**
 * Without OPFS: the download as a stream (cut connections continue with Range requests within
 * this load), stored in the cache on the way when there is one.
 * @param {string} url
 * @param {Cache | null} cache
 * @param {AbortSignal | undefined} signal
 * @param {Report} report
 * @returns {Promise<OpenedModel>}
 */
async function streamModel(url, cache, signal, report) {
  const ctl = new AbortController();
  const onAbort = () => ctl.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  const target = new StreamTarget(() => ctl.abort());
  /** @type {unknown} */
  let failure = null;
  /** @type {Promise<DownloadMeta | null>} */
  const started = new Promise((resolve) => {
    const done = resumableDownload(target, { ...downloadOptions(url, ctl.signal, report), onStart: resolve });
    done.then(() => target.end(), (e) => { failure = signal?.aborted ? new MobileLLMError('Aborted', 'model download aborted') : e; target.fail(failure); resolve(null); })
      .finally(() => signal?.removeEventListener('abort', onAbort));
  });
  const meta = await started;
  if (!meta) throw failure;
  const body = target.stream;
  let size = meta.total;
  if (!cache && size !== null) return { body, size, fromCache: false };
  // The loader needs the size before the first byte: without Content-Length, collect the file.
  const blob = size === null ? await new Response(body).blob().catch((e) => { throw failure || e; }) : null;
  size ??= /** @type {Blob} */ (blob).size; // size null: the blob was collected
  if (!cache) return { body: /** @type {Blob} */ (blob).stream(), size, fromCache: false }; // (no cache and size known returned above)
  const key = cacheKey(url, size);
  try {
    await cache.put(key, new Response(blob ?? body, { headers: entryHeaders(size) }));
  } catch (e) {
    await cache.delete(key).catch(() => {});
    if (failure) throw failure;
    if (signal?.aborted) throw new MobileLLMError('Aborted', 'model download aborted');
    // Not enough storage to keep it: load it anyway, uncached.
    if (e?.name === 'QuotaExceededError') return streamModel(url, null, signal, report);
    throw new MobileLLMError('DownloadFailed', `download of ${url} failed after ${target.delivered} bytes: ${e?.message || e}`);
  }
  report({ phase: 'download', loaded: size, total: size, rate: 0 }, true);
  const stored = await cache.match(key);
  if (!stored?.body) throw new MobileLLMError('DownloadFailed', 'the model vanished from the cache right after it was stored');
  return { body: stored.body, size, fromCache: false };
}

/**
 * A download target that passes the bytes on as a stream. What was passed on cannot be taken
 * back: when the server starts the same file over (it ignores Range), the bytes already passed
 * on are skipped; when the file changed, the stream fails.
 */
class StreamTarget {
  size = 0;       // bytes of the current response's file received (download.js's offset)
  /** @type {DownloadMeta | null} */
  meta = null;
  delivered = 0;  // bytes passed on
  /** @type {ReadableStreamDefaultController<Uint8Array>} */
  #ctl;
  /** @type {((value?: unknown) => void) | null} */
  #wake = null;

  /** @param {() => void} onCancel */
  constructor(onCancel) {
    /** @type {ReadableStream<Uint8Array>} */
    this.stream = new ReadableStream({
      start: (c) => { this.#ctl = c; },
      pull: () => { this.#wake?.(); this.#wake = null; },
      // Wakes a write waiting for room, which then sees the aborted download.
      cancel: () => { onCancel(); this.#wake?.(); },
    }, { highWaterMark: 8 });
  }

  /** @param {DownloadMeta} meta */
  restart(meta) {
    const same = this.meta && canResume(meta) && meta.total === this.meta.total &&
      meta.etag === this.meta.etag && meta.lastModified === this.meta.lastModified;
    if (this.delivered > 0 && !same) throw new MobileLLMError('DownloadFailed', 'the file changed on the server during the download');
    this.meta = meta;
    this.size = 0;
  }

  /** @param {DownloadMeta} meta */
  setMeta(meta) { this.meta = meta; }

  /** @param {Uint8Array} chunk */
  async write(chunk) {
    const skip = Math.min(chunk.length, Math.max(0, this.delivered - this.size));
    this.size += chunk.length;
    if (skip === chunk.length) return;
    const rest = skip ? chunk.subarray(skip) : chunk;
    checkMagic(this.delivered, rest);
    this.delivered += rest.length;
    this.#ctl.enqueue(rest);
    // Backpressure, but only when the size is known: otherwise openModel collects everything.
    if (this.meta?.total != null && (this.#ctl.desiredSize ?? 0) <= 0) await new Promise((r) => { this.#wake = r; });
  }

  end() { this.#ctl.close(); }
  /** @param {unknown} e */
  fail(e) { try { this.#ctl.error(e); } catch { /* already closed */ } this.#wake?.(); }
}

/** @param {number} size */
function entryHeaders(size) {
  return {
    'content-type': 'application/octet-stream',
    'content-length': String(size),
    'x-mobilellm-cached-at': new Date().toISOString(),
  };
}
