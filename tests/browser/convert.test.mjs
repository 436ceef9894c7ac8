// In-browser conversion of Hugging Face checkpoints, end to end in headless Chromium:
// random checkpoints (tests/fixtures/make_checkpoint.py) are served by a local stand-in for the
// Hub (hub.mjs), loaded by repository name, converted in the worker, and checked against the
// native CLI on the natively converted file: the same GGUF bytes, the same greedy tokens and
// top logits in completion mode, the documented fallback template in chat mode. A reload uses
// the cached conversion with no request to the Hub; 401, missing files and unsupported configs
// give typed errors and leave nothing behind.
//   node tests/browser/convert.test.mjs        (needs target/ci/mobilellm, www/pkg, numpy)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openPage, closePage, sendMessage, setSettings, waitStatus as waitPageStatus, cli, blankPage, ENGINE, ROOT } from './lib.mjs';
import { serveHub } from './hub.mjs';
import { resolveModelSource, describeCacheKey } from '../../www/hf.js';

const LS = 'test-org/tiny-mobilellm-ls';      // MobileLLM-LS layout: pytorch_model.bin, fp16, layer_sharing
const SHARDED = 'test-org/tiny-llama-sharded'; // llama, two safetensors shards + index, bf16
const PROMPT = 'Once upon a time';
const N = 8;

let tmp, hub, pageCtx, srv, browser, page;
const native = {}; // repo -> {gguf, sha256}
const measured = {};

function makeCheckpoint(dir, args) {
  execFileSync('python3', [path.join(ROOT, 'tests/fixtures/make_checkpoint.py'), dir, ...args, '--no-reference'], { stdio: ['ignore', 'ignore', 'inherit'] });
}

function nativeConvert(dir, type) {
  const out = path.join(tmp, `${path.basename(dir)}.${type}.gguf`);
  execFileSync(process.env.MOBILELLM_CLI || path.join(ROOT, 'target/ci/mobilellm'), ['convert', '--hf', dir, '--out', out, '--type', type], { stdio: 'ignore' });
  return { gguf: out, sha256: createHash('sha256').update(readFileSync(out)).digest('hex') };
}

before(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'mobilellm-convert-test-'));
  const repos = {};
  const repoDir = (repo) => (repos[repo] = path.join(tmp, repo.split('/')[1]));
  // The folder name is the repository's name: the native converter writes it as general.name,
  // as the browser does, so the two GGUF files can be compared byte for byte.
  makeCheckpoint(repoDir(LS), ['--kind', 'mobilellm-ls', '--format', 'bin', '--dtype', 'f16', '--seed', '5']);
  makeCheckpoint(repoDir(SHARDED), ['--kind', 'llama', '--format', 'sharded', '--dtype', 'bf16', '--seed', '11']);
  native[LS] = nativeConvert(repos[LS], 'q8_0');
  native[SHARDED] = nativeConvert(repos[SHARDED], 'q4_1');

  // Broken repositories: no config.json, no weights, a model type the converter refuses.
  const noConfig = repoDir('test-org/no-config');
  cpSync(repos[LS], noConfig, { recursive: true });
  rmSync(path.join(noConfig, 'config.json'));
  const noWeights = repoDir('test-org/no-weights');
  mkdirSync(noWeights);
  for (const f of ['config.json', 'tokenizer.model']) cpSync(path.join(repos[LS], f), path.join(noWeights, f));
  const other = repoDir('test-org/other-arch');
  cpSync(repos[LS], other, { recursive: true });
  const cfg = JSON.parse(readFileSync(path.join(other, 'config.json'), 'utf8'));
  writeFileSync(path.join(other, 'config.json'), JSON.stringify({ ...cfg, model_type: 'gpt_neox' }));

  cpSync(repos[LS], repoDir('test-org/slow'), { recursive: true });
  hub = await serveHub(repos, { gated: ['test-org/gated'], slow: { 'test-org/slow': 20_000 } });
  pageCtx = await openPage();
  ({ srv, browser, page } = pageCtx);
});

after(async () => {
  await closePage(pageCtx, measured);
  await hub?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------- page helpers

const waitStatus = (s, timeout = 300_000) => waitPageStatus(page, s, timeout);

async function send(text) {
  await sendMessage(page, text);
  await waitStatus('ready');
  return page.evaluate(() => window.__app.lastResult);
}

/** SHA-256 of the model cached under `key`, read back from the page's Cache API. */
const cachedSha256 = (key) => page.evaluate(async (key) => {
  const { CACHE_NAME } = await import('/cache.js');
  const cache = await caches.open(CACHE_NAME);
  for (const req of await cache.keys()) {
    if (new URL(req.url).searchParams.get('url') !== key) continue;
    const digest = await crypto.subtle.digest('SHA-256', await (await cache.match(req)).arrayBuffer());
    return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
  }
  return null;
}, key);

/** What is left in the conversion's scratch folder on OPFS (should be nothing). */
const scratchLeft = () => page.evaluate(async () => {
  const root = await navigator.storage.getDirectory();
  let dir;
  try { dir = await root.getDirectoryHandle('mobilellm-convert'); } catch { return []; }
  const names = [];
  for await (const [name] of dir.entries()) names.push(name);
  return names;
});

const cachedKeys = () => page.evaluate(async () => (await (await import('/cache.js')).listCached()).map((c) => c.url));

/** Teacher-forced top logits in the page vs the native CLI on the native GGUF, every position. */
async function compareLogits(repo, ids) {
  const got = await page.evaluate(([ids]) => window.__llm.debug.topLogits(ids, 3), [ids]);
  const want = cli(['logits', '--model', native[repo].gguf, '--prompt-tokens', ids.join(','), '--top', '3', '--f32', '--json']).positions.map((p) => p.top);
  assert.equal(got.length, want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    // The top-1 id must agree unless the reference has a near-tie there.
    if (want[i][0][1] - want[i][1][1] > 1e-3) assert.equal(got[i][0][0], want[i][0][0], `top-1 at position ${i}`);
    worst = Math.max(worst, Math.abs(got[i][0][1] - want[i][0][1]) / Math.max(1, Math.abs(want[i][0][1])));
  }
  assert.ok(worst < 1e-3, `top-1 logits differ by ${worst} (relative)`);
  return worst;
}

// ---------------------------------------------------------------- tests

test('model names: repositories, hub URLs, checkpoint folders and GGUF URLs are told apart', () => {
  const base = 'http://127.0.0.1:8080/index.html';
  const r = (spec, o = {}) => resolveModelSource(spec, { baseHref: base, ...o });
  const main = 'https://huggingface.co/facebook/MobileLLM-125M/resolve/main/';
  assert.deepEqual(r('facebook/MobileLLM-125M'), {
    kind: 'checkpoint', base: main, type: 'q8_0', key: `convert:q8_0:${main}`, name: 'facebook/MobileLLM-125M', repo: 'facebook/MobileLLM-125M', revision: 'main',
  });
  assert.equal(r('hf:facebook/MobileLLM-125M').key, `convert:q8_0:${main}`);
  assert.equal(r('https://huggingface.co/facebook/MobileLLM-125M').key, `convert:q8_0:${main}`);
  assert.equal(r('https://huggingface.co/facebook/MobileLLM-125M/tree/v2', { convertType: 'q4_1' }).key,
    'convert:q4_1:https://huggingface.co/facebook/MobileLLM-125M/resolve/v2/');
  assert.equal(r('hf:facebook/MobileLLM-125M@refs/pr/3').base, 'https://huggingface.co/facebook/MobileLLM-125M/resolve/refs%2Fpr%2F3/');
  assert.equal(r('owner/name', { hubUrl: 'http://127.0.0.1:9/' }).base, 'http://127.0.0.1:9/owner/name/resolve/main/');
  assert.deepEqual(r('models/SmolLM2.Q4_1.gguf'), { kind: 'gguf', url: 'http://127.0.0.1:8080/models/SmolLM2.Q4_1.gguf' });
  assert.deepEqual(r('https://huggingface.co/o/n/blob/main/m.gguf'), { kind: 'gguf', url: 'https://huggingface.co/o/n/resolve/main/m.gguf' });
  assert.equal(r('https://example.com/file').kind, 'gguf');
  const folder = r('./ckpt/tiny/');
  assert.equal(folder.kind, 'checkpoint');
  assert.equal(folder.base, 'http://127.0.0.1:8080/ckpt/tiny/');
  assert.equal(folder.name, 'tiny');
  assert.equal(describeCacheKey(r('facebook/MobileLLM-125M').key), 'facebook/MobileLLM-125M (q8_0)');
  assert.equal(describeCacheKey(r('hf:a/b@dev', { convertType: 'f16' }).key), 'a/b@dev (f16)');
  assert.equal(describeCacheKey('http://x/m.gguf'), null);
  for (const bad of ['', '  ', 'hf:nope', { url: 'a/b' }]) assert.throws(() => r(bad), { name: 'InvalidArgument' });
  assert.throws(() => r('a/b', { convertType: 'q5_k' }), { name: 'InvalidArgument' });
});

test('the chat page loads a MobileLLM-LS repository by name, converts it in the browser, and completes like the native CLI', async () => {
  await page.goto(`${srv.url}/?hub=${encodeURIComponent(hub.url)}&${ENGINE.query}`);
  await page.waitForSelector('#load-button:not([disabled])');
  // Greedy, a few tokens (the settings dialog, as a user would).
  await setSettings(page, { temperature: 0, top_p: 1, max_tokens: N });

  await page.check('input[name=model-source][value=url]');
  await page.fill('#model-url', LS);
  const t0 = Date.now();
  await page.click('#load-button');
  await waitStatus('ready');
  measured.first_load_ms = Date.now() - t0;
  await page.evaluate(() => { window.__llm = window.__app.llm; });
  const stats = await page.evaluate(() => window.__app.loadStats);
  assert.equal(stats.fromCache, false);
  const conv = stats.conversion;
  assert.equal(conv.report.arch, 'mobilellm');
  assert.equal(conv.report.block_repeat, 2);
  assert.equal(conv.report.source_format, 'pytorch');
  assert.equal(conv.report.tokenizer_source, 'tokenizer.model');
  assert.equal(conv.report.type, 'Q8_0');
  assert.equal(conv.scratch, 'opfs');
  measured.ls_convert = conv.timings;
  // Each file once; the weights found by probing in the documented order.
  assert.deepEqual(hub.filesRequested(LS), ['config.json', 'tokenizer.model', 'tokenizer_config.json', 'added_tokens.json',
    'model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin']);
  assert.ok(hub.requests.every((r) => r.auth === null), 'no Authorization header to a host that is not huggingface.co');

  const key = await page.evaluate(() => window.__app.llm.info.url);
  assert.equal(key, resolveModelSource(LS, { hubUrl: hub.url }).key);
  assert.equal(await cachedSha256(key), native[LS].sha256, 'the browser wrote the same GGUF bytes as the native converter');
  assert.deepEqual(await scratchLeft(), [], 'the downloaded checkpoint is deleted after conversion');
  assert.equal(await page.textContent('#model-chip'), `${LS} (q8_0)`);

  // Complete mode: the raw text, continued.
  await page.check('#complete-mode');
  const res = await send(PROMPT);
  const ref = cli(['generate', '--model', native[LS].gguf, '--prompt', PROMPT, '--temperature', '0', '--f32', '-n', String(N), '--json']);
  assert.deepEqual(res.debug.prompt_token_ids, ref.prompt_tokens, 'raw prompt, BOS added as natively');
  assert.deepEqual(res.debug.completion_token_ids, ref.tokens);
  assert.equal(await page.locator('.msg.assistant .bubble').last().textContent(), ref.text);
  measured.ls_logit_rel_err = await compareLogits(LS, [...ref.prompt_tokens, ...ref.tokens]);
});

test('a reload uses the cached conversion: no request to the Hub, same tokens; chat mode uses the fallback template', async () => {
  const before = hub.requests.length;
  const t0 = Date.now();
  await page.reload();
  await page.waitForFunction(() => window.__app?.status === 'ready' || document.body.dataset.status === 'ready', null, { timeout: 300_000 });
  measured.cached_load_ms = Date.now() - t0;
  assert.equal(hub.requests.length, before, `requests after reload: ${hub.requests.slice(before).map((r) => r.path)}`);
  const stats = await page.evaluate(() => window.__app.loadStats);
  assert.equal(stats.fromCache, true);
  assert.equal(stats.conversion, null);
  assert.equal(await page.isChecked('#complete-mode'), true, 'the toggle is remembered');

  await page.click('#new-chat');
  const res = await send(PROMPT);
  const ref = cli(['generate', '--model', native[LS].gguf, '--prompt', PROMPT, '--temperature', '0', '--f32', '-n', String(N), '--json']);
  assert.deepEqual(res.debug.completion_token_ids, ref.tokens);

  // Chat mode on a base model: the plain "User: …\nAssistant:" fallback, as the CLI's --chat.
  await page.uncheck('#complete-mode');
  await page.click('#new-chat');
  const chat = await send('Hello there');
  const chatRef = cli(['generate', '--model', native[LS].gguf, '--chat', '--prompt', 'Hello there', '--temperature', '0', '--f32', '-n', String(N), '--json']);
  assert.deepEqual(chat.debug.prompt_token_ids, chatRef.prompt_tokens);
  assert.deepEqual(chat.debug.completion_token_ids, chatRef.tokens);
  assert.match(await page.textContent('#progress-text'), /no chat template/);
});

test('cancelling a conversion rejects with Aborted at once and caches nothing', async () => {
  await page.goto(blankPage(srv));
  await page.waitForFunction(() => window.apiReady === true);
  const keysBefore = await cachedKeys();
  const r = await page.evaluate(async ([hubUrl]) => {
    const ctl = new AbortController();
    let abortedAt = null;
    try {
      await window.api.MobileLLM.load('test-org/slow', {
        hubUrl, signal: ctl.signal,
        onProgress: (p) => {
          if (p.file === 'pytorch_model.bin' && p.loaded > 0 && abortedAt === null) { abortedAt = performance.now(); ctl.abort(); }
        },
      });
      return { ok: true };
    } catch (e) {
      return { ok: false, name: e.name, ms: abortedAt === null ? null : performance.now() - abortedAt };
    }
  }, [hub.url]);
  assert.equal(r.name, 'Aborted');
  assert.ok(r.ms !== null && r.ms < 2000, `rejected ${r.ms} ms after the abort`);
  assert.deepEqual(await cachedKeys(), keysBefore);
  // The terminated conversion worker leaves its scratch folder behind; the next conversion
  // sweeps it (checked by the next test).
  assert.equal((await scratchLeft()).length, 1);
});

test('the API converts a sharded safetensors repository to Q4_1 and completes like the native CLI', async () => {
  await page.goto(blankPage(srv));
  await page.waitForFunction(() => window.apiReady === true);
  const r = await page.evaluate(async ([repo, hubUrl, prompt, n]) => {
    const phases = new Set();
    const llm = await window.api.MobileLLM.load(`hf:${repo}`, { hubUrl, convertType: 'q4_1', onProgress: (p) => phases.add(p.phase) });
    window.__llm = llm;
    const once = await llm.completions.create({ prompt, temperature: 0, max_tokens: n });
    await llm.resetChat();
    let streamed = '';
    const stream = await llm.completions.create({ prompt, temperature: 0, max_tokens: n, stream: true });
    for await (const c of stream) streamed += c.choices[0].text;
    return { once, streamed, key: llm.info.url, stats: llm.loadStats, phases: [...phases] };
  }, [SHARDED, hub.url, PROMPT, N]);
  assert.deepEqual(r.phases.slice(0, 3), ['download', 'convert', 'store']);
  assert.equal(r.stats.conversion.report.source_format, 'safetensors');
  assert.equal(r.stats.conversion.report.type, 'Q4_1');
  assert.deepEqual(hub.filesRequested(SHARDED).filter((f) => f.includes('safetensors')),
    ['model.safetensors', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
  assert.match(r.key, /^convert:q4_1:/);
  assert.equal(await cachedSha256(r.key), native[SHARDED].sha256);
  const ref = cli(['generate', '--model', native[SHARDED].gguf, '--prompt', PROMPT, '--temperature', '0', '--f32', '-n', String(N), '--json']);
  assert.equal(r.once.object, 'text_completion');
  assert.deepEqual(r.once.debug.completion_token_ids, ref.tokens);
  assert.equal(r.once.choices[0].text, ref.text);
  assert.equal(r.streamed, ref.text);
  measured.sharded_logit_rel_err = await compareLogits(SHARDED, [...ref.prompt_tokens, ...ref.tokens]);
  await page.evaluate(() => window.__llm.unload());
  assert.deepEqual(await scratchLeft(), [], 'the cancelled conversion\'s scratch folder was swept');
});

test('401, missing files and unsupported checkpoints give typed errors and leave nothing behind', async () => {
  const keysBefore = await cachedKeys();
  const tryLoad = (repo, opts = {}) => page.evaluate(async ([repo, opts]) => {
    try {
      const llm = await window.api.MobileLLM.load(repo, opts);
      await llm.unload();
      return { ok: true };
    } catch (e) {
      return { ok: false, name: e.name, message: e.message, isError: e instanceof Error };
    }
  }, [repo, { hubUrl: hub.url, ...opts }]);

  const gated = await tryLoad('test-org/gated');
  assert.equal(gated.name, 'GatedModel', gated.message);
  assert.ok(gated.isError);
  assert.match(gated.message, /access token/);
  // A token is never sent to a host other than huggingface.co, so the answer is the same.
  const authBefore = hub.requests.length;
  const withToken = await tryLoad('test-org/gated', { hfToken: 'hf_not_for_this_host' });
  assert.equal(withToken.name, 'GatedModel');
  assert.ok(hub.requests.slice(authBefore).every((r) => r.auth === null));

  const noConfig = await tryLoad('test-org/no-config');
  assert.equal(noConfig.name, 'DownloadFailed');
  assert.match(noConfig.message, /no config\.json/);

  const noWeights = await tryLoad('test-org/no-weights');
  assert.equal(noWeights.name, 'DownloadFailed');
  assert.match(noWeights.message, /no weights: expected model\.safetensors/);

  // The config is checked before the weights are downloaded.
  const other = await tryLoad('test-org/other-arch');
  assert.equal(other.name, 'ConversionError', other.message);
  assert.match(other.message, /model_type "gpt_neox" is not supported/);
  assert.deepEqual(hub.filesRequested('test-org/other-arch'), ['config.json']);

  assert.deepEqual(await cachedKeys(), keysBefore, 'no cache entry for a failed conversion');
  assert.deepEqual(await scratchLeft(), [], 'no scratch files left behind');
});

test('the chat page keeps the token in localStorage only, and explains a gated repository', async () => {
  // Same origin as the chat page: forget the last model so the page does not reopen it.
  await page.evaluate(() => localStorage.removeItem('mobilellm.model.v1'));
  await page.goto(`${srv.url}/?hub=${encodeURIComponent(hub.url)}&${ENGINE.query}`);
  await page.waitForSelector('#load-button:not([disabled])');
  const before = hub.requests.length;
  await page.check('input[name=model-source][value=url]');
  await page.fill('#model-url', 'test-org/gated');
  await page.click('#hf-token-details summary');
  await page.fill('#hf-token', 'hf_test_token');
  await page.press('#hf-token', 'Tab'); // "change": stored
  await page.click('#load-button');
  await page.waitForSelector('#load-error:not([hidden])');
  assert.match(await page.textContent('#load-error'), /access token.*GatedModel/s);
  assert.equal(await page.evaluate(() => JSON.parse(localStorage.getItem('mobilellm.hfToken.v1'))), 'hf_test_token');
  assert.ok(hub.requests.slice(before).every((r) => r.auth === null), 'the token goes to huggingface.co only');
  // Stored nowhere else: not in the Cache API, not in OPFS.
  const elsewhere = await page.evaluate(async () => {
    const found = [];
    for (const name of await caches.keys()) {
      for (const req of await (await caches.open(name)).keys()) if (req.url.includes('hf_test_token')) found.push(req.url);
    }
    return found;
  });
  assert.deepEqual(elsewhere, []);
  await page.reload();
  await page.waitForSelector('#load-button:not([disabled])');
  assert.equal(await page.inputValue('#hf-token'), 'hf_test_token', 'kept across reloads');
  await page.fill('#hf-token', '');
  await page.press('#hf-token', 'Tab');
  assert.equal(await page.evaluate(() => localStorage.getItem('mobilellm.hfToken.v1')), null, 'clearing the field forgets it');
});
