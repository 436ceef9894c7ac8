// One thread of the CPU backend's pool: a Web Worker that instantiates the engine's threaded build
// on the engine worker's shared memory and runs pool jobs until the pool is dropped. The engine
// worker (worker.js) starts these; each answers {ready} once it is waiting for jobs, or {error}.
//
// Message in: {variant, module: WebAssembly.Module, memory: WebAssembly.Memory, shared, index}.

import { importVariant } from './engine-variants.js';

self.onmessage = async ({ data }) => {
  try {
    const glue = await importVariant(data.variant);
    // The same compiled module on the same memory: wasm-bindgen gives this thread its own stack
    // and thread-local storage when it starts.
    await glue.default({ module_or_path: data.module, memory: data.memory });
    self.postMessage({ ready: true });
    // Blocks this worker (Atomics.wait) between jobs; returns when the pool is dropped.
    glue.pool_worker_run(data.shared, data.index);
    self.close();
  } catch (e) {
    self.postMessage({ error: String(e?.message ?? e) });
  }
};
