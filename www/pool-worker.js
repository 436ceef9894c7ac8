// One thread of the CPU backend's pool: a Web Worker that instantiates the engine's threaded build
// on the engine worker's shared memory and runs pool jobs until the pool is dropped. The engine
// worker (worker.js) starts these; each answers {ready} once it is waiting for jobs, or {error}.
//
// Message in: {variant, module: WebAssembly.Module, memory: WebAssembly.Memory, shared, index}.

import { importVariant } from './engine-variants.js';

/** @typedef {import('./protocol.js').PoolStart} PoolStart */
/** @typedef {import('./protocol.js').PoolReply} PoolReply */
/** This worker's end of the engine worker's channel (the message types are in protocol.js). */
/** @type {import('./protocol.js').WorkerSelf<PoolStart, PoolReply>} */
const port = self;

port.onmessage = async ({ data }) => {
  try {
    const glue = await importVariant(data.variant);
    if (!('pool_worker_run' in glue)) throw new Error(`${data.variant} is not a threaded build`);
    // The same compiled module on the same memory: wasm-bindgen gives this thread its own stack
    // and thread-local storage when it starts.
    await glue.default({ module_or_path: data.module, memory: data.memory });
    port.postMessage({ ready: true });
    // Blocks this worker (Atomics.wait) between jobs; returns when the pool is dropped.
    glue.pool_worker_run(data.shared, data.index);
    self.close();
  } catch (e) {
    port.postMessage({ error: String(e?.message ?? e) });
  }
};
