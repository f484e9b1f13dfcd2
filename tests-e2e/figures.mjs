// Measures the browser figures on this machine: `node figures.mjs [pages] [repeat]` loads the
// page `pages` times (each a fresh tab, so every cold figure includes the pool's start-up) and
// runs 9900..10000 (seed, 2 workers) on every backend, `repeat` warm runs each. A third
// argument picks the backends (comma-separated, in order; default serial,workers,rayon).
// With PRIMEPOOL_FIGURES_JSON set, the pages' reports (one JSON array, page by page, each in
// `primepool bench --json`'s schema with the browser's fields) are also written there: that is
// how `cargo xtask bench-report` reads the browser figures.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve } from './serve.mjs';

const [pages = 3, repeat = 10] = process.argv.slice(2, 4).map(Number);
const backends = (process.argv[4] ?? 'serial,workers,rayon').split(',');
const www = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../www');
const server = await serve(www, true);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const firstTasks = (tasks) => [...new Set(tasks.map((t) => t.worker))]
  .map((w) => Math.min(...tasks.filter((t) => t.worker === w).map((t) => t.start_ms)).toFixed(0)).join(', ');
const ms = (s) => (s * 1000).toFixed(1).padStart(6);
const reports = [];
console.log('page  backend   warm median (min-max)        speed-up   cold     cold speed-up');
for (let i = 0; i < pages; i++) {
  const page = await browser.newPage();
  await page.goto(server.url);
  await page.waitForSelector('body[data-ready=true]');
  const report = await page.evaluate(([repeat, backends]) => window.primepool.runBenchmark(
    { start: 9900, end: 10000, workload: 'seed', workers: 2, repeat, backends }), [repeat, backends]);
  if (!report.outputs_agree) throw new Error(`page ${i + 1}: the backends returned different outputs`);
  reports.push(report);
  for (const r of report.results) {
    console.log(`${String(i + 1).padEnd(5)} ${r.backend.padEnd(8)} ${ms(r.median_s)} ms (${ms(r.min_s)}-${ms(r.max_s)})`
      + `   ${r.speedup_vs_serial?.toFixed(2) ?? '-'}x   ${ms(r.cold_s)} ms   ${r.cold_speedup_vs_serial?.toFixed(2) ?? '-'}x`
      + (r.startup_s != null ? `   (start-up ${ms(r.startup_s)} ms)` : '')
      + (r.backend === 'workers' ? `   (first task per worker at ${firstTasks(r.cold_tasks)} ms)` : ''));
  }
  await page.close();
}
await browser.close();
server.close();
if (process.env.PRIMEPOOL_FIGURES_JSON) {
  fs.writeFileSync(process.env.PRIMEPOOL_FIGURES_JSON, JSON.stringify(reports));
}
