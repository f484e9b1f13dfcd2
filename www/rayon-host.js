// The dedicated worker that runs the rayon backend: loads the atomics build, starts rayon's
// threads (wasm-bindgen-rayon's initThreadPool, inside runBackend), runs the benchmark, and
// reports every finished task to the page. Blocking on rayon is allowed here, not on the page.
import init, { runBackend, stop } from './pkg/atomics/primepool_web.js';

self.onmessage = async ({ data }) => {
  if (data.type === 'stop') {
    // Cancel what has not started, so the threads go idle before this worker is ended.
    try { stop(); } finally { self.close(); }
    return;
  }
  try {
    await init();
    const run = await runBackend(data.options, 'rayon', (progress) =>
      self.postMessage({ type: 'progress', progress }));
    self.postMessage({ type: 'done', run });
  } catch (e) {
    self.postMessage({ type: 'error', message: String((e && e.message) || e) });
  }
};
