// The browser test: primepool's page in headless Debian Chromium, driven by playwright-core.
//
// Serves www/ itself (a tiny static server, with or without COOP/COEP) unless PRIMEPOOL_URL
// names a server, runs the benchmark on every backend and compares the outputs with the native
// ones, runs the Web Worker pool's executor checks, checks Stop, bad input, the page without
// cross-origin isolation and the console, and saves a screenshot.
//
//   node e2e.mjs            (cargo xtask test runs it after building www/pkg/)
// Environment: PRIMEPOOL_NATIVE (JSON of native outputs, written by cargo xtask test),
// PRIMEPOOL_SCREENSHOT (default ../docs/screenshot.png), PRIMEPOOL_FIGURES (write the report
// of the main run there), CHROMIUM (default /usr/bin/chromium).

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve } from './serve.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const www = path.join(root, 'www');
const screenshot = process.env.PRIMEPOOL_SCREENSHOT ?? path.join(root, 'docs/screenshot.png');
function nativeOutputs() {
  const python = fs.readFileSync(path.join(root, 'core/tests/seed_9900_9999.txt'), 'utf8');
  const expected = { seed: { start: 9900, end: 10000, outputs: JSON.parse(python) } };
  if (process.env.PRIMEPOOL_NATIVE) {
    const native = JSON.parse(fs.readFileSync(process.env.PRIMEPOOL_NATIVE, 'utf8'));
    const same = JSON.stringify(native.seed.outputs) === JSON.stringify(expected.seed.outputs);
    if (!same) throw new Error('native seed outputs differ from the CPython reference');
    Object.assign(expected, native);
  }
  return expected;
}

const results = [];
async function check(name, body) {
  const t0 = Date.now();
  try {
    await body();
    results.push([name, null]);
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push([name, e]);
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}
function assert(cond, message) {
  if (!cond) throw new Error(message);
}
const equal = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const isolatedServer = process.env.PRIMEPOOL_URL ? { url: process.env.PRIMEPOOL_URL, close() {} } : await serve(www, true);
const plainServer = await serve(www, false);
const consoleErrors = [];

async function open(url) {
  const context = await browser.newContext({ viewport: { width: 1180, height: 1000 } });
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(`${url}: ${m.text()}`); });
  page.on('pageerror', (e) => consoleErrors.push(`${url}: uncaught ${e.message}`));
  await page.goto(url);
  await page.waitForSelector('body[data-ready=true]', { timeout: 30000 });
  return page;
}

async function fill(page, values) {
  for (const [id, value] of Object.entries(values)) await page.fill(`#${id}`, String(value));
}
async function chooseBackends(page, backends) {
  for (const b of ['serial', 'workers', 'rayon']) {
    const box = page.locator(`input[name=backend][value=${b}]`);
    if (!(await box.isDisabled())) await box.setChecked(backends.includes(b));
  }
}
async function runAndWait(page, timeout = 180000) {
  await page.click('#run');
  await page.waitForFunction(() => !document.querySelector('#run').disabled
    && /Done|Stopped/.test(document.querySelector('#status').textContent)
    || !document.querySelector('#message').hidden, null, { timeout });
  const message = await page.locator('#message').textContent();
  assert(await page.locator('#message').isHidden(), `the run failed: ${message}`);
  return page.evaluate(() => window.primepool.lastReport);
}

const expected = nativeOutputs();
let page;
try {
  page = await open(isolatedServer.url);

  await check('the served page is cross-origin isolated and offers all three backends', async () => {
    assert(await page.evaluate(() => crossOriginIsolated), 'not isolated');
    assert(/yes/.test(await page.locator('#isolation').textContent()), 'isolation line');
    assert(!(await page.locator('#rayon-box').isDisabled()), 'rayon disabled');
  });

  let report;
  await check('every backend gives the native outputs for 9900..10000, tasks spread over workers', async () => {
    await fill(page, { start: 9900, end: 10000, workers: 2, repeat: 5 });
    await page.selectOption('#workload', 'seed');
    await chooseBackends(page, ['serial', 'workers', 'rayon']);
    report = await runAndWait(page);
    assert(equal(report.results.map((r) => r.backend), ['serial', 'workers', 'rayon']), 'backends');
    for (const r of report.results) {
      assert(equal(r.outputs, expected.seed.outputs), `${r.backend} outputs differ from native`);
      assert(r.tasks.length === 100 && r.cold_tasks.length === 100, `${r.backend} task records`);
      if (r.backend !== 'serial') {
        // Warm: both workers are up. (In the cold run a worker that starts late may find the
        // work done, on a loaded machine.)
        const ids = new Set(r.tasks.map((t) => t.worker));
        assert(ids.size >= 2, `${r.backend}: only worker(s) ${[...ids]} ran tasks`);
      }
    }
    assert(report.outputs_agree, 'outputs_agree is false');
    assert(report.values.start === 9900 && report.values.end === 10000 && report.workers === 2, 'report fields');
    // The browser's extra fields (flattened into the shared schema) survive the trip to JS and,
    // for the machine, from JS into Rust and back.
    const m = report.machine;
    assert(m.os === 'browser' && m.cpus >= 1 && m.user_agent.length > 0 && m.cross_origin_isolated === true,
      `machine ${JSON.stringify(m)}`);
    for (const r of report.results) {
      assert(typeof r.efficiency === 'number' && typeof r.cold_speedup_vs_serial === 'number'
        && r.cold_s > 0, `${r.backend} browser fields`);
    }
    const rows = await page.locator('#table tbody tr').count();
    assert(rows === 3, `${rows} table rows`);
    assert(await page.locator('#timeline svg rect').count() > 300, 'timeline drawn');
    if (process.env.PRIMEPOOL_FIGURES) fs.writeFileSync(process.env.PRIMEPOOL_FIGURES, JSON.stringify(report, null, 1));
    for (const r of report.results) {
      console.log(`     ${r.backend.padEnd(8)} warm median ${(r.median_s * 1000).toFixed(1)} ms`
        + ` (${r.speedup_vs_serial?.toFixed(2)}x), cold ${(r.cold_s * 1000).toFixed(1)} ms`
        + ` (${r.cold_speedup_vs_serial?.toFixed(2)}x)${r.startup_s != null ? `, start-up ${(r.startup_s * 1000).toFixed(1)} ms` : ''}`);
    }
  });

  await check('a screenshot of the finished page is saved', async () => {
    assert(report, 'no finished run to show');
    fs.mkdirSync(path.dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
    assert(fs.statSync(screenshot).size > 10000, 'screenshot too small');
  });

  await check('the Web Worker pool passes the executor behaviour checks', async () => {
    const outcome = await page.evaluate(() => window.primepool.runConformance());
    assert(outcome.passed.length >= 14, `only ${outcome.passed.length} checks ran`);
    assert(outcome.failed.length === 0, outcome.failed.join('\n'));
  });

  if (expected.primes) {
    await check('the primes workload matches native on every backend', async () => {
      const { start, end, outputs } = expected.primes;
      const r = await page.evaluate((o) => window.primepool.runBenchmark(o),
        { start, end, workload: 'primes', workers: 2, repeat: 1 });
      for (const x of r.results) assert(equal(x.outputs, outputs), `${x.backend} differs from native`);
    });
  }

  for (const backend of ['workers', 'serial', 'rayon']) {
    await check(`Stop ends a long ${backend} run within a second and ends its workers`, async () => {
      // Workers ended earlier (a terminated busy task lingers 2 s) must not count here.
      for (let i = 0; i < 100 && page.workers().length > 0; i++) await page.waitForTimeout(50);
      await fill(page, { start: 9000, end: 20000, workers: 2, repeat: 1 });
      await chooseBackends(page, [backend]);
      await page.click('#run');
      await page.waitForFunction(() => document.querySelector('#progress').value > 20, null, { timeout: 30000 });
      const before = page.workers().length;
      const t0 = Date.now();
      await page.click('#stop');
      await page.waitForFunction(() => !document.querySelector('#run').disabled, null, { timeout: 5000 });
      const took = Date.now() - t0;
      assert(took < 1000, `Stop took ${took} ms`);
      assert(/Stopped/.test(await page.locator('#message').textContent()), 'no Stopped message');
      // A pool worker is between two short chunks and ends at once. rayon's threads never
      // return to their event loop, so Chromium ends them 2 s after terminate(); their queued
      // work is cancelled first, so they idle until then.
      const limit = backend === 'rayon' ? 3500 : 1000;
      while (page.workers().length > 0 && Date.now() - t0 < limit) await page.waitForTimeout(20);
      assert(page.workers().length === 0,
        `${page.workers().length} of ${before} workers still alive ${Date.now() - t0} ms after Stop`);
      const progress = await page.evaluate(() => document.querySelector('#progress').value);
      await page.waitForTimeout(300);
      assert(progress === await page.evaluate(() => document.querySelector('#progress').value), 'work went on after Stop');
    });
  }

  await check('bad input gets a clear message and the page stays responsive', async () => {
    const cases = [
      [{ start: 10, end: 5 }, /reversed/],
      [{ start: 10, end: '' }, /Enter a start/],
      [{ start: -3, end: 5 }, /negative/],
      [{ start: 5, end: 5 }, /empty/],
      [{ start: 0, end: 1000000000 }, /too many/],
      [{ start: 100000, end: 130000 }, /of work/],
      [{ start: 1, end: 10, workers: 0 }, /at least 1/],
    ];
    await chooseBackends(page, ['serial']);
    for (const [values, pattern] of cases) {
      await fill(page, { workers: 2, ...values });
      const t0 = Date.now();
      await page.click('#run');
      await page.waitForFunction(() => !document.querySelector('#message').hidden, null, { timeout: 2000 });
      const text = await page.locator('#message').textContent();
      assert(pattern.test(text), `${JSON.stringify(values)} gave "${text}"`);
      assert(Date.now() - t0 < 2000, 'slow to refuse');
    }
    assert(await page.evaluate(() => 6 * 7) === 42, 'page unresponsive');
  });

  await check('without COOP/COEP rayon is disabled with its reason and the rest works', async () => {
    const plain = await open(plainServer.url);
    assert(!(await plain.evaluate(() => crossOriginIsolated)), 'unexpectedly isolated');
    assert(await plain.locator('#rayon-box').isDisabled(), 'rayon still enabled');
    assert(/not cross-origin isolated/.test(await plain.locator('#isolation').textContent()), 'no reason shown');
    await fill(plain, { start: 9900, end: 10000, workers: 2, repeat: 1 });
    const r = await runAndWait(plain);
    assert(equal(r.results.map((x) => x.backend), ['serial', 'workers']), 'backends');
    for (const x of r.results) assert(equal(x.outputs, expected.seed.outputs), `${x.backend} differs`);
    await plain.context().close();
  });

  await check('no errors in the browser console', async () => {
    assert(consoleErrors.length === 0, consoleErrors.join('\n'));
  });
} finally {
  await browser.close();
  isolatedServer.close();
  plainServer.close();
}

const failed = results.filter(([, e]) => e).length;
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
