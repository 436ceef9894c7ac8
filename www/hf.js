// Hugging Face checkpoints as model sources: what `MobileLLM.load(model)` was given (a GGUF URL,
// a Hub repository, or the base URL of a checkpoint folder), and the download of a checkpoint's
// files (config.json, tokenizer, weights in any layout) with progress. The conversion itself
// runs in the worker (convert.js -> src/wasm_convert.rs).
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

export const HUB_URL = 'https://huggingface.co';
/** Conversion types the browser offers; q8_0 keeps a 125M model's quality (see README). */
export const CONVERT_TYPES = Object.freeze(['q8_0', 'q4_1', 'q4_0', 'f16', 'f32']);
export const DEFAULT_CONVERT_TYPE = 'q8_0';
const TOKEN_HOSTS = new Set(['huggingface.co', 'hf.co']);
const REPO_RE = /^([A-Za-z0-9][\w.-]*)\/([A-Za-z0-9][\w.-]*)(?:@(.+))?$/;
const KEY_RE = /^convert:([a-z0-9_]+):(.+)$/;

/**
 * Classifies `spec`. Returns {kind: 'gguf', url} or {kind: 'checkpoint', base, type, key, name,
 * repo?, revision?}: `base` ends with "/" and the files are `base + name`; `key` names the
 * converted model in the cache (hub, repository, revision and type all take part).
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

function repoSource(hub, owner, name, revision, type) {
  const repo = `${owner}/${name}`;
  const base = `${hub.origin}/${repo}/resolve/${encodeURIComponent(revision)}/`;
  return { kind: 'checkpoint', base, type, key: `convert:${type}:${base}`, name: repo, repo, revision };
}

/** A short label for a cache entry: "facebook/MobileLLM-125M (q8_0)", or null for a plain GGUF URL. */
export function describeCacheKey(key) {
  const m = KEY_RE.exec(key || '');
  if (!m) return null;
  const base = new URL(m[2]);
  const r = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/$/.exec(base.pathname);
  const label = r ? `${r[1]}${r[2] === 'main' ? '' : `@${decodeURIComponent(r[2])}`}` : base.pathname.split('/').filter(Boolean).pop() || base.host;
  return `${label} (${m[1]})`;
}

/** The Authorization header for `url`, only when it is huggingface.co itself. */
export function authHeaders(url, token) {
  return token && TOKEN_HOSTS.has(new URL(url).hostname) ? { Authorization: `Bearer ${token}` } : {};
}

/**
 * GETs `file` of the checkpoint. Resolves to the Response, or null for a 404 when `optional`.
 * 401/403 reject with GatedModel (a token is needed, or the token has no access), other
 * failures with DownloadFailed, an aborted signal with Aborted.
 */
export async function fetchFile(source, file, { token, signal, optional = false } = {}) {
  const url = source.base + file;
  let res;
  try {
    res = await fetch(url, { signal, cache: 'no-store', headers: authHeaders(url, token), credentials: 'omit' });
  } catch (e) {
    if (signal?.aborted || e?.name === 'AbortError') throw new MobileLLMError('Aborted', 'model download aborted');
    throw new MobileLLMError('DownloadFailed', `could not fetch ${url}: ${e?.message || e} (network error or missing CORS headers)`);
  }
  if (res.ok && res.body) return res;
  res.body?.cancel().catch(() => {});
  const what = source.repo ?? source.base;
  if (res.status === 401 || res.status === 403) {
    const sent = Object.keys(authHeaders(url, token)).length > 0;
    throw new MobileLLMError('GatedModel', sent
      ? `${what}: the access token was refused for ${file} (HTTP ${res.status}). Check the token, and accept the model's terms on its Hugging Face page.`
      : `${what} needs a Hugging Face access token (HTTP ${res.status} for ${file}): the repository is gated or private, or does not exist. ` +
        'Create a token at https://huggingface.co/settings/tokens and pass it as hfToken (the page has a field for it).');
  }
  if (res.status === 404 && optional) return null;
  if (res.status === 404) {
    throw new MobileLLMError('DownloadFailed', `${what} has no ${file} (HTTP 404)` +
      (file === 'config.json' ? ': not a Hugging Face transformers checkpoint, or the repository or revision does not exist' : ''));
  }
  throw new MobileLLMError('DownloadFailed', `could not fetch ${url}: HTTP ${res.status} ${res.statusText}`.trim());
}

/** Reports at most every 100 ms, and always when `force`. */
function throttle(fn) {
  let last = 0;
  return (p, force = false) => {
    const now = performance.now();
    if (force || now - last >= 100) { last = now; fn?.(p); }
  };
}

/**
 * Downloads the checkpoint's files into `store`: `store.create(name, sizeHint)` returns a sink
 * {write(Uint8Array), close()} (sync or async). The weights are found by trying, in order,
 * model.safetensors, model.safetensors.index.json (+ its shards), pytorch_model.bin and
 * pytorch_model.bin.index.json (+ shards). `checkConfig(bytes)` may throw to stop before the
 * weights are fetched. Resolves to {file name: size}.
 */
export async function downloadCheckpoint(source, store, { token, signal, onProgress, checkConfig } = {}) {
  const report = throttle(onProgress);
  const sizes = {};
  const t0 = performance.now();
  let totalLoaded = 0;
  const save = async (name, res) => {
    const len = Number(res.headers.get('content-length'));
    const encoded = (res.headers.get('content-encoding') || 'identity') !== 'identity';
    const size = !encoded && len > 0 ? len : null;
    const sink = await store.create(name, size);
    let loaded = 0;
    try {
      for await (const chunk of res.body) {
        if (signal?.aborted) throw new MobileLLMError('Aborted', 'model download aborted');
        await sink.write(chunk);
        loaded += chunk.length;
        totalLoaded += chunk.length;
        const secs = (performance.now() - t0) / 1000;
        report({ phase: 'download', file: name, loaded, total: size ?? undefined, rate: secs > 0 ? totalLoaded / secs : 0 });
      }
    } catch (e) {
      if (e instanceof MobileLLMError) throw e;
      if (signal?.aborted || e?.name === 'AbortError') throw new MobileLLMError('Aborted', 'model download aborted');
      throw new MobileLLMError('DownloadFailed', `download of ${source.base + name} failed after ${loaded} bytes: ${e?.message || e}`);
    } finally {
      await sink.close();
    }
    if (size !== null && loaded !== size) throw new MobileLLMError('DownloadFailed', `download of ${name} incomplete: ${loaded} of ${size} bytes`);
    sizes[name] = loaded;
    report({ phase: 'download', file: name, loaded, total: loaded, rate: 0 }, true);
    return loaded;
  };
  const get = (name, optional = false) => fetchFile(source, name, { token, signal, optional });
  const text = async (name, optional = false) => {
    const res = await get(name, optional);
    if (!res) return null;
    const bytes = new Uint8Array(await res.arrayBuffer());
    const sink = await store.create(name, bytes.length);
    await sink.write(bytes);
    await sink.close();
    sizes[name] = bytes.length;
    return bytes;
  };

  const config = await text('config.json');
  checkConfig?.(config);
  if (!(await saveIf(get('tokenizer.model', true), 'tokenizer.model', save)) && !(await text('tokenizer.json', true))) {
    throw new MobileLLMError('DownloadFailed', `${source.repo ?? source.base} has neither tokenizer.model nor tokenizer.json`);
  }
  await text('tokenizer_config.json', true);
  await text('added_tokens.json', true);

  for (const [single, index] of [['model.safetensors', 'model.safetensors.index.json'], ['pytorch_model.bin', 'pytorch_model.bin.index.json']]) {
    if (await saveIf(get(single, true), single, save)) return sizes;
    const idx = await text(index, true);
    if (!idx) continue;
    for (const shard of shardNames(idx, index)) await save(shard, await get(shard));
    return sizes;
  }
  throw new MobileLLMError('DownloadFailed', `${source.repo ?? source.base} has no weights: expected model.safetensors, ` +
    'model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json');
}

async function saveIf(resPromise, name, save) {
  const res = await resPromise;
  if (!res) return false;
  await save(name, res);
  return true;
}

/** The files an index's weight_map names, each once; only plain file names are accepted. */
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
