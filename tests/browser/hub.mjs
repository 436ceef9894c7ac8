// A local stand-in for the Hugging Face Hub's file endpoint, for the conversion tests and bench:
//   GET /<owner>/<name>/resolve/main/<file>  -> the file from the repository's folder
// with the Hub's status codes: an unknown or gated repository is 401 (as huggingface.co answers
// anonymous requests), a missing file in a known repository 404, another revision 404.
// CORS like the Hub (Authorization allowed, so a page that sent a token would be seen), and a
// log of every request with whether it carried an Authorization header. Files are served like
// the Hub's CDN: ETag, Last-Modified and Range requests (lib.mjs faultyRoute), and a test can
// script faults per file (hub.plan). Its origin is allowed in the pages' connect-src while it runs.

import { createServer } from 'node:http';
import { statSync } from 'node:fs';
import path from 'node:path';
import { LOCAL_CONNECT } from '../../www/serve.mjs';
import { faultyRoute } from './lib.mjs';

/**
 * @param {Record<string, string>} repos  "owner/name" -> folder
 * @param {{gated?: string[], slow?: Record<string, number>}} [opts]  gated: repositories that answer
 *   401 for every file; slow: repository -> bytes/s its files are trickled at
 */
export function serveHub(repos, { gated = [], slow = {} } = {}) {
  const requests = [];
  const routes = new Map(); // "owner/name/file" -> faultyRoute
  const route = (repo, file) => {
    const key = `${repo}/${file}`;
    if (!routes.has(key)) routes.set(key, faultyRoute({ file: path.join(repos[repo], file), rate: slow[repo] ?? 0 }));
    return routes.get(key);
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const entry = { method: req.method, path: decodeURIComponent(url.pathname), auth: req.headers.authorization ?? null, status: 0 };
    requests.push(entry);
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Allow-Headers', 'authorization, content-type, range');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Length, X-Error-Code, X-Error-Message');
    const send = (status, headers = {}, body = '') => { entry.status = status; res.writeHead(status, headers); res.end(body); };
    if (req.method === 'OPTIONS') return send(204);
    const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/([^/]+)$/.exec(entry.path);
    if (!m) return send(404, { 'Content-Type': 'text/plain' }, 'not found');
    const [, owner, name, rev, file] = m;
    const repo = `${owner}/${name}`;
    if (gated.includes(repo)) {
      return send(401, { 'Content-Type': 'application/json', 'X-Error-Code': 'GatedRepo' },
        JSON.stringify({ error: `Access to model ${repo} is restricted. You must be authenticated to access it.` }));
    }
    if (!repos[repo]) {
      return send(401, { 'Content-Type': 'application/json', 'X-Error-Code': 'RepoNotFound' }, JSON.stringify({ error: 'Repository not found' }));
    }
    if (rev !== 'main') return send(404, { 'Content-Type': 'application/json', 'X-Error-Code': 'RevisionNotFound' }, '{"error":"Revision Not Found"}');
    const full = path.join(repos[repo], file);
    let st = null;
    try { st = statSync(full); } catch { /* missing */ }
    if (!st?.isFile() || file.startsWith('.')) {
      return send(404, { 'Content-Type': 'application/json', 'X-Error-Code': 'EntryNotFound' }, '{"error":"Entry not found"}');
    }
    const r = route(repo, file);
    r.handle(req, res);
    entry.status = r.stats.requests.at(-1).status;
    entry.range = req.headers.range ?? null;
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    const url = `http://127.0.0.1:${server.address().port}`;
    LOCAL_CONNECT.add(url);
    resolve({
      url,
      requests,
      /** Scripts faults for one file (lib.mjs faultyRoute plan); returns its route ({plan, stats}). */
      plan: (repo, file, changes) => { const r = route(repo, file); Object.assign(r.plan, changes); return r; },
      /** Names of the files of `repo` fetched with GET, in order. */
      filesRequested: (repo) => requests.filter((r) => r.method === 'GET' && r.path.startsWith(`/${repo}/resolve/`)).map((r) => r.path.split('/').pop()),
      close: () => new Promise((r) => { LOCAL_CONNECT.delete(url); server.closeAllConnections?.(); server.close(() => r()); }),
    });
  }));
}
