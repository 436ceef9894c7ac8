// The chat page as an installable offline PWA, in headless Chromium (SwiftShader WebGPU):
//   1. online: the manifest makes the page installable (Chromium's own check), the service worker
//      takes the page and precaches the build, SmolLM2 is downloaded once, a greedy reply is kept;
//   2. offline (the server is shut down AND the context is offline): a reload shows the offline
//      state, keeps the conversation, loads the model from the cache and gives the same reply;
//   3. a changed build is deployed: the next online visit installs it, the page offers it, and after
//      "Reload" shows the new file; the old shell cache is gone, the model cache is not;
//   4. the page's Delete control removes the cached model and the offline state says so.
// The site is a copy of www/ in a temp dir (the test changes files in it), served on one port all
// along: the service worker and the caches belong to that origin.
//   MOBILELLM_TEST_ENGINE=webgpu|cpu-2 node tests/browser/pwa.test.mjs
//   (needs www/pkg* and www/models: ./build.sh && ./build.sh fetch-model)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer } from '../../www/serve.mjs';
import { writePrecache } from '../../scripts/precache.mjs';
import { ROOT, ENGINE, MODEL_PATH, launch, attachLogs, weightRequests, outDir, sendMessage, setSettings, waitStatus as waitPageStatus } from './lib.mjs';

const PROMPT = 'What is the capital of France?';
const N = 3; // greedy tokens per reply: about 5 s each on SwiftShader
const MODEL_CACHE = 'mobilellm-models-v1';
const SHELL = 'mobilellm-shell-';
const WWW = path.join(ROOT, 'www');

let site, srv, port, browser, page, v1;
let online = null; // the online reply: {ids, text}
let step = 0;       // each test builds on the previous one: stop at the first failure
const requireStep = (n) => assert.equal(step, n - 1, 'an earlier step failed');
const measured = {};

before(async () => {
  site = mkdtempSync(path.join(os.tmpdir(), 'mobilellm-pwa-'));
  cpSync(WWW, site, {
    recursive: true,
    filter: (src) => !['models', 'npm', 'precache-manifest.js'].includes(path.relative(WWW, src)),
  });
  symlinkSync(path.join(WWW, 'models'), path.join(site, 'models'));
  v1 = writePrecache(site);
  srv = await startServer({ root: site, port: 0 });
  port = srv.port;
  browser = await launch();
  page = await browser.ctx.newPage();
  attachLogs(page, browser.logs);
  // Count the page's persistent-storage requests (the call goes through to the browser).
  await page.addInitScript(() => {
    const persist = StorageManager.prototype.persist;
    window.__persistCalls = 0;
    StorageManager.prototype.persist = function () { window.__persistCalls++; return persist.call(this); };
  });
});

after(async () => {
  if (process.env.VERBOSE) console.log(browser?.logs.join('\n'));
  console.log('measured:', JSON.stringify(measured));
  await browser?.close();
  await srv?.close();
  if (site) rmSync(site, { recursive: true, force: true });
});

const waitStatus = (s, timeout = 300_000) => waitPageStatus(page, s, timeout);
const cacheNames = () => page.evaluate(async () => (await caches.keys()).sort());
const cachedModels = () => page.evaluate(async () => {
  const c = await caches.open('mobilellm-models-v1');
  return (await c.keys()).map((r) => r.url);
});
const offlineState = () => page.evaluate(() => ({ ...window.__app.offline }));

const greedySettings = () => setSettings(page, { temperature: 0, top_p: 1, max_tokens: N });

async function ask(text) {
  await sendMessage(page, text);
  await waitStatus('ready');
  const r = await page.evaluate(() => window.__app.lastResult);
  assert.ok(r, `no reply: ${await page.locator('.msg.assistant .stats').last().textContent()}`);
  return { ids: r.debug.completion_token_ids, text: await page.locator('.msg.assistant .bubble').last().textContent(), timings: r.timings };
}

test('online: installable, the service worker precaches the build, the model is cached, "available offline"', async () => {
  requireStep(1);
  const t0 = Date.now();
  await page.goto(`${srv.url}/?${ENGINE.query}`);
  // First install: the worker claims the page once every file is cached and checked.
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 60_000 });
  measured.sw_install_ms = Date.now() - t0;

  // Chromium's own installability verdict (manifest fields, icons that load, the page's scope).
  const cdp = await browser.ctx.newCDPSession(page);
  const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
  await cdp.detach();
  assert.deepEqual(installabilityErrors, [], 'Chromium considers the page installable');
  const manifest = await page.evaluate(async () => {
    const m = await (await fetch(document.querySelector('link[rel=manifest]').href)).json();
    // Every icon decodes to the size it announces.
    const sizes = await Promise.all(m.icons.map((i) => new Promise((res, rej) => {
      const img = new Image();
      img.onload = () => res(`${img.naturalWidth}x${img.naturalHeight}`);
      img.onerror = () => rej(new Error(`icon ${i.src} does not load`));
      img.src = new URL(i.src, document.querySelector('link[rel=manifest]').href).href;
    })));
    return { ...m, decoded: sizes };
  });
  assert.equal(manifest.display, 'standalone');
  assert.deepEqual(manifest.decoded, manifest.icons.map((i) => i.sizes));
  assert.ok(manifest.icons.some((i) => i.purpose === 'maskable' && i.sizes === '512x512'));
  assert.ok(manifest.icons.some((i) => i.purpose === 'any' && i.sizes === '192x192'));

  // The whole build is in the versioned shell cache, and the page shows that version.
  assert.deepEqual((await cacheNames()).filter((n) => n.startsWith(SHELL)), [SHELL + v1.version]);
  assert.deepEqual(await cachedModels(), []);
  const shell = await page.evaluate(async (name) => (await (await caches.open(name)).keys()).map((r) => new URL(r.url).pathname.slice(1)), SHELL + v1.version);
  assert.deepEqual(shell.sort(), Object.keys(v1.files).sort());
  for (const f of ['index.html', 'app.js', 'worker.js', 'offline.js', 'manifest.webmanifest', 'pkg/mobilellm_web_bg.wasm', 'icons/icon-512.png']) {
    assert.ok(v1.files[f], `${f} is precached`);
  }
  assert.ok(!Object.keys(v1.files).some((f) => f.endsWith('.gguf') || f === 'sw.js'));
  await page.waitForFunction((v) => document.getElementById('app-version').textContent.includes(v), v1.version);
  // The shell alone: the app works offline, the model is not stored yet.
  await page.waitForFunction(() => document.getElementById('offline-state').dataset.state === 'shell');
  assert.equal(await page.isVisible('#offline-badge'), false);

  // Download the model: one request, streamed (progress shown), not intercepted by the worker.
  await page.waitForSelector('#load-button:not([disabled])');
  await page.evaluate(() => {
    window.__progress = [];
    const el = document.getElementById('progress-text');
    new MutationObserver(() => window.__progress.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
  });
  const t1 = Date.now();
  await page.click('#load-button');
  await waitStatus('ready');
  measured.first_load_ms = Date.now() - t1;
  assert.equal(weightRequests(srv).length, 1);
  // The download streamed through (several progress steps with growing byte counts).
  const mbs = (await page.evaluate(() => window.__progress))
    .map((t) => /^Downloading ([\d.]+) \/ 98\.4 MB/.exec(t)).filter(Boolean).map((m) => Number(m[1]));
  measured.download_progress_steps = mbs.length;
  assert.ok(mbs.length >= 2 && mbs.at(-1) > mbs[0], `download progress: ${mbs.join(', ')}`);
  assert.equal((await page.evaluate(() => window.__app.loadStats)).fromCache, false);
  assert.deepEqual(await cacheNames(), [MODEL_CACHE, SHELL + v1.version]);

  await page.waitForFunction(() => document.getElementById('offline-state').dataset.state === 'ready');
  assert.equal(await page.textContent('#offline-badge'), 'Available offline');
  const st = await offlineState();
  assert.equal(st.controlled, true);
  assert.equal(st.modelCached, true);
  // Storage: the estimate covers the 98 MB model, and the page shows it.
  const modelBytes = statSync(MODEL_PATH).size;
  assert.ok(st.usage >= modelBytes, `usage ${st.usage} < model ${modelBytes}`);
  assert.ok(st.quota > st.usage);
  measured.storage_usage_mb = +(st.usage / 1e6).toFixed(1);
  measured.storage_quota_mb = +(st.quota / 1e6).toFixed(0);
  assert.match(await page.textContent('#storage-use'), /^Storage: \d+\.\d MB used of [\d.]+ [MG]B/);
  // Persistent storage was requested after the download; the page shows the browser's answer.
  const persisted = await page.evaluate(() => navigator.storage.persisted());
  measured.persisted = persisted;
  assert.equal(st.persisted, persisted);
  assert.equal(await page.evaluate(() => window.__persistCalls), 1, 'persist() requested once, after the download');
  assert.equal(await page.$eval('#persist-storage', (b) => b.hidden), persisted, 'the button to ask again shows when not granted');
  assert.equal((await page.textContent('#storage-use')).includes('· persistent'), persisted);

  await greedySettings();
  online = await ask(PROMPT);
  assert.equal(online.ids.length, N);
  measured.online_reply = online.text;
  measured.ttft_ms = Math.round(online.timings.ttft_ms);
  step = 1;
});

test('offline: a reload with no server shows the offline state, keeps the chat, and chats from the cached model', async () => {
  requireStep(2);
  const conversation = await page.evaluate(() => window.__app.conversation);
  assert.equal(conversation.length, 2);
  await srv.close();
  srv = null;
  await browser.ctx.setOffline(true);

  const t0 = Date.now();
  await page.reload();
  await waitStatus('ready');
  measured.offline_load_ms = Date.now() - t0;
  assert.equal((await page.evaluate(() => window.__app.loadStats)).fromCache, true);
  assert.equal(await page.evaluate(() => navigator.onLine), false);
  // Really no network: a file the worker does not keep cannot be fetched.
  assert.equal(await page.evaluate(() => fetch('sw.js', { cache: 'no-store' }).then(() => 'fetched', () => 'failed')), 'failed');

  // Chats are stored locally: the conversation is back.
  assert.deepEqual(await page.evaluate(() => window.__app.conversation), conversation);
  assert.equal(await page.locator('.msg').count(), 2);

  // The offline state, visible in the top bar and in the model panel.
  await page.waitForFunction(() => document.getElementById('offline-state').dataset.state === 'ready');
  assert.equal(await page.textContent('#offline-badge'), 'Offline · on device');
  assert.match(await page.textContent('#offline-state'), /^You are offline\. Available offline: the app and SmolLM2-135M-Instruct\.Q4_1 are stored/);
  await page.click('#open-model');
  await page.screenshot({ path: path.join(outDir(), 'pwa-offline.png') });
  await page.click('#open-model');
  // On a phone the badge is a green dot next to the title.
  await page.setViewportSize({ width: 390, height: 844 });
  assert.equal(await page.isVisible('#offline-badge'), true);
  await page.screenshot({ path: path.join(outDir(), 'pwa-offline-phone.png') });
  await page.setViewportSize({ width: 1280, height: 800 });

  // Same greedy reply as online, from the cached build and the cached model.
  await page.click('#new-chat');
  const offline = await ask(PROMPT);
  assert.deepEqual(offline.ids, online.ids);
  assert.equal(offline.text, online.text);
  step = 2;
});

test('a changed build deployed online replaces the cached app on the next visit; the model cache stays', async () => {
  requireStep(3);
  await browser.ctx.setOffline(false);
  // Deploy: change a file of the site and regenerate the manifest, as ./build.sh does.
  const index = path.join(site, 'index.html');
  const html = readFileSync(index, 'utf8');
  assert.ok(html.includes('<h1>MobileLLM</h1>'));
  writeFileSync(index, html.replace('<h1>MobileLLM</h1>', '<h1>MobileLLM <small id="deploy-marker">build 2</small></h1>'));
  const v2 = writePrecache(site);
  assert.notEqual(v2.version, v1.version);
  srv = await startServer({ root: site, port });

  await page.goto(`${srv.url}/?${ENGINE.query}`);
  // The running page is still the old build (served from its cache), and it offers the new one.
  await page.waitForSelector('#update-banner:not([hidden])', { timeout: 60_000 });
  assert.equal(await page.locator('#deploy-marker').count(), 0);
  await page.screenshot({ path: path.join(outDir(), 'pwa-update.png') });
  // Only the changed file was downloaded again; the wasm and the rest came from the old cache.
  const fetched = srv.requests.filter((r) => r.method === 'GET').map((r) => r.path);
  assert.ok(fetched.includes('/index.html'), fetched.join(' '));
  assert.ok(!fetched.includes('/pkg/mobilellm_web_bg.wasm'), fetched.join(' '));
  measured.update_requests = fetched;

  await Promise.all([page.waitForEvent('load', { timeout: 60_000 }), page.click('#apply-update')]);
  await page.waitForSelector('#deploy-marker');
  assert.equal(await page.textContent('#deploy-marker'), 'build 2');
  await page.waitForFunction((v) => document.getElementById('app-version').textContent.includes(v), v2.version);
  assert.equal(await page.isVisible('#update-banner'), false);

  // The old version's cache is gone; the model cache is untouched and still used.
  assert.deepEqual(await cacheNames(), [MODEL_CACHE, SHELL + v2.version]);
  assert.equal((await cachedModels()).length, 1);
  await waitStatus('ready');
  assert.equal((await page.evaluate(() => window.__app.loadStats)).fromCache, true);
  assert.equal(weightRequests(srv).length, 0, 'no weight request after the update');
  step = 3;
});

test('the Delete control removes the cached model; the offline state follows', async () => {
  requireStep(4);
  const before = (await offlineState()).usage;
  await page.click('#open-model');
  await page.click('#cached-details summary');
  const item = page.locator('#cached-list li', { hasText: 'SmolLM2-135M-Instruct.Q4_1' });
  await item.locator('button', { hasText: 'Delete' }).click();
  await page.waitForFunction(() => document.getElementById('offline-state').dataset.state === 'shell');
  assert.deepEqual(await cachedModels(), []);
  assert.match(await page.textContent('#offline-state'), /not stored yet/);
  assert.equal(await page.isVisible('#offline-badge'), false);
  assert.match(await page.textContent('#cached-list'), /Nothing cached yet/);
  // The shell stays (the app still opens offline); the estimate drops by about the model's size.
  assert.equal((await cacheNames()).filter((n) => n.startsWith(SHELL)).length, 1);
  await page.waitForFunction((b) => window.__app.offline.usage < b - 90e6, before, { timeout: 10_000 });
});
