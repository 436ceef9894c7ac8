// Model download and storage in the Cache API.
//
// Entries are keyed by a synthetic URL naming the model URL *and* its size, so a changed file at
// the same URL is a different entry, and a cached model is found without any network request.
// A download is written to the cache through a counting stream that checks the GGUF magic at
// the start and the byte count at the end; if anything goes wrong (abort, network error, short
// body, wrong file) the stream errors, `cache.put` rejects and the cache is left without an entry.
// The model is then read back from the cache in chunks, so the page never holds the file twice.

import { MobileLLMError } from './protocol.js';

export const CACHE_NAME = 'mobilellm-models-v1';
const KEY_BASE = 'https://mobilellm.cache/model';
const GGUF_MAGIC = [0x47, 0x47, 0x55, 0x46]; // "GGUF"

const hasCaches = () => typeof caches !== 'undefined';

function cacheKey(url, size) {
  return `${KEY_BASE}?size=${size}&url=${encodeURIComponent(url)}`;
}

function parseKey(keyUrl) {
  const u = new URL(keyUrl);
  if (`${u.origin}${u.pathname}` !== KEY_BASE) return null;
  return { url: u.searchParams.get('url'), size: Number(u.searchParams.get('size')) };
}

/** Models in the cache: [{url, size, cachedAt}]. */
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

/** Deletes every cached copy of `url`; returns how many entries were removed. */
export async function deleteCached(url) {
  if (!hasCaches()) return 0;
  const cache = await caches.open(CACHE_NAME);
  let n = 0;
  for (const req of await cache.keys()) {
    const k = parseKey(req.url);
    if (k && k.url === url && (await cache.delete(req))) n++;
  }
  return n;
}

async function findCached(cache, url) {
  for (const req of await cache.keys()) {
    const k = parseKey(req.url);
    if (k && k.url === url) {
      const res = await cache.match(req);
      if (res && res.body) return { res, size: k.size };
    }
  }
  return null;
}

/** A cached model by its key (URL, or a conversion key from hf.js), without any network request. */
export async function openCached(url) {
  if (!hasCaches()) return null;
  const hit = await findCached(await caches.open(CACHE_NAME), url);
  return hit ? { body: hit.res.body, size: hit.size, fromCache: true } : null;
}

/**
 * Stores a model made in the browser (a converted checkpoint, a Blob or disk-backed File) under
 * `url`, replacing older entries for it. Resolves false when there is no room (QuotaExceeded).
 */
export async function storeModel(url, blob) {
  if (!hasCaches()) return false;
  const cache = await caches.open(CACHE_NAME);
  await deleteCached(url);
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

/** Reports progress at most every 100 ms (and always the last call). */
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

async function fetchOrFail(url, signal) {
  let res;
  try {
    res = await fetch(url, { signal, cache: 'no-store' });
  } catch (e) {
    if (signal?.aborted || e?.name === 'AbortError') throw new MobileLLMError('Aborted', 'model download aborted');
    throw new MobileLLMError('DownloadFailed', `could not fetch ${url}: ${e?.message || e} (network error or missing CORS headers)`);
  }
  if (!res.ok || !res.body) {
    throw new MobileLLMError('DownloadFailed', `could not fetch ${url}: HTTP ${res.status} ${res.statusText}`.trim());
  }
  // Content-Length is the file size unless the transfer was compressed.
  const len = Number(res.headers.get('content-length'));
  const encoded = (res.headers.get('content-encoding') || 'identity') !== 'identity';
  const size = !encoded && Number.isFinite(len) && len > 0 ? len : null;
  return { res, size };
}

/**
 * A pass-through stream that counts bytes, reports download progress, rejects a non-GGUF start
 * and a byte count different from `size`. `state.error` keeps the real reason (cache.put only
 * reports a generic failure).
 */
function checkingStream(size, report, state) {
  const t0 = performance.now();
  let loaded = 0;
  const head = [];
  return new TransformStream({
    transform(chunk, controller) {
      for (let i = 0; head.length < 4 && i < chunk.length; i++) head.push(chunk[i]);
      if (head.length === 4 && loaded < 4 && head.some((b, i) => b !== GGUF_MAGIC[i])) {
        state.error = new MobileLLMError('InvalidModelFile', 'not a GGUF file (the first bytes are not "GGUF")');
        controller.error(state.error);
        return;
      }
      loaded += chunk.length;
      if (size !== null && loaded > size) {
        state.error = new MobileLLMError('DownloadFailed', `received more than the announced ${size} bytes`);
        controller.error(state.error);
        return;
      }
      state.loaded = loaded;
      const secs = (performance.now() - t0) / 1000;
      report({ phase: 'download', loaded, total: size ?? undefined, rate: secs > 0 ? loaded / secs : 0 });
      controller.enqueue(chunk);
    },
    flush(controller) {
      if (size !== null && loaded !== size) {
        state.error = new MobileLLMError('DownloadFailed', `download incomplete: ${loaded} of ${size} bytes`);
        controller.error(state.error);
      }
    },
  });
}

/**
 * Opens the model at `url`: from the cache when present (no request), else downloaded (and cached
 * when `useCache`). Resolves to {body: ReadableStream<Uint8Array>, size, fromCache}.
 */
export async function openModel(url, { signal, onProgress, useCache = true } = {}) {
  const report = throttled(onProgress);
  const cache = useCache && hasCaches() ? await caches.open(CACHE_NAME) : null;
  if (cache) {
    const hit = await findCached(cache, url);
    if (hit) return { body: hit.res.body, size: hit.size, fromCache: true };
  }
  const { res, size } = await fetchOrFail(url, signal);
  const state = { error: null, loaded: 0 };
  const checked = res.body.pipeThrough(checkingStream(size, report, state), { signal });

  if (!cache || size === null) {
    // No cache, or no trustworthy size (the key needs it): stream straight into the engine.
    // Without a size the engine's loader cannot pre-size its buffer, so collect the chunks.
    if (size !== null) return { body: checked, size, fromCache: false };
    const chunks = [];
    let total = 0;
    try {
      for await (const c of checked) { chunks.push(c); total += c.length; }
    } catch (e) {
      throw state.error || abortOr(e, signal);
    }
    const blob = new Blob(chunks);
    if (cache) await cache.put(cacheKey(url, total), new Response(blob, { headers: entryHeaders(total) }));
    return { body: blob.stream(), size: total, fromCache: false };
  }

  const key = cacheKey(url, size);
  try {
    await cache.put(key, new Response(checked, { headers: entryHeaders(size) }));
  } catch (e) {
    await cache.delete(key).catch(() => {});
    if (state.error) throw state.error;
    if (signal?.aborted) throw new MobileLLMError('Aborted', 'model download aborted');
    if (e?.name === 'QuotaExceededError') {
      // Not enough storage to keep it: load it anyway, uncached.
      const again = await fetchOrFail(url, signal);
      return { body: again.res.body.pipeThrough(checkingStream(size, report, { error: null }), { signal }), size, fromCache: false };
    }
    throw new MobileLLMError('DownloadFailed', `download of ${url} failed after ${state.loaded} bytes: ${e?.message || e}`);
  }
  report({ phase: 'download', loaded: size, total: size, rate: 0 }, true);
  const stored = await cache.match(key);
  if (!stored?.body) throw new MobileLLMError('DownloadFailed', 'the model vanished from the cache right after it was stored');
  return { body: stored.body, size, fromCache: false };
}

function abortOr(e, signal) {
  if (signal?.aborted || e?.name === 'AbortError') return new MobileLLMError('Aborted', 'model download aborted');
  return new MobileLLMError('DownloadFailed', `download failed: ${e?.message || e}`);
}

function entryHeaders(size) {
  return {
    'content-type': 'application/octet-stream',
    'content-length': String(size),
    'x-mobilellm-cached-at': new Date().toISOString(),
  };
}
