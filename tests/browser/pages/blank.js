// The API tests import the module from the page's origin and drive it with page.evaluate.
// ?backend=cpu&threads=2 (the suite's engine, lib.mjs ENGINE) become MobileLLM.load's defaults.
// A file rather than an inline script: the page runs under serve.mjs's Content-Security-Policy.
import * as real from '/mobilellm.js';

const q = new URLSearchParams(location.search);
const defaults = {};
if (q.get('backend')) defaults.backend = q.get('backend');
if (q.get('threads')) defaults.threads = Number(q.get('threads'));
class MobileLLM extends real.MobileLLM {
  static load(url, opts = {}) { return real.MobileLLM.load(url, { ...defaults, ...opts }); }
}
window.api = { ...real, MobileLLM };
window.engineDefaults = defaults;
window.apiReady = true;
