// The choice of backend and build in the browser, and the CPU backend against the native one:
//   - the CPU kernels' self-test inside each of the four wasm builds (plain and relaxed SIMD, one
//     thread and threads): SIMD path against the scalar one and the f64 reference;
//   - greedy tokens of the browser's CPU backend equal the native CLI's `--backend cpu`, token for
//     token (the kernels are bit-identical across hosts), on 1 and 2 threads;
//   - `auto` picks the CPU on SwiftShader (a software adapter) and without WebGPU;
//   - a page without cross-origin isolation runs one thread and says why;
//   - a KV cache too large for wasm32 memory is a typed error before anything is allocated.
//   node tests/browser/backends.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { serveWww, launch, attachLogs, cli, ROOT, MODEL_PATH, MODEL_URL_PATH } from './lib.mjs';
import { startServer } from '../../www/serve.mjs';

const STORY = 'Once upon a time, in a small village by the river,';
const N = 64;

let srv, plain, browser, page;
const measured = {};

before(async () => {
  srv = await serveWww();
  // The same files without COOP/COEP: no shared memory, so no threads.
  plain = await startServer({ root: path.join(ROOT, 'www'), port: 0, isolate: false, mounts: { '/__test/': path.join(ROOT, 'tests/browser/pages') } });
  browser = await launch();
  page = await browser.ctx.newPage();
  attachLogs(page, browser.logs);
  await page.goto(`${srv.url}/__test/blank.html`);
  await page.waitForFunction(() => window.apiReady === true);
});

after(async () => {
  if (process.env.VERBOSE) console.log(browser?.logs.join('\n'));
  console.log('measured:', JSON.stringify(measured));
  await browser?.close();
  await plain?.close();
  await srv?.close();
});

/** Loads the model with `opts` in `p`, runs `body(llm)` there (a function source), unloads. */
function withModel(p, url, opts, body) {
  return p.evaluate(async ([url, opts, body]) => {
    const llm = await window.api.MobileLLM.load(url, opts);
    try {
      // eslint-disable-next-line no-new-func
      const r = await new Function('llm', `return (${body})(llm);`)(llm);
      return { engine: llm.loadStats.engine, info: llm.info, r };
    } finally {
      await llm.unload();
    }
  }, [url, opts, body.toString()]);
}

test('the CPU kernels pass their self-test in every wasm build', async () => {
  const url = `${srv.url}${MODEL_URL_PATH}`;
  for (const build of ['pkg', 'pkg-relaxed', 'pkg-mt', 'pkg-mt-relaxed']) {
    const threads = build.startsWith('pkg-mt') ? 2 : 1;
    const { engine, r } = await withModel(page, url, { backend: 'cpu', threads, build }, (llm) => llm.debug.cpuSelftest());
    assert.equal(engine.build, build);
    assert.equal(engine.threads, threads);
    assert.equal(r.simd, build.endsWith('relaxed') ? 'relaxed' : 'simd128', `${build}: ${JSON.stringify(r).slice(0, 200)}`);
    const bad = r.cases.filter((c) => !c.bit_equal_scalar);
    assert.ok(r.ok && bad.length === 0, `${build}: ${JSON.stringify(bad.length ? bad : r).slice(0, 400)}`);
    assert.ok(r.cases.length >= 10, `${build}: only ${r.cases.length} cases`);
    measured[`selftest_${build}_cases`] = r.cases.length;
  }
});

test('greedy tokens on the CPU backend equal the native CLI for 64 tokens, on 1 and 2 threads', async () => {
  const url = `${srv.url}${MODEL_URL_PATH}`;
  for (const threads of [1, 2]) {
    const ref = cli(['generate', '--model', MODEL_PATH, '--prompt', STORY, '--temperature', '0', '-n', String(N), '--json', '--backend', 'cpu', '--threads', String(threads)]);
    assert.equal(ref.tokens.length, N, 'the native reply runs to the length limit');
    const { engine, info, r } = await withModel(page, url, { backend: 'cpu', threads }, async (llm) => {
      const res = await llm.completions.create({ prompt: 'Once upon a time, in a small village by the river,', temperature: 0, max_tokens: 64 });
      return { ids: res.debug.completion_token_ids, prompt: res.debug.prompt_token_ids, text: res.choices[0].text, timings: res.timings };
    });
    assert.equal(engine.backend, 'cpu');
    assert.equal(engine.threads, threads);
    // Memory: the GGUF as it is (no f32 copy) + the KV caches (f16) + at most 64 MB for the rest.
    const kv = info.n_ctx * info.n_layers * info.block_repeat * 2 * (info.n_kv_heads * info.dim / info.n_heads) * 2;
    const bound = info.file_bytes + kv + (64 << 20);
    assert.ok(info.wasm_memory_bytes <= bound, `wasm memory ${info.wasm_memory_bytes} > file ${info.file_bytes} + KV ${kv} + 64 MB`);
    measured[`wasm_memory_mb_${threads}t`] = Math.round(info.wasm_memory_bytes / 2 ** 20);
    measured.bound_mb = Math.round(bound / 2 ** 20);
    assert.deepEqual(r.prompt, ref.prompt_tokens, 'same tokenizer');
    assert.deepEqual(r.ids, ref.tokens, `${threads} thread(s): browser and native greedy tokens differ`);
    assert.equal(r.text, ref.text);
    measured[`decode_tok_s_${threads}t`] = Number(r.timings.decode_tokens_per_s.toFixed(1));
    measured[`native_decode_tok_s_${threads}t`] = Number(ref.decode_tok_s.toFixed(1));
  }
});

test('auto picks the CPU backend on a software adapter and without WebGPU; webgpu can be forced', async () => {
  const url = `${srv.url}${MODEL_URL_PATH}`;
  const auto = await withModel(page, url, { backend: 'auto' }, () => null);
  assert.equal(auto.engine.backend, 'cpu');
  assert.match(auto.engine.reason, /software/i);
  assert.ok(auto.engine.threads >= 1);
  const gpu = await withModel(page, url, { backend: 'webgpu' }, () => null);
  assert.equal(gpu.engine.backend, 'webgpu');
  assert.match(gpu.info.adapter, /swiftshader/i);

  // A browser without WebGPU (navigator.gpu hidden in the page and its workers).
  const p2 = await browser.ctx.newPage();
  try {
    await p2.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true }));
    await p2.goto(`${srv.url}/__test/blank.html`);
    await p2.waitForFunction(() => window.apiReady === true);
    const none = await withModel(p2, url, {}, (llm) => llm.completions.create({ prompt: 'The capital of France is', temperature: 0, max_tokens: 4 }));
    assert.equal(none.engine.backend, 'cpu');
    assert.ok(none.r.choices[0].text.length > 0);
    const forced = await p2.evaluate(async (url) => {
      try { await window.api.MobileLLM.load(url, { backend: 'webgpu' }); return 'loaded'; } catch (e) { return e.name; }
    }, url);
    assert.equal(forced, 'WebGPUUnavailable');
  } finally {
    await p2.close();
  }
});

test('without cross-origin isolation the CPU backend runs on one thread and says why', async () => {
  const p2 = await browser.ctx.newPage();
  try {
    await p2.goto(`${plain.url}/__test/blank.html`);
    await p2.waitForFunction(() => window.apiReady === true);
    assert.equal(await p2.evaluate(() => crossOriginIsolated), false);
    const { engine, r } = await withModel(p2, `${plain.url}${MODEL_URL_PATH}`, { backend: 'cpu', threads: 2 },
      (llm) => llm.completions.create({ prompt: 'The capital of France is', temperature: 0, max_tokens: 4 }));
    assert.equal(engine.threads, 1);
    assert.equal(engine.requestedThreads, 2);
    assert.ok(!engine.build.startsWith('pkg-mt'), engine.build);
    assert.match(engine.threadsNote, /cross-origin isolated/);
    assert.ok(r.choices[0].text.length > 0);
  } finally {
    await p2.close();
  }
});

test('a KV cache too large for wasm32 memory is ModelTooLarge, and the engine stays usable', async () => {
  const url = `${srv.url}${MODEL_URL_PATH}`;
  const r = await page.evaluate(async (url) => {
    const { MobileLLM } = window.api;
    const out = {};
    // 400k positions x 30 layers x 2 x 192 x 2 bytes = 9.2 GB of f16 keys and values.
    try { await MobileLLM.load(url, { backend: 'cpu', threads: 2, contextLength: 400_000 }); out.big = 'loaded'; } catch (e) { out.big = e.name; out.message = e.message; }
    const llm = await MobileLLM.load(url, { backend: 'cpu', threads: 2 });
    out.after = (await llm.completions.create({ prompt: 'Hello', temperature: 0, max_tokens: 2 })).usage.completion_tokens;
    await llm.unload();
    return out;
  }, url);
  assert.equal(r.big, 'ModelTooLarge', r.message);
  assert.equal(r.after, 2);
});
