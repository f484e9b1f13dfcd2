//! The JavaScript API (wasm-bindgen exports). Both builds export the same functions; the page
//! runs `serial` and `workers` with the plain build on its own thread, and `rayon` with the
//! atomics build in a dedicated worker.

use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::bench::{self, Phase};
use crate::options::{validate, Backend, Plan, RawOptions};
use crate::report::{summarize as build_report, BackendRun, Machine};
use crate::task::TaskRecord;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** What to run. Numbers may come straight from input boxes: they are validated. */
export interface BenchOptions {
  start: number;            // first value
  end: number;              // one past the last value (start..end)
  workload?: "seed" | "primes" | "noop";
  workers?: number;         // Web Workers / rayon threads (default 2)
  repeat?: number;          // warm runs per backend (default 3)
  backends?: Array<"serial" | "workers" | "rayon">;
  chunksize?: number;       // values per Web Worker message (default: ~4 per worker)
}
export interface Plan {
  start: number; end: number; workload: string; workers: number; repeat: number;
  backends: string[]; chunksize: number | null; estimated_serial_s: number;
}
/** One finished task; times in ms from the start of its run. */
export interface TaskRecord { value: number; output: number; worker: number; start_ms: number; end_ms: number; }
export interface Progress extends TaskRecord {
  backend: string; phase: "cold" | "warm"; run: number; done: number; total: number;
}
export interface BackendRun {
  backend: string; workers: number; cold_s: number; startup_s: number | null; warm_s: number[];
  outputs: number[]; cold_tasks: TaskRecord[]; tasks: TaskRecord[];
}
export interface Machine { cpus: number; os: string; user_agent: string; cross_origin_isolated: boolean; }
/**
 * `primepool bench --json`'s fields (primepool_core::report), plus cold figures and per-task
 * detail after each result's `outputs`.
 */
export interface BenchReport {
  workload: string; mode: string; values: { start: number; end: number };
  workers: number; repeat: number; machine: Machine;
  results: Array<{
    backend: string; workers: number; min_s: number; median_s: number; max_s: number;
    speedup_vs_serial: number | null; outputs: number[];
    efficiency: number | null; cold_s: number; cold_speedup_vs_serial: number | null;
    startup_s: number | null; tasks: TaskRecord[]; cold_tasks: TaskRecord[];
  }>;
  outputs_agree: boolean;
}
"#;

fn to_js(value: &impl Serialize) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&e.to_string()))
}

fn plan_from(options: JsValue) -> Result<Plan, JsError> {
    let raw: RawOptions = serde_wasm_bindgen::from_value(options)
        .map_err(|e| JsError::new(&format!("Unreadable options: {e}")))?;
    validate(&raw).map_err(|e| JsError::new(&e.0))
}

/// Marks the page's main thread as one that never blocks (see `primepool_core::blocking`).
#[wasm_bindgen(start)]
pub fn start() {
    if js_sys::global().dyn_ref::<web_sys::Window>().is_some() {
        primepool_core::blocking::forbid_on_this_thread();
    }
}

/// Checks options; returns the plan, or throws an `Error` whose message tells the visitor what
/// to fix.
#[wasm_bindgen(js_name = validateOptions, unchecked_return_type = "Plan")]
pub fn validate_options(
    #[wasm_bindgen(unchecked_param_type = "BenchOptions")] options: JsValue,
) -> Result<JsValue, JsError> {
    to_js(&plan_from(options)?)
}

/// Runs one backend: a cold run (start-up included), then `repeat` warm runs. `onProgress`
/// is called for every finished task. Rejects with "Stopped." after `stop()`.
#[wasm_bindgen(js_name = runBackend, unchecked_return_type = "BackendRun")]
pub async fn run_backend(
    #[wasm_bindgen(unchecked_param_type = "BenchOptions")] options: JsValue,
    backend: String,
    #[wasm_bindgen(unchecked_param_type = "((p: Progress) => void) | undefined")]
    on_progress: Option<js_sys::Function>,
) -> Result<JsValue, JsError> {
    let plan = plan_from(options)?;
    let backend = Backend::parse(&backend).map_err(|e| JsError::new(&e.0))?;
    let total = plan.len();
    let mut progress = |phase: Phase, task: &TaskRecord, done: usize| {
        let Some(callback) = &on_progress else { return };
        #[derive(Serialize)]
        struct Report<'a> {
            backend: &'a str,
            phase: &'a str,
            run: u32,
            done: usize,
            total: usize,
            #[serde(flatten)]
            task: &'a TaskRecord,
        }
        let (phase, run) = match phase {
            Phase::Cold => ("cold", 0),
            Phase::Warm(r) => ("warm", r + 1),
        };
        let report = Report {
            backend: backend.name(),
            phase,
            run,
            done,
            total,
            task,
        };
        if let Ok(value) = to_js(&report) {
            let _ = callback.call1(&JsValue::NULL, &value);
        }
    };
    let run = bench::run_backend(&plan, backend, &mut progress)
        .await
        .map_err(|e| JsError::new(&e))?;
    to_js(&run)
}

/// Compares the backends' runs and builds the report.
#[wasm_bindgen(unchecked_return_type = "BenchReport")]
pub fn summarize(
    #[wasm_bindgen(unchecked_param_type = "BenchOptions")] options: JsValue,
    #[wasm_bindgen(unchecked_param_type = "BackendRun[]")] runs: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Machine")] machine: JsValue,
) -> Result<JsValue, JsError> {
    let plan = plan_from(options)?;
    let runs: Vec<BackendRun> = serde_wasm_bindgen::from_value(runs)
        .map_err(|e| JsError::new(&format!("Unreadable runs: {e}")))?;
    let machine: Machine = serde_wasm_bindgen::from_value(machine)
        .map_err(|e| JsError::new(&format!("Unreadable machine: {e}")))?;
    to_js(&build_report(&plan, runs, machine))
}

/// Stops the benchmark running on this thread: Web Workers are ended at once, the serial loop
/// stops within one task.
#[wasm_bindgen]
pub fn stop() {
    bench::request_stop();
}

/// Which build this is: `"plain"` (Web Worker pool and serial) or `"atomics"` (rayon too).
#[wasm_bindgen(js_name = buildVariant)]
pub fn build_variant() -> String {
    if cfg!(feature = "rayon") {
        "atomics".into()
    } else {
        "plain".into()
    }
}

/// Runs the executor behaviour checks on a Web Worker pool; resolves to the failures
/// (`"check: why"`), empty when all pass, and the names of the checks that ran.
#[wasm_bindgen(
    js_name = runConformance,
    unchecked_return_type = "{ passed: string[], failed: string[] }"
)]
pub async fn run_conformance() -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct Outcome {
        passed: Vec<&'static str>,
        failed: Vec<String>,
    }
    let mut outcome = Outcome {
        passed: Vec::new(),
        failed: Vec::new(),
    };
    for (name, failure) in crate::checks::run_all().await {
        match failure {
            None => outcome.passed.push(name),
            Some(why) => outcome.failed.push(format!("{name}: {why}")),
        }
    }
    to_js(&outcome)
}
