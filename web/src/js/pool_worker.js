// The script of every primepool Web Worker, and the page-side helper that starts one.
//
// wasm-bindgen copies this file next to the generated glue, and the glue imports it, so it is
// loaded both on the page (where only `spawnPoolWorker` is used) and as the worker's own
// script. In a worker it waits for one init message that carries the page's compiled
// WebAssembly.Module (compiled once, shared by every worker) and the URL of the glue, loads the
// glue with that module, and hands control to Rust (`poolWorkerStart`), which answers calls.

const NAME_PREFIX = 'primepool-pool-';

export function spawnPoolWorker(id) {
  return new Worker(new URL(import.meta.url), { type: 'module', name: NAME_PREFIX + id });
}

if (typeof WorkerGlobalScope !== 'undefined' && self.name.startsWith(NAME_PREFIX)) {
  self.addEventListener('message', function onInit({ data }) {
    if (data == null || data.type !== 'primepool_pool_init') return;
    self.removeEventListener('message', onInit);
    import(data.glue)
      .then(async (glue) => {
        await glue.default({ module_or_path: data.module });
        glue.poolWorkerStart(data.id);
      })
      .catch((e) => {
        self.postMessage({ type: 'failed', message: String((e && e.stack) || e) });
      });
  });
}
