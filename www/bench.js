// primepool's benchmark in the browser: the JS entry point the page (or any script) uses.
//
//   import { runBenchmark, stop, isolation } from './bench.js';
//   const report = await runBenchmark({ start: 9900, end: 10000, workers: 2 }, p => ...);
//
// `serial` and `workers` run with the plain wasm build on this thread (the Web Worker pool
// posts the page's one compiled module to each worker); `rayon` runs with the atomics build
// in a dedicated worker, because rayon must never run on the page's main thread. The report
// has the fields of `primepool bench --json` (see BenchReport in pkg/plain/primepool_web.d.ts).

import init, * as wasm from './pkg/plain/primepool_web.js';

let loaded = null;

/** Loads (once) and returns the plain wasm build's exports. */
export async function load() {
  loaded ??= init().then(() => wasm);
  return loaded;
}

/** Whether rayon can run here, and if not, why (one line for the page). */
export function isolation() {
  const isolated = globalThis.crossOriginIsolated === true;
  const shared = typeof SharedArrayBuffer === 'function';
  let reason = null;
  if (!isolated) {
    reason = 'rayon is disabled: this page is not cross-origin isolated (it needs the COOP/COEP headers that `primepool serve` sends).';
  } else if (!shared) {
    reason = 'rayon is disabled: this browser has no SharedArrayBuffer.';
  }
  return { isolated, rayon: reason === null, reason };
}

function machine() {
  return {
    os: 'browser',
    cpus: navigator.hardwareConcurrency || 1,
    user_agent: navigator.userAgent,
    cross_origin_isolated: globalThis.crossOriginIsolated === true,
  };
}

let current = null; // { stopped, host, reject } of the running benchmark

/**
 * Runs the benchmark on every backend in `options.backends` and resolves to the report.
 * `onProgress` is called for every finished task. Rejects with the reason on bad options, and
 * with "Stopped." after `stop()`.
 */
export async function runBenchmark(options, onProgress = () => {}) {
  const api = await load();
  const plan = api.validateOptions(options); // throws with a sentence for the visitor
  const iso = isolation();
  if (plan.backends.includes('rayon') && !iso.rayon) throw new Error(iso.reason);
  if (current) throw new Error('A benchmark is already running.');
  const run = (current = { stopped: false, host: null, reject: null });
  try {
    const runs = [];
    for (const backend of plan.backends) {
      if (run.stopped) throw new Error('Stopped.');
      runs.push(backend === 'rayon'
        ? await runRayon(run, options, onProgress)
        : await api.runBackend(options, backend, onProgress));
    }
    if (run.stopped) throw new Error('Stopped.');
    return api.summarize(options, runs, machine());
  } finally {
    current = null;
  }
}

function runRayon(run, options, onProgress) {
  return new Promise((resolve, reject) => {
    const host = new Worker(new URL('./rayon-host.js', import.meta.url), {
      type: 'module',
      name: 'primepool-rayon-host',
    });
    const finish = (settle, value) => {
      host.terminate();
      run.host = null;
      settle(value);
    };
    run.host = host;
    run.reject = (e) => {
      // Let the host cancel rayon's queued jobs first (its threads then idle), then end it.
      host.postMessage({ type: 'stop' });
      run.host = null;
      reject(e);
      setTimeout(() => host.terminate(), 200);
    };
    host.onmessage = ({ data }) => {
      if (data.type === 'progress') onProgress(data.progress);
      else if (data.type === 'done') finish(resolve, data.run);
      else if (data.type === 'error') finish(reject, new Error(data.message));
    };
    host.onerror = (e) => {
      e.preventDefault();
      finish(reject, new Error(`the rayon worker failed: ${e.message}`));
    };
    host.postMessage({ type: 'run', options });
  });
}

/** Stops the running benchmark now: every Web Worker (pool workers, rayon threads) is ended. */
export function stop() {
  const run = current;
  if (!run) return;
  run.stopped = true;
  wasm.stop();
  if (run.host) run.reject(new Error('Stopped.'));
}

/** Runs the executor behaviour checks on a Web Worker pool: { passed, failed }. */
export async function runConformance() {
  const api = await load();
  return api.runConformance();
}
