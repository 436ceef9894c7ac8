// A short-lived worker that turns a Hugging Face checkpoint into a cached GGUF: download (hf.js)
// -> scratch files (scratch.js) -> the Rust converter (src/wasm_convert.rs, reading the files by
// range) -> the model cache (cache.js). Started by convert.js from the engine's worker, and
// terminated when done: the converter's wasm memory (which never shrinks) is returned to the
// system before the engine uploads the model, and a cancelled load simply terminates it (the
// conversion itself is synchronous and could not see a cancel message).
//
// The checkpoint's files are downloaded resumably into a scratch folder of that checkpoint, which
// outlives a failed or cancelled attempt (scratch.js); the next conversion continues them.
//
// Messages (typed in protocol.js: ConvertRequest, ConvertReply): in {type: 'convert', source, token, useCache, wasmUrl} | {type: 'cleanup'};
// out {type: 'progress', progress} ... then {type: 'result', value} | {type: 'error', error};
// after 'cleanup', {type: 'cleaned'}.

import init, { convert_checkpoint, check_checkpoint_config, last_panic } from './pkg/mobilellm_web.js';
import { downloadCheckpoint } from './hf.js';
import { storeModel } from './cache.js';
import { Scratch } from './scratch.js';
import { MobileLLMError, serializeError, initWasm } from './protocol.js';

/** @typedef {import('./protocol.js').ConvertRequest} ConvertRequest */
/** @typedef {import('./protocol.js').ConvertReply} ConvertReply */
/** This worker's end of convert.js's channel (the message types are in protocol.js). */
/** @type {import('./protocol.js').WorkerSelf<ConvertRequest, ConvertReply>} */
const port = self;

/** @type {Scratch | null} */
let scratch = null;

port.onmessage = async (ev) => {
  const msg = ev.data;
  if (msg.type === 'cleanup') {
    await scratch?.remove().catch(() => {});
    scratch = null;
    port.postMessage({ type: 'cleaned' });
    return;
  }
  if (msg.type !== 'convert') return;
  try {
    port.postMessage({ type: 'result', value: await convert(msg) });
  } catch (e) {
    // A download that gave up on a broken connection keeps what it has: the next load of this
    // checkpoint continues it. Any other failure (refused, missing, unsupported) cleans up.
    if (e?.resumable) scratch?.release();
    else await scratch?.remove().catch(() => {});
    scratch = null;
    port.postMessage({ type: 'error', error: serializeError(asError(e)) });
  }
};

/**
 * A trap after a Rust panic becomes a readable InternalError.
 * @param {unknown} e
 */
function asError(e) {
  if (!(e instanceof WebAssembly.RuntimeError)) return e;
  let detail = null;
  try { detail = last_panic(); } catch { /* too broken to ask */ }
  return new MobileLLMError('InternalError', `converter panic: ${detail || e.message}`);
}

/**
 * @param {Extract<ConvertRequest, {type: 'convert'}>} msg
 * @returns {Promise<import('./protocol.js').ConvertResult>}
 */
async function convert({ source, token, useCache, wasmUrl }) {
  const progress = (/** @type {import('./protocol.js').Progress} */ p) => port.postMessage({ type: 'progress', progress: p });
  const wasm = await initWasm(init, wasmUrl);
  const files = (scratch = await Scratch.open(source.base));
  const t0 = performance.now();
  const sizes = await downloadCheckpoint(source, scratch, {
    token, onProgress: progress, checkConfig: (bytes) => check_checkpoint_config(bytes),
  });
  const t1 = performance.now();
  progress({ phase: 'convert', loaded: 0, total: 0 });
  const out = await scratch.createOutput();
  let report;
  try {
    report = JSON.parse(convert_checkpoint(
      // general.name: the repository's (or folder's) own name, as llama.cpp's converter writes it.
      /** @type {string} */ (source.name.split('/').pop()), JSON.stringify(sizes), source.type,
      (/** @type {string} */ name, /** @type {number} */ offset, /** @type {Uint8Array} */ dest) => files.read(name, offset, dest),
      (/** @type {Uint8Array} */ chunk) => out.write(chunk),
      (/** @type {number} */ done, /** @type {number} */ total, /** @type {number} */ bytes) => progress({ phase: 'convert', loaded: done, total, bytes }),
    ));
  } finally {
    out.close();
  }
  const t2 = performance.now();
  // The checkpoint is no longer needed: free its space before the GGUF is copied to the cache.
  await scratch.dropInputs();
  const gguf = await out.blob();
  progress({ phase: 'store', loaded: 0, total: gguf.size });
  const stored = useCache && (await storeModel(source.key, gguf));
  const conversion = {
    report,
    download_bytes: Object.values(sizes).reduce((a, b) => a + b, 0),
    scratch: scratch.kind,
    timings: { download_ms: t1 - t0, convert_ms: t2 - t1, store_ms: performance.now() - t2 },
    wasm_memory_bytes: wasm.memory.buffer.byteLength,
  };
  if (stored) {
    await scratch.remove();
    scratch = null;
    return { stored: true, conversion };
  }
  // Not cached (disabled, or no room): hand over the GGUF itself (a File on OPFS is passed by
  // reference); the scratch stays until the engine has read it and sends 'cleanup'.
  return { stored: false, conversion, gguf };
}
