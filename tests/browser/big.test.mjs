// A 1.6 GB model in Chromium on WebGPU: the MobileLLM-1.5B-shaped random Q8_0 GGUF with the
// Llama-2 vocabulary that tests/model_big.rs writes (with the CPU reference's outputs) under
// target/big-model/. Loading streams each tensor to the GPU as it arrives, so the tab's wasm
// memory stays at about one tensor (before: the whole file, in a heap that never shrinks), and
// the browser's processes at about the GPU buffers plus a fixed overhead. Checks the outputs
// against the CPU reference (teacher-forced logits and a greedy continuation) and reports the
// memory figures.
//   node tests/browser/big.test.mjs   (builds the model with `cargo test --test model_big` if absent)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { startServer } from '../../www/serve.mjs';
import { ROOT, MODEL_URL_PATH, launch, attachLogs, closePage } from './lib.mjs';

const DIR = path.join(ROOT, 'target/big-model');
const MODEL = 'mobilellm-1.5b-q8_0.gguf';
const EXPECT = path.join(DIR, 'mobilellm-1.5b-q8_0.expect.json');

let srv, browser, page;
const measured = {};

/** Resident memory (bytes) of the processes this test started: Chromium's browser, GPU, renderer
 * and utility processes (all descendants of this node process). */
function childrenRss() {
  const out = execFileSync('ps', ['-eo', 'pid=,ppid=,rss='], { encoding: 'utf8' });
  const procs = out.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
  const mine = new Set([process.pid]);
  let bytes = 0;
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, ppid, rss] of procs) {
      if (!mine.has(pid) && mine.has(ppid)) { mine.add(pid); bytes += rss * 1024; grew = true; }
    }
  }
  return bytes;
}

before(async () => {
  if (!existsSync(EXPECT) || !existsSync(path.join(DIR, MODEL))) {
    const r = spawnSync('cargo', ['test', '--profile', 'ci', '--test', 'model_big'], { cwd: ROOT, stdio: 'inherit' });
    assert.equal(r.status, 0, 'tests/model_big.rs writes the model and its expected outputs');
  }
  // The engine, the test pages, and the model under /big/ (same origin: the page's CSP allows it).
  srv = await startServer({ root: path.join(ROOT, 'www'), port: 0, mounts: { '/__test/': path.join(ROOT, 'tests/browser/pages'), '/big/': DIR } });
  srv.bigUrl = `${srv.url}/big/${MODEL}`;
  browser = await launch();
  page = await browser.ctx.newPage();
  attachLogs(page, browser.logs);
  await page.goto(`${srv.url}/__test/blank.html`);
  await page.waitForFunction(() => window.apiReady === true);
});

// Prints the figures; fails on any Content-Security-Policy violation report.
after(() => closePage({ srv, browser }, measured));

test('the 135M model streams onto WebGPU (first, in a fresh tab: figures for comparison)', { timeout: 300_000 }, async () => {
  const r = await page.evaluate(async (url) => {
    const llm = await window.api.MobileLLM.load(url, { backend: 'webgpu', useCache: false, contextLength: 256 });
    const out = { engine: llm.loadStats.engine, stats: await llm.debug.stats(), size: llm.info.file_bytes };
    await llm.unload();
    return out;
  }, `${srv.url}${MODEL_URL_PATH}`);
  const mb = (b) => +(b / 2 ** 20).toFixed(1);
  measured.small = {
    file_mb: mb(r.size), peak_buffered_mb: mb(r.engine.peakBufferedBytes), wasm_memory_mb: mb(r.stats.wasm_memory_bytes),
    gpu_buffers_mb: mb(r.stats.gpu_allocated_bytes),
  };
  // Held at once: the embedding (49152 x 576 Q8_0, 30 MB) is the largest tensor.
  assert.ok(r.engine.peakBufferedBytes < r.size / 2, `held ${measured.small.peak_buffered_mb} MB of a ${measured.small.file_mb} MB file`);
});

test('a 1.5B-shaped Q8_0 model streams onto WebGPU within the memory bound and matches the CPU reference', { timeout: 900_000 }, async () => {
  const expect = JSON.parse(readFileSync(EXPECT, 'utf8'));
  const baseline = childrenRss();
  let peak = baseline;
  const sampler = setInterval(() => { peak = Math.max(peak, childrenRss()); }, 250);
  const t0 = Date.now();
  let r;
  try {
    r = await page.evaluate(async ([url, nCtx]) => {
      // No cache: the point is the stream from the network to the GPU (and 1.6 GB of Cache API).
      const llm = await window.api.MobileLLM.load(url, { backend: 'webgpu', useCache: false, contextLength: nCtx });
      window.big = llm;
      return { engine: llm.loadStats.engine, stats: await llm.debug.stats(), info: llm.info };
    }, [srv.bigUrl, expect.n_ctx]);
  } finally {
    clearInterval(sampler);
  }
  peak = Math.max(peak, childrenRss());
  measured.load_ms = Date.now() - t0;
  measured.file_mb = +(expect.file_bytes / 2 ** 20).toFixed(1);
  measured.peak_buffered_mb = +(r.engine.peakBufferedBytes / 2 ** 20).toFixed(1);
  measured.wasm_memory_mb = +(r.stats.wasm_memory_bytes / 2 ** 20).toFixed(1);
  measured.gpu_buffers_mb = +(r.stats.gpu_allocated_bytes / 2 ** 20).toFixed(1);
  measured.browser_rss_baseline_mb = +(baseline / 2 ** 20).toFixed(0);
  measured.browser_rss_peak_mb = +(peak / 2 ** 20).toFixed(0);
  assert.equal(r.engine.backend, 'webgpu');

  // wasm memory: about one tensor (the 54 MB embedding) plus the engine, never the 1.6 GB file.
  assert.ok(r.stats.wasm_memory_bytes <= 320 * 2 ** 20, `wasm memory ${measured.wasm_memory_mb} MB`);
  assert.ok(r.engine.peakBufferedBytes <= 2 * 54.4e6 + 16 * 2 ** 20, `held at once: ${measured.peak_buffered_mb} MB`);
  // GPU buffers: the file (repacked) plus the KV cache, within 10%.
  assert.ok(r.stats.gpu_allocated_bytes <= (expect.file_bytes + expect.kv_bytes) * 1.1, `GPU buffers ${measured.gpu_buffers_mb} MB`);
  // The browser's processes (SwiftShader's "GPU memory" is the GPU process's memory): the GPU
  // buffers once, plus what the browser held before loading and a fixed margin for the engine,
  // the wasm heap and SwiftShader's staging (before streaming: ~5 GB for this model).
  const bound = baseline + r.stats.gpu_allocated_bytes + 1.0 * 2 ** 30;
  measured.browser_rss_bound_mb = +(bound / 2 ** 20).toFixed(0);
  assert.ok(peak <= bound, `browser processes peaked at ${measured.browser_rss_peak_mb} MB > ${measured.browser_rss_bound_mb} MB`);

  // Teacher-forced logits against the CPU reference: the top-1 wherever the reference's margin
  // is clear, and the reference's logits at the ids both have in their top 8.
  const rows = await page.evaluate((tokens) => window.big.debug.topLogits(tokens, 8), expect.tokens);
  assert.equal(rows.length, expect.tokens.length);
  let clear = 0;
  rows.forEach((row, p) => {
    const cpu = expect.cpu[p];
    const cpuAt = new Map(cpu.top.map(([id, logit]) => [id, logit]));
    for (const [id, logit] of row) {
      if (cpuAt.has(id)) {
        const want = cpuAt.get(id);
        assert.ok(Math.abs(logit - want) <= 2e-2 + 2e-3 * Math.abs(want), `pos ${p} id ${id}: ${logit} vs CPU ${want}`);
      }
    }
    if (cpu.margin > 5e-2) {
      assert.equal(row[0][0], cpu.top[0][0], `pos ${p}: top-1`);
      clear++;
    }
  });
  assert.ok(clear * 2 >= rows.length, `${clear} clear positions of ${rows.length}`);

  // Decode steps: a greedy continuation of the prompt equals the reference's.
  const t1 = Date.now();
  const text = await page.evaluate(async ([prompt, n]) => {
    const res = await window.big.completions.create({ prompt, max_tokens: n, temperature: 0, ignore_eos: true });
    return res.choices[0].text;
  }, [expect.prompt, expect.tokens.length - expect.prompt_len]);
  measured.greedy_ms = Date.now() - t1;
  const allClear = expect.cpu.slice(expect.prompt_len - 1, -1).every((c) => c.margin > 5e-2);
  if (allClear) assert.equal(text, expect.continuation);
  measured.continuation_equal = text === expect.continuation;
  await page.evaluate(() => window.big.unload());
});
