// A lost GPU device (driver reset, GPU process crash; here `llm.debug.loseDevice()`, which destroys
// the engine's device): the API rejects the pending generation and every later call with
// DeviceLost (no promise left pending), a fresh load works; the chat page says so, offers to reload
// the model (from the cache) and the conversation goes on. WebGPU only (SwiftShader).
//   node tests/browser/device_lost.test.mjs   (needs the wasm builds in www/pkg*)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { serveWww, launch, attachLogs, weightRequests, waitStatus, sendMessage, outDir, MODEL_URL_PATH } from './lib.mjs';

let srv, browser;

before(async () => {
  srv = await serveWww();
  browser = await launch();
});

after(async () => {
  if (process.env.VERBOSE) console.log(browser?.logs.join('\n'));
  await browser?.close();
  await srv?.close();
});

test('API: a device lost during a generation fails it and the next calls with DeviceLost; a new load works', async () => {
  const page = await browser.ctx.newPage();
  attachLogs(page, browser.logs);
  await page.goto(`${srv.url}/__test/blank.html?backend=webgpu`);
  await page.waitForFunction(() => window.apiReady === true);
  const r = await page.evaluate(async (url) => {
    const { MobileLLM } = window.api;
    // Every call settles within a minute or the test says which one hung.
    const settle = (p, what) => Promise.race([
      p.then((v) => ({ ok: true, v }), (e) => ({ ok: false, name: e.name, message: e.message })),
      new Promise((res) => setTimeout(() => res({ ok: false, name: 'Stuck', message: `${what} did not settle in 60 s` }), 60_000)),
    ]);
    const user = [{ role: 'user', content: 'Tell me a long story about a lighthouse keeper.' }];
    const out = {};
    const llm = await MobileLLM.load(url, { backend: 'webgpu', contextLength: 256 });
    out.before = await settle(llm.chat.completions.create({ messages: user, max_tokens: 4, temperature: 0 }), 'first generate');
    // Lost while a generation streams: after its second token.
    const stream = await llm.chat.completions.create({ messages: user, stream: true, max_tokens: 200, ignore_eos: true, temperature: 0 });
    let tokens = 0;
    out.pending = await settle((async () => {
      for await (const c of stream) if (c.choices[0].delta.content && ++tokens === 2) await llm.debug.loseDevice();
      return tokens;
    })(), 'the pending generation');
    out.tokensSeen = tokens;
    out.next = await settle(llm.chat.completions.create({ messages: user, max_tokens: 4 }), 'the next generate');
    out.third = await settle(llm.completions.create({ prompt: 'Hello', max_tokens: 2 }), 'a completion after it');
    out.tokenize = await settle(llm.debug.promptTokens(user), 'tokenising after it');
    out.reset = await settle(llm.resetChat(), 'reset');
    out.afterReset = await settle(llm.chat.completions.create({ messages: user, max_tokens: 2 }), 'generate after reset');
    await llm.unload();
    // Lost between calls (idle): the next call says so.
    const idle = await MobileLLM.load(url, { backend: 'webgpu', contextLength: 256 });
    out.idleBefore = await settle(idle.chat.completions.create({ messages: user, max_tokens: 2, temperature: 0 }), 'generate (second model)');
    out.lose = await settle(idle.debug.loseDevice(), 'loseDevice');
    out.idleNext = await settle(idle.chat.completions.create({ messages: user, max_tokens: 2 }), 'generate after an idle loss');
    await idle.unload();
    // A fresh load (new worker, new device) works and answers as before the loss.
    const again = await MobileLLM.load(url, { backend: 'webgpu', contextLength: 256 });
    out.fresh = await settle(again.chat.completions.create({ messages: user, max_tokens: 4, temperature: 0 }), 'generate after reloading');
    out.fromCache = again.loadStats.fromCache;
    await again.unload();
    return out;
  }, `${srv.url}${MODEL_URL_PATH}`);
  console.log(JSON.stringify(r, (k, v) => (k === 'v' ? undefined : v)));
  assert.ok(r.before.ok, JSON.stringify(r.before));
  assert.equal(r.pending.name, 'DeviceLost', `the pending generation: ${JSON.stringify(r.pending)}`);
  assert.equal(r.tokensSeen, 2, 'no token after the loss');
  for (const k of ['next', 'third', 'tokenize', 'afterReset', 'idleNext']) assert.equal(r[k].name, 'DeviceLost', `${k}: ${JSON.stringify(r[k])}`);
  assert.ok(r.reset.ok, 'a new chat is still accepted');
  assert.ok(r.idleBefore.ok && r.lose.ok, JSON.stringify([r.idleBefore, r.lose]));
  assert.ok(r.fresh.ok, `after reloading: ${JSON.stringify(r.fresh)}`);
  assert.equal(r.fresh.v.choices[0].message.content, r.before.v.choices[0].message.content, 'the reloaded model answers as before');
  assert.equal(r.fromCache, true);
  await page.close();
});

test('chat page: the GPU lost mid-conversation shows a banner; "Reload model" reloads from the cache and the conversation continues', async () => {
  const page = await browser.ctx.newPage();
  attachLogs(page, browser.logs);
  await page.goto(`${srv.url}/?backend=webgpu`);
  await page.waitForSelector('#load-button:not([disabled])');
  await page.click('#load-button');
  await waitStatus(page, 'ready');
  await page.evaluate(() => { window.__app.settings.max_tokens = 12; window.__app.settings.temperature = 0; });
  const FIRST = 'Name a colour.';
  await sendMessage(page, FIRST);
  await waitStatus(page, 'ready');
  const firstReply = await page.locator('.msg.assistant .bubble').last().textContent();
  assert.ok(firstReply.length > 0);
  assert.equal(await page.isVisible('#device-lost'), false);

  await page.evaluate(() => window.__app.llm.debug.loseDevice());
  const SECOND = 'And another one?';
  await sendMessage(page, SECOND).catch(() => {}); // (may fail before 'generating' is seen)
  await waitStatus(page, 'lost', 60_000);
  assert.equal(await page.isVisible('#device-lost'), true, 'the banner is shown');
  assert.match(await page.textContent('#device-lost'), /GPU was lost/);
  assert.equal(await page.isDisabled('#send'), true, 'nothing is sent to a lost device');
  assert.equal(await page.inputValue('#prompt'), SECOND, 'the unanswered message is back in the box');
  const requestsBefore = weightRequests(srv).length;
  await page.screenshot({ path: path.join(outDir(), 'device-lost.png') });

  await page.click('#reload-model');
  await waitStatus(page, 'ready');
  assert.equal(await page.isVisible('#device-lost'), false, 'the banner is gone');
  assert.equal(weightRequests(srv).length, requestsBefore, 'reloaded from the cache, no download');
  assert.equal(await page.evaluate(() => window.__app.loadStats.fromCache), true);

  await page.press('#prompt', 'Enter');
  await waitStatus(page, 'generating', 10_000);
  await waitStatus(page, 'ready');
  const turns = await page.$$eval('.msg', (els) => els.map((e) => ({ cls: e.className, text: e.querySelector('.bubble').textContent })));
  const sent = await page.evaluate(() => window.__app.lastResult.debug.prompt_token_ids.length);
  const ok = turns.filter((t) => !t.cls.includes('error'));
  assert.deepEqual(ok.map((t) => t.text).slice(0, 2), [FIRST, firstReply], 'the earlier turns are still there');
  assert.equal(ok.length, 4, JSON.stringify(turns));
  assert.equal(ok[2].text, SECOND);
  assert.ok(ok[3].text.length > 0, 'the reply to the resent message appears');
  // The model saw the whole conversation: the first exchange, then the second message.
  const seen = await page.evaluate(() => window.__app.llm.debug.promptTokens([
    { role: 'user', content: 'Name a colour.' }, { role: 'assistant', content: document.querySelector('.msg.assistant .bubble').textContent },
    { role: 'user', content: 'And another one?' },
  ]));
  assert.equal(sent, seen.ids.length, 'the prompt after reloading is the whole conversation (failed turns left out)');
  await page.close();
});
