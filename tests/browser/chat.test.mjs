// The chat page end to end in headless Chromium, against the native CLI on the same backend:
// greedy tokens equal the CLI's (WebGPU on SwiftShader: up to the first near-tie; the CPU backend:
// all of them, its kernels are bit-identical across hosts), a second turn reuses the KV cache,
// reload loads from the cache with no weight request, the stop button stops within a second,
// screenshots at desktop and phone widths, switching backends, and a browser without WebGPU.
//   MOBILELLM_TEST_ENGINE=webgpu|cpu-1|cpu-2 node tests/browser/chat.test.mjs
//   (needs target/ci/mobilellm and the wasm builds in www/pkg*)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { openPage, closePage, weightRequests, outDir, cli, margins, compareUpToNearTie, ENGINE, MODEL_PATH, sendMessage, setSettings as setPageSettings, waitStatus as waitPageStatus } from './lib.mjs';

// Chosen because the native greedy reply has no near-tie in its first 48 tokens (smallest top-2
// margin 0.15 logit), so all 48 tokens are compared.
const PROMPT = 'What are the benefits of regular exercise?';
const FOLLOW_UP = 'Which one is the most important?';
const N = 48;

let ctx, srv, browser, page;
const timings = {};

before(async () => {
  ctx = await openPage();
  ({ srv, browser, page } = ctx);
});

after(() => closePage(ctx, timings));

const status = () => page.evaluate(() => document.body.dataset.status);
const waitStatus = (s, timeout) => waitPageStatus(page, s, timeout);
const lastReply = () => page.locator('.msg.assistant .bubble').last();

const setSettings = (settings) => setPageSettings(page, settings);
const send = (text) => sendMessage(page, text);

/** Waits until the streaming reply shows at least `chars` characters while still generating. */
async function waitMidReply(chars) {
  await page.waitForFunction((n) => {
    const b = [...document.querySelectorAll('.msg.assistant .bubble')].pop();
    return document.body.dataset.status === 'generating' && b && b.textContent.length >= n;
  }, chars, { timeout: 600_000, polling: 50 });
}

const PAGE = () => `${srv.url}/?${ENGINE.query}`;

test(`the page loads SmolLM2 and streams a greedy reply equal to the native CLI (${ENGINE.name})`, async () => {
  await page.goto(PAGE());
  await page.waitForSelector('#load-button:not([disabled])');
  assert.equal(await page.isVisible('#no-webgpu'), false);
  const t0 = Date.now();
  await page.click('#load-button');
  await page.waitForSelector('#progress:not([hidden])');
  await waitStatus('ready');
  timings.first_load_ms = Date.now() - t0;
  assert.equal(weightRequests(srv).length, 1);
  const load = await page.evaluate(() => window.__app.loadStats);
  assert.equal(load.fromCache, false);
  assert.equal(load.engine.backend, ENGINE.backend);
  assert.equal(load.engine.threads, ENGINE.threads);
  assert.match(await page.textContent('#model-chip'), ENGINE.backend === 'cpu' ? new RegExp(`CPU ×${ENGINE.threads}`) : /GPU/);

  await setSettings({ temperature: 0, top_p: 1, max_tokens: N });
  await send(PROMPT);
  // Streaming: text appears while the reply is still being generated.
  await waitMidReply(30);
  await page.screenshot({ path: path.join(outDir(), 'chat-desktop.png') });
  await waitStatus('ready');
  const res = await page.evaluate(() => window.__app.lastResult);
  const shown = await lastReply().textContent();
  assert.ok(shown.length > 0);
  timings.ttft_ms = res.timings.ttft_ms;
  timings.decode_tok_s = res.timings.decode_tokens_per_s;
  timings.prefill_tok_s = res.timings.prefill_tokens_per_s;

  // The native reference on the same backend (WebGPU: the f32 path, as SwiftShader has no f16).
  const ref = cli(['generate', '--model', MODEL_PATH, '--chat', '--prompt', PROMPT, '--temperature', '0', '--json', '-n', String(N)]);
  assert.deepEqual(res.debug.prompt_token_ids, ref.prompt_tokens, 'same chat template and tokenizer');
  const stats = await page.locator('.msg.assistant .stats').last().textContent();
  assert.match(stats, /tok\/s/);
  assert.match(stats, /first token/);
  const got = res.debug.completion_token_ids;
  if (ENGINE.backend === 'cpu') {
    // The same kernels natively and in wasm give the same bits: every token must agree.
    assert.deepEqual(got, ref.tokens, 'browser and native CPU greedy tokens differ');
    assert.equal(shown, ref.text);
    return;
  }
  const all = [...ref.prompt_tokens, ...ref.tokens];
  const logits = cli(['logits', '--model', MODEL_PATH, '--prompt-tokens', all.join(','), '--top', '2', '--json']);
  const m = margins(logits.positions.map((p) => p.top)).slice(ref.prompt_tokens.length - 1);
  const cmp = compareUpToNearTie(got, ref.tokens, m);
  console.log(`browser: ${JSON.stringify(shown.slice(0, 80))}…  compared ${cmp.checked} tokens` +
    (cmp.stoppedAtTie !== null ? ` (near-tie at ${cmp.stoppedAtTie}, margin ${m[cmp.stoppedAtTie].toFixed(3)})` : ''));
  assert.equal(cmp.mismatch, null, `token ${cmp.mismatch} differs: browser ${got[cmp.mismatch]}, native ${ref.tokens[cmp.mismatch]} (margin ${m[cmp.mismatch]?.toFixed(3)})`);
  assert.ok(cmp.checked >= 32, `only ${cmp.checked} tokens compared before a near-tie; choose a prompt without an early tie`);
  assert.ok(got.length >= 32, `reply has ${got.length} tokens`);
  // When every token agrees, the page shows exactly the CLI's text (streamed deltas add up).
  if (cmp.checked === ref.tokens.length && got.length === ref.tokens.length) assert.equal(shown, ref.text);
});

test('a second turn reuses the cached first turn (no re-prefill)', async () => {
  const first = await page.evaluate(() => window.__app.lastResult);
  await send(FOLLOW_UP);
  await waitStatus('ready');
  const r = await page.evaluate(() => window.__app.lastResult);
  const u = r.usage;
  console.log(`turn 2: prompt ${u.prompt_tokens} tokens, prefilled ${u.prefill_tokens}`);
  assert.ok(u.prompt_tokens > first.usage.prompt_tokens + first.usage.completion_tokens, 'the prompt holds the whole conversation');
  // Only the new user turn (plus a few template tokens) is run; the first turn's prompt is not.
  assert.ok(u.prefill_tokens <= u.prompt_tokens - first.usage.prompt_tokens, `prefilled ${u.prefill_tokens} of ${u.prompt_tokens}`);
  assert.ok(u.prefill_tokens < 40, `prefilled ${u.prefill_tokens} tokens for a short follow-up`);
});

test('a reload loads the model from the cache without requesting the weights and keeps the conversation', async () => {
  const before = weightRequests(srv).length;
  const msgs = await page.locator('.msg').count();
  const t0 = Date.now();
  await page.reload();
  await waitStatus('ready');
  timings.cached_load_ms = Date.now() - t0;
  assert.equal(weightRequests(srv).length, before, 'no weight request after reload');
  assert.equal((await page.evaluate(() => window.__app.loadStats)).fromCache, true);
  assert.equal(await page.locator('.msg').count(), msgs, 'conversation restored');
});

// The stop button answers at once: the reply ends and the page is ready for the next message,
// while the engine finishes its current GPU step (5-8 s on SwiftShader) in the background. A
// message sent right after the stop queues behind that step and then runs normally.
test('the stop button stops a long generation within a second', async () => {
  await setSettings({ temperature: 0.8, top_p: 0.95, max_tokens: 400 });
  await page.click('#new-chat');
  assert.equal(await page.locator('.msg').count(), 0);
  await send('Tell me a long story about a brave knight and a dragon.');
  await waitMidReply(10);
  const t0 = Date.now();
  await page.click('#stop');
  await waitStatus('ready', 60_000);
  const ms = Date.now() - t0;
  timings.stop_ms = ms;
  const r = await page.evaluate(() => window.__app.lastResult);
  assert.equal(r.choices[0].finish_reason, 'abort');
  assert.ok(r.usage.completion_tokens < 400);
  assert.ok(ms < 1000, `stop took ${ms} ms`);
  assert.match(await page.locator('.msg.assistant .stats').last().textContent(), /stopped/);
  // The text shown stays as it was at the stop: nothing from the background step is appended.
  const shown = await page.locator('.msg.assistant .bubble').last().textContent();
  await new Promise((res) => setTimeout(res, 1500));
  assert.equal(await page.locator('.msg.assistant .bubble').last().textContent(), shown);
});

test('phone width: readable layout, output as text, screenshot mid-reply', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.click('#new-chat');
  await setSettings({ temperature: 0, top_p: 1, max_tokens: 64 });
  const markup = 'Explain what <b>HTML</b> tags are, like <img src=x onerror="window.pwned=1">.';
  await send(markup);
  await waitMidReply(12);
  await page.screenshot({ path: path.join(outDir(), 'chat-phone.png') });
  assert.equal(await page.locator('.messages b, .messages img').count(), 0, 'messages are text, not HTML');
  assert.equal(await page.locator('.msg.user .bubble').last().textContent(), markup);
  // Nothing overflows horizontally.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the phone`);
  await page.click('#stop');
  await waitStatus('ready', 60_000); // the stop latency itself is asserted in its own test
  assert.equal(await page.evaluate(() => window.pwned), undefined);
});

test('without WebGPU the page says so and runs the model on the CPU', async () => {
  const p2 = await browser.ctx.newPage();
  await p2.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true }));
  await p2.setViewportSize({ width: 390, height: 844 });
  await p2.goto(`${srv.url}/?backend=auto`);
  await p2.waitForSelector('#no-webgpu:not([hidden])');
  assert.match(await p2.textContent('#no-webgpu'), /WebGPU is not available.*runs on the CPU/s);
  assert.equal(await p2.isDisabled('#backend option[value=webgpu]'), true);
  // The model is cached in this browser, so the page reopens it by itself; otherwise load it.
  await p2.waitForFunction(() => ['idle', 'ready'].includes(document.body.dataset.status) && !document.querySelector('#load-button').disabled || document.body.dataset.status === 'ready', null, { timeout: 120_000 });
  if ((await p2.evaluate(() => document.body.dataset.status)) !== 'ready') {
    await p2.click('#load-button');
    await waitPageStatus(p2, 'ready');
  }
  assert.equal(await p2.evaluate(() => window.__app.loadStats.engine.backend), 'cpu');
  assert.match(await p2.textContent('#model-chip'), /CPU/);
  await p2.screenshot({ path: path.join(outDir(), 'no-webgpu-phone.png') });
  await p2.close();
});

test('a person can switch the backend from the page; the conversation stays', { skip: ENGINE.name !== 'cpu-2' && 'runs in the cpu-2 suite' }, async () => {
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(srv.url); // no ?backend: the page's own setting
  await waitStatus('ready');
  const msgs = await page.locator('.msg').count();
  for (const [backend, chip] of [['webgpu', /· GPU/], ['cpu', /· CPU ×/]]) {
    if (await page.evaluate(() => document.querySelector('#model-panel').classList.contains('collapsed'))) await page.click('#open-model');
    await page.selectOption('#backend', backend);
    await page.click('#load-button');
    await waitStatus('ready');
    assert.equal(await page.evaluate(() => window.__app.loadStats.engine.backend), backend);
    assert.match(await page.textContent('#model-chip'), chip);
    assert.equal(await page.locator('.msg').count(), msgs, 'conversation kept');
  }
  // The choice is remembered across reloads.
  await page.reload();
  await waitStatus('ready');
  assert.equal(await page.evaluate(() => window.__app.loadStats.engine.backend), 'cpu');
});
