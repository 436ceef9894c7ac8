// The page's side of offline use: registers the service worker (sw.js), shows whether the app
// can be used offline, storage use and persistence, and offers a new version when one has been
// installed. The chat page (app.js) calls refresh() whenever the cached models or the chosen
// model change, and requestPersist() after a model download.
//
// "Available offline" means both halves are on this device: the service worker controls the page
// (so the app shell and the wasm come from its cache) and the chosen model is in the model cache.

import { listCached } from './mobilellm.js';

/** @typedef {import('./protocol.js').SwRequest} SwRequest */
/**
 * @typedef {{supported: boolean, error: string | null, controlled: boolean, version: string | null, online: boolean,
 *   model: string | null, modelCached: boolean, ready: boolean, usage: number | null, quota: number | null,
 *   persisted: boolean | null, updateReady: boolean}} OfflineState
 */

/** @type {(id: string) => any} the page's own elements (index.html), typed where they are kept */
const $ = (id) => document.getElementById(id);

/** @param {number | null} n */
function formatBytes(n) {
  if (n == null || !Number.isFinite(n)) return '?';
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  return `${Math.round(n / 1e3)} kB`;
}

/**
 * Asks the controlling service worker for its version ({version, cache, files}), or null.
 * @param {ServiceWorker | null | undefined} sw
 * @returns {Promise<import('./protocol.js').SwVersion | null>}
 */
function askVersion(sw, timeoutMs = 2000) {
  if (!sw) return Promise.resolve(null);
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    const timer = setTimeout(() => resolve(null), timeoutMs);
    ch.port1.onmessage = (ev) => { clearTimeout(timer); resolve(ev.data); };
    sw.postMessage(/** @satisfies {SwRequest} */ ({ type: 'version' }), [ch.port2]);
  });
}

/**
 * @param {{chosenModel: () => string, modelName: (url: string) => string}} opts
 * @returns {{state: OfflineState, refresh: (cached?: {url: string}[]) => Promise<void>, requestPersist: () => Promise<boolean>}}
 */
export function startOffline({ chosenModel, modelName }) {
  /**
   * @type {{badge: HTMLElement, state: HTMLElement, storage: HTMLElement, persist: HTMLButtonElement,
   *   version: HTMLElement, update: HTMLElement, applyUpdate: HTMLButtonElement}}
   */
  const ui = {
    badge: $('offline-badge'), state: $('offline-state'), storage: $('storage-use'), persist: $('persist-storage'),
    version: $('app-version'), update: $('update-banner'), applyUpdate: $('apply-update'),
  };
  const sw = 'serviceWorker' in navigator ? navigator.serviceWorker : null;
  /** @type {OfflineState} */
  const state = {
    supported: !!sw, error: null, controlled: !!sw?.controller, version: null, online: navigator.onLine,
    model: null, modelCached: false, ready: false, usage: null, quota: null, persisted: null, updateReady: false,
  };
  /** @type {ServiceWorker | null} */
  let waiting = null;   // an installed new version waiting for the page's consent
  let updating = false; // the user asked for it: reload once it controls the page
  let generation = 0;   // refreshes run concurrently; only the latest one renders

  function render() {
    const name = state.model ? modelName(state.model) : 'the model';
    let text;
    if (!state.supported) text = 'This browser cannot keep the app for offline use.';
    else if (state.error) text = `Offline use is unavailable: ${state.error}`;
    else if (!state.controlled) text = 'Preparing offline use…';
    else if (!state.modelCached) text = `The app works offline. ${name} is not stored yet: load it once while online.`;
    else text = `Available offline: the app and ${name} are stored on this device.`;
    if (!state.online) text = `You are offline. ${text}`;
    ui.state.textContent = text;
    ui.state.dataset.state = state.ready ? 'ready' : state.controlled ? 'shell' : 'none';

    ui.badge.hidden = !(state.ready || !state.online);
    ui.badge.textContent = state.ready ? (state.online ? 'Available offline' : 'Offline · on device') : 'Offline';
    ui.badge.classList.toggle('ok', state.ready);
    ui.badge.classList.toggle('warn', !state.ready);
    ui.badge.title = text;

    if (state.usage !== null) {
      const p = state.persisted === true ? 'persistent' : state.persisted === false ? 'may be cleared by the browser when space runs low' : '';
      ui.storage.textContent = `Storage: ${formatBytes(state.usage)} used of ${formatBytes(state.quota)}${p ? ` · ${p}` : ''}`;
    }
    ui.persist.hidden = state.persisted !== false || !navigator.storage?.persist;
    ui.version.textContent = state.version ? `App version ${state.version}` : '';
    ui.update.hidden = !state.updateReady;
  }

  /** @param {{url: string}[]} [cached] */
  async function refresh(cached) {
    const g = ++generation;
    const items = cached ?? await listCached().catch(() => []);
    const est = await navigator.storage?.estimate?.().catch(() => null);
    const persisted = await navigator.storage?.persisted?.().catch(() => null);
    if (g !== generation) return;
    state.online = navigator.onLine;
    state.controlled = !!sw?.controller;
    state.model = chosenModel();
    state.modelCached = items.some((c) => c.url === state.model);
    state.ready = state.controlled && state.modelCached;
    if (est) { state.usage = est.usage ?? null; state.quota = est.quota ?? null; }
    state.persisted = persisted ?? null;
    render();
  }

  /** Asks the browser not to evict our storage (the model is large and slow to fetch again). */
  async function requestPersist() {
    if (!navigator.storage?.persist) return false;
    const granted = await navigator.storage.persist().catch(() => false);
    state.persisted = granted;
    await refresh();
    return granted;
  }

  async function readVersion() {
    const v = await askVersion(sw?.controller);
    state.version = v?.version ?? null;
    render();
  }

  /** @param {ServiceWorker | null} worker */
  function watch(worker) {
    if (!worker) return;
    const check = () => {
      // "installed" while another version controls the page: an update, waiting for consent.
      if (worker.state === 'installed' && sw?.controller) {
        waiting = worker;
        state.updateReady = true;
        render();
      }
      // A first install that failed (a file missing or not matching the build's manifest, e.g. a
      // deploy in progress): say so instead of "Preparing" forever. The next visit retries.
      if (worker.state === 'redundant' && !sw?.controller) {
        state.error = 'the app could not be stored on this device (a file did not match this build); reload to retry';
        render();
      }
    };
    check();
    worker.addEventListener('statechange', check);
  }

  async function register() {
    try {
      // updateViaCache 'none': the update check must never be answered by an HTTP cache.
      const reg = await /** @type {ServiceWorkerContainer} */ (sw).register(new URL('sw.js', import.meta.url), { updateViaCache: 'none' }); // (only called when there is one)
      watch(reg.waiting ?? reg.installing);
      reg.addEventListener('updatefound', () => watch(reg.installing));
      // Look for a new build on every visit and when the network comes back, not only when the
      // browser decides to (an installed app may stay open for days without a navigation).
      const check = () => { if (navigator.onLine) reg.update().catch(() => {}); };
      check();
      addEventListener('online', check);
    } catch (e) {
      state.error = e?.message || String(e);
      console.warn('service worker registration failed:', e);
      render();
    }
  }

  if (sw) {
    sw.addEventListener('controllerchange', () => {
      // After the user's "Reload": the new version controls us, so reload into its files.
      if (updating) { location.reload(); return; }
      // A first install took the page: offline use just became possible.
      refresh();
      readVersion();
    });
    ui.applyUpdate.addEventListener('click', () => {
      if (!waiting) return;
      updating = true;
      ui.applyUpdate.disabled = true;
      waiting.postMessage(/** @satisfies {SwRequest} */ ({ type: 'skip-waiting' }));
    });
    register();
    readVersion();
  }
  ui.persist.addEventListener('click', () => requestPersist());
  addEventListener('online', () => refresh());
  addEventListener('offline', () => refresh());
  render();
  return { state, refresh, requestPersist };
}
