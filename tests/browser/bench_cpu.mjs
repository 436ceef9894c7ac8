// The CPU backend against wllama (llama.cpp compiled to wasm, npm @wllama/wllama) in ONE headless
// Chromium run: same GGUF, same raw prompt, greedy, timed the same way for both (arrival times of
// streamed chunks in the page), 1 and 2 threads, on a cross-origin isolated page. Prints JSON:
// medians of `--runs` runs of load, time to first token, decode and prefill tokens/s, and the
// ratios ours / wllama. A benchmark, not a test: the machine is shared, so compare ratios.
//   node tests/browser/bench_cpu.mjs [--runs 3] [--gen 64] [--threads 1,2] [--webgpu] [--model FILE.gguf]
// (--model: another GGUF than www/models' SmolLM2 Q4_1, e.g. a Q4_K_M requantisation of it.)

import path from 'node:path';
import { ROOT, MODEL_URL_PATH, launch, attachLogs } from './lib.mjs';
import { startServer } from '../../www/serve.mjs';

const arg = (name, def) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : def; };
const RUNS = Number(arg('runs', 3));
const GEN = Number(arg('gen', 64));
const THREADS = arg('threads', '1,2').split(',').map(Number);
const MODEL_FILE = arg('model', null);
const PROMPT = 'Once upon a time, in a small village by the river,';
// About 64 tokens: prefill speed is time to first token on this prompt.
const LONG = 'It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of ' +
  'foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it ' +
  'was the season of Darkness, it was the spring of hope, it was the winter of despair, we had everything';

// No CSP here: wllama starts its workers from blob: URLs, which the page's policy forbids.
const srv = await startServer({
  root: path.join(ROOT, 'www'), port: 0, csp: false,
  mounts: {
    '/__test/': path.join(ROOT, 'tests/browser/pages'), '/__wllama/': path.join(ROOT, 'node_modules/@wllama/wllama/esm'),
    ...(MODEL_FILE ? { '/__model/': path.dirname(path.resolve(MODEL_FILE)) } : {}),
  },
});
const browser = await launch();
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[(s.length - 1) >> 1] : null; };

try {
  const page = await browser.ctx.newPage();
  attachLogs(page, browser.logs);
  await page.goto(`${srv.url}/__test/blank.html`);
  await page.waitForFunction(() => window.apiReady === true);
  if (!(await page.evaluate(() => crossOriginIsolated))) throw new Error('the page is not cross-origin isolated');
  const url = MODEL_FILE ? `${srv.url}/__model/${path.basename(MODEL_FILE)}` : `${srv.url}${MODEL_URL_PATH}`;

  /** One run of one engine: {load_ms, ttft_ms, decode_tok_s, prefill_tok_s, tokens, text}. */
  const runOurs = (opts) => page.evaluate(async ([url, opts, prompt, gen, long]) => {
    const t0 = performance.now();
    const llm = await window.api.MobileLLM.load(url, { ...opts, useCache: false });
    const load = performance.now() - t0;
    try {
      const arrivals = [];
      const t1 = performance.now();
      const stream = await llm.completions.create({ prompt, temperature: 0, max_tokens: gen, ignore_eos: true, stream: true });
      let text = '';
      for await (const c of stream) if (c.choices[0].text) { arrivals.push(performance.now()); text += c.choices[0].text; }
      const last = await stream.finished;
      const n = last.usage.completion_tokens;
      await llm.resetChat();
      const t2 = performance.now();
      const p = await llm.completions.create({ prompt: long, temperature: 0, max_tokens: 1 });
      const prefillMs = performance.now() - t2;
      return {
        long_prompt_tokens: p.usage.prompt_tokens, prefill_long_tok_s: p.usage.prompt_tokens / (prefillMs / 1000),
        load_ms: load, ttft_ms: arrivals[0] - t1, decode_tok_s: (arrivals.length - 1) / ((arrivals.at(-1) - arrivals[0]) / 1000),
        prompt_tokens: last.usage.prompt_tokens, prefill_tok_s: last.timings.prefill_tokens_per_s, tokens: n, text,
        engine: llm.loadStats.engine,
      };
    } finally { await llm.unload(); }
  }, [url, opts, PROMPT, GEN, LONG]);

  const runWllama = (threads) => page.evaluate(async ([url, threads, prompt, gen, long]) => {
    const { Wllama } = await import('/__wllama/index.js');
    const w = new Wllama({ default: '/__wllama/wasm/wllama.wasm' }, { suppressNativeLog: true });
    const t0 = performance.now();
    await w.loadModelFromUrl(url, { n_threads: threads, n_ctx: 1024, n_gpu_layers: 0, useCache: false });
    const load = performance.now() - t0;
    try {
      const arrivals = [];
      let text = '';
      const t1 = performance.now();
      await w.createCompletion({
        prompt, max_tokens: gen, temperature: 0, stream: true,
        onData: (chunk) => { const t = chunk?.choices?.[0]?.text ?? ''; if (t) { arrivals.push(performance.now()); text += t; } },
      });
      const t2 = performance.now();
      const res = await w.createCompletion({ prompt: long, max_tokens: 1, temperature: 0 });
      const prefillMs = performance.now() - t2;
      const nLong = res?.usage?.prompt_tokens ?? NaN;
      return {
        load_ms: load, ttft_ms: arrivals[0] - t1, decode_tok_s: (arrivals.length - 1) / ((arrivals.at(-1) - arrivals[0]) / 1000), tokens: arrivals.length, text,
        long_prompt_tokens: nLong, prefill_long_tok_s: nLong / (prefillMs / 1000),
      };
    } finally { await w.exit(); }
  }, [url, threads, PROMPT, GEN, LONG]);

  const results = {};
  const order = [];
  for (const t of THREADS) order.push([`wllama_${t}t`, () => runWllama(t)], [`ours_cpu_${t}t`, () => runOurs({ backend: 'cpu', threads: t })]);
  if (process.argv.includes('--webgpu')) order.push(['ours_webgpu', () => runOurs({ backend: 'webgpu' })]);
  // Interleaved runs, so a burst of load on the shared machine hits every engine alike.
  for (let r = 0; r < RUNS; r++) {
    for (const [name, fn] of order) {
      const x = await fn();
      (results[name] ??= []).push(x);
      console.error(`${name} run ${r + 1}: load ${x.load_ms.toFixed(0)} ms, ttft ${x.ttft_ms.toFixed(0)} ms, decode ${x.decode_tok_s.toFixed(1)} tok/s`);
    }
  }
  const summary = {};
  for (const [name, xs] of Object.entries(results)) {
    summary[name] = {
      load_ms: median(xs.map((x) => x.load_ms)), ttft_ms: median(xs.map((x) => x.ttft_ms)),
      decode_tok_s: median(xs.map((x) => x.decode_tok_s)), prefill_tok_s: median(xs.map((x) => x.prefill_tok_s ?? NaN)),
      long_prompt_tokens: xs[0].long_prompt_tokens, prefill_long_tok_s: median(xs.map((x) => x.prefill_long_tok_s)),
      runs: xs.map((x) => Number(x.decode_tok_s.toFixed(2))), engine: xs[0].engine, text: xs[0].text.slice(0, 60),
    };
  }
  const best = (prefix) => Object.entries(summary).filter(([k]) => k.startsWith(prefix)).sort((a, b) => b[1].decode_tok_s - a[1].decode_tok_s)[0];
  const [wName, w] = best('wllama_');
  const [oName, o] = best('ours_cpu_');
  summary.ratio = {
    decode_ours_best_over_wllama_best: o.decode_tok_s / w.decode_tok_s,
    ttft_ours_over_wllama: o.ttft_ms / w.ttft_ms,
    best: [oName, wName],
  };
  for (const t of THREADS) {
    const a = summary[`ours_cpu_${t}t`], b = summary[`wllama_${t}t`];
    summary.ratio[`decode_${t}t`] = a.decode_tok_s / b.decode_tok_s;
    summary.ratio[`ttft_${t}t`] = a.ttft_ms / b.ttft_ms;
    summary.ratio[`load_${t}t`] = a.load_ms / b.load_ms;
    summary.ratio[`prefill_long_${t}t`] = a.prefill_long_tok_s / b.prefill_long_tok_s;
    // Prefill of a ~64-token prompt per token against decode per token (the goal: >= 4x).
    summary.ratio[`ours_prefill_over_decode_${t}t`] = a.prefill_long_tok_s / a.decode_tok_s;
  }
  console.log(JSON.stringify({ runs: RUNS, gen: GEN, prompt: PROMPT, ...summary }, null, 2));
} finally {
  if (process.env.VERBOSE) console.error(browser.logs.join('\n'));
  await browser.close();
  await srv.close();
}
