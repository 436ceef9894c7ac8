// Type-checks the hand-written JavaScript of www/ (and the node scripts that build and serve it)
// with TypeScript (`checkJs` over the JSDoc types, tsconfig/*.json), one program per global
// environment the files run in:
//   page     the chat page and the public module (DOM): app.js, offline.js, mobilellm.js and what they import
//   workers  the engine's worker, its pool workers and the conversion worker (WebWorker)
//   sw       the service worker, a classic script (WebWorker lib, typed as ServiceWorkerGlobalScope)
//   node     the dev server, the npm package assembly and the precache manifest writer (Node)
// Modules shared by the page and the workers (protocol.js, cache.js, ...) are checked in both.
// The imports of the wasm-bindgen glue (www/pkg*/mobilellm_web.js) are typed by the declarations
// wasm-bindgen writes next to it (./build.sh), so the builds must exist. Every hand-written file
// must belong to some program: a new one that does not fails here.
//
//   node scripts/typecheck.mjs        (exit 1 on any type error, 2 when something is missing)

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSC = path.join(ROOT, 'node_modules/.bin/tsc');
export const PROGRAMS = ['page', 'workers', 'sw', 'node'];
const BUILDS = ['pkg', 'pkg-relaxed', 'pkg-mt', 'pkg-mt-relaxed'];
// Generated, not hand-written: scripts/precache.mjs writes it.
const GENERATED = new Set(['www/precache-manifest.js']);

/** The files that must be checked: www's own scripts, the npm assembly, the precache writer. */
function handWritten() {
  const www = readdirSync(path.join(ROOT, 'www')).filter((f) => /\.m?js$/.test(f)).map((f) => `www/${f}`);
  const npm = readdirSync(path.join(ROOT, 'www/npm')).filter((f) => /\.m?js$/.test(f)).map((f) => `www/npm/${f}`);
  return [...www, ...npm, 'scripts/precache.mjs'].filter((f) => !GENERATED.has(f)).sort();
}

function tsc(args) {
  const r = spawnSync(TSC, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

function main() {
  if (!existsSync(TSC)) {
    console.error('typecheck: node_modules/.bin/tsc is missing: run `npm ci` (typescript is a devDependency)');
    return 2;
  }
  if (!existsSync(path.join(ROOT, 'node_modules/@types/node'))) {
    console.error('typecheck: node_modules/@types/node is missing: run `npm ci` (it is a devDependency)');
    return 2;
  }
  // Without the builds every import of the glue is unresolved and each of its uses an error:
  // say what is missing instead.
  const missing = BUILDS.filter((b) => !existsSync(path.join(ROOT, `www/${b}/mobilellm_web.d.ts`)));
  if (missing.length) {
    const stale = missing.filter((b) => existsSync(path.join(ROOT, `www/${b}/mobilellm_web.js`)));
    console.error(`typecheck: the wasm builds' declarations are missing: ${missing.map((b) => `www/${b}/mobilellm_web.d.ts`).join(', ')}.\n` +
      (stale.length ? `  ${stale.join(', ')} were built before ./build.sh wrote declarations: ` : '  ') +
      'run ./build.sh (the declarations are wasm-bindgen\'s, written next to each build\'s glue).');
    return 2;
  }

  let errors = 0;
  const covered = new Set();
  const t0 = Date.now();
  for (const name of PROGRAMS) {
    const config = `tsconfig/${name}.json`;
    const t = Date.now();
    const r = tsc(['-p', config, '--pretty', 'false']);
    const n = (r.out.match(/error TS\d+/g) ?? []).length;
    errors += n || (r.status !== 0 ? 1 : 0);
    if (r.status !== 0) process.stdout.write(r.out.endsWith('\n') ? r.out : `${r.out}\n`);
    console.log(`typecheck: ${config}: ${r.status === 0 ? 'ok' : `${n} errors`} (${Date.now() - t} ms)`);
    const list = tsc(['-p', config, '--listFilesOnly']);
    for (const f of list.out.split('\n')) {
      const rel = path.relative(ROOT, f.trim());
      if (rel && !rel.startsWith('..') && !rel.includes('node_modules')) covered.add(rel.split(path.sep).join('/'));
    }
  }
  const unchecked = handWritten().filter((f) => !covered.has(f));
  if (unchecked.length) {
    console.error(`typecheck: not in any program (add them to a tsconfig/*.json, or import them from one): ${unchecked.join(', ')}`);
    errors += unchecked.length;
  }
  const js = [...covered].filter((f) => /\.m?js$/.test(f)).length;
  console.log(`typecheck: ${errors ? `FAILED, ${errors} errors` : 'ok'}: ${js} JS files in ${PROGRAMS.length} programs, ${Date.now() - t0} ms`);
  return errors ? 1 : 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) process.exitCode = main();
