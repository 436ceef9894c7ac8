// The npm package as a user gets it: `./build.sh pack` makes the tarball, a scratch app under
// target/ installs it (offline: the tarball has no dependencies), then
//   - its declarations type-check a strict sample that uses the whole API, and reject a wrong one;
//   - `vite build` with no configuration bundles it (every engine build, both workers), and the
//     built app streams a greedy reply in headless Chromium equal to the native CLI's, on WebGPU
//     and on the CPU backend with 2 threads (the built app is served with COOP/COEP);
//   - a plain HTML page imports the installed entry with <script type="module"> (no bundler), same;
//   - workerUrl / wasmUrl point it at files hosted elsewhere.
//   node --test tests/browser/npm.test.mjs   (needs www/pkg, www/models/, target/ci/mobilellm)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import path from 'node:path';
import { startServer } from '../../www/serve.mjs';
import { ROOT, MODEL_PATH, MODEL_URL_PATH, serveWww, launch, attachLogs, cli, margins, compareUpToNearTie } from './lib.mjs';

// The chat test's prompt: the native greedy reply has no near-tie in its first 48 tokens.
const PROMPT = 'What are the benefits of regular exercise?';
const N = 5;
const BUILDS = ['pkg', 'pkg-relaxed', 'pkg-mt', 'pkg-mt-relaxed'];
// The backends each page generates with: [tag, load options, the native CLI's matching flags].
const ENGINES = [
  ['webgpu', { backend: 'webgpu' }, ['--backend', 'gpu', '--f32']],
  ['cpu', { backend: 'cpu', threads: 2 }, ['--backend', 'cpu', '--threads', '2']],
];
const FIXTURES = path.join(ROOT, 'tests/browser/npm');
const SCRATCH = path.join(ROOT, 'target/npm-test');
const BIN = path.join(ROOT, 'node_modules/.bin');

let tarball, pkgDir, models, browser;
const timings = {};

const elapsed = (t0) => Date.now() - t0;

/** Runs a command to completion; returns {status, out} (stdout + stderr). */
function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20, timeout: 300_000 });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

before(async () => {
  // Pack what is in the tree now (reusing the wasm the suite script built).
  let t0 = Date.now();
  const out = execFileSync(path.join(ROOT, 'build.sh'), ['pack'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SKIP_BUILD: '1' }, stdio: ['ignore', 'pipe', 'inherit'] });
  tarball = out.trim().split('\n').pop();
  timings.pack_ms = elapsed(t0);
  timings.tarball_bytes = statSync(tarball).size;

  // The scratch app: fixtures + a package.json depending on nothing but the tarball. vite and
  // typescript come from the repository's devDependencies (node resolves them up the tree).
  rmSync(SCRATCH, { recursive: true, force: true });
  cpSync(FIXTURES, SCRATCH, { recursive: true });
  writeFileSync(path.join(SCRATCH, 'package.json'), JSON.stringify({ name: 'scratch-app', private: true, type: 'module' }, null, 2));
  t0 = Date.now();
  const inst = run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], SCRATCH);
  assert.equal(inst.status, 0, inst.out);
  timings.npm_install_ms = elapsed(t0);
  pkgDir = path.join(SCRATCH, 'node_modules/mobilellm-web');
});

after(async () => {
  if (process.env.VERBOSE) console.log(browser?.logs.join('\n'));
  console.log('measured:', JSON.stringify(timings));
  await browser?.close();
  await models?.close();
});

test('the tarball holds the runtime, the wasm, declarations, README and LICENSE, and nothing of the page', () => {
  const files = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).trim().split('\n').map((f) => f.replace(/^package\//, '')).sort();
  const builds = BUILDS.flatMap((b) => [`${b}/mobilellm_web.js`, `${b}/mobilellm_web_bg.wasm`]);
  for (const f of ['LICENSE', 'README.md', 'index.d.ts', 'package.json', 'mobilellm.js', 'worker.js', 'pool-worker.js', 'engine-variants.js', 'protocol.js', 'cache.js', ...builds]) {
    assert.ok(files.includes(f), `${f} missing from ${files}`);
  }
  // The package is the module graph of mobilellm.js (www/npm/assemble.mjs): none of the chat page's files.
  for (const f of ['app.js', 'index.html', 'style.css', 'sw.js', 'offline.js', 'serve.mjs', 'precache-manifest.js', 'manifest.webmanifest']) {
    assert.ok(!files.includes(f), `${f} is the page's, not the package's`);
  }
  assert.ok(!files.some((f) => /^(models|icons|npm)\//.test(f)), `${files}`);
  // Every relative import of a packaged module is packaged (a missing one breaks bundlers and browsers alike).
  for (const f of files.filter((x) => x.endsWith('.js'))) {
    const src = readFileSync(path.join(pkgDir, f), 'utf8');
    for (const m of src.matchAll(/(?:\bfrom|\bimport\(|new URL\()\s*['"](\.{1,2}\/[^'"]+|[\w.-]+\.wasm)['"]/g)) {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(f), m[1]));
      assert.ok(files.includes(target), `${f} refers to ${m[1]}, which is not in the package`);
    }
  }
  const pkg = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
  const cargoVersion = /^version\s*=\s*"([^"]+)"/m.exec(readFileSync(path.join(ROOT, 'Cargo.toml'), 'utf8'))[1];
  assert.equal(pkg.name, 'mobilellm-web');
  assert.equal(pkg.version, cargoVersion);
  assert.equal(pkg.license, 'Apache-2.0');
  assert.equal(pkg.type, 'module');
  assert.equal(pkg.types, './index.d.ts');
  assert.deepEqual(pkg.exports['.'], { types: './index.d.ts', default: './mobilellm.js' });
  // Worker entry points run on load: they are the package's only side effects, and all of them are declared.
  const workers = new Set();
  for (const f of files.filter((x) => x.endsWith('.js') && !x.startsWith('pkg'))) {
    for (const m of readFileSync(path.join(pkgDir, f), 'utf8').matchAll(/new Worker\(new URL\('\.\/([^']+)', import\.meta\.url\)/g)) workers.add(`./${m[1]}`);
  }
  assert.ok(workers.has('./worker.js') && workers.has('./pool-worker.js'), [...workers].join());
  assert.deepEqual([...pkg.sideEffects].sort(), [...workers].sort());
  assert.equal(pkg.private, undefined, 'publishable');
  assert.match(readFileSync(path.join(pkgDir, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0/);
  // Each build's wasm is the one built into www/, byte for byte.
  for (const b of BUILDS) {
    assert.ok(readFileSync(path.join(pkgDir, `${b}/mobilellm_web_bg.wasm`)).equals(readFileSync(path.join(ROOT, `www/${b}/mobilellm_web_bg.wasm`))), b);
  }
  // The README's quick start is at most ten lines.
  const quick = quickStart();
  assert.ok(quick.split('\n').length <= 10, `quick start has ${quick.split('\n').length} lines`);
});

/** The README's first code block after "## Quick start". */
function quickStart() {
  const readme = readFileSync(path.join(pkgDir, 'README.md'), 'utf8');
  const m = /## Quick start\s+```js\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, 'README has a Quick start code block');
  return m[1].trimEnd();
}

test('every error name the engine and the JS throw is declared in MobileLLMErrorName', () => {
  const dts = readFileSync(path.join(pkgDir, 'index.d.ts'), 'utf8');
  const union = /export type MobileLLMErrorName =([\s\S]*?)\nexport /.exec(dts)[1].replace(/\/\*[\s\S]*?\*\//g, '');
  const declared = new Set([...union.matchAll(/\|\s*'([A-Za-z]+)'/g)].map((m) => m[1]));
  const thrown = new Set();
  for (const f of readdirSync(pkgDir).filter((x) => x.endsWith('.js'))) {
    for (const m of readFileSync(path.join(pkgDir, f), 'utf8').matchAll(/MobileLLMError\('([A-Za-z]+)'/g)) thrown.add(m[1]);
  }
  for (const m of readFileSync(path.join(ROOT, 'src/error.rs'), 'utf8').matchAll(/=> "([A-Za-z]+)"/g)) thrown.add(m[1]);
  assert.ok(thrown.size >= 10, `found only ${[...thrown]}`);
  const missing = [...thrown].filter((n) => !declared.has(n));
  assert.deepEqual(missing, [], 'names thrown but not declared in index.d.ts');
});

test('tsc --noEmit (strict) accepts the whole-API sample, the app and the README quick start', () => {
  writeFileSync(path.join(SCRATCH, 'src/quickstart.ts'), `${quickStart()}\nexport {};\n`);
  const t0 = Date.now();
  const r = run(path.join(BIN, 'tsc'), ['--noEmit', '-p', 'tsconfig.json', '--listFilesOnly'], SCRATCH);
  assert.equal(r.status, 0, r.out);
  // The declarations come from the installed package (exports -> types), not from somewhere else.
  assert.match(r.out, /node_modules\/mobilellm-web\/index\.d\.ts/);
  const check = run(path.join(BIN, 'tsc'), ['--noEmit', '-p', 'tsconfig.json'], SCRATCH);
  timings.tsc_ms = elapsed(t0);
  assert.equal(check.status, 0, `tsc failed:\n${check.out}`);
});

test('tsc rejects the wrong sample, with an error on exactly the marked lines', () => {
  const file = path.join(SCRATCH, 'wrong/wrong.ts');
  const marked = readFileSync(file, 'utf8').split('\n').flatMap((l, i) => (/\/\/ error$/.test(l) ? [i + 1] : []));
  assert.ok(marked.length >= 5);
  const r = run(path.join(BIN, 'tsc'), ['--noEmit', '-p', 'wrong/tsconfig.json', '--pretty', 'false'], SCRATCH);
  assert.notEqual(r.status, 0, 'the wrong sample type-checked');
  const lines = [...new Set([...r.out.matchAll(/wrong\.ts\((\d+),\d+\): error TS\d+/g)].map((m) => Number(m[1])))].sort((a, b) => a - b);
  assert.deepEqual(lines, marked, r.out);
});

test('vite build with no config emits both workers and every build\'s .wasm as assets', () => {
  const t0 = Date.now();
  const r = run(path.join(BIN, 'vite'), ['build', '--logLevel', 'warn'], SCRATCH);
  timings.vite_build_ms = elapsed(t0);
  assert.equal(r.status, 0, r.out);
  // Vite warns (and leaves the URL as is) when it cannot resolve a new URL(..., import.meta.url).
  assert.doesNotMatch(r.out, /import\.meta\.url|doesn't exist at build time|will remain unchanged/, r.out);
  const assets = readdirSync(path.join(SCRATCH, 'dist/assets'));
  const wasm = assets.filter((f) => f.endsWith('.wasm')).map((f) => readFileSync(path.join(SCRATCH, 'dist/assets', f)));
  assert.equal(wasm.length, BUILDS.length, `assets: ${assets}`);
  for (const b of BUILDS) {
    const want = readFileSync(path.join(pkgDir, `${b}/mobilellm_web_bg.wasm`));
    assert.ok(wasm.some((w) => w.equals(want)), `${b}'s wasm is not among the assets`);
  }
  assert.ok(assets.some((f) => /^worker.*\.js$/.test(f)), `no worker chunk in ${assets}`);
  assert.ok(assets.some((f) => /^pool-worker.*\.js$/.test(f)), `no pool-worker chunk in ${assets}`);
});

/** Waits for the page's module script to finish; on failure says why (the page's errors). */
async function waitReady(page) {
  try {
    await page.waitForFunction(() => window.appReady === true, null, { timeout: 30_000 });
  } catch (e) {
    throw new Error(`${page.url()} did not start: ${e.message}\n${browser.logs.slice(-10).join('\n')}`);
  }
}

/**
 * Opens `url`, waits for the app, runs one greedy streamed chat on each engine; checks each against
 * the CLI on the same backend (WebGPU up to a near-tie; the CPU backend token for token).
 */
async function chatThrough(url, tag) {
  const out = {};
  for (const [engine, opts, flags] of ENGINES) out[engine] = await chatOnce(url, `${tag}_${engine}`, opts, flags);
  return out;
}

async function chatOnce(url, tag, loadOptions, flags) {
  browser ??= await launch();
  models ??= await serveWww();
  const page = await browser.ctx.newPage();
  attachLogs(page, browser.logs, tag);
  try {
    await page.goto(url);
    await waitReady(page);
    assert.equal(await page.evaluate(() => window.webgpu), true, 'hasWebGPU()');
    const model = `${models.url}${MODEL_URL_PATH}`;
    const r = await page.evaluate((o) => window.runChat(o), { model, prompt: PROMPT, maxTokens: N, ...loadOptions });
    timings[`${tag}_load_ms`] = Math.round(r.loadMs);
    timings[`${tag}_generate_ms`] = Math.round(r.genMs);
    assert.equal(r.info.backend, loadOptions.backend);
    if (loadOptions.threads) assert.equal(r.info.threads, loadOptions.threads, 'the pool started (the page is cross-origin isolated)');
    const ref = reference(flags);
    console.log(`${tag}: ${JSON.stringify(r.text)} in ${r.deltas} deltas (load ${Math.round(r.loadMs)} ms, generate ${Math.round(r.genMs)} ms); native ${JSON.stringify(ref.text)}`);
    assert.equal(r.info.arch, 'Llama');
    assert.deepEqual(r.phases.slice(-2), ['compile', 'ready']);
    assert.equal(r.firstRole, 'assistant');
    assert.equal(r.finishReason, 'length');
    assert.equal(r.usage.completion_tokens, N);
    assert.deepEqual(r.promptIds, ref.prompt_tokens, 'same chat template and tokenizer');
    if (loadOptions.backend === 'cpu') assert.deepEqual(r.ids, ref.tokens, 'CPU backend: browser and native tokens differ');
    const cmp = compareUpToNearTie(r.ids, ref.tokens, ref.margins);
    assert.equal(cmp.mismatch, null, `token ${cmp.mismatch} differs: ${r.ids} vs native ${ref.tokens}`);
    assert.equal(cmp.checked, N, `near-tie at ${cmp.stoppedAtTie}: pick a prompt without an early tie`);
    assert.equal(r.text, ref.text, 'the streamed deltas add up to the native text');
    assert.ok(r.deltas >= 2, 'streamed in several chunks');
    return r;
  } finally {
    await page.close();
  }
}

const refCache = new Map();
/** The native CLI's greedy reply with `flags` (the backend; WebGPU's f32 path, as SwiftShader has no f16), with top-2 margins. */
function reference(flags) {
  const key = flags.join(' ');
  if (refCache.has(key)) return refCache.get(key);
  const t0 = Date.now();
  const ref = cli(['generate', '--model', MODEL_PATH, '--chat', '--prompt', PROMPT, '--temperature', '0', '--json', '-n', String(N), ...flags]);
  const all = [...ref.prompt_tokens, ...ref.tokens];
  const logits = cli(['logits', '--model', MODEL_PATH, '--prompt-tokens', all.join(','), '--top', '2', '--json', ...flags]);
  timings[`native_reference_ms ${key}`] = elapsed(t0);
  refCache.set(key, { ...ref, margins: margins(logits.positions.map((p) => p.top)).slice(ref.prompt_tokens.length - 1) });
  return refCache.get(key);
}

test('the Vite-built app loads SmolLM2 and streams the native CLI\'s greedy reply', async () => {
  const dist = await startServer({ root: path.join(SCRATCH, 'dist'), port: 0 });
  try {
    await chatThrough(`${dist.url}/`, 'vite');
    // The worker and the wasm were the bundle's own assets, resolved relative to the bundle.
    const got = dist.requests.filter((q) => q.status === 200).map((q) => q.path);
    assert.ok(got.some((p) => /^\/assets\/worker.*\.js$/.test(p)), `requests: ${got}`);
    assert.ok(got.some((p) => /^\/assets\/.*\.wasm$/.test(p)), `requests: ${got}`);
    assert.ok(!got.some((p) => p.includes('node_modules')), `requests: ${got}`);
  } finally {
    await dist.close();
  }
});

test('a plain <script type="module"> page imports the installed package and streams the same reply', async () => {
  const site = await startServer({ root: SCRATCH, port: 0 });
  try {
    await chatThrough(`${site.url}/plain.html`, 'plain');
    const got = site.requests.filter((q) => q.status === 200).map((q) => q.path);
    // WebGPU ran the one-thread build; the CPU backend the threaded relaxed-SIMD one, with its pool worker.
    for (const f of ['mobilellm.js', 'worker.js', 'pool-worker.js', 'pkg/mobilellm_web.js', 'pkg/mobilellm_web_bg.wasm', 'pkg-mt-relaxed/mobilellm_web_bg.wasm']) {
      assert.ok(got.includes(`/node_modules/mobilellm-web/${f}`), `${f} not requested: ${got}`);
    }
  } finally {
    await site.close();
  }
});

test('workerUrl and wasmUrl load the engine from files hosted elsewhere; a bad wasmUrl is a typed error', async () => {
  // A "CDN" copy of the package and the wasm renamed at another path.
  const hosted = path.join(SCRATCH, 'hosted');
  mkdirSync(hosted, { recursive: true });
  copyFileSync(path.join(pkgDir, 'pkg/mobilellm_web_bg.wasm'), path.join(hosted, 'engine.wasm'));
  const site = await startServer({ root: SCRATCH, port: 0, mounts: { '/cdn/': pkgDir, '/elsewhere/': hosted } });
  browser ??= await launch();
  const page = await browser.ctx.newPage();
  attachLogs(page, browser.logs, 'hosted');
  try {
    await page.goto(`${site.url}/plain.html`);
    await waitReady(page);
    // The model 404s: the load gets as far as the download, so the engine was initialised.
    const r = await page.evaluate(() => window.tryLoad('/missing.gguf', { workerUrl: '/cdn/worker.js', wasmUrl: '/elsewhere/engine.wasm' }));
    assert.deepEqual([r.ok, r.name, r.typed], [false, 'DownloadFailed', true], r.message);
    assert.match(r.message, /missing\.gguf.*404/);
    const got = site.requests.map((q) => `${q.path} ${q.status}`);
    assert.ok(got.includes('/cdn/worker.js 200'), `requests: ${got}`);
    assert.ok(got.includes('/cdn/pkg/mobilellm_web.js 200'), `requests: ${got}`);
    assert.ok(got.includes('/elsewhere/engine.wasm 200'), `requests: ${got}`);
    assert.ok(!got.some((g) => g.includes('mobilellm_web_bg.wasm')), `the default wasm was fetched too: ${got}`);

    const bad = await page.evaluate(() => window.tryLoad('/missing.gguf', { wasmUrl: '/elsewhere/nope.wasm' }));
    assert.deepEqual([bad.ok, bad.name, bad.typed], [false, 'DownloadFailed', true], bad.message);
    assert.match(bad.message, /nope\.wasm/);
  } finally {
    await page.close();
    await site.close();
  }
});

test('the Vite dev server (dependency pre-bundled) starts the engine without configuration', async () => {
  const dev = spawn(path.join(BIN, 'vite'), ['--host', '127.0.0.1', '--port', '0'], { cwd: SCRATCH, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  try {
    const url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`vite dev did not start:\n${log}`)), 30_000);
      const onData = (d) => {
        log += d;
        const m = /Local:\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(log.replace(/\x1b\[[0-9;]*m/g, ''));
        if (m) { clearTimeout(timer); resolve(m[1]); }
      };
      dev.stdout.on('data', onData);
      dev.stderr.on('data', onData);
      dev.on('exit', (code) => reject(new Error(`vite dev exited (${code}):\n${log}`)));
    });
    browser ??= await launch();
    models ??= await serveWww();
    const page = await browser.ctx.newPage();
    attachLogs(page, browser.logs, 'vite-dev');
    try {
      await page.goto(`${url}/`);
      await waitReady(page);
      // The worker and the wasm initialise (they come before the download), then the model 404s.
      const r = await page.evaluate((u) => window.tryLoad(u), `${models.url}/missing.gguf`);
      assert.deepEqual([r.ok, r.name, r.typed], [false, 'DownloadFailed', true], r.message);
      assert.match(r.message, /missing\.gguf.*404/);
    } finally {
      await page.close();
    }
  } finally {
    dev.kill();
  }
});
