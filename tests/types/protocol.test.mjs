// The worker protocol cannot drift: a message field renamed on one side only, or in protocol.js,
// is a type error. Each case copies the checked sources (www/*.js, the glue's declarations,
// tsconfig/) into target/, renames one field in one place, and runs the type check of the
// programs that contain it (scripts/typecheck.mjs's tsconfigs): it must fail, with errors in the
// files named and nowhere else. The unchanged copy must pass (so a failure is the rename's).
//   node --test tests/types/protocol.test.mjs   (needs npm ci and the wasm builds' .d.ts: ./build.sh)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TSC = path.join(ROOT, 'node_modules/.bin/tsc');
const SCRATCH = path.join(ROOT, 'target/typecheck-drift');
const BUILDS = ['pkg', 'pkg-relaxed', 'pkg-mt', 'pkg-mt-relaxed'];

// [name, file, text, replacement, programs to check, files that must report errors]
const CASES = [
  // page (mobilellm.js) -> engine worker (worker.js)
  ['interrupt: the page renames upTo', 'www/mobilellm.js', 'upTo: this.#nextId - 1', 'upto: this.#nextId - 1', ['page'], ['www/mobilellm.js']],
  ['interrupt: the worker reads a renamed upTo', 'www/worker.js', 'msg.upTo ??', 'msg.upto ??', ['workers'], ['www/worker.js']],
  ['cancel: the worker reads a renamed target', 'www/worker.js', 'loads.get(msg.target)', 'loads.get(msg.loadId)', ['workers'], ['www/worker.js']],
  ['load: the page renames contextLength', 'www/mobilellm.js', 'forceF32, contextLength, useCache,', 'forceF32, context_length: contextLength, useCache,', ['page'], ['www/mobilellm.js']],
  // engine worker -> page
  ['started: the worker renames cached_prefix', 'www/worker.js', 'cached_prefix: session.reusable_prefix(prompt)', 'cachedPrefix: session.reusable_prefix(prompt)', ['workers'], ['www/worker.js']],
  ['started: the page reads a renamed cached_prefix', 'www/mobilellm.js', 'seen.cachedPrefix = s.cached_prefix;', 'seen.cachedPrefix = s.cachedPrefix;', ['page'], ['www/mobilellm.js']],
  ['progress: the worker renames progress', 'www/worker.js', 'type: Msg.PROGRESS, progress: p', 'type: Msg.PROGRESS, p', ['workers'], ['www/worker.js']],
  ['load result: the worker renames requestedThreads', 'www/worker.js', 'requestedThreads: engine.threads', 'requested_threads: engine.threads', ['workers'], ['www/worker.js']],
  ['load result: the page reads a renamed fromCache', 'www/mobilellm.js', 'fromCache: r.fromCache,', 'fromCache: r.from_cache,', ['page'], ['www/mobilellm.js']],
  ['a message type renamed on one side', 'www/worker.js', 'type: Msg.STARTED,', "type: 'start',", ['workers'], ['www/worker.js']],
  // protocol.js itself: both ends of the channel are checked against it
  ['protocol.js renames cached_prefix: both ends fail', 'www/protocol.js', 'cached_prefix: number}} StartedReply', 'cachedPrefix: number}} StartedReply', ['workers', 'page'], ['www/worker.js', 'www/mobilellm.js']],
  // engine worker -> pool worker and back
  ['pool start: the engine worker renames index', 'www/worker.js', 'shared: pool.shared(), index: i', 'shared: pool.shared(), thread: i', ['workers'], ['www/worker.js']],
  ['pool start: the pool worker reads a renamed index', 'www/pool-worker.js', 'data.shared, data.index', 'data.shared, data.thread', ['workers'], ['www/pool-worker.js']],
  ['pool reply: the pool worker renames ready', 'www/pool-worker.js', 'port.postMessage({ ready: true })', 'port.postMessage({ started: true })', ['workers'], ['www/pool-worker.js']],
  // convert.js -> conversion worker and back
  ['convert: convert.js renames token', 'www/convert.js', "{ type: 'convert', source, token, useCache, wasmUrl }", "{ type: 'convert', source, hfToken: token, useCache, wasmUrl }", ['workers'], ['www/convert.js']],
  ['convert: the conversion worker reads a renamed token', 'www/convert-worker.js', 'async function convert({ source, token, useCache, wasmUrl })', 'async function convert({ source, hfToken: token, useCache, wasmUrl })', ['workers'], ['www/convert-worker.js']],
  ['convert result: the conversion worker renames value', 'www/convert-worker.js', "port.postMessage({ type: 'result', value: await convert(msg) })", "port.postMessage({ type: 'result', result: await convert(msg) })", ['workers'], ['www/convert-worker.js']],
  ['convert result: convert.js reads a renamed gguf', 'www/convert.js', 'body: r.gguf.stream(), size: r.gguf.size,', 'body: r.file.stream(), size: r.gguf.size,', ['workers'], ['www/convert.js']],
  // page (offline.js) -> service worker
  ['service worker: the page renames a message type', 'www/offline.js', "({ type: 'skip-waiting' })", "({ type: 'skipWaiting' })", ['page'], ['www/offline.js']],
  ['service worker: sw.js tests a renamed message type', 'www/sw.js', "msg.type === 'skip-waiting'", "msg.type === 'skipWaiting'", ['sw'], ['www/sw.js']],
];

/** A copy of what the browser programs check, in `dir`. */
function copyTree(dir) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(path.join(dir, 'www/npm'), { recursive: true });
  for (const f of readdirSync(path.join(ROOT, 'www')).filter((x) => /\.m?js$/.test(x))) cpSync(path.join(ROOT, 'www', f), path.join(dir, 'www', f));
  cpSync(path.join(ROOT, 'www/npm/index.d.ts'), path.join(dir, 'www/npm/index.d.ts')); // app.js uses the public declarations
  for (const b of BUILDS) {
    mkdirSync(path.join(dir, 'www', b), { recursive: true });
    cpSync(path.join(ROOT, 'www', b, 'mobilellm_web.d.ts'), path.join(dir, 'www', b, 'mobilellm_web.d.ts'));
  }
  cpSync(path.join(ROOT, 'tsconfig'), path.join(dir, 'tsconfig'), { recursive: true });
}

/** Type-checks `programs` in `dir`: {status, errors: [{file, line, text}]}. */
function check(dir, programs) {
  let status = 0;
  const errors = [];
  for (const p of programs) {
    const r = spawnSync(TSC, ['-p', `tsconfig/${p}.json`, '--pretty', 'false'], { cwd: dir, encoding: 'utf8' });
    if (r.error) throw r.error;
    status ||= r.status;
    for (const m of `${r.stdout}${r.stderr}`.matchAll(/^(\S+)\((\d+),\d+\): error (TS\d+: .*)$/gm)) errors.push({ file: m[1], line: Number(m[2]), text: m[3] });
  }
  return { status, errors };
}

const ready = existsSync(TSC) && BUILDS.every((b) => existsSync(path.join(ROOT, 'www', b, 'mobilellm_web.d.ts')));

test('the unchanged sources type-check (the baseline of the cases below)', { skip: !ready && 'needs npm ci and ./build.sh' }, () => {
  const dir = path.join(SCRATCH, 'baseline');
  copyTree(dir);
  const r = check(dir, ['page', 'workers', 'sw']);
  assert.deepEqual(r.errors, []);
  assert.equal(r.status, 0);
});

for (const [name, file, from, to, programs, expectFiles] of CASES) {
  test(`drift is a type error: ${name}`, { skip: !ready && 'needs npm ci and ./build.sh' }, () => {
    const dir = path.join(SCRATCH, name.replace(/[^a-z0-9]+/gi, '-'));
    copyTree(dir);
    const src = readFileSync(path.join(dir, file), 'utf8');
    assert.equal(src.split(from).length - 1, 1, `${file} should contain ${JSON.stringify(from)} exactly once (update this test with the source)`);
    writeFileSync(path.join(dir, file), src.replace(from, to));
    const r = check(dir, programs);
    assert.notEqual(r.status, 0, `the renamed field type-checked (${file}: ${from} -> ${to})`);
    const where = [...new Set(r.errors.map((e) => e.file))].sort();
    assert.deepEqual(where, [...expectFiles].sort(), r.errors.map((e) => `${e.file}:${e.line}: ${e.text}`).join('\n'));
    rmSync(dir, { recursive: true, force: true });
  });
}
