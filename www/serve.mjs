// A small static file server for the browser runtime: correct MIME types (application/wasm, so
// WebAssembly.instantiateStreaming works), CORS headers (so the API can load models across
// origins), cross-origin isolation (COOP/COEP: the CPU backend's threads share wasm memory, which
// browsers allow only in isolated pages), no caching headers games, and a request log the tests
// read to count weight downloads.
//
//   node www/serve.mjs --root www --port 8080 [--host 127.0.0.1] [--quiet] [--no-isolation]
//   import { startServer } from './serve.mjs'  ->  { port, close(), requests: [{method, path, status}] }

import { createServer } from 'node:http';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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

// `isolate: false` serves without COOP/COEP (the CPU backend then runs on one thread).
export function startServer({ root, port = 8080, host = '127.0.0.1', quiet = true, mounts = {}, isolate = true } = {}) {
  const roots = Object.entries(mounts).map(([prefix, dir]) => [prefix, path.resolve(dir)]);
  roots.push(['/', path.resolve(root)]);
  const requests = [];
  const server = createServer(async (req, res) => {
    const entry = { method: req.method, path: '', status: 0, time: Date.now() };
    requests.push(entry);
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Allow-Methods', 'GET, HEAD, OPTIONS');
    res.setHeader('Access-Control-Allow-Headers', '*');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Length, Content-Type');
    if (isolate) for (const [k, v] of Object.entries(ISOLATION_HEADERS)) res.setHeader(k, v);
    const done = (status) => { entry.status = status; if (!quiet) console.log(`${req.method} ${entry.path} ${status}`); };
    try {
      const url = new URL(req.url, 'http://localhost');
      entry.path = decodeURIComponent(url.pathname);
      if (req.method === 'OPTIONS') { res.writeHead(204); res.end(); return done(204); }
      if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405); res.end(); return done(405); }
      const [prefix, base] = roots.find(([p]) => entry.path.startsWith(p));
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
      res.writeHead(200, {
        'Content-Type': MIME[path.extname(file).toLowerCase()] || 'application/octet-stream',
        'Content-Length': st.size,
        // The app's own files change with every build; the model has its own cache (Cache API).
        'Cache-Control': 'no-cache',
      });
      if (req.method === 'HEAD') { res.end(); return done(200); }
      const stream = createReadStream(file);
      stream.on('error', () => res.destroy());
      // A client that goes away mid-download (an aborted load) must not keep the file open.
      res.on('close', () => stream.destroy());
      stream.pipe(res);
      done(200);
    } catch (e) {
      res.writeHead(500); res.end(String(e));
      done(500);
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const actual = server.address().port;
      resolve({
        port: actual,
        url: `http://${host}:${actual}`,
        requests,
        close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
      });
    });
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const args = process.argv.slice(2);
  const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def; };
  const srv = await startServer({
    root: opt('root', path.dirname(fileURLToPath(import.meta.url))),
    port: Number(opt('port', 8080)),
    host: opt('host', '127.0.0.1'),
    quiet: args.includes('--quiet'),
    isolate: !args.includes('--no-isolation'),
  });
  console.log(`serving ${opt('root', 'www')} on ${srv.url}`);
}
