// Hugging Face checkpoints as model sources: what `MobileLLM.load(model)` was given (a GGUF URL,
// a Hub repository, or the base URL of a checkpoint folder), and the download of a checkpoint's
// files (config.json, tokenizer, weights in any layout) with progress. The weights download
// resumably (download.js) into files that outlive a failed attempt (scratch.js), so a cut
// connection or a later load continues where it stopped. The conversion itself runs in the
// worker (convert.js -> src/wasm_convert.rs).
//
// Accepted model names:
//   facebook/MobileLLM-125M, hf:facebook/MobileLLM-125M@<revision>,
//   https://huggingface.co/facebook/MobileLLM-125M[/tree/<revision>]   -> Hub repository
//   https://host/path/to/checkpoint/   (ends with "/")                  -> checkpoint folder
//   anything else (…/model.gguf, relative URLs, blob: URLs)             -> a GGUF file
// A bare "owner/name" is a repository; write "./owner/name/" for a folder next to the page.
//
// Access tokens (gated or private repositories) are sent as `Authorization: Bearer` to
// huggingface.co only, never to another host (a mirror, a test server, a CDN redirect: browsers
// drop the header on cross-origin redirects).

import { MobileLLMError } from './protocol.js';
import { resumableDownload, httpError } from './download.js';
import { MemoryPartial } from './partial.js';

export const HUB_URL = 'https://huggingface.co';
/** Conversion types the browser offers; q8_0 keeps a 125M model's quality (see README); q4_k_m is
 * llama.cpp's Q4_K_M mix (Q4_K/Q6_K, with Q5_0/Q8_0 where rows are not whole 256-element blocks). */
export const CONVERT_TYPES = Object.freeze(['q8_0', 'q4_k_m', 'q4_1', 'q4_0', 'f16', 'f32']);
export const DEFAULT_CONVERT_TYPE = 'q8_0';
const TOKEN_HOSTS = new Set(['huggingface.co', 'hf.co']);
const REPO_RE = /^([A-Za-z0-9][\w.-]*)\/([A-Za-z0-9][\w.-]*)(?:@(.+))?$/;
const KEY_RE = /^convert:([a-z0-9_]+):(.+)$/;

/**
 * A checkpoint to convert: `base` ends with "/" and the files are `base + name`; `key` names the
 * converted model in the cache; `name` is the repository's (or the folder's).
 * @typedef {{kind: 'checkpoint', base: string, type: string, key: string, name: string, repo?: string, revision?: string}} CheckpointSource
 */
/** @typedef {{kind: 'gguf', url: string} | CheckpointSource} ModelSource */
/** @typedef {import('./download.js').DownloadTarget} DownloadTarget */
/** @typedef {import('./protocol.js').Progress} Progress */
/**
 * Where downloadCheckpoint() puts the files (scratch.js Scratch).
 * @typedef {{partial(name: string, url: string): Promise<DownloadTarget>, forget(name: string): Promise<void>}} CheckpointStore
 */

/**
 * Classifies `spec`. Returns {kind: 'gguf', url} or {kind: 'checkpoint', base, type, key, name,
 * repo?, revision?}: `base` ends with "/" and the files are `base + name`; `key` names the
 * converted model in the cache (hub, repository, revision and type all take part).
 * @param {string} spec
 * @param {{hubUrl?: string, revision?: string, convertType?: string, baseHref?: string}} [options]
 * @returns {ModelSource}
 */
export function resolveModelSource(spec, { hubUrl = HUB_URL, revision, convertType = DEFAULT_CONVERT_TYPE, baseHref } = {}) {
  if (typeof spec !== 'string' || !spec.trim()) throw new MobileLLMError('InvalidArgument', 'the model must be a URL or a Hugging Face repository name');
  if (!CONVERT_TYPES.includes(convertType)) {
    throw new MobileLLMError('InvalidArgument', `convertType ${JSON.stringify(convertType)}: expected one of ${CONVERT_TYPES.join(', ')}`);
  }
  const hub = new URL(hubUrl);
  spec = spec.trim();
  const bare = spec.startsWith('hf:') ? spec.slice(3) : spec;
  const m = REPO_RE.exec(bare);
  if (m && (spec.startsWith('hf:') || !/\.gguf$/i.test(m[2]))) return repoSource(hub, m[1], m[2], revision ?? m[3] ?? 'main', convertType);
  if (spec.startsWith('hf:')) throw new MobileLLMError('InvalidArgument', `${spec}: expected hf:owner/name or hf:owner/name@revision`);

  let url;
  try {
    url = new URL(spec, baseHref);
  } catch {
    throw new MobileLLMError('InvalidArgument', `${spec} is neither a URL nor a Hugging Face repository name (owner/name)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { kind: 'gguf', url: url.href };
  const onHub = url.origin === hub.origin || TOKEN_HOSTS.has(url.hostname);
  if (onHub) {
    // /owner/name, /owner/name/tree/<rev>[/…], and /owner/name/blob/<rev>/file.gguf (a page, not the file)
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const gguf = /\.gguf$/i.test(url.pathname);
    if (parts.length >= 2 && !gguf && (parts.length === 2 || parts[2] === 'tree')) {
      const hubOf = TOKEN_HOSTS.has(url.hostname) ? new URL(HUB_URL) : hub;
      return repoSource(hubOf, parts[0], parts[1], revision ?? parts[3] ?? 'main', convertType);
    }
    if (gguf && parts[2] === 'blob') url.pathname = url.pathname.replace(/^(\/[^/]+\/[^/]+)\/blob\//, '$1/resolve/');
  }
  if (url.pathname.endsWith('/')) {
    url.hash = '';
    const name = decodeURIComponent(url.pathname.split('/').filter(Boolean).pop() || url.hostname);
    return { kind: 'checkpoint', base: url.href, type: convertType, key: `convert:${convertType}:${url.href}`, name };
  }
  return { kind: 'gguf', url: url.href };
}

/**
 * @param {URL} hub
 * @param {string} owner
 * @param {string} name
 * @param {string} revision
 * @param {string} type
 * @returns {CheckpointSource}
 */
function repoSource(hub, owner, name, revision, type) {
  const repo = `${owner}/${name}`;
  const base = `${hub.origin}/${repo}/resolve/${encodeURIComponent(revision)}/`;
  return { kind: 'checkpoint', base, type, key: `convert:${type}:${base}`, name: repo, repo, revision };
}

/**
 * A short label for a cache entry: "facebook/MobileLLM-125M (q8_0)", or null for a plain GGUF URL.
 * @param {string} key
 */
export function describeCacheKey(key) {
  const m = KEY_RE.exec(key || '');
  if (!m) return null;
  const base = new URL(m[2]);
  const r = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/$/.exec(base.pathname);
  const label = r ? `${r[1]}${r[2] === 'main' ? '' : `@${decodeURIComponent(r[2])}`}` : base.pathname.split('/').filter(Boolean).pop() || base.host;
  return `${label} (${m[1]})`;
}

/**
 * The Authorization header for `url`, only when it is huggingface.co itself.
 * @param {string} url
 * @param {string} [token]
 * @returns {Record<string, string>}
 */
export function authHeaders(url, token) {
  return token && TOKEN_HOSTS.has(new URL(url).hostname) ? { Authorization: `Bearer ${token}` } : {};
}

/**
 * The error for a refused request of `file`, or null for a 404 when `optional`: 401/403 are
 * GatedModel (a token is needed, or the token has no access), other statuses DownloadFailed.
 * @param {CheckpointSource} source
 * @param {string} file
 * @param {Response} res
 * @param {string | undefined} token
 * @param {boolean} optional
 */
function refusal(source, file, res, token, optional) {
  const url = source.base + file;
  const what = source.repo ?? source.base;
  if (res.status === 401 || res.status === 403) {
    const sent = Object.keys(authHeaders(url, token)).length > 0;
    return new MobileLLMError('GatedModel', sent
      ? `${what}: the access token was refused for ${file} (HTTP ${res.status}). Check the token, and accept the model's terms on its Hugging Face page.`
      : `${what} needs a Hugging Face access token (HTTP ${res.status} for ${file}): the repository is gated or private, or does not exist. ` +
        'Create a token at https://huggingface.co/settings/tokens and pass it as hfToken (the page has a field for it).');
  }
  if (res.status === 404 && optional) return null;
  if (res.status === 404) {
    return new MobileLLMError('DownloadFailed', `${what} has no ${file} (HTTP 404)` +
      (file === 'config.json' ? ': not a Hugging Face transformers checkpoint, or the repository or revision does not exist' : ''));
  }
  return httpError(res, url);
}

/**
 * Downloads `file` of the checkpoint into `target` (partial.js), continuing what it holds, with
 * download.js's retries. Resolves false for a 404 when `optional`; otherwise rejects with
 * GatedModel, DownloadFailed or Aborted.
 * @param {CheckpointSource} source
 * @param {string} file
 * @param {DownloadTarget} target
 * @param {{token?: string, signal?: AbortSignal, optional?: boolean,
 *   onProgress?: (p: {loaded: number, total?: number, rate: number}) => void}} [opts]
 */
async function fetchInto(source, file, target, { token, signal, optional = false, onProgress } = {}) {
  const url = source.base + file;
  const meta = await resumableDownload(target, {
    request: (headers) => fetch(url, { signal, cache: 'no-store', headers: { ...authHeaders(url, token), ...headers }, credentials: 'omit' }),
    refuse: (res) => refusal(source, file, res, token, optional),
    signal, onProgress, label: url,
  });
  return meta !== null;
}

/**
 * Reports at most every 100 ms, and always when `force`.
 * @param {((p: Progress) => void) | undefined} fn
 * @returns {(p: Progress, force?: boolean) => void}
 */
function throttle(fn) {
  let last = 0;
  return (p, force = false) => {
    const now = performance.now();
    if (force || now - last >= 100) { last = now; fn?.(p); }
  };
}

/**
 * Downloads the checkpoint's files into `store` (scratch.js): `store.partial(name, url)` returns
 * the file's download target, which may already hold the start of it from an earlier attempt:
 * the download then continues from there. `store.forget(name)` drops a file that turned out not
 * to exist. The weights are found by trying, in order, model.safetensors,
 * model.safetensors.index.json (+ its shards), pytorch_model.bin and pytorch_model.bin.index.json
 * (+ shards). `checkConfig(bytes)` may throw to stop before the weights are fetched. Resolves to
 * {file name: size}.
 * @param {CheckpointSource} source
 * @param {CheckpointStore} store
 * @param {{token?: string, signal?: AbortSignal, onProgress?: (p: Progress) => void,
 *   checkConfig?: (bytes: Uint8Array) => void}} [opts]
 * @returns {Promise<Record<string, number>>}
 */
export async function downloadCheckpoint(source, store, { token, signal, onProgress, checkConfig } = {}) {
  const report = throttle(onProgress);
  /** @type {Record<string, number>} */
  const sizes = {};
  const opts = (/** @type {boolean} */ optional) => ({ token, signal, optional });
  // The weights: resumable, with progress. False when absent (and optional).
  const save = async (/** @type {string} */ name, optional = false) => {
    const target = await store.partial(name, source.base + name);
    const progress = (/** @type {{loaded: number, total?: number, rate: number}} */ p) => report({ phase: 'download', file: name, ...p });
    if (!(await fetchInto(source, name, target, { ...opts(optional), onProgress: progress }))) {
      await store.forget(name);
      return false;
    }
    sizes[name] = target.size;
    report({ phase: 'download', file: name, loaded: target.size, total: target.size, rate: 0 }, true);
    return true;
  };
  // The small files: fetched whole each time (retried like the weights), then stored.
  const text = async (/** @type {string} */ name, optional = false) => {
    const mem = new MemoryPartial();
    if (!(await fetchInto(source, name, mem, opts(optional)))) return null;
    const bytes = mem.bytes();
    const target = await store.partial(name, source.base + name);
    await target.restart({ total: bytes.length, etag: null, lastModified: null });
    await target.write(bytes);
    sizes[name] = bytes.length;
    return bytes;
  };

  const config = await text('config.json');
  checkConfig?.(/** @type {Uint8Array} */ (config)); // required: never null
  if (!(await save('tokenizer.model', true)) && !(await text('tokenizer.json', true))) {
    throw new MobileLLMError('DownloadFailed', `${source.repo ?? source.base} has neither tokenizer.model nor tokenizer.json`);
  }
  await text('tokenizer_config.json', true);
  await text('added_tokens.json', true);

  for (const [single, index] of [['model.safetensors', 'model.safetensors.index.json'], ['pytorch_model.bin', 'pytorch_model.bin.index.json']]) {
    if (await save(single, true)) return sizes;
    const idx = await text(index, true);
    if (!idx) continue;
    for (const shard of shardNames(idx, index)) await save(shard);
    return sizes;
  }
  throw new MobileLLMError('DownloadFailed', `${source.repo ?? source.base} has no weights: expected model.safetensors, ` +
    'model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json');
}

/**
 * The files an index's weight_map names, each once; only plain file names are accepted.
 * @param {Uint8Array} bytes
 * @param {string} index
 * @returns {string[]}
 */
function shardNames(bytes, index) {
  let map;
  try {
    map = JSON.parse(new TextDecoder().decode(bytes)).weight_map;
  } catch (e) {
    throw new MobileLLMError('ConversionError', `${index} is not valid JSON: ${e.message}`);
  }
  if (!map || typeof map !== 'object') throw new MobileLLMError('ConversionError', `${index} has no weight_map`);
  const names = [...new Set(Object.values(map))].sort();
  for (const n of names) {
    if (typeof n !== 'string' || !n || n.includes('/') || n.includes('\\') || n === '.' || n === '..') {
      throw new MobileLLMError('ConversionError', `${index} names an invalid file ${JSON.stringify(n)}`);
    }
  }
  if (!names.length) throw new MobileLLMError('ConversionError', `${index} lists no files`);
  return names;
}
