// No bundler, no import map: the installed package's entry, straight from node_modules.
// A module file rather than an inline script, so the page works under a Content-Security-Policy
// without 'unsafe-inline' (serve.mjs sends one).
import * as api from './node_modules/mobilellm-web/mobilellm.js';
import { runChat, tryLoad } from './src/driver.js';

window.runChat = (opts) => runChat(api, opts);
window.tryLoad = (url, opts) => tryLoad(api, url, opts);
window.webgpu = api.hasWebGPU();
window.appReady = true;
