// The JS API without the chat page: errors by name, download cache behaviour, interrupt, abort by
// signal, context overflow, unload. A blank page on the server's origin imports /mobilellm.js.
//   MOBILELLM_TEST_ENGINE=webgpu|cpu-1|cpu-2 node tests/browser/api.test.mjs   (lib.mjs ENGINE)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { serveWww, serveBad, launch, attachLogs, weightRequests, blankPage, ENGINE, MODEL_PATH, MODEL_URL_PATH } from './lib.mjs';

let srv, bad, browser, page;
const MODEL_SIZE = statSync(MODEL_PATH).size;

before(async () => {
  srv = await serveWww();
  bad = await serveBad({ slowRate: 4e6 });
  browser = await launch();
  page = await browser.ctx.newPage();
  attachLogs(page, browser.logs);
  await page.goto(blankPage(srv));
  await page.waitForFunction(() => window.apiReady === true);
});

after(async () => {
  if (process.env.VERBOSE) console.log(browser?.logs.join('\n'));
  await browser?.close();
  await bad?.close();
  await srv?.close();
});

/** Runs MobileLLM.load(url) in the page; resolves to {ok, name, message, ms, phases}. */
function tryLoad(url, extra = '') {
  return page.evaluate(async ([url, extra]) => {
    const t0 = performance.now();
    const phases = [];
    try {
      const llm = await window.api.MobileLLM.load(url, { onProgress: (p) => phases.push(p.phase), ...(extra ? JSON.parse(extra) : {}) });
      await llm.unload();
      return { ok: true, ms: performance.now() - t0, phases };
    } catch (e) {
      return { ok: false, name: e.name, message: e.message, isError: e instanceof Error, ms: performance.now() - t0, phases };
    }
  }, [url, extra]);
}

const cachedUrls = () => page.evaluate(async () => (await window.api.listCached()).map((c) => c.url));

test('a URL that 404s fails with DownloadFailed and caches nothing', async () => {
  const r = await tryLoad(`${bad.url}/missing.gguf`);
  assert.equal(r.ok, false);
  assert.equal(r.name, 'DownloadFailed', r.message);
  assert.ok(r.isError, 'an Error instance');
  assert.match(r.message, /404/);
  assert.deepEqual(await cachedUrls(), []);
});

test('an HTML page fails fast with InvalidModelFile', async () => {
  const r = await tryLoad(`${bad.url}/html.gguf`);
  assert.equal(r.name, 'InvalidModelFile', r.message);
  assert.deepEqual(await cachedUrls(), []);
});

test('a corrupt GGUF is rejected by the engine with InvalidModelFile and not kept', async () => {
  const r = await tryLoad(`${bad.url}/garbage.gguf`);
  assert.equal(r.name, 'InvalidModelFile', r.message);
  assert.deepEqual(await cachedUrls(), []);
});

test('a truncated download fails with DownloadFailed and leaves no cache entry', async () => {
  const r = await tryLoad(`${bad.url}/truncated.gguf`);
  assert.equal(r.ok, false);
  assert.equal(r.name, 'DownloadFailed', r.message);
  assert.deepEqual(await cachedUrls(), []);
});

test('aborting a download by signal rejects with Aborted and leaves no cache entry', async () => {
  const r = await page.evaluate(async (url) => {
    const ctl = new AbortController();
    let seen = 0;
    const t0 = performance.now();
    try {
      await window.api.MobileLLM.load(url, {
        signal: ctl.signal,
        onProgress: (p) => { seen = p.loaded ?? seen; if (p.phase === 'download' && p.loaded > 8e6) ctl.abort(); },
      });
      return { ok: true };
    } catch (e) {
      return { ok: false, name: e.name, message: e.message, seen, ms: performance.now() - t0 };
    }
  }, `${bad.url}/slow.gguf`);
  assert.equal(r.ok, false);
  assert.equal(r.name, 'Aborted', r.message);
  assert.ok(r.seen > 8e6 && r.seen < MODEL_SIZE, `aborted mid-download (${r.seen} bytes)`);
  // The cache write is atomic: nothing may appear even after the aborted put settles.
  await new Promise((res) => setTimeout(res, 500));
  assert.deepEqual(await cachedUrls(), []);
});

test('the model loads, is cached, and the second load requests no weights', async () => {
  const url = `${srv.url}${MODEL_URL_PATH}`;
  const first = await tryLoad(url);
  assert.ok(first.ok, `${first.name}: ${first.message}`);
  assert.ok(first.phases.includes('download'), `phases ${first.phases}`);
  const list = await page.evaluate(() => window.api.listCached());
  assert.deepEqual(list.map((c) => [c.url, c.size]), [[url, MODEL_SIZE]]);
  const before = weightRequests(srv).length;
  assert.equal(before, 1);
  const second = await tryLoad(url);
  assert.ok(second.ok, `${second.name}: ${second.message}`);
  assert.ok(!second.phases.includes('download') && second.phases.includes('cache'), `phases ${second.phases}`);
  assert.equal(weightRequests(srv).length, before, 'no request for the weights on the second load');
});

test('generation: shape, interrupt, abort by signal, ContextFull, unload', async () => {
  const url = `${srv.url}${MODEL_URL_PATH}`;
  const r = await page.evaluate(async (url) => {
    const { MobileLLM } = window.api;
    const out = {};
    const llm = await MobileLLM.load(url);
    window.llm = llm;
    out.engine = llm.loadStats.engine;
    const user = (content) => [{ role: 'user', content }];

    // Non-streaming: the OpenAI response shape.
    out.plain = await llm.chat.completions.create({ messages: user('Name three colors.'), temperature: 0, max_tokens: 8 });

    // interrupt(): the stream ends at once with finish_reason "abort", even though the engine's
    // current GPU step (seconds on SwiftShader) finishes in the background. A second generation
    // queued behind the first is stopped too, before it starts.
    {
      const stream = await llm.chat.completions.create({ messages: user('Tell me a long story about a dragon.'), stream: true, max_tokens: 400, ignore_eos: true, seed: 1 });
      const queued = await llm.chat.completions.create({ messages: user('Count to fifty.'), stream: true, max_tokens: 400, ignore_eos: true });
      let n = 0, tStop = 0, last = null;
      for await (const chunk of stream) {
        last = chunk;
        if (chunk.choices[0].delta.content) n++;
        if (n === 3 && !tStop) { tStop = performance.now(); llm.interrupt(); }
      }
      const ms = performance.now() - tStop;
      const q = [];
      for await (const chunk of queued) q.push(chunk);
      out.interrupt = { ms, seen: n, finish: last.choices[0].finish_reason, completion: last.usage.completion_tokens,
        queuedFinish: q.at(-1).choices[0].finish_reason, queuedTokens: q.at(-1).usage.completion_tokens, queuedMs: performance.now() - tStop };
    }

    // Leaving a for-await loop early ends that generation; the next call then runs normally.
    {
      const stream = await llm.chat.completions.create({ messages: user('Write a poem about the sea.'), stream: true, max_tokens: 400, ignore_eos: true });
      let t0 = 0;
      for await (const chunk of stream) { if (chunk.choices[0].delta.content) { t0 = performance.now(); break; } }
      out.breakMs = performance.now() - t0;
    }

    // AbortSignal: the iteration throws Aborted quickly; the engine stays usable.
    {
      const ctl = new AbortController();
      const stream = await llm.chat.completions.create({ messages: user('Explain the water cycle in detail.'), stream: true, max_tokens: 400, ignore_eos: true, signal: ctl.signal });
      let n = 0, tAbort = 0;
      try {
        for await (const chunk of stream) {
          if (chunk.choices[0].delta.content && ++n === 2) { tAbort = performance.now(); ctl.abort(); }
        }
        out.abort = { threw: false };
      } catch (e) {
        out.abort = { threw: true, name: e.name, ms: performance.now() - tAbort };
      }
      // Aborting before the call rejects too.
      try { await llm.chat.completions.create({ messages: user('hi'), signal: AbortSignal.abort() }); out.preAborted = 'resolved'; }
      catch (e) { out.preAborted = e.name; }
      const t0 = performance.now();
      out.after = await llm.chat.completions.create({ messages: user('Say hi.'), temperature: 0, max_tokens: 4 });
      out.afterMs = performance.now() - t0;
    }

    // A prompt longer than the whole context: ContextFull, at once.
    {
      const long = 'the quick brown fox jumps over the lazy dog '.repeat(Math.ceil(llm.info.n_ctx / 8));
      const t0 = performance.now();
      try { await llm.chat.completions.create({ messages: user(long), max_tokens: 4 }); out.ctx = { threw: false }; }
      catch (e) { out.ctx = { threw: true, name: e.name, message: e.message, ms: performance.now() - t0 }; }
    }

    // Bad arguments are InvalidArgument.
    try { await llm.chat.completions.create({ messages: [] }); } catch (e) { out.badArgs = e.name; }

    // unload(): later calls fail with Unloaded.
    await llm.unload();
    try { await llm.chat.completions.create({ messages: user('hi') }); out.afterUnload = 'resolved'; }
    catch (e) { out.afterUnload = e.name; }
    return out;
  }, url);

  assert.equal(r.engine.backend, ENGINE.backend, 'the suite runs the engine it names');
  assert.equal(r.engine.threads, ENGINE.threads);
  const p = r.plain;
  assert.equal(p.object, 'chat.completion');
  assert.equal(p.choices[0].message.role, 'assistant');
  assert.equal(typeof p.choices[0].message.content, 'string');
  assert.ok(p.choices[0].message.content.length > 0);
  assert.ok(['stop', 'length'].includes(p.choices[0].finish_reason));
  assert.equal(p.usage.total_tokens, p.usage.prompt_tokens + p.usage.completion_tokens);
  assert.ok(p.usage.completion_tokens >= 1 && p.usage.completion_tokens <= 8);
  assert.ok(p.usage.prefill_tokens >= 1 && p.usage.prefill_tokens <= p.usage.prompt_tokens);
  assert.ok(p.timings.ttft_ms > 0);

  assert.equal(r.interrupt.finish, 'abort');
  // usage counts what the caller received (a token inside a UTF-8 character has no text yet).
  assert.ok(r.interrupt.completion >= r.interrupt.seen && r.interrupt.completion <= r.interrupt.seen + 2, JSON.stringify(r.interrupt));
  assert.equal(r.interrupt.queuedFinish, 'abort');
  assert.equal(r.interrupt.queuedTokens, 0, 'the queued generation never ran');
  assert.ok(r.interrupt.queuedMs < 1000, `the queued stream ended ${r.interrupt.queuedMs.toFixed(0)} ms after interrupt()`);
  assert.ok(r.breakMs < 1000, `break took ${r.breakMs.toFixed(0)} ms`);

  assert.deepEqual({ threw: r.abort.threw, name: r.abort.name }, { threw: true, name: 'Aborted' });
  assert.equal(r.preAborted, 'Aborted');
  assert.ok(r.after.usage.completion_tokens >= 1, 'generation works after an abort');

  assert.equal(r.ctx.threw, true, 'an over-long prompt must fail');
  assert.equal(r.ctx.name, 'ContextFull', r.ctx.message);
  assert.ok(r.ctx.ms < 10000, `ContextFull took ${r.ctx.ms.toFixed(0)} ms (should not prefill)`);

  assert.equal(r.badArgs, 'InvalidArgument');
  assert.equal(r.afterUnload, 'Unloaded');
  console.log(`interrupt ${r.interrupt.ms.toFixed(0)} ms, break ${r.breakMs.toFixed(0)} ms, abort ${r.abort.ms.toFixed(0)} ms, ` +
    `next call after abort ${r.afterMs.toFixed(0)} ms, ContextFull ${r.ctx.ms.toFixed(0)} ms`);
  assert.ok(r.interrupt.ms < 1000, `interrupt took ${r.interrupt.ms.toFixed(0)} ms`);
  // An AbortSignal rejects the caller's promise at once.
  assert.ok(r.abort.ms < 1000, `abort took ${r.abort.ms.toFixed(0)} ms`);
});

test('deleteCached removes the entry', async () => {
  const url = `${srv.url}${MODEL_URL_PATH}`;
  const removed = await page.evaluate((u) => window.api.deleteCached(u), url);
  assert.equal(removed, 1);
  assert.deepEqual(await cachedUrls(), []);
});
