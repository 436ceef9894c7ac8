// The page under a strict Content-Security-Policy (issue 11, item 6). serve.mjs sends the policy
// on every response (a worker runs under the policy of its own script), with report-uri pointing
// back at the server, which records every report; a `securitypolicyviolation` listener in the
// page records the page's own. Any violation fails the suite. Checked under the policy: the chat
// page with the CPU backend's pool workers and a reply, the service worker's install, a
// checkpoint conversion (conversion worker, OPFS), and that model output with markup is text.
//   MOBILELLM_TEST_ENGINE=cpu-2 node --test-reporter=spec tests/browser/csp.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { serveWww, serveBad, launch, attachLogs, waitStatus, sendMessage, setSettings, cli, blankPage, ENGINE, MODEL_PATH, ROOT } from './lib.mjs';
import { serveHub } from './hub.mjs';
import { LOCAL_CONNECT } from '../../www/serve.mjs';

let srv, bad, hub, browser, page, tmp;
const HUB_REPO = 'test-org/tiny-csp';

/** A tiny random Llama checkpoint (numpy) for the conversion under the policy. */
function checkpointDir() {
  const dir = path.join(tmp, 'tiny-csp');
  execFileSync('python3', [path.join(ROOT, 'tests/fixtures/make_checkpoint.py'), dir, '--kind', 'llama', '--format', 'safetensors', '--dtype', 'f16', '--seed', '9', '--no-reference'],
    { stdio: ['ignore', 'ignore', 'inherit'] });
  return dir;
}
const measured = {};
const CHAT = () => `${srv.url}/?${ENGINE.query}`;

before(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'mobilellm-csp-'));
  srv = await serveWww();
  bad = await serveBad();
  // Started first: the service worker keeps the headers of the files it precaches, so the
  // policy of a cached worker script is the one of the install.
  hub = await serveHub({ [HUB_REPO]: checkpointDir() });
  browser = await launch();
  // Every page records the violations it sees (the workers' reach the server through report-uri).
  await browser.ctx.addInitScript(() => {
    window.__cspViolations = [];
    addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
  });
  page = await browser.ctx.newPage();
  attachLogs(page, browser.logs);
});

after(async () => {
  if (process.env.VERBOSE) console.log(browser?.logs.join('\n'));
  console.log('measured:', JSON.stringify(measured));
  await browser?.close();
  await hub?.close();
  await bad?.close();
  await srv?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Fails on any violation so far: reports to the server, and the page's own events. */
async function assertNoViolations(where) {
  // report-uri requests are sent asynchronously: give them a moment to arrive.
  await new Promise((r) => setTimeout(r, 500));
  const inPage = await page.evaluate(() => window.__cspViolations ?? []).catch(() => []);
  assert.deepEqual(inPage, [], `${where}: CSP violations in the page`);
  assert.deepEqual(srv.cspReports, [], `${where}: CSP violation reports`);
  const logged = browser.logs.filter((l) => /Content Security Policy/i.test(l));
  assert.deepEqual(logged, [], `${where}: CSP messages in the console`);
}

test('serve.mjs sends the policy with the isolation headers; connect-src names only what downloads need', async () => {
  const res = await fetch(`${srv.url}/`);
  const csp = res.headers.get('content-security-policy');
  const d = Object.fromEntries(csp.split(';').map((x) => x.trim().split(/\s+/)).map(([k, ...v]) => [k, v]));
  assert.deepEqual(d['default-src'], ["'self'"]);
  assert.deepEqual(d['script-src'], ["'self'", "'wasm-unsafe-eval'"]);
  assert.deepEqual(d['worker-src'], ["'self'"]);
  assert.deepEqual(d['object-src'], ["'none'"]);
  // The page's origin, any https: host, and the tests' other local servers by exact origin.
  assert.deepEqual(d['connect-src'].slice(0, 2), ["'self'", 'https:']);
  assert.ok(d['connect-src'].includes(bad.url), `${d['connect-src']}`);
  assert.ok(!d['connect-src'].some((s) => s === 'http:' || s === '*' || s.includes('*')), `no blanket source: ${d['connect-src']}`);
  assert.equal(res.headers.get('cross-origin-opener-policy'), 'same-origin');
  assert.equal(res.headers.get('cross-origin-embedder-policy'), 'require-corp');
  assert.equal(res.headers.get('cross-origin-resource-policy'), 'cross-origin');
  // Workers and the service worker get it with their own scripts.
  for (const f of ['worker.js', 'pool-worker.js', 'convert-worker.js', 'sw.js']) {
    assert.equal((await fetch(`${srv.url}/${f}`)).headers.get('content-security-policy'), csp, f);
  }
  measured.csp = csp;
});

test('the policy is enforced and its violations reach the test (a model host it does not allow)', async () => {
  await page.goto(blankPage(srv));
  await page.waitForFunction(() => window.apiReady === true);
  LOCAL_CONNECT.delete(bad.url); // as for a real page: an http: host nobody allowed
  try {
    await page.reload();
    await page.waitForFunction(() => window.apiReady === true);
    const r = await page.evaluate(async (url) => {
      try { await window.api.MobileLLM.load(url); return { ok: true }; } catch (e) { return { ok: false, name: e.name, message: e.message }; }
    }, `${bad.url}/missing.gguf`);
    assert.equal(r.name, 'DownloadFailed', r.message);
    await new Promise((res) => setTimeout(res, 1000));
    assert.ok(srv.cspReports.some((x) => x['violated-directive']?.startsWith('connect-src') && x['blocked-uri']?.startsWith(bad.url)),
      `a report for the blocked download: ${JSON.stringify(srv.cspReports)}`);
  } finally {
    LOCAL_CONNECT.add(bad.url);
    srv.cspReports.length = 0;
    browser.logs.length = 0;
  }
});

test(`the chat page, its engine worker and pool workers (${ENGINE.name}) load a model and reply under the policy`, async () => {
  await page.goto(CHAT());
  await page.waitForSelector('#load-button:not([disabled])');
  assert.equal(await page.evaluate(() => crossOriginIsolated), true, 'COOP/COEP still isolate the page');
  await page.click('#load-button');
  await waitStatus(page, 'ready');
  const engine = await page.evaluate(() => window.__app.loadStats.engine);
  assert.equal(engine.backend, ENGINE.backend);
  assert.equal(engine.threads, ENGINE.threads, 'the pool workers started');
  await setSettings(page, { temperature: 0, top_p: 1, max_tokens: 8 });
  await sendMessage(page, 'Name a color.');
  await waitStatus(page, 'ready');
  assert.ok((await page.locator('.msg.assistant .bubble').last().textContent()).length > 0);
  await assertNoViolations('chat page');
});

test('the service worker installs and serves the page offline under the policy', async () => {
  await page.goto(CHAT());
  const sw = await page.evaluate(async () => {
    const reg = await navigator.serviceWorker.ready;
    return { active: !!reg.active, scope: reg.scope };
  });
  assert.ok(sw.active, 'an active service worker');
  await page.reload();
  await page.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout: 60_000 });
  await browser.ctx.setOffline(true);
  try {
    await page.reload();
    await page.waitForSelector('#load-button');
    assert.equal(await page.evaluate(() => !!navigator.serviceWorker.controller), true);
  } finally {
    await browser.ctx.setOffline(false);
  }
  await assertNoViolations('service worker');
});

test('a checkpoint converts in the browser under the policy (conversion worker, OPFS)', async () => {
  const repo = HUB_REPO;
  await page.goto(blankPage(srv));
  await page.waitForFunction(() => window.apiReady === true);
  const r = await page.evaluate(async ([repo, hubUrl]) => {
    try {
      const llm = await window.api.MobileLLM.load(repo, { hubUrl });
      const out = await llm.completions.create({ prompt: 'Hello', max_tokens: 4, temperature: 0 });
      await llm.unload();
      return { ok: true, arch: llm.loadStats?.conversion?.report?.arch, text: out.choices[0].text };
    } catch (e) { return { ok: false, name: e.name, message: e.message }; }
  }, [repo, hub.url]);
  assert.ok(r.ok, `${r.name}: ${r.message}`);
  await assertNoViolations('conversion');
});

const MARKUP = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script><b onmouseover="window.__xss=3">bold</b>';

/** What a reply bubble holds: its text, and whether markup became elements or ran. */
const bubbleState = () => page.evaluate(() => {
  const b = [...document.querySelectorAll('.msg.assistant .bubble')].pop();
  return { text: b.textContent, children: b.children.length, imgs: document.querySelectorAll('#messages img, #messages script, #messages b').length, xss: window.__xss ?? null };
});

test('model output with HTML or script is shown as text: streamed through the page\'s own rendering', async () => {
  await page.goto(CHAT());
  await waitStatus(page, 'ready'); // the cached model reopens
  // The loaded model's reply, replaced by one that streams markup split across chunks; the rest
  // is the page's real code path (app.js send(): chunks appended to the bubble as they come).
  await page.evaluate((markup) => {
    const llm = window.__app.llm;
    const real = llm.chat.completions.create;
    llm.chat.completions.create = async (req) => {
      if (!req.stream) return real(req);
      const parts = markup.match(/.{1,7}/gs);
      const usage = { prompt_tokens: 1, completion_tokens: parts.length, total_tokens: parts.length + 1 };
      return (async function* () {
        for (const p of parts) {
          await new Promise((r) => setTimeout(r, 30)); // streamed, as the engine does
          yield { choices: [{ index: 0, delta: { content: p }, finish_reason: null }] };
        }
        yield { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage, timings: { decode_tokens_per_s: 1, ttft_ms: 1 } };
      })();
    };
  }, MARKUP);
  await page.click('#new-chat');
  await sendMessage(page, 'Show me some HTML.');
  await waitStatus(page, 'ready');
  const live = await bubbleState();
  assert.deepEqual(live, { text: MARKUP, children: 0, imgs: 0, xss: null });
  // The conversation is re-rendered from localStorage after a reload: still text.
  await page.reload();
  await waitStatus(page, 'ready');
  const restored = await bubbleState();
  assert.deepEqual(restored, { text: MARKUP, children: 0, imgs: 0, xss: null });
  await assertNoViolations('markup as text');
});

test('model output with HTML or script is shown as text: SmolLM2 asked to write markup', async () => {
  const prompt = 'Write one line of HTML: an img tag with src="x" and an onerror attribute.';
  const n = 32;
  await page.click('#new-chat');
  await setSettings(page, { temperature: 0, top_p: 1, max_tokens: n });
  await sendMessage(page, prompt);
  await waitStatus(page, 'ready');
  const state = await bubbleState();
  const ref = cli(['generate', '--model', MODEL_PATH, '--chat', '--prompt', prompt, '--temperature', '0', '--json', '-n', String(n)]);
  measured.markup_reply = state.text;
  // The reply holds markup (the native greedy reply does; on WebGPU a near-tie may change a word).
  assert.match(ref.text, /<img/i, `the native reply has no markup: ${ref.text}`);
  if (ENGINE.backend === 'cpu') assert.equal(state.text, ref.text, 'the CPU backend decodes the native greedy reply');
  assert.match(state.text, /<[a-z]/i, `the reply has markup: ${state.text}`);
  assert.deepEqual({ children: state.children, imgs: state.imgs, xss: state.xss }, { children: 0, imgs: 0, xss: null });
  await assertNoViolations('model reply with markup');
});
