// The scratch Vite app's entry: the package imported by name, as an app would, then handed to the
// same driver the plain-HTML page uses. The test calls window.runChat through Playwright.
import * as api from 'mobilellm-web';
import { runChat, tryLoad } from './driver.js';

declare global {
  interface Window {
    runChat: (opts: { model: string; prompt: string; maxTokens: number }) => Promise<unknown>;
    tryLoad: (url: string, opts?: api.LoadOptions) => Promise<unknown>;
    appReady: boolean;
    webgpu: boolean;
  }
}

window.runChat = (opts) => runChat(api, opts);
window.tryLoad = (url, opts) => tryLoad(api, url, opts);
window.webgpu = api.hasWebGPU();
window.appReady = true;
