// Conversion time and memory in the browser for a 125M-shaped random MobileLLM checkpoint (fp16
// pytorch_model.bin, about 250 MB, as facebook/MobileLLM-125M ships), next to the native CLI on
// the same files. Not part of the test run: it writes 250 MB and takes a few minutes.
//   node tests/browser/convert_bench.mjs [--type q8_0|q4_1|...] [--dir DIR (reuse a checkpoint)]
//
// Memory is the proportional set size (PSS, /proc/<pid>/smaps_rollup) summed over every process
// this script started (Chromium's browser, renderer, GPU and utility processes), sampled every
// 100 ms: the peak while downloading, converting and storing (the conversion worker), during the
// engine's load (which adds the GPU upload; SwiftShader's "GPU" memory is ordinary process
// memory), and during a second load from the cache.

import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, mkdtempSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { serveWww, launch, attachLogs, ROOT } from './lib.mjs';
import { serveHub } from './hub.mjs';

const arg = (name, dflt) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : dflt; };
const TYPE = arg('type', 'q8_0');
const REPO = 'bench/MobileLLM-125M-random';
const mib = (b) => `${(b / 2 ** 20).toFixed(0)} MiB`;

// ---------------------------------------------------------------- the checkpoint
let tmp = null;
let dir = arg('dir', null);
if (!dir) {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'mobilellm-convert-bench-'));
  dir = path.join(tmp, 'MobileLLM-125M-random');
  console.log('writing a 125M-shaped fp16 checkpoint (numpy)…');
  execFileSync('python3', [path.join(ROOT, 'tests/fixtures/make_checkpoint.py'), dir, '--kind', 'mobilellm', '--format', 'bin', '--dtype', 'f16',
    '--dim', '576', '--layers', '30', '--heads', '9', '--kv-heads', '3', '--ffn', '1536', '--vocab', '32000', '--no-reference'], { stdio: 'inherit' });
}
const ckptBytes = readdirSync(dir).reduce((a, f) => a + statSync(path.join(dir, f)).size, 0);
console.log(`checkpoint: ${dir}, ${mib(ckptBytes)}`);

// ---------------------------------------------------------------- native reference
/** The CLI on the same files: wall time and peak resident memory (GNU time's %M). */
function nativeBench() {
  const out = path.join(os.tmpdir(), `mobilellm-bench-native-${process.pid}.gguf`);
  const cliPath = process.env.MOBILELLM_CLI || path.join(ROOT, 'target/ci/mobilellm');
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'maxrss_kb=%M', cliPath, 'convert', '--hf', dir, '--out', out, '--type', TYPE], { encoding: 'utf8' });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`native convert failed: ${r.stderr.slice(-500)}`);
  const gguf = statSync(out).size;
  rmSync(out, { force: true });
  return { convert_ms: Math.round(ms), max_rss: Number(/maxrss_kb=(\d+)/.exec(r.stderr)[1]) * 1024, gguf_bytes: gguf };
}
const native = nativeBench();
console.log(`native: ${JSON.stringify(native)}`);

// ---------------------------------------------------------------- memory sampling
function descendants(root) {
  const children = new Map();
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const ppid = Number(/PPid:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(p));
    } catch { /* exited */ }
  }
  const out = [];
  const stack = [root];
  while (stack.length) for (const c of children.get(stack.pop()) ?? []) { out.push(c); stack.push(c); }
  return out;
}

/** Total PSS of `pids`, and the share of each process type (browser, renderer, gpu-process, ...). */
function pssBytes(pids) {
  let total = 0;
  const byType = {};
  for (const pid of pids) {
    try {
      const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
      if (!m) continue;
      const type = /--type=([\w-]+)/.exec(readFileSync(`/proc/${pid}/cmdline`, 'utf8'))?.[1] ?? 'browser';
      total += Number(m[1]) * 1024;
      byType[type] = (byType[type] ?? 0) + Number(m[1]) * 1024;
    } catch { /* exited */ }
  }
  return { total, byType };
}

function sampler() {
  const s = { phase: 'idle', peak: {}, at: {}, timer: null };
  s.timer = setInterval(() => {
    const { total, byType } = pssBytes(descendants(process.pid));
    if (total > (s.peak[s.phase] ?? 0)) { s.peak[s.phase] = total; s.at[s.phase] = byType; }
    s.last = total;
    s.lastByType = byType;
  }, 100);
  return s;
}

// ---------------------------------------------------------------- browser
const hub = await serveHub({ [REPO]: dir });
const srv = await serveWww();
const browser = await launch();
const page = await browser.ctx.newPage();
attachLogs(page, browser.logs);
await page.goto(`${srv.url}/__test/blank.html`);
await page.waitForFunction(() => window.apiReady === true);
const mem = sampler();
await page.exposeFunction('__phase', (p) => { mem.phase = p; });
await new Promise((r) => setTimeout(r, 1000));
const baseline = mem.last;
const baselineByType = mem.lastByType;

async function load(label) {
  return page.evaluate(async ([repo, hubUrl, type, label]) => {
    const t0 = performance.now();
    let phase = null;
    const llm = await window.api.MobileLLM.load(repo, {
      hubUrl, convertType: type,
      onProgress: (p) => {
        // download / convert / store: the conversion worker; read, cache, compile: the engine load
        const group = label === 'cached' ? 'cached' : ['download', 'convert', 'store'].includes(p.phase) ? p.phase : 'engine';
        if (group !== phase) { phase = group; window.__phase(group); }
      },
    });
    const ms = performance.now() - t0;
    const r = { ms, stats: llm.loadStats, info: llm.info };
    await llm.unload();
    return r;
  }, [REPO, hub.url, TYPE, label]).then((r) => ({ label, ...r }));
}

let first, second;
try {
  first = await load('first');
  mem.phase = 'after';
  await new Promise((r) => setTimeout(r, 500));
  mem.phase = 'cached';
  second = await load('cached');
} finally {
  clearInterval(mem.timer);
  await browser.close();
  await srv.close();
  await hub.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}

const c = first.stats.conversion;
const result = {
  checkpoint_bytes: ckptBytes,
  type: TYPE,
  browser: {
    scratch: c.scratch,
    download_ms: Math.round(c.timings.download_ms),
    convert_ms: Math.round(c.timings.convert_ms),
    store_ms: Math.round(c.timings.store_ms),
    first_load_total_ms: Math.round(first.ms),
    gguf_bytes: c.report.bytes_written,
    wasm_memory_after_convert: c.wasm_memory_bytes,
    pss_baseline: baseline,
    pss_peak_download: mem.peak.download,
    pss_peak_convert: mem.peak.convert,
    pss_peak_store: mem.peak.store,
    pss_peak_engine_load: mem.peak.engine,
    pss_peak_cached_reload: mem.peak.cached,
    cached_reload_ms: Math.round(second.ms),
    cached_reload_from_cache: second.stats.fromCache,
  },
  native,
  // Where the memory is at each phase's peak (MiB per Chromium process type).
  pss_by_process_type: Object.fromEntries(Object.entries({ baseline: baselineByType, ...mem.at })
    .map(([phase, t]) => [phase, Object.fromEntries(Object.entries(t).map(([k, v]) => [k, Math.round(v / 2 ** 20)]))])),
};
console.log(JSON.stringify(result, null, 1));
console.log(`browser: download ${(c.timings.download_ms / 1000).toFixed(1)} s, convert ${(c.timings.convert_ms / 1000).toFixed(1)} s, ` +
  `store ${(c.timings.store_ms / 1000).toFixed(1)} s; wasm heap ${mib(c.wasm_memory_bytes)}; ` +
  `PSS baseline ${mib(baseline)}, peak while downloading ${mib(mem.peak.download)}, converting ${mib(mem.peak.convert)} ` +
  `(+${mib(mem.peak.convert - baseline)}), storing ${mib(mem.peak.store)}, ` +
  `peak during the engine load ${mib(mem.peak.engine)}; cached reload ${(second.ms / 1000).toFixed(1)} s`);
console.log(`native: convert ${(native.convert_ms / 1000).toFixed(1)} s, peak RSS ${mib(native.max_rss)}`);
if (process.env.VERBOSE) console.log(browser.logs.join('\n'));
