// The script of every primepool Web Worker, and the page-side helper that starts one.
//
// wasm-bindgen copies this file next to the generated glue, and the glue imports it, so it is
// loaded both on the page (where only `spawnPoolWorker` is used) and as the worker's own
// script. The worker's URL carries the glue's URL, so the worker starts importing the glue at
// once, while the page's init message is on its way; that message carries the page's compiled
// WebAssembly.Module (compiled once, shared by every worker). With both, the worker
// instantiates the module and hands control to Rust (`poolWorkerStart`), which answers calls.

const NAME_PREFIX = 'primepool-pool-';

export function spawnPoolWorker(id, glue) {
  const url = new URL(import.meta.url);
  url.searchParams.set('glue', glue);
  return new Worker(url, { type: 'module', name: NAME_PREFIX + id });
}

// Only the copy loaded as the worker's script (its URL names the glue) acts; the copy the
// glue itself imports stays passive.
const glueUrl = new URL(import.meta.url).searchParams.get('glue');
if (typeof WorkerGlobalScope !== 'undefined' && self.name.startsWith(NAME_PREFIX) && glueUrl) {
  const glue = import(glueUrl);
  self.addEventListener('message', function onInit({ data }) {
    if (data == null || data.type !== 'primepool_pool_init') return;
    self.removeEventListener('message', onInit);
    glue
      .then(async (glue) => {
        await glue.default({ module_or_path: data.module });
        glue.poolWorkerStart(data.id);
      })
      .catch((e) => {
        self.postMessage({ type: 'failed', message: String((e && e.stack) || e) });
      });
  });
}
