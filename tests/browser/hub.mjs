// A local stand-in for the Hugging Face Hub's file endpoint, for the conversion tests and bench:
//   GET /<owner>/<name>/resolve/main/<file>  -> the file from the repository's folder
// with the Hub's status codes: an unknown or gated repository is 401 (as huggingface.co answers
// anonymous requests), a missing file in a known repository 404, another revision 404.
// CORS like the Hub (Authorization allowed, so a page that sent a token would be seen), and a
// log of every request with whether it carried an Authorization header.

import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import path from 'node:path';

/**
 * @param {Record<string, string>} repos  "owner/name" -> folder
 * @param {{gated?: string[], slow?: Record<string, number>}} [opts]  gated: repositories that answer
 *   401 for every file; slow: repository -> bytes/s its files are trickled at
 */
export function serveHub(repos, { gated = [], slow = {} } = {}) {
  const requests = [];
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
    entry.status = 200;
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': st.size });
    if (req.method === 'HEAD') return res.end();
    const rate = slow[repo];
    const stream = createReadStream(full, rate ? { highWaterMark: Math.max(1024, Math.floor(rate / 10)) } : {});
    res.on('close', () => stream.destroy());
    if (!rate) return stream.pipe(res);
    // One chunk per 100 ms.
    stream.on('data', (chunk) => { res.write(chunk); stream.pause(); setTimeout(() => stream.resume(), 100); });
    stream.on('end', () => res.end());
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    /** Names of the files of `repo` fetched with GET, in order. */
    filesRequested: (repo) => requests.filter((r) => r.method === 'GET' && r.path.startsWith(`/${repo}/resolve/`)).map((r) => r.path.split('/').pop()),
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  })));
}
