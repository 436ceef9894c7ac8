// Measures the browser runtime in headless Chromium (SwiftShader WebGPU): wasm size, model load
// (download and from cache), time to first token and decode speed. Prints one JSON object.
//   node tests/browser/bench.mjs [--gen 32]

import { statSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { serveWww, launch, attachLogs, ROOT, MODEL_URL_PATH } from './lib.mjs';

const arg = (name, def) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? Number(process.argv[i + 1]) : def; };
const gen = arg('gen', 32);
const wasmPath = path.join(ROOT, 'www/pkg/mobilellm_web_bg.wasm');
const out = {
  wasm_bytes: statSync(wasmPath).size,
  wasm_gzip_bytes: gzipSync(readFileSync(wasmPath), { level: 9 }).length,
};

const srv = await serveWww();
const browser = await launch();
try {
  const page = await browser.ctx.newPage();
  attachLogs(page, browser.logs);
  await page.goto(`${srv.url}/__test/blank.html`);
  await page.waitForFunction(() => window.apiReady === true);
  Object.assign(out, await page.evaluate(async ([url, gen]) => {
    const { MobileLLM } = window.api;
    const r = {};
    let t0 = performance.now();
    let llm = await MobileLLM.load(url);
    r.first_load_ms = performance.now() - t0;
    r.first_load = llm.loadStats.timings;
    r.adapter = llm.info.adapter;
    await llm.unload();
    t0 = performance.now();
    llm = await MobileLLM.load(url);
    r.cached_load_ms = performance.now() - t0;
    r.cached_load = llm.loadStats.timings;
    const res = await llm.chat.completions.create({
      messages: [{ role: 'user', content: 'Tell me about the history of the bicycle.' }],
      temperature: 0, max_tokens: gen, ignore_eos: true,
    });
    r.prompt_tokens = res.usage.prompt_tokens;
    r.completion_tokens = res.usage.completion_tokens;
    r.timings = res.timings;
    // Where a decode step's time goes, per kernel (each op submitted alone and waited for).
    r.decode_profile = await llm.debug.profileDecode([{ role: 'user', content: 'Tell me about the history of the bicycle.' }], 3);
    await llm.unload();
    return r;
  }, [`${srv.url}${MODEL_URL_PATH}`, gen]));
} finally {
  if (process.env.VERBOSE) console.error(browser.logs.join('\n'));
  await browser.close();
  await srv.close();
}
console.log(JSON.stringify(out, null, 2));
