// A small static file server for the browser runtime: correct MIME types (application/wasm, so
// WebAssembly.instantiateStreaming works), CORS headers (so the API can load models across
// origins), cross-origin isolation (COOP/COEP: the CPU backend's threads share wasm memory, which
// browsers allow only in isolated pages), a strict Content-Security-Policy (below), Range requests
// with ETag/Last-Modified (so a cut model download resumes), no caching headers games, and a
// request log the tests read to count weight downloads.
//
//   node www/serve.mjs --root www --port 8080 [--host 127.0.0.1] [--quiet] [--no-isolation]
//                      [--connect-src "http://127.0.0.1:9000 ..."] [--no-csp]
//   import { startServer } from './serve.mjs'  ->  { port, close(), requests: [{method, path, status}], cspReports }

import { createServer } from 'node:http';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** @type {Record<string, string>} */
const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.gguf': 'application/octet-stream',
};

// `mounts` maps URL prefixes to other directories (the tests serve their pages under /__test/).
/**
 * What a host must send for the CPU backend's threads: the page's opener isolated from other
 * origins, and every embedded resource either same-origin, CORS, or marked as embeddable (CORP).
 */
export const ISOLATION_HEADERS = Object.freeze({
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  // Lets isolated pages on other origins embed what this server hosts (models, the engine).
  'Cross-Origin-Resource-Policy': 'cross-origin',
});

/**
 * Origins (besides the page's own and https:) that pages may download models from. Servers use
 * this set unless given their own `connectSrc`; the tests add their other localhost servers (the
 * misbehaving model host, the stand-in Hub) to it as they start them.
 */
export const LOCAL_CONNECT = new Set();

export const CSP_REPORT_PATH = '/__csp-report';

/**
 * The Content-Security-Policy the page runs under: scripts and workers only from the page's own
 * origin, WebAssembly compilation allowed ('wasm-unsafe-eval': the engine is wasm; no JS eval),
 * no inline script or style, no plugins, and network access (`connect-src`) for model downloads
 * only: the own origin, any https: URL (the user may type any model host), and `connectSrc`.
 * @param {{connectSrc?: string[], report?: boolean}} [options]
 */
export function contentSecurityPolicy({ connectSrc = [], report = true } = {}) {
  const d = [
    "default-src 'self'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "worker-src 'self'",
    `connect-src ${["'self'", 'https:', ...connectSrc].join(' ')}`,
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'self'",
  ];
  // report-uri (not report-to): browsers send these at once, which lets the tests check them.
  if (report) d.push(`report-uri ${CSP_REPORT_PATH}`);
  return d.join('; ');
}

// `isolate: false` serves without COOP/COEP (the CPU backend then runs on one thread); `csp: false`
// without the Content-Security-Policy (a page that needs inline script); `connectSrc`: extra
// origins for connect-src (default LOCAL_CONNECT, read at each request).
/**
 * @param {{root: string, port?: number, host?: string, quiet?: boolean, mounts?: Record<string, string>,
 *   isolate?: boolean, csp?: boolean, connectSrc?: Iterable<string>}} options
 * @returns {Promise<{port: number, url: string, requests: {method?: string, path: string, status: number, time: number,
 *   range: string | null}[], cspReports: unknown[], close: () => Promise<void>}>}
 */
export function startServer({ root, port = 8080, host = '127.0.0.1', quiet = true, mounts = {}, isolate = true, csp = true, connectSrc = LOCAL_CONNECT }) {
  const roots = Object.entries(mounts).map(([prefix, dir]) => [prefix, path.resolve(dir)]);
  roots.push(['/', path.resolve(root)]);
  /** @type {{method?: string, path: string, status: number, time: number, range: string | null}[]} */
  const requests = [];
  /** @type {unknown[]} */
  const cspReports = [];
  /** @type {string | null} */
  let self = null; // this server's origin ('self' already covers it)
  const server = createServer(async (req, res) => {
    const entry = { method: req.method, path: '', status: 0, time: Date.now(), range: req.headers.range ?? null };
    requests.push(entry);
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Allow-Methods', 'GET, HEAD, OPTIONS');
    res.setHeader('Access-Control-Allow-Headers', '*');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Length, Content-Type, Content-Range, ETag, Last-Modified, Accept-Ranges');
    if (isolate) for (const [k, v] of Object.entries(ISOLATION_HEADERS)) res.setHeader(k, v);
    // On every response: a worker runs under the policy its own script was served with.
    if (csp) res.setHeader('Content-Security-Policy', contentSecurityPolicy({ connectSrc: [...connectSrc].filter((o) => o !== self) }));
    const done = (/** @type {number} */ status) => { entry.status = status; if (!quiet) console.log(`${req.method} ${entry.path} ${status}`); };
    try {
      const url = new URL(/** @type {string} */ (req.url), 'http://localhost'); // (always set on a server's requests)
      entry.path = decodeURIComponent(url.pathname);
      if (req.method === 'OPTIONS') { res.writeHead(204); res.end(); return done(204); }
      if (req.method === 'POST' && entry.path === CSP_REPORT_PATH) {
        const report = await readReport(req);
        cspReports.push(report);
        console.warn(`CSP violation: ${JSON.stringify(report)}`);
        res.writeHead(204); res.end(); return done(204);
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405); res.end(); return done(405); }
      const [prefix, base] = /** @type {string[]} */ (roots.find(([p]) => entry.path.startsWith(p))); // ('/' matches every path)
      let file = path.join(base, path.normalize('/' + entry.path.slice(prefix.length)));
      if (file !== base && !file.startsWith(base + path.sep)) { res.writeHead(403); res.end(); return done(403); }
      let st = await fs.stat(file).catch(() => null);
      if (st && st.isDirectory()) {
        file = path.join(file, 'index.html');
        st = await fs.stat(file).catch(() => null);
      }
      if (!st || !st.isFile()) {
        res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('not found\n');
        return done(404);
      }
      /** @type {Record<string, string>} */
      const headers = {
        'Content-Type': MIME[path.extname(file).toLowerCase()] || 'application/octet-stream',
        // The app's own files change with every build; the model has its own cache (Cache API).
        'Cache-Control': 'no-cache',
        // What a resumed download checks the file against (cache.js, download.js).
        'ETag': `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`,
        'Last-Modified': st.mtime.toUTCString(),
        'Accept-Ranges': 'bytes',
      };
      const range = byteRange(req.headers.range, st.size);
      if (range === 'unsatisfiable') {
        res.writeHead(416, { ...headers, 'Content-Range': `bytes */${st.size}` });
        res.end();
        return done(416);
      }
      const [start, end] = range ?? [0, st.size - 1];
      const status = range ? 206 : 200;
      if (range) headers['Content-Range'] = `bytes ${start}-${end}/${st.size}`;
      res.writeHead(status, { ...headers, 'Content-Length': Math.max(0, end - start + 1) });
      if (req.method === 'HEAD' || st.size === 0) { res.end(); return done(status); }
      const stream = createReadStream(file, { start, end });
      stream.on('error', () => res.destroy());
      // A client that goes away mid-download (an aborted load) must not keep the file open.
      res.on('close', () => stream.destroy());
      stream.pipe(res);
      done(status);
    } catch (e) {
      res.writeHead(500); res.end(String(e));
      done(500);
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const actual = /** @type {import('node:net').AddressInfo} */ (server.address()).port;
      self = `http://${host}:${actual}`;
      resolve({
        port: actual,
        url: `http://${host}:${actual}`,
        requests,
        /** CSP violation reports the browser sent (report-uri). */
        cspReports,
        close: () => /** @type {Promise<void>} */ (new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); })),
      });
    });
  });
}

/**
 * [start, end] of a single `bytes=a-b` / `bytes=a-` / `bytes=-n` range, null (whole file), or 'unsatisfiable'.
 * @param {string | undefined} header
 * @param {number} size
 * @returns {[number, number] | null | 'unsatisfiable'}
 */
function byteRange(header, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header || '');
  if (!m || (!m[1] && !m[2])) return null;
  let start, end;
  if (!m[1]) { start = Math.max(0, size - Number(m[2])); end = size - 1; }
  else { start = Number(m[1]); end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1; }
  return start >= size || start > end ? 'unsatisfiable' : [start, end];
}

/**
 * The body of a CSP report (application/csp-report JSON), at most 64 KB.
 * @param {import('node:http').IncomingMessage} req
 */
async function readReport(req) {
  let body = '';
  for await (const chunk of req) { body += chunk; if (body.length > 65536) break; }
  try { return JSON.parse(body)['csp-report'] ?? JSON.parse(body); } catch { return { raw: body.slice(0, 1000) }; }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const args = process.argv.slice(2);
  /** @type {<T>(name: string, def: T) => string | T} */
  const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def; };
  const srv = await startServer({
    root: opt('root', path.dirname(fileURLToPath(import.meta.url))),
    port: Number(opt('port', 8080)),
    host: opt('host', '127.0.0.1'),
    quiet: args.includes('--quiet'),
    isolate: !args.includes('--no-isolation'),
    csp: !args.includes('--no-csp'),
    connectSrc: (opt('connect-src', '') || '').split(/\s+/).filter(Boolean),
  });
  console.log(`serving ${opt('root', 'www')} on ${srv.url}`);
}
