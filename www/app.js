// The chat page: model picker and progress, streamed replies, stop, new chat, settings, and the
// conversation kept in localStorage. All model output is inserted as text (textContent), never
// as HTML. `window.__app` exposes the state to the end-to-end tests.

import { MobileLLM, hasWebGPU, listCached, deleteCached, resolveModelSource, describeCacheKey } from './mobilellm.js';
import { startOffline } from './offline.js';

const DEFAULT_MODEL = new URL('models/SmolLM2-135M-Instruct.Q4_1.gguf', location.href).href;
const DEFAULT_SETTINGS = { system: '', temperature: 0.7, top_p: 0.9, max_tokens: 512 };
const KEYS = { chat: 'mobilellm.chat.v1', settings: 'mobilellm.settings.v1', model: 'mobilellm.model.v1', hfToken: 'mobilellm.hfToken.v1', complete: 'mobilellm.complete.v1', engine: 'mobilellm.engine.v1' };
const QUERY = new URLSearchParams(location.search);
// Where bare repository names (owner/name) resolve: huggingface.co, or ?hub=<url> (tests, mirrors).
const HUB_URL = QUERY.get('hub') || undefined;
// The CPU backend's default threads: the cores, at most 4 (as the worker's default).
const DEFAULT_THREADS = Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1));

/** @typedef {import('./protocol.js').Progress} Progress */
/** @typedef {import('./protocol.js').EngineInfo} EngineInfo */
/** @typedef {{tokens: number, tps: number | null, ttft_ms: number | null, finish: string | null}} ReplyStats */
/** A turn of the conversation as stored: a failed reply keeps its error. @typedef {{role: string, content: string, error?: string, stats?: ReplyStats}} Turn */
/** @typedef {typeof DEFAULT_SETTINGS} Settings */

/** @type {(id: string) => any} the page's own elements (index.html), typed in `ui` */
const $ = (id) => document.getElementById(id);
/**
 * @type {{chip: HTMLElement, noWebgpu: HTMLElement, modelPanel: HTMLElement,
 *   modelForm: HTMLFormElement & {elements: {'model-source': RadioNodeList}}, modelUrl: HTMLInputElement,
 *   loadButton: HTMLButtonElement, cancelLoad: HTMLButtonElement, progress: HTMLElement, progressFill: HTMLElement,
 *   progressText: HTMLElement, loadError: HTMLElement, cachedList: HTMLElement, chat: HTMLElement, empty: HTMLElement,
 *   messages: HTMLElement, composer: HTMLFormElement, prompt: HTMLTextAreaElement, send: HTMLButtonElement,
 *   stop: HTMLButtonElement, newChat: HTMLButtonElement, openModel: HTMLButtonElement, openSettings: HTMLButtonElement,
 *   settings: HTMLDialogElement, setSystem: HTMLTextAreaElement, setTemperature: HTMLInputElement,
 *   setTopP: HTMLInputElement, setMaxTokens: HTMLInputElement, outTemperature: HTMLOutputElement,
 *   outTopP: HTMLOutputElement, settingsReset: HTMLButtonElement, modelFamily: HTMLSelectElement,
 *   hfToken: HTMLInputElement, completeMode: HTMLInputElement, backend: HTMLSelectElement, threads: HTMLInputElement,
 *   threadsLabel: HTMLElement, deviceLost: HTMLElement, reloadModel: HTMLButtonElement}}
 */
const ui = {
  chip: $('model-chip'), noWebgpu: $('no-webgpu'), modelPanel: $('model-panel'), modelForm: $('model-form'),
  modelUrl: $('model-url'), loadButton: $('load-button'), cancelLoad: $('cancel-load'), progress: $('progress'),
  progressFill: $('progress-fill'), progressText: $('progress-text'), loadError: $('load-error'),
  cachedList: $('cached-list'), chat: $('chat'), empty: $('empty-state'), messages: $('messages'),
  composer: $('composer'), prompt: $('prompt'), send: $('send'), stop: $('stop'), newChat: $('new-chat'),
  openModel: $('open-model'), openSettings: $('open-settings'), settings: $('settings'),
  setSystem: $('set-system'), setTemperature: $('set-temperature'), setTopP: $('set-top-p'),
  setMaxTokens: $('set-max-tokens'), outTemperature: $('out-temperature'), outTopP: $('out-top-p'),
  settingsReset: $('settings-reset'),
  modelFamily: $('model-family'), hfToken: $('hf-token'), completeMode: $('complete-mode'),
  backend: $('backend'), threads: $('threads'), threadsLabel: $('threads-label'),
  deviceLost: $('device-lost'), reloadModel: $('reload-model'),
};

/**
 * @type {{llm: MobileLLM | null, modelSpec: string | null, status: string, conversation: Turn[], settings: Settings, lastResult: unknown,
 *   loadStats: MobileLLM['loadStats'] | null, loadAbort: AbortController | null, complete: boolean,
 *   engine: {backend: string, threads: number}, offline?: import('./offline.js').OfflineState}}
 */
const app = {
  llm: null,
  modelSpec: null, // what the loaded model was loaded from (a URL or a repository name): "Reload model" loads it again
  status: 'idle', // idle | loading | ready | generating | lost (the GPU device was lost: reload the model)
  conversation: load(KEYS.chat, []),
  settings: { ...DEFAULT_SETTINGS, ...load(KEYS.settings, {}) },
  lastResult: null,  // the final chunk of the last reply (usage, timings, debug)
  loadStats: null,
  loadAbort: null,
  complete: load(KEYS.complete, false), // completion mode: no chat template (base models)
  // Which backend runs the model, and the CPU backend's threads; ?backend=cpu&threads=2 overrides.
  engine: { backend: 'auto', threads: DEFAULT_THREADS, ...load(KEYS.engine, {}), ...queryEngine() },
};
window.__app = app;

// Offline use (offline.js: service worker, "available offline", storage). The chosen model is the
// loaded one, else the one picked in the form.
const offline = startOffline({ chosenModel: () => app.llm?.info?.url ?? cacheKeyOf(selectedModelUrl()), modelName });
app.offline = offline.state;

function queryEngine() {
  /** @type {{backend?: string, threads?: number}} */
  const e = {};
  const backend = QUERY.get('backend');
  if (backend !== null && ['auto', 'webgpu', 'cpu'].includes(backend)) e.backend = backend;
  const t = Number(QUERY.get('threads'));
  if (Number.isInteger(t) && t >= 1) e.threads = t;
  return e;
}

/**
 * @template T
 * @param {string} key
 * @param {T} fallback
 * @returns {T}
 */
function load(key, fallback) {
  try { return JSON.parse(localStorage.getItem(key) ?? 'null') ?? fallback; } catch { return fallback; }
}
/**
 * @param {string} key
 * @param {unknown} value
 */
function save(key, value) {
  try { localStorage.setItem(key, JSON.stringify(value)); } catch { /* storage full or disabled */ }
}

/** @param {'idle' | 'loading' | 'ready' | 'generating' | 'lost'} s */
function setStatus(s) {
  app.status = s;
  document.body.dataset.status = s;
  const ready = s === 'ready';
  ui.deviceLost.hidden = s !== 'lost';
  ui.prompt.disabled = !(ready || s === 'generating' || s === 'lost');
  ui.send.disabled = !ready;
  ui.send.hidden = s === 'generating';
  ui.stop.hidden = s !== 'generating';
  ui.loadButton.disabled = s === 'loading' || s === 'generating';
  ui.cancelLoad.hidden = s !== 'loading';
}

// ---------- model loading ----------

/** @param {number | undefined} n */
const mb = (n) => (Number(n) / 1e6).toFixed(1);

/** @param {Progress} p */
function showProgress(p) {
  ui.progress.hidden = false;
  const frac = p.total ? Number(p.loaded) / p.total : null;
  ui.progress.classList.toggle('indeterminate', p.phase === 'compile' || frac === null);
  ui.progressFill.style.width = frac === null || p.phase === 'compile' ? '' : `${(frac * 100).toFixed(1)}%`;
  let text;
  switch (p.phase) {
    case 'download':
      text = `Downloading ${p.file ? `${p.file} ` : ''}${mb(p.loaded)}${p.total ? ` / ${mb(p.total)}` : ''} MB` + (p.rate ? ` · ${mb(p.rate)} MB/s` : '');
      break;
    case 'convert': text = p.total ? `Converting to GGUF: tensor ${p.loaded} / ${p.total}` : 'Converting to GGUF…'; break;
    case 'store': text = `Saving the converted model (${mb(p.total)} MB) to the cache…`; break;
    case 'cache': text = `Reading from cache ${Math.round((frac ?? 0) * 100)}%`; break;
    case 'read': text = `Reading ${Math.round((frac ?? 0) * 100)}%`; break;
    case 'compile': text = 'Preparing the engine…'; break;
    case 'ready': text = 'Ready'; break;
    default: text = p.phase;
  }
  ui.progressText.textContent = text;
}

/** What the form selects: a GGUF URL or a Hugging Face repository name (MobileLLM.load takes both). */
function selectedModelUrl() {
  const source = ui.modelForm.elements['model-source'].value;
  if (source === 'family') return ui.modelFamily.value;
  return source === 'url' ? ui.modelUrl.value.trim() : DEFAULT_MODEL;
}

/**
 * The name a model is cached under: its URL, or the conversion key of a checkpoint (hf.js).
 * @param {string} spec
 */
function cacheKeyOf(spec) {
  try {
    const s = resolveModelSource(spec, { hubUrl: HUB_URL, baseHref: location.href });
    return s.kind === 'gguf' ? s.url : s.key;
  } catch { return spec; }
}

/** @param {string} url */
async function loadModel(url) {
  if (!url) { showLoadError('Enter the URL of a GGUF file or a Hugging Face repository (owner/name).'); return; }
  ui.loadError.hidden = true;
  const previous = app.llm;
  app.llm = null;
  setStatus('loading');
  await previous?.unload();
  ui.chip.textContent = 'loading…';
  const abort = new AbortController();
  app.loadAbort = abort;
  try {
    const { backend, threads } = app.engine;
    const llm = await MobileLLM.load(url, {
      onProgress: showProgress, signal: abort.signal, hubUrl: HUB_URL, hfToken: ui.hfToken.value.trim() || undefined,
      backend: /** @type {'auto' | 'webgpu' | 'cpu'} */ (backend), threads: backend === 'webgpu' ? undefined : threads,
    });
    app.llm = llm;
    app.modelSpec = url;
    app.loadStats = llm.loadStats;
    save(KEYS.model, url);
    const eng = llm.loadStats.engine;
    ui.chip.textContent = `${modelName(llm.info.url)} · ${engineName(eng)}`;
    ui.chip.title = `${llm.info.adapter} · context ${llm.info.n_ctx} tokens`;
    document.body.dataset.backend = eng.backend;
    const conv = llm.loadStats.conversion;
    ui.progressText.textContent = (llm.loadStats.fromCache
      ? `Loaded from cache in ${(llm.loadStats.timings.total_ms / 1000).toFixed(1)} s`
      : `Loaded in ${(llm.loadStats.timings.total_ms / 1000).toFixed(1)} s`) +
      (conv ? ` (converted ${conv.report.arch}, ${conv.report.type.toUpperCase()}, in ${(conv.timings.convert_ms / 1000).toFixed(1)} s)` : '') +
      ` · running on ${engineName(eng)}${eng.threadsNote ? ` (${eng.threadsNote})` : ''}` +
      // Base models: chat works through the plain "User:/Assistant:" fallback; Complete suits them better.
      (llm.info.has_chat_template ? '' : ' · no chat template: try Complete mode');
    ui.progress.classList.remove('indeterminate');
    ui.progressFill.style.width = '100%';
    // A fresh download is worth keeping: ask the browser not to evict it (offline.js shows the answer).
    if (!llm.loadStats.fromCache) offline.requestPersist();
    setStatus('ready');
    ui.modelPanel.classList.add('collapsed');
    ui.prompt.focus();
  } catch (e) {
    setStatus('idle');
    ui.chip.textContent = 'no model';
    ui.progress.hidden = true;
    showLoadError(describeError(e));
  } finally {
    app.loadAbort = null;
    refreshCached();
  }
}

/**
 * "GPU" or "CPU ×2 (relaxed SIMD)": what runs the model.
 * @param {EngineInfo} eng
 */
function engineName(eng) {
  if (eng.backend === 'webgpu') return 'GPU';
  const simd = eng.simd === 'relaxed' ? ', relaxed SIMD' : '';
  return `CPU ×${eng.threads}${simd}`;
}

/** @param {any} e  what was thrown */
function describeError(e) {
  /** @type {Record<string, string>} */
  const hints = {
    DownloadFailed: 'The download failed. Check the URL and that the server allows cross-origin requests (CORS).',
    InvalidModelFile: 'This is not a valid GGUF model file.',
    UnsupportedModel: 'This model is not supported (Llama-style architectures with F32/F16/Q8_0/Q4_0/Q4_1 weights are).',
    WebGPUUnavailable: 'WebGPU is not available here: choose Auto or CPU under "Run on".',
    DeviceLost: 'The GPU was lost: reload the model to go on.',
    ModelTooLarge: 'This model is too large for this browser\'s memory.',
    Aborted: 'Loading was cancelled.',
    GatedModel: 'This repository needs a Hugging Face access token: paste one under "Access token" (and accept the model\'s terms on its page).',
    ConversionError: 'This checkpoint cannot be converted (Llama and MobileLLM checkpoints in safetensors or PyTorch format can).',
  };
  return `${hints[e?.name] ?? 'Something went wrong.'} (${e?.name ?? 'Error'}: ${e?.message ?? e})`;
}

/** @param {string} text */
function showLoadError(text) {
  ui.loadError.textContent = text;
  ui.loadError.hidden = false;
}

/** @param {string} url */
function modelName(url) {
  const converted = describeCacheKey(url);
  if (converted) return converted;
  try { return decodeURIComponent(/** @type {string} */ (new URL(url).pathname.split('/').pop())).replace(/\.gguf$/i, ''); } catch { return url; }
}

async function refreshCached() {
  const items = await listCached().catch(() => []);
  offline.refresh(items);
  ui.cachedList.replaceChildren();
  if (!items.length) {
    const li = document.createElement('li');
    li.className = 'hint';
    li.textContent = 'Nothing cached yet.';
    ui.cachedList.append(li);
    return;
  }
  for (const it of items) {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.textContent = `${modelName(it.url)} · ${mb(it.size)} MB`;
    name.title = it.url;
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'ghost small';
    del.textContent = 'Delete';
    del.addEventListener('click', async () => { await deleteCached(it.url); refreshCached(); });
    li.append(name, del);
    ui.cachedList.append(li);
  }
}

// ---------- conversation ----------

function renderConversation() {
  ui.messages.replaceChildren(...app.conversation.map((m) => messageElement(m)));
  ui.empty.hidden = app.conversation.length > 0;
  // An empty chat stays at the top: scrolling down would hide the model panel's heading.
  if (app.conversation.length) scrollToEnd(true);
}

/** @param {Turn} m */
function messageElement(m) {
  const li = document.createElement('li');
  li.className = `msg ${m.role}${m.error ? ' error' : ''}`;
  const bubble = document.createElement('div');
  bubble.className = 'bubble';
  bubble.textContent = m.content;
  li.append(bubble);
  const stats = document.createElement('div');
  stats.className = 'stats';
  if (m.stats) stats.textContent = formatStats(m.stats);
  else if (m.error) stats.textContent = m.error;
  li.append(stats);
  return li;
}

/** @param {ReplyStats} s */
function formatStats(s) {
  const parts = [`${s.tokens} tokens`];
  if (s.tps) parts.push(`${s.tps.toFixed(1)} tok/s`);
  if (s.ttft_ms != null) parts.push(`first token ${(s.ttft_ms / 1000).toFixed(2)} s`);
  if (s.finish === 'abort') parts.push('stopped');
  if (s.finish === 'length') parts.push('length limit');
  return parts.join(' · ');
}

function scrollToEnd(force = false) {
  const el = /** @type {Element} */ (document.scrollingElement);
  const nearBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 160;
  if (force || nearBottom) el.scrollTop = el.scrollHeight;
}

function requestMessages() {
  const msgs = [];
  // Complete mode continues the conversation's text as it is: no system prompt, no template.
  if (!app.complete && app.settings.system.trim()) msgs.push({ role: 'system', content: app.settings.system.trim() });
  // Failed replies stay on screen but are not part of what the model sees.
  for (const m of app.conversation) if (!m.error) msgs.push({ role: m.role, content: m.content });
  return msgs;
}

/** @param {string} text */
async function send(text) {
  if (!app.llm || app.status !== 'ready' || !text.trim()) return;
  // "New chat" during the reply replaces app.conversation: the reply then belongs to the old one.
  const conversation = app.conversation;
  /** @type {Turn} */
  const user = { role: 'user', content: text };
  conversation.push(user);
  const userEl = messageElement(user);
  ui.messages.append(userEl);
  let lost = false;
  /** @type {Turn} */
  const reply = { role: 'assistant', content: '' };
  const el = messageElement(reply);
  el.classList.add('streaming');
  ui.messages.append(el);
  ui.empty.hidden = true;
  scrollToEnd(true);
  const bubble = /** @type {HTMLElement} */ (el.querySelector('.bubble'));
  setStatus('generating');
  const s = app.settings;
  try {
    // (typed by the public declarations: stream: true is a ChatCompletionStream)
    const stream = /** @type {import('./npm/index.js').ChatCompletionStream} */ (await app.llm.chat.completions.create({
      messages: requestMessages(), stream: true, raw: app.complete,
      temperature: s.temperature, top_p: s.top_p, max_tokens: s.max_tokens,
    }));
    /** @type {import('./npm/index.js').ChatCompletionChunk | null} */
    let last = null;
    for await (const chunk of stream) {
      const delta = chunk.choices[0].delta.content;
      if (delta) {
        reply.content += delta;
        bubble.textContent = reply.content;
        scrollToEnd();
      }
      last = chunk;
    }
    app.lastResult = last;
    const end = /** @type {Required<import('./npm/index.js').ChatCompletionChunk>} */ (last); // the final chunk: usage, timings
    reply.stats = {
      tokens: end.usage.completion_tokens, tps: end.timings.decode_tokens_per_s,
      ttft_ms: end.timings.ttft_ms, finish: end.choices[0].finish_reason,
    };
    /** @type {HTMLElement} */ (el.querySelector('.stats')).textContent = formatStats(reply.stats);
  } catch (e) {
    reply.error = describeError(e);
    el.classList.add('error');
    /** @type {HTMLElement} */ (el.querySelector('.stats')).textContent = reply.error;
    if (/** @type {any} */ (e)?.name === 'DeviceLost') {
      // The message was not answered: it leaves what the model sees (as the failed reply does) and
      // goes back into the box, to send again once the model is reloaded.
      user.error = 'not answered: the GPU was lost';
      /** @type {HTMLElement} */ (userEl.querySelector('.stats')).textContent = user.error;
      userEl.classList.add('error');
      if (!ui.prompt.value) ui.prompt.value = text;
      lost = true;
    }
  } finally {
    el.classList.remove('streaming');
    conversation.push(reply);
    if (conversation === app.conversation) save(KEYS.chat, conversation);
    setStatus(lost ? 'lost' : app.llm ? 'ready' : 'idle');
  }
}

// ---------- settings ----------

function showSettings() {
  const s = app.settings;
  ui.setSystem.value = s.system;
  ui.setTemperature.value = String(s.temperature);
  ui.setTopP.value = String(s.top_p);
  ui.setMaxTokens.value = String(s.max_tokens);
  updateOutputs();
  ui.settings.showModal();
}

function updateOutputs() {
  ui.outTemperature.textContent = Number(ui.setTemperature.value).toFixed(2);
  ui.outTopP.textContent = Number(ui.setTopP.value).toFixed(2);
}

function readSettings() {
  const num = (/** @type {string} */ v, /** @type {number} */ d) => (Number.isFinite(Number(v)) && v !== '' ? Number(v) : d);
  app.settings = {
    system: ui.setSystem.value,
    temperature: num(ui.setTemperature.value, DEFAULT_SETTINGS.temperature),
    top_p: num(ui.setTopP.value, DEFAULT_SETTINGS.top_p),
    max_tokens: Math.max(1, Math.round(num(ui.setMaxTokens.value, DEFAULT_SETTINGS.max_tokens))),
  };
  save(KEYS.settings, app.settings);
}

// ---------- wiring ----------

ui.modelForm.addEventListener('submit', (e) => { e.preventDefault(); loadModel(selectedModelUrl()); });
ui.modelForm.addEventListener('change', () => offline.refresh());
ui.modelUrl.addEventListener('focus', () => { ui.modelForm.elements['model-source'].value = 'url'; });
ui.modelFamily.addEventListener('focus', () => { ui.modelForm.elements['model-source'].value = 'family'; });
// The token stays in this page's localStorage only (MobileLLM.load sends it to huggingface.co only).
ui.hfToken.value = load(KEYS.hfToken, '');
$('hf-token-details').open = !!ui.hfToken.value; // a stored token is shown (masked), so it can be cleared
ui.hfToken.addEventListener('change', () => {
  const t = ui.hfToken.value.trim();
  if (t) save(KEYS.hfToken, t); else localStorage.removeItem(KEYS.hfToken);
});
const showComplete = () => {
  ui.completeMode.checked = app.complete;
  ui.prompt.placeholder = app.complete ? 'Text for the model to continue…' : 'Message the model…';
};
ui.completeMode.addEventListener('change', () => { app.complete = ui.completeMode.checked; save(KEYS.complete, app.complete); showComplete(); });
showComplete();
const showEngine = () => {
  ui.backend.value = app.engine.backend;
  ui.threads.value = String(app.engine.threads);
  ui.threads.max = String(Math.max(16, navigator.hardwareConcurrency || 1));
  ui.threadsLabel.hidden = app.engine.backend === 'webgpu';
};
// A new choice applies to the next load: press "Load model" to switch a loaded model over.
ui.backend.addEventListener('change', () => { app.engine.backend = ui.backend.value; save(KEYS.engine, app.engine); showEngine(); });
ui.threads.addEventListener('change', () => {
  const t = Math.round(Number(ui.threads.value));
  app.engine.threads = Number.isFinite(t) && t >= 1 ? t : DEFAULT_THREADS;
  save(KEYS.engine, app.engine);
  showEngine();
});
showEngine();
ui.cancelLoad.addEventListener('click', () => app.loadAbort?.abort());
// The GPU device was lost: the same model again (from the cache: no download), on a new device;
// the conversation stays, and the next message continues it (its whole prompt is prefilled again).
ui.reloadModel.addEventListener('click', () => { if (app.modelSpec) loadModel(app.modelSpec); });
ui.openModel.addEventListener('click', () => ui.modelPanel.classList.toggle('collapsed'));
ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = ui.prompt.value;
  if (!text.trim() || app.status !== 'ready') return;
  ui.prompt.value = '';
  autosize();
  send(text);
});
ui.prompt.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); ui.composer.requestSubmit(); }
});
const autosize = () => { ui.prompt.style.height = 'auto'; ui.prompt.style.height = `${Math.min(ui.prompt.scrollHeight, 200)}px`; };
ui.prompt.addEventListener('input', autosize);
ui.stop.addEventListener('click', () => app.llm?.interrupt());
ui.newChat.addEventListener('click', () => {
  if (app.status === 'generating') app.llm?.interrupt();
  app.conversation = [];
  save(KEYS.chat, app.conversation);
  renderConversation();
  ui.prompt.focus();
});
ui.openSettings.addEventListener('click', showSettings);
ui.setTemperature.addEventListener('input', updateOutputs);
ui.setTopP.addEventListener('input', updateOutputs);
ui.settings.addEventListener('close', readSettings);
ui.settingsReset.addEventListener('click', () => {
  Object.assign(app.settings, DEFAULT_SETTINGS);
  save(KEYS.settings, app.settings);
  showSettings();
});

async function start() {
  renderConversation();
  setStatus('idle');
  // Without WebGPU the CPU backend runs the model: say so, and keep "GPU" from being chosen.
  if (!hasWebGPU()) {
    ui.noWebgpu.hidden = false;
    /** @type {HTMLOptionElement} */ (ui.backend.querySelector('option[value=webgpu]')).disabled = true;
    if (app.engine.backend === 'webgpu') { app.engine.backend = 'auto'; showEngine(); }
  }
  await refreshCached();
  // Reopen the last model when it is already cached: no download, so no reason to ask.
  const last = load(KEYS.model, null);
  const cached = await listCached().catch(() => []);
  if (last && cached.some((c) => c.url === cacheKeyOf(last))) {
    if ([...ui.modelFamily.options].some((o) => o.value === last)) {
      ui.modelForm.elements['model-source'].value = 'family';
      ui.modelFamily.value = last;
    } else if (last !== DEFAULT_MODEL) { ui.modelForm.elements['model-source'].value = 'url'; ui.modelUrl.value = last; }
    loadModel(last);
  }
}
start();
