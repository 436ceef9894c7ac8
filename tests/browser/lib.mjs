// Shared helpers for the browser tests: the static server (www/ plus the test pages), a second
// "misbehaving" server (404, slow, truncated, not-a-GGUF), headless Chromium on SwiftShader
// WebGPU, and the native CLI as the reference.

import { createServer } from 'node:http';
import { createReadStream, statSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from '../../www/serve.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const OUT = path.join(ROOT, 'tests/out');
export const MODEL_NAME = 'SmolLM2-135M-Instruct.Q4_1.gguf';
export const MODEL_PATH = path.join(ROOT, 'www/models', MODEL_NAME);
export const MODEL_URL_PATH = `/models/${MODEL_NAME}`;

/**
 * The engine a suite tests, from MOBILELLM_TEST_ENGINE: `webgpu` (default: WebGPU on SwiftShader,
 * f32) or `cpu-N` (the CPU backend on N threads). `load` is what the suites pass to MobileLLM.load,
 * `query` what the pages read from their URL, `cli` the native reference's matching flags.
 */
export const ENGINE = parseEngine(process.env.MOBILELLM_TEST_ENGINE || 'webgpu');

function parseEngine(name) {
  if (name === 'webgpu') {
    return { name, backend: 'webgpu', threads: 1, load: { backend: 'webgpu' }, query: 'backend=webgpu', cli: ['--backend', 'gpu', '--f32'] };
  }
  const m = /^cpu-(\d+)$/.exec(name);
  if (!m) throw new Error(`MOBILELLM_TEST_ENGINE=${name}: use webgpu or cpu-N`);
  const threads = Number(m[1]);
  return { name, backend: 'cpu', threads, load: { backend: 'cpu', threads }, query: `backend=cpu&threads=${threads}`, cli: ['--backend', 'cpu', '--threads', String(threads)] };
}

/** The blank API page with the suite's engine as MobileLLM.load's defaults. */
export const blankPage = (srv) => `${srv.url}/__test/blank.html?${ENGINE.query}`;

// From TOOLCHAIN.md: WebGPU on SwiftShader in headless Chromium.
const CHROMIUM_ARGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu-sandbox', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader',
];

export function serveWww() {
  return startServer({ root: path.join(ROOT, 'www'), port: 0, mounts: { '/__test/': path.join(ROOT, 'tests/browser/pages') } });
}

/** Weight requests seen by the server (GETs of .gguf files). */
export const weightRequests = (srv) => srv.requests.filter((r) => r.method === 'GET' && r.path.endsWith('.gguf'));

/**
 * A server that misbehaves on purpose (CORS-enabled, like a model host):
 *   /missing.gguf     404
 *   /slow.gguf        the real model, announced in full, trickled at `slowRate` bytes/s
 *   /truncated.gguf   announces the full size, sends half, then drops the connection
 *   /html.gguf        an HTML page (a wrong link)
 *   /garbage.gguf     "GGUF" then junk (a corrupt file)
 */
export function serveBad({ slowRate = 4e6 } = {}) {
  const size = statSync(MODEL_PATH).size;
  const server = createServer((req, res) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    const p = new URL(req.url, 'http://x').pathname;
    const send = (status, headers, body) => { res.writeHead(status, headers); res.end(body); };
    if (p === '/slow.gguf' || p === '/truncated.gguf') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': size });
      const limit = p === '/truncated.gguf' ? Math.floor(size / 2) : size;
      const stream = createReadStream(MODEL_PATH, { start: 0, end: limit - 1, highWaterMark: 64 * 1024 });
      let sent = 0;
      const t0 = Date.now();
      stream.on('data', (chunk) => {
        sent += chunk.length;
        if (!res.write(chunk) || (p === '/slow.gguf' && sent > ((Date.now() - t0) / 1000) * slowRate)) {
          stream.pause();
          const wait = p === '/slow.gguf' ? Math.max(0, (sent / slowRate) * 1000 - (Date.now() - t0)) : 0;
          setTimeout(() => stream.resume(), wait);
        }
      });
      stream.on('end', () => (p === '/truncated.gguf' ? res.destroy() : res.end()));
      res.on('close', () => stream.destroy());
      return;
    }
    if (p === '/html.gguf') return send(200, { 'Content-Type': 'text/html' }, '<!doctype html><title>Not found</title><p>Sorry.</p>');
    if (p === '/garbage.gguf') {
      const body = Buffer.alloc(4096, 0xab);
      body.write('GGUF', 0, 'latin1');
      return send(200, { 'Content-Type': 'application/octet-stream' }, body);
    }
    send(404, { 'Content-Type': 'text/plain' }, 'not found');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  })));
}

/** A persistent Chromium context (Cache API and localStorage survive reloads within it). */
export async function launch() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mobilellm-chromium-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
  });
  const logs = [];
  ctx.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  ctx.on('weberror', (e) => logs.push(`[pageerror] ${e.error().message}`));
  const close = async () => { await ctx.close(); rmSync(dir, { recursive: true, force: true }); };
  return { ctx, logs, close };
}

export function attachLogs(page, logs, tag = 'page') {
  page.on('console', (m) => logs.push(`[${tag} ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[${tag} error] ${e.message}`));
}

export function outDir() {
  mkdirSync(OUT, { recursive: true });
  return OUT;
}

/** The native CLI (`ci` build). Model commands get the suite's engine flags (ENGINE.cli). */
export function cli(args) {
  if (['generate', 'logits', 'bench', 'info'].includes(args[0]) && !args.includes('--backend')) args = [...args, ...ENGINE.cli];
  const bin = process.env.MOBILELLM_CLI || path.join(ROOT, 'target/ci/mobilellm');
  const out = execFileSync(bin, args, {
    encoding: 'utf8', maxBuffer: 64 << 20, timeout: 600_000,
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR || mkdtempSync(path.join(os.tmpdir(), 'xdg-')) },
  });
  return JSON.parse(out.trim().split('\n').pop());
}

/** Top-2 margin (logit gap) of each row of [[id, logit], ...] lists. */
export const margins = (rows) => rows.map((r) => r[0][1] - r[1][1]);

/**
 * Compares two greedy token sequences up to the first position where the reference's top-2 margin
 * is a near-tie (< tieMargin): there either choice is legitimate. Returns the count of positions
 * checked and the first mismatch (or null).
 */
export function compareUpToNearTie(got, want, wantMargins, tieMargin = 0.05) {
  let n = 0;
  for (let i = 0; i < want.length; i++) {
    if (wantMargins[i] < tieMargin) return { checked: n, mismatch: null, stoppedAtTie: i };
    if (got[i] !== want[i]) return { checked: n, mismatch: i, stoppedAtTie: null };
    n++;
  }
  return { checked: n, mismatch: null, stoppedAtTie: null };
}

// ---- the chat page, as the page tests drive it

/** Waits until the chat page reports `status` (body[data-status]: loading, ready, generating, ...). */
export const waitStatus = (page, status, timeout = 600_000) =>
  page.waitForFunction((s) => document.body.dataset.status === s, status, { timeout, polling: 50 });

/** Types `text` into the chat page's composer, sends it and waits until generation has started. */
export async function sendMessage(page, text) {
  await waitStatus(page, 'ready');
  await page.fill('#prompt', text);
  await page.press('#prompt', 'Enter');
  await waitStatus(page, 'generating', 10_000);
}

/** A static server for www/ and a headless Chromium page with its console captured. */
export async function openPage() {
  const srv = await serveWww();
  const browser = await launch();
  const page = await browser.ctx.newPage();
  attachLogs(page, browser.logs);
  return { srv, browser, page };
}

/** Prints what a suite measured, the browser's logs when VERBOSE is set, and closes both. */
export async function closePage({ srv, browser } = {}, measured = {}) {
  if (process.env.VERBOSE) console.log(browser?.logs.join('\n'));
  console.log('measured:', JSON.stringify(measured));
  await browser?.close();
  await srv?.close();
}

/** Sets the chat page's settings through its dialog, as a user would, and checks they took. */
export async function setSettings(page, { temperature, top_p, max_tokens, system = '' }) {
  await page.click('#open-settings');
  await page.fill('#set-system', system);
  await page.fill('#set-temperature', String(temperature));
  await page.fill('#set-top-p', String(top_p));
  await page.fill('#set-max-tokens', String(max_tokens));
  await page.click('#settings-form button[type=submit]');
  // The page reads the form on the dialog's `close` event, which fires after the click returns.
  const want = { system, temperature, top_p, max_tokens };
  await page.waitForFunction((w) => JSON.stringify(window.__app.settings) === JSON.stringify(w), want, { timeout: 5000 }).catch(() => {});
  const got = await page.evaluate(() => window.__app.settings);
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`settings ${JSON.stringify(got)}, wanted ${JSON.stringify(want)}`);
}
