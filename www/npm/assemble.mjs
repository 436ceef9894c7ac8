// Assembles the npm package `mobilellm-web` into a folder, for `./build.sh pack`:
//   - every file reachable from the entry (www/mobilellm.js) through relative imports and
//     `new URL('…', import.meta.url)` references: the workers, the modules they import, the
//     wasm-bindgen glue in pkg/ and its .wasm. Following the graph rather than listing files keeps
//     the package complete as modules are added, and the chat page (app.js, sw.js, ...) out of it;
//   - index.d.ts and README.md from www/npm/, the repository's LICENSE;
//   - package.json: www/npm/package.json with Cargo.toml's version (one version for both).
//
//   node www/npm/assemble.mjs <out-dir>      (prints the packaged files)

import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const WWW = path.resolve(HERE, '..');
const ROOT = path.resolve(WWW, '..');
const ENTRY = 'mobilellm.js';

/**
 * Relative references of a JS module: static/dynamic imports, re-exports, new URL(…, import.meta.url).
 * @param {string} source
 * @returns {string[]}
 */
export function references(source) {
  // Comment lines only (a whole-source comment stripper would trip over '//' inside URLs); the
  // header comments show usage such as `import { MobileLLM } from './mobilellm.js'`.
  const code = source.split('\n').filter((l) => !/^\s*(\/\/|\/\*|\*)/.test(l)).join('\n');
  const refs = [];
  /** @type {[RegExp, string][]} */
  const patterns = [
    [/\bimport\s+(?:[\w$*{}\s,]+?\s+from\s+)?['"]([^'"]+)['"]/g, 'import'],
    [/\bexport\s+(?:\*(?:\s+as\s+[\w$]+)?|\{[^}]*\})\s+from\s+['"]([^'"]+)['"]/g, 'import'],
    [/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g, 'import'],
    [/\bnew\s+URL\(\s*['"]([^'"]+)['"]\s*,\s*import\.meta\.url\s*\)/g, 'url'],
  ];
  for (const [re, kind] of patterns) {
    for (const m of code.matchAll(re)) {
      const spec = m[1];
      if (kind === 'import' && !spec.startsWith('./') && !spec.startsWith('../')) {
        throw new Error(`bare import "${spec}": the package has no dependencies`);
      }
      if (/^[a-z][a-z0-9+.-]*:/i.test(spec) || spec.startsWith('/')) continue; // absolute: not a package file
      refs.push(spec);
    }
  }
  return refs;
}

/** Package-relative paths of every file reachable from the entry. */
export function moduleGraph(root = WWW, entry = ENTRY) {
  const seen = new Set();
  const todo = [entry];
  while (todo.length) {
    const rel = /** @type {string} */ (todo.pop()); // (the loop checked it is not empty)
    if (seen.has(rel)) continue;
    const file = path.join(root, rel);
    if (!existsSync(file)) throw new Error(`${rel} is referenced but does not exist (run ./build.sh first for pkg/)`);
    seen.add(rel);
    if (!/\.m?js$/.test(rel)) continue; // the .wasm
    for (const spec of references(readFileSync(file, 'utf8'))) {
      const next = path.posix.normalize(path.posix.join(path.posix.dirname(rel), spec));
      if (next.startsWith('../')) throw new Error(`${rel} references ${spec}, outside the package`);
      todo.push(next);
    }
  }
  return [...seen].sort();
}

/** @param {string} out */
function assemble(out) {
  const files = moduleGraph();
  for (const rel of files) {
    mkdirSync(path.dirname(path.join(out, rel)), { recursive: true });
    copyFileSync(path.join(WWW, rel), path.join(out, rel));
  }
  copyFileSync(path.join(HERE, 'index.d.ts'), path.join(out, 'index.d.ts'));
  copyFileSync(path.join(HERE, 'README.md'), path.join(out, 'README.md'));
  copyFileSync(path.join(ROOT, 'LICENSE'), path.join(out, 'LICENSE'));
  const pkg = JSON.parse(readFileSync(path.join(HERE, 'package.json'), 'utf8'));
  pkg.version = /** @type {RegExpExecArray} */ (/^version\s*=\s*"([^"]+)"/m.exec(readFileSync(path.join(ROOT, 'Cargo.toml'), 'utf8')))[1];
  writeFileSync(path.join(out, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  return files;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = process.argv[2];
  if (!out) {
    console.error('usage: node www/npm/assemble.mjs <out-dir>');
    process.exit(2);
  }
  mkdirSync(out, { recursive: true });
  console.log(assemble(path.resolve(out)).join('\n'));
}
