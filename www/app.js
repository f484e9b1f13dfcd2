// The page: reads the inputs, runs the benchmark (bench.js), draws the results.
import { isolation, load, runBenchmark, runConformance, stop } from './bench.js';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const COLORS = { serial: 'var(--serial)', workers: 'var(--workers)', rayon: 'var(--rayon)' };
const LABELS = { serial: 'serial', workers: 'Web Workers', rayon: 'rayon' };

let lastReport = null;

function showMessage(text) {
  const m = $('message');
  m.textContent = text || '';
  m.hidden = !text;
}

function numberOrUndefined(id) {
  const raw = $(id).value.trim();
  return raw === '' ? undefined : Number(raw);
}

function readOptions() {
  return {
    start: numberOrUndefined('start'),
    end: numberOrUndefined('end'),
    workload: $('workload').value,
    workers: numberOrUndefined('workers'),
    repeat: numberOrUndefined('repeat'),
    backends: [...document.querySelectorAll('input[name=backend]:checked')].map((b) => b.value),
  };
}

function setRunning(running) {
  $('run').disabled = running;
  $('stop').disabled = !running;
  for (const el of $('form').querySelectorAll('fieldset')) el.disabled = running;
}

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

const ms = (s) => `${(s * 1000).toFixed(1)} ms`;
const times = (x) => (x == null ? '–' : `${x.toFixed(2)}×`);
const percent = (x) => (x == null ? '–' : `${Math.round(x * 100)} %`);

function drawTable(report) {
  const body = $('table').tBodies[0];
  body.replaceChildren();
  const reference = report.results[0].outputs;
  for (const r of report.results) {
    const same = r.outputs.length === reference.length && r.outputs.every((v, i) => v === reference[i]);
    const row = body.insertRow();
    row.dataset.backend = r.backend;
    const cells = [
      LABELS[r.backend], r.workers, ms(r.median_s), `${ms(r.min_s)} – ${ms(r.max_s)}`,
      times(r.speedup_vs_serial), percent(r.efficiency), ms(r.cold_s),
      times(r.cold_speedup_vs_serial), same ? 'agree' : 'DIFFER',
    ];
    cells.forEach((c, i) => {
      const td = row.insertCell();
      if (i === 0) {
        const sw = document.createElement('span');
        sw.className = 'swatch';
        sw.style.background = COLORS[r.backend];
        td.append(sw);
      }
      td.append(String(c));
      if (i === 8) td.className = same ? 'ok' : 'bad';
    });
  }
}

function drawChart(report) {
  const chart = $('chart');
  chart.replaceChildren();
  const rowH = 22, left = 150, width = 900, gap = 6;
  const rows = report.results.flatMap((r) => [
    { label: `${LABELS[r.backend]} warm`, value: r.median_s, backend: r.backend, cold: false },
    { label: `${LABELS[r.backend]} cold`, value: r.cold_s, backend: r.backend, cold: true },
  ]);
  const max = Math.max(...rows.map((r) => r.value), 1e-9);
  const height = rows.length * (rowH + gap) + 4;
  chart.setAttribute('viewBox', `0 0 ${width} ${height}`);
  rows.forEach((row, i) => {
    const y = i * (rowH + gap);
    const w = ((width - left - 90) * row.value) / max;
    chart.append(svg('text', { x: left - 8, y: y + 15, 'text-anchor': 'end', 'font-size': 13, fill: '#374151' }, row.label));
    chart.append(svg('rect', {
      x: left, y, width: Math.max(w, 1), height: rowH, rx: 3,
      fill: COLORS[row.backend], 'fill-opacity': row.cold ? 0.45 : 1,
    }));
    chart.append(svg('text', { x: left + w + 6, y: y + 15, 'font-size': 13, fill: '#374151' }, ms(row.value)));
  });
}

function drawTimeline(report) {
  const which = document.querySelector('input[name=which]:checked').value;
  const box = $('timeline');
  box.replaceChildren();
  const groups = report.results.map((r) => ({ r, tasks: which === 'cold' ? r.cold_tasks : r.tasks }));
  const end = Math.max(...groups.flatMap((g) => g.tasks.map((t) => t.end_ms)), 1);
  const width = 900, left = 150, rowH = 16, gap = 4;
  let rows = 0;
  const layout = groups.map((g) => {
    const workers = [...new Set(g.tasks.map((t) => t.worker))].sort((a, b) => a - b);
    const first = rows;
    rows += workers.length;
    return { ...g, workers, first };
  });
  const height = rows * (rowH + gap) + 28;
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'timeline', role: 'img', 'aria-label': 'per-worker timeline' });
  const scale = (width - left - 10) / end;
  for (const g of layout) {
    g.workers.forEach((w, i) => {
      const y = (g.first + i) * (rowH + gap);
      const name = g.r.backend === 'serial' ? 'serial (page)' : `${LABELS[g.r.backend]} #${w}`;
      chart.append(svg('text', { x: left - 8, y: y + 12, 'text-anchor': 'end', 'font-size': 12, fill: '#374151' }, name));
      chart.append(svg('rect', { x: left, y, width: width - left - 10, height: rowH, fill: '#f1f5f9' }));
    });
    for (const t of g.tasks) {
      const row = g.first + g.workers.indexOf(t.worker);
      const rect = svg('rect', {
        x: left + t.start_ms * scale, y: row * (rowH + gap),
        width: Math.max((t.end_ms - t.start_ms) * scale, 0.8), height: rowH,
        fill: COLORS[g.r.backend], stroke: '#fff', 'stroke-width': 0.3,
      });
      rect.append(svg('title', {}, `value ${t.value} → ${t.output}\nworker ${t.worker}, ${t.start_ms.toFixed(1)}–${t.end_ms.toFixed(1)} ms`));
      chart.append(rect);
    }
  }
  const axisY = rows * (rowH + gap) + 16;
  for (let i = 0; i <= 4; i++) {
    const x = left + ((width - left - 10) * i) / 4;
    chart.append(svg('text', { x, y: axisY, 'text-anchor': 'middle', 'font-size': 11, fill: '#6b7280' }, `${((end * i) / 4).toFixed(0)} ms`));
  }
  box.append(chart);
}

function draw(report) {
  $('results').hidden = false;
  drawTable(report);
  drawChart(report);
  drawTimeline(report);
}

async function run(event) {
  event.preventDefault();
  showMessage('');
  const options = readOptions();
  let plan;
  try {
    plan = (await load()).validateOptions(options);
  } catch (e) {
    showMessage(e.message);
    return;
  }
  const perBackend = (plan.end - plan.start) * (plan.repeat + 1);
  const total = perBackend * plan.backends.length;
  let done = 0, frame = 0;
  const progress = $('progress');
  progress.max = total;
  progress.value = 0;
  const onProgress = (p) => {
    done += 1;
    if (!frame) {
      frame = requestAnimationFrame(() => {
        frame = 0;
        progress.value = done;
        $('status').textContent = `${LABELS[p.backend]}: ${p.phase} run ${p.phase === 'warm' ? p.run : ''} ${p.done}/${p.total}`;
      });
    }
  };
  setRunning(true);
  $('status').textContent = 'Running…';
  const started = performance.now();
  try {
    const report = await runBenchmark(options, onProgress);
    lastReport = report;
    progress.value = total;
    $('status').textContent = `Done in ${((performance.now() - started) / 1000).toFixed(1)} s${report.outputs_agree ? '' : ' — outputs DIFFER'}.`;
    draw(report);
  } catch (e) {
    $('status').textContent = '';
    showMessage(e.message);
  } finally {
    if (frame) cancelAnimationFrame(frame);
    setRunning(false);
  }
}

function onStop() {
  stop();
  $('status').textContent = 'Stopped.';
}

function init() {
  const iso = isolation();
  const line = $('isolation');
  line.className = `isolation ${iso.rayon ? 'on' : 'off'}`;
  line.textContent = iso.rayon
    ? 'crossOriginIsolated: yes — all three backends are available.'
    : `crossOriginIsolated: ${iso.isolated ? 'yes' : 'no'} — ${iso.reason}`;
  if (!iso.rayon) {
    const box = $('rayon-box');
    box.checked = false;
    box.disabled = true;
    box.parentElement.title = iso.reason;
  }
  $('workers').value = navigator.hardwareConcurrency || 2;
  $('form').addEventListener('submit', run);
  $('stop').addEventListener('click', onStop);
  for (const r of document.querySelectorAll('input[name=which]')) {
    r.addEventListener('change', () => lastReport && drawTimeline(lastReport));
  }
  // For scripts and the browser test.
  window.primepool = { runBenchmark, runConformance, stop, isolation, get lastReport() { return lastReport; } };
  load().then(() => document.body.dataset.ready = 'true', (e) => showMessage(`Could not load the wasm module: ${e.message}`));
}

init();
