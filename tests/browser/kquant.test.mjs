// The Q5 and K-quant models of tests/kquant_models.rs (every type alone, and Q4_K_M-like mixes
// with a tied Q6_K embedding as the logits matrix) in Chromium: the wasm CPU kernels (threaded
// build, simd128 / relaxed SIMD) and WebGPU on SwiftShader, teacher-forced against the f64 CPU
// reference's logits that the Rust test leaves next to each file (target/kquant-models/).
//   node tests/browser/kquant.test.mjs  (writes the models with `cargo test --test kquant_models` if absent)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { startServer } from '../../www/serve.mjs';
import { ROOT, launch, attachLogs, closePage } from './lib.mjs';

const DIR = path.join(ROOT, 'target/kquant-models');
// |ours - reference| <= atol + rtol * |reference|, the native tests' bounds: the browser's CPU
// backend keeps an f16 KV cache (as llama.cpp does); SwiftShader has no shader-f16, so WebGPU
// runs the f32 path.
const TOL = { cpu: [3e-2, 3e-2], webgpu: [2e-3, 2e-3] };

let srv, browser, page;
const measured = {};

before(async () => {
  if (!existsSync(DIR) || !readdirSync(DIR).some((f) => f.endsWith('.expect.json'))) {
    const r = spawnSync('cargo', ['test', '--profile', 'ci', '--test', 'kquant_models', 'llama_cpp'], { cwd: ROOT, stdio: 'inherit' });
    assert.equal(r.status, 0, 'tests/kquant_models.rs writes the models and their reference logits');
  }
  srv = await startServer({ root: path.join(ROOT, 'www'), port: 0, mounts: { '/__test/': path.join(ROOT, 'tests/browser/pages'), '/kq/': DIR } });
  browser = await launch();
  page = await browser.ctx.newPage();
  attachLogs(page, browser.logs);
  await page.goto(`${srv.url}/__test/blank.html`);
  await page.waitForFunction(() => window.apiReady === true);
});

after(() => closePage({ srv, browser }, measured));

const cases = () => readdirSync(DIR).filter((f) => f.endsWith('.expect.json')).sort();

for (const [backend, load] of [['cpu-2', { backend: 'cpu', threads: 2 }], ['webgpu', { backend: 'webgpu' }]]) {
  test(`every Q5 / K-quant model matches the reference on ${backend}`, { timeout: 600_000 }, async () => {
    const names = cases();
    assert.ok(names.length >= 9, `${names.length} models in ${DIR}`);
    for (const file of names) {
      const expect = JSON.parse(readFileSync(path.join(DIR, file), 'utf8'));
      const url = `${srv.url}/kq/${file.replace('.expect.json', '.gguf')}`;
      const t0 = Date.now();
      const r = await page.evaluate(async ([url, load, tokens]) => {
        const llm = await window.api.MobileLLM.load(url, { ...load, useCache: false, contextLength: 256 });
        const rows = await llm.debug.topLogits(tokens, 8);
        const engine = llm.loadStats.engine;
        await llm.unload();
        return { rows, engine };
      }, [url, load, expect.tokens]);
      assert.equal(r.engine.backend, load.backend, expect.name);
      assert.equal(r.rows.length, expect.tokens.length, expect.name);
      const [atol, rtol] = TOL[load.backend];
      let worst = 0;
      r.rows.forEach((row, p) => {
        const want = expect.logits[p];
        for (const [id, logit] of row) {
          const bound = atol + rtol * Math.abs(want[id]);
          worst = Math.max(worst, Math.abs(logit - want[id]) / bound);
          assert.ok(Math.abs(logit - want[id]) <= bound, `${expect.name} ${backend} pos ${p} id ${id}: ${logit} vs reference ${want[id]}`);
        }
        const order = want.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0]);
        if (order[0][0] - order[1][0] > 2 * (atol + rtol * Math.abs(order[0][0]))) {
          assert.equal(row[0][0], order[0][1], `${expect.name} ${backend} pos ${p}: top-1`);
        }
      });
      measured[`${backend} ${expect.name}`] = { ms: Date.now() - t0, worst_of_bound: +worst.toFixed(2) };
    }
  });
}
