// Downloads that are cut, given up on, cancelled or changed under us (issue 11, item 4), against
// the misbehaving server (lib.mjs serveBad / faultyRoute) and the stand-in Hub (hub.mjs):
//   - a model cut at 30% and 80% resumes with Range requests within one load: at most 1.2x the
//     file goes over the wire, and the cached copy is byte-identical;
//   - a load that gives up (the host is down) keeps the bytes it has, serves nothing, and the
//     next load after a page reload continues them;
//   - a host without Range support restarts cleanly; a file changed on the server (ETag or
//     Last-Modified) restarts from byte 0 instead of splicing two files;
//   - an aborted download keeps its partial, which deleteCached removes;
//   - a checkpoint's weights resume the same way in the in-browser conversion;
//   - nothing the user had (the cached model, the conversation) is lost by a failed download.
//   MOBILELLM_TEST_ENGINE=cpu-2 node --test-reporter=spec tests/browser/resume.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, utimesSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { serveWww, serveBad, launch, attachLogs, blankPage, waitStatus, sendMessage, setSettings, ENGINE, MODEL_PATH, ROOT } from './lib.mjs';
import { serveHub } from './hub.mjs';
import { resolveModelSource } from '../../www/hf.js';

const SIZE = statSync(MODEL_PATH).size;
const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');
const MODEL_SHA = sha256(readFileSync(MODEL_PATH));

let srv, bad, hub, browser, page, tmp;
const measured = {};

before(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'mobilellm-resume-'));
  srv = await serveWww();
  bad = await serveBad();
  browser = await launch();
  page = await browser.ctx.newPage();
  attachLogs(page, browser.logs);
  await openBlank();
});

after(async () => {
  if (process.env.VERBOSE) console.log(browser?.logs.join('\n'));
  console.log('measured:', JSON.stringify(measured));
  await browser?.close();
  await hub?.close();
  await bad?.close();
  await srv?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  assert.deepEqual(srv?.cspReports ?? [], [], 'no Content-Security-Policy violation');
});

async function openBlank() {
  await page.goto(blankPage(srv));
  await page.waitForFunction(() => window.apiReady === true);
}

/**
 * MobileLLM.load(url) in the page, then unload; `abortAt`: abort once this many bytes arrived.
 * Resolves to {ok, name, message, fromCache, downloads: [loaded, ...]}.
 */
function tryLoad(url, { abortAt = 0, ...opts } = {}) {
  return page.evaluate(async ([url, abortAt, opts]) => {
    const ctl = new AbortController();
    const downloads = [];
    try {
      const llm = await window.api.MobileLLM.load(url, {
        ...opts, signal: ctl.signal,
        onProgress: (p) => {
          if (p.phase !== 'download') return;
          downloads.push(p.loaded);
          if (abortAt && p.loaded >= abortAt) ctl.abort();
        },
      });
      const r = { ok: true, fromCache: llm.loadStats.fromCache, conversion: llm.loadStats.conversion, downloads };
      await llm.unload();
      return r;
    } catch (e) {
      return { ok: false, name: e.name, message: e.message, downloads };
    }
  }, [url, abortAt, opts]);
}

const cachedUrls = () => page.evaluate(async () => (await window.api.listCached()).map((c) => c.url));

/** SHA-256 of the cached model for `url` (read back from the Cache API), or null. */
const cachedSha = (url) => page.evaluate(async (url) => {
  const { CACHE_NAME } = await import('/cache.js');
  const cache = await caches.open(CACHE_NAME);
  for (const req of await cache.keys()) {
    if (new URL(req.url).searchParams.get('url') !== url) continue;
    const d = await crypto.subtle.digest('SHA-256', await (await cache.match(req)).arrayBuffer());
    return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
  }
  return null;
}, url);

/** The OPFS folders of partial downloads under `root`: {folder: {file: size}}. */
const partials = (root = 'mobilellm-downloads') => page.evaluate(async (root) => {
  const out = {};
  let top;
  try { top = await (await navigator.storage.getDirectory()).getDirectoryHandle(root); } catch { return out; }
  for await (const [name, dir] of top.entries()) {
    out[name] = {};
    if (dir.kind !== 'directory') continue;
    for await (const [f, h] of dir.entries()) out[name][f] = h.kind === 'file' ? (await h.getFile()).size : -1;
  }
  return out;
}, root);

/** Bytes of the one partial model download (the `model.gguf` of the only folder), or null. */
async function partialSize() {
  const all = Object.values(await partials());
  assert.ok(all.length <= 1, `one partial download at most: ${JSON.stringify(all)}`);
  return all[0]?.['model.gguf'] ?? null;
}

const ranges = (route) => route.stats.requests.map((r) => `${r.status} ${r.range ?? '-'}`);

test('a download cut at 30% and 80% resumes with Range requests: at most 1.2x the file, byte-identical', async () => {
  const route = bad.route('/cut.gguf', { cuts: [0.3, 0.8] });
  const url = `${bad.url}/cut.gguf`;
  const r = await tryLoad(url);
  assert.ok(r.ok, `${r.name}: ${r.message}`);
  assert.equal(r.fromCache, false);
  const reqs = route.stats.requests;
  assert.deepEqual(reqs.map((q) => q.status), [200, 206, 206], ranges(route).join(', '));
  // Each continuation starts where the bytes that arrived end (at or before the cut).
  const starts = reqs.slice(1).map((q) => Number(/^bytes=(\d+)-$/.exec(q.range)[1]));
  assert.ok(starts[0] > 0 && starts[0] <= Math.floor(0.3 * SIZE), `resumed at ${starts[0]}`);
  assert.ok(starts[1] > starts[0] && starts[1] <= Math.floor(0.8 * SIZE), `resumed at ${starts[1]}`);
  measured.cut_30_80 = { bytes: route.stats.bytes, ratio: +(route.stats.bytes / SIZE).toFixed(4), requests: ranges(route) };
  assert.ok(route.stats.bytes <= 1.2 * SIZE, `fetched ${route.stats.bytes} bytes for a ${SIZE}-byte file`);
  // Progress never goes back and ends at the size.
  assert.deepEqual(r.downloads, [...r.downloads].sort((a, b) => a - b));
  assert.equal(r.downloads.at(-1), SIZE);
  assert.equal(await cachedSha(url), MODEL_SHA, 'the cached model is the file, byte for byte');
  assert.deepEqual(await partials(), {}, 'the partial file is gone once the model is cached');
});

test('a load that gives up keeps its bytes and serves nothing; after a page reload the next load continues them', async () => {
  // Cut at 30%, then the host is down for the four retries: the load fails.
  const route = bad.route('/flaky.gguf', { cuts: [0.3], downAfterCut: 4 });
  const url = `${bad.url}/flaky.gguf`;
  const t0 = Date.now();
  const first = await tryLoad(url);
  measured.give_up_ms = Date.now() - t0;
  assert.equal(first.ok, false);
  assert.equal(first.name, 'DownloadFailed', first.message);
  assert.match(first.message, /gave up after 5 attempts/);
  assert.deepEqual(route.stats.requests.map((q) => q.status), [200, 503, 503, 503, 503]);
  assert.ok(!(await cachedUrls()).includes(url), 'an incomplete file is never a cached model');
  const kept = await partialSize();
  assert.ok(kept > 0 && kept <= Math.floor(0.3 * SIZE), `kept ${kept} bytes`);

  // A reload (a new engine worker, a new page), the host back up; it cuts once more at 80%.
  await page.reload();
  await page.waitForFunction(() => window.apiReady === true);
  assert.equal(await partialSize(), kept, 'the partial download survives the reload');
  route.plan.cuts = [0.8];
  const before = route.stats.requests.length;
  const second = await tryLoad(url);
  assert.ok(second.ok, `${second.name}: ${second.message}`);
  const later = route.stats.requests.slice(before);
  assert.deepEqual(later.map((q) => [q.status, q.range?.replace(/\d+-$/, '')]), [[206, 'bytes='], [206, 'bytes=']]);
  assert.equal(later[0].range, `bytes=${kept}-`, 'continues from the kept bytes');
  assert.equal(second.downloads[0] >= kept, true, 'progress starts from the kept bytes');
  measured.give_up_then_resume = { bytes: route.stats.bytes, ratio: +(route.stats.bytes / SIZE).toFixed(4), requests: ranges(route) };
  assert.ok(route.stats.bytes <= 1.2 * SIZE, `fetched ${route.stats.bytes} bytes for a ${SIZE}-byte file`);
  assert.equal(await cachedSha(url), MODEL_SHA);
  assert.deepEqual(await partials(), {});
});

test('a host without Range support restarts from byte 0 and still caches the exact file', async () => {
  const route = bad.route('/norange.gguf', { range: false, cuts: [0.3] });
  const url = `${bad.url}/norange.gguf`;
  const r = await tryLoad(url);
  assert.ok(r.ok, `${r.name}: ${r.message}`);
  // The second request asked for a range; the host answered with the whole file.
  assert.deepEqual(route.stats.requests.map((q) => [q.status, !!q.range]), [[200, false], [200, true]]);
  measured.no_range = { bytes: route.stats.bytes, ratio: +(route.stats.bytes / SIZE).toFixed(4) };
  assert.equal(await cachedSha(url), MODEL_SHA);
  assert.deepEqual(await partials(), {});
});

test('without storing (useCache: false) a cut download continues inside the stream the engine reads', async () => {
  // Range host: the stream continues at 30% and 80%. No-Range host: the restarted response is
  // read past what the engine already has.
  for (const [name, plan, statuses] of [['stream.gguf', { cuts: [0.3, 0.8] }, [200, 206, 206]], ['stream-norange.gguf', { range: false, cuts: [0.3] }, [200, 200]]]) {
    const route = bad.route(`/${name}`, plan);
    const r = await tryLoad(`${bad.url}/${name}`, { useCache: false });
    assert.ok(r.ok, `${name}: ${r.name}: ${r.message}`);
    assert.deepEqual(route.stats.requests.map((q) => q.status), statuses, ranges(route).join(', '));
    if (plan.range !== false) assert.ok(route.stats.bytes <= 1.2 * SIZE, `fetched ${route.stats.bytes} bytes`);
    measured[`uncached_${name}`] = +(route.stats.bytes / SIZE).toFixed(4);
  }
  assert.deepEqual((await cachedUrls()).filter((u) => u.includes('stream')), []);
  assert.deepEqual(await partials(), {});
});

/** A copy of the model with different bytes (and a later mtime), still a loadable GGUF. */
function changedModel(name) {
  const bytes = readFileSync(MODEL_PATH);
  // Flip the lowest bit of the last 64 KB (tensor data): an f16 scale's exponent is untouched,
  // so the weights stay finite; the size and the header are the same.
  for (let i = bytes.length - 65536; i < bytes.length; i++) bytes[i] ^= 1;
  const file = path.join(tmp, name);
  writeFileSync(file, bytes);
  const later = new Date(Date.now() + 86400e3);
  utimesSync(file, later, later);
  return { file, sha: sha256(bytes) };
}

for (const validators of ['etag', 'last-modified']) {
  test(`a file changed on the server (${validators}) restarts from byte 0 instead of splicing two files`, async () => {
    const route = bad.route(`/changed-${validators}.gguf`, { validators, rate: 25e6 });
    const url = `${bad.url}/changed-${validators}.gguf`;
    // Aborted at 30%: the partial is kept (and is not a model).
    const first = await tryLoad(url, { abortAt: Math.floor(0.3 * SIZE) });
    assert.equal(first.name, 'Aborted', first.message);
    assert.ok((await partialSize()) >= 0.3 * SIZE);
    assert.ok(!(await cachedUrls()).includes(url));

    const next = changedModel(`changed-${validators}.gguf`);
    route.plan.file = next.file;
    route.plan.rate = 0;
    const before = route.stats.requests.length;
    const r = await tryLoad(url);
    assert.ok(r.ok, `${r.name}: ${r.message}`);
    // The continuation came back as another file: dropped, and the whole new file fetched.
    assert.deepEqual(route.stats.requests.slice(before).map((q) => [q.status, !!q.range]), [[206, true], [200, false]], ranges(route).join(', '));
    assert.equal(await cachedSha(url), next.sha, 'the cache holds the new file, not a splice');
    assert.deepEqual(await partials(), {});
  });
}

test('an aborted download keeps its partial, which deleteCached removes', async () => {
  bad.route('/aborted.gguf', { rate: 25e6 });
  const url = `${bad.url}/aborted.gguf`;
  const r = await tryLoad(url, { abortAt: 8e6 });
  assert.equal(r.name, 'Aborted', r.message);
  assert.ok((await partialSize()) >= 8e6);
  assert.ok(!(await cachedUrls()).includes(url));
  const removed = await page.evaluate((u) => window.api.deleteCached(u), url);
  assert.equal(removed, 0, 'no cached model was removed');
  assert.deepEqual(await partials(), {}, 'the partial download is gone');
});

test('a checkpoint\'s weights resume too: cut at 30% and 80% within a load; across loads, a complete shard is confirmed and a cut one continued', async () => {
  // A tiny random Llama checkpoint in two safetensors shards (numpy), served by the stand-in Hub.
  const repo = 'test-org/tiny-resume';
  const dir = path.join(tmp, 'tiny-resume');
  execFileSync('python3', [path.join(ROOT, 'tests/fixtures/make_checkpoint.py'), dir, '--kind', 'llama', '--format', 'sharded', '--dtype', 'f16',
    '--seed', '7', '--dim', '256', '--ffn', '512', '--layers', '2', '--no-reference'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const out = path.join(tmp, 'tiny-resume.q8_0.gguf');
  execFileSync(process.env.MOBILELLM_CLI || path.join(ROOT, 'target/ci/mobilellm'), ['convert', '--hf', dir, '--out', out, '--type', 'q8_0'], { stdio: 'ignore' });
  const want = sha256(readFileSync(out));
  const [s1, s2] = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  const size1 = statSync(path.join(dir, s1)).size;
  const size2 = statSync(path.join(dir, s2)).size;
  hub = await serveHub({ [repo]: dir });
  const key = resolveModelSource(repo, { hubUrl: hub.url }).key;
  const shard1 = hub.plan(repo, s1, { cuts: [0.3, 0.8] });
  const shard2 = hub.plan(repo, s2, {});

  const r = await tryLoad(repo, { hubUrl: hub.url });
  assert.ok(r.ok, `${r.name}: ${r.message}`);
  assert.deepEqual(shard1.stats.requests.map((q) => q.status), [200, 206, 206], ranges(shard1).join(', '));
  measured.checkpoint_cut_30_80 = { shard: size1, bytes: shard1.stats.bytes, ratio: +(shard1.stats.bytes / size1).toFixed(4) };
  assert.ok(shard1.stats.bytes <= 1.2 * size1, `fetched ${shard1.stats.bytes} bytes of a ${size1}-byte file`);
  assert.equal(await cachedSha(key), want, 'the same GGUF as the native converter');
  assert.deepEqual(await partials('mobilellm-convert'), {}, 'the checkpoint files are deleted after conversion');

  // Across loads: shard 2 is cut at 30% and its host is down for the retries. The conversion
  // fails, keeping shard 1 (complete) and shard 2's first bytes.
  await page.evaluate((k) => window.api.deleteCached(k), key);
  for (const s of [shard1, shard2]) { s.stats.requests.length = 0; s.stats.bytes = 0; }
  Object.assign(shard2.plan, { cuts: [0.3], downAfterCut: 4 });
  const failed = await tryLoad(repo, { hubUrl: hub.url });
  assert.equal(failed.name, 'DownloadFailed', failed.message);
  const folders = Object.values(await partials('mobilellm-convert'));
  assert.equal(folders.length, 1);
  const kept = folders[0][s2];
  assert.equal(folders[0][s1], size1);
  assert.ok(kept > 0 && kept <= Math.floor(0.3 * size2), `kept ${kept} bytes`);
  assert.ok(!(await cachedUrls()).includes(key));

  // After a reload: shard 1 is confirmed by its last byte, shard 2 continues where it stopped.
  await page.reload();
  await page.waitForFunction(() => window.apiReady === true);
  const n1 = shard1.stats.requests.length, n2 = shard2.stats.requests.length;
  const again = await tryLoad(repo, { hubUrl: hub.url });
  assert.ok(again.ok, `${again.name}: ${again.message}`);
  assert.deepEqual(shard1.stats.requests.slice(n1).map((q) => [q.status, q.range, q.sent]), [[206, `bytes=${size1 - 1}-`, 1]]);
  assert.deepEqual(shard2.stats.requests.slice(n2).map((q) => [q.status, q.range]), [[206, `bytes=${kept}-`]]);
  measured.checkpoint_across_loads = { bytes: shard1.stats.bytes + shard2.stats.bytes, files: size1 + size2, requests: [...ranges(shard1), ...ranges(shard2)] };
  assert.ok(shard2.stats.bytes <= 1.2 * size2, `fetched ${shard2.stats.bytes} bytes of a ${size2}-byte file`);
  assert.equal(await cachedSha(key), want);
  assert.deepEqual(await partials('mobilellm-convert'), {});
});

test('a failed download loses nothing the user had: the cached model, the conversation', async () => {
  const chat = `${srv.url}/?${ENGINE.query}`;
  await page.goto(chat);
  await page.waitForSelector('#load-button:not([disabled])');
  await page.click('#load-button'); // the default model (SmolLM2, served with the page)
  await waitStatus(page, 'ready');
  await setSettings(page, { temperature: 0, top_p: 1, max_tokens: 4 });
  await sendMessage(page, 'Say hi.');
  await waitStatus(page, 'ready');
  const conversation = await page.evaluate(() => JSON.stringify(window.__app.conversation));
  const cachedBefore = await page.evaluate(async () => (await (await import('/cache.js')).listCached()).map((c) => c.url).sort());

  // Another model whose host dies at 30%.
  bad.route('/dies.gguf', { cuts: [0.3], downAfterCut: 1000 });
  await page.click('#open-model'); // the model panel folds away once a model is loaded
  await page.check('input[name=model-source][value=url]');
  await page.fill('#model-url', `${bad.url}/dies.gguf`);
  await page.click('#load-button');
  await page.waitForSelector('#load-error:not([hidden])', { timeout: 120_000 });
  assert.match(await page.textContent('#load-error'), /DownloadFailed|gave up/);
  assert.equal(await page.evaluate(() => JSON.stringify(window.__app.conversation)), conversation);
  assert.deepEqual(await page.evaluate(async () => (await (await import('/cache.js')).listCached()).map((c) => c.url).sort()), cachedBefore);
  assert.ok((await partialSize()) > 0, 'the partial download is kept for the next attempt');

  // A reload shows the same conversation and reopens the cached model (the last one loaded).
  await page.reload();
  await waitStatus(page, 'ready');
  assert.equal(await page.evaluate(() => window.__app.loadStats.fromCache), true);
  assert.equal(await page.evaluate(() => JSON.stringify(window.__app.conversation)), conversation);
  assert.equal(await page.locator('.msg.user .bubble').first().textContent(), 'Say hi.');
});
