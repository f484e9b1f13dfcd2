//! Running the benchmark on one backend: a cold run (start-up included) and warm runs, each
//! timed, every task reported as it finishes.

use std::cell::Cell;

use primepool_core::backend::ChunkFuture;
use primepool_core::{
    as_completed, Error, Executor, ExecutorExt, Future, MapOptions, SerialExecutor,
};
use wasm_bindgen::prelude::*;

use crate::clock::now_ms;
use crate::options::{Backend, Plan};
use crate::report::{rebase, BackendRun};
use crate::task::{measured, TaskRecord};
use crate::worker_pool::WorkerPoolExecutor;

#[wasm_bindgen(module = "/src/js/event_loop.js")]
extern "C" {
    #[wasm_bindgen(js_name = yieldToEventLoop)]
    fn yield_to_event_loop() -> js_sys::Promise;
}

/// A promise that resolves on the event loop's next turn.
pub(crate) fn next_turn() -> js_sys::Promise {
    yield_to_event_loop()
}

/// How long the serial backend computes before letting the page render and handle Stop.
const SLICE_MS: f64 = 30.0;

thread_local! {
    static STOP: Cell<bool> = const { Cell::new(false) };
}

/// Which run a finished task belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The first run, start-up included.
    Cold,
    /// A run on the already started executor.
    Warm(u32),
}

/// Told about every finished task: its run, the task, and how many of the run's tasks are done.
pub type Progress<'a> = &'a mut dyn FnMut(Phase, &TaskRecord, usize);

/// Asks the running benchmark on this thread to stop: the Web Worker pool's workers are ended at
/// once, the serial loop stops at its next task.
pub fn request_stop() {
    STOP.with(|s| s.set(true));
    crate::worker_pool::kill_all_pools();
    #[cfg(feature = "rayon")]
    crate::rayon_pool::cancel_all();
}

fn stopped() -> bool {
    STOP.with(Cell::get)
}

const STOPPED: &str = "Stopped.";

struct Sample {
    seconds: f64,
    outputs: Vec<u32>,
    tasks: Vec<TaskRecord>,
}

/// Maps the plan's values on `pool`, awaiting every result; `t0` is when timing started.
async fn timed_map(
    pool: &dyn Executor,
    plan: &Plan,
    chunksize: Option<usize>,
    t0: f64,
    phase: Phase,
    progress: Progress<'_>,
) -> Result<Sample, String> {
    let options = MapOptions::new().chunksize(chunksize);
    let map = pool
        .map_with(measured, plan.inputs(), options)
        .map_err(|e| e.to_string())?;
    let chunks: Vec<ChunkFuture<TaskRecord>> = map.chunks().map(|(c, _)| c.clone()).collect();
    let mut finished = as_completed(&chunks, None);
    let mut done = 0;
    while let Some(chunk) = finished.next_async().await {
        let outcomes = match chunk.and_then(|chunk| chunk.result(None)) {
            Ok(outcomes) => outcomes,
            Err(_) if stopped() => return Err(STOPPED.into()),
            Err(e) => return Err(e.to_string()),
        };
        for outcome in outcomes {
            match outcome {
                Ok(record) => {
                    done += 1;
                    progress(phase, &record, done);
                }
                Err(_) if stopped() => return Err(STOPPED.into()),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    let seconds = (now_ms() - t0) / 1000.0;
    drop(finished);
    drop(map);
    let tasks = chunks
        .into_iter()
        .map(Future::join)
        .collect::<Result<Vec<_>, Error>>()
        .map_err(|e| e.to_string())?
        .into_iter()
        .flatten()
        .collect::<Result<Vec<_>, Error>>()
        .map_err(|e| e.to_string())?;
    sample(tasks, t0, seconds)
}

fn collect(futures: Vec<Future<TaskRecord>>, t0: f64, seconds: f64) -> Result<Sample, String> {
    let tasks = futures
        .into_iter()
        .map(Future::join)
        .collect::<Result<Vec<_>, Error>>()
        .map_err(|e| e.to_string())?;
    sample(tasks, t0, seconds)
}

fn sample(mut tasks: Vec<TaskRecord>, t0: f64, seconds: f64) -> Result<Sample, String> {
    rebase(&mut tasks, t0);
    Ok(Sample {
        seconds,
        outputs: tasks.iter().map(|t| t.output).collect(),
        tasks,
    })
}

/// The serial backend on the page's thread: one `submit` at a time, giving the browser a turn
/// every [`SLICE_MS`] so the page stays responsive and Stop works. The turns (rendering the
/// progress bar, mostly) are not counted in the run's time: serial would otherwise look slower
/// than it is, and every speed-up larger.
async fn timed_serial(
    pool: &SerialExecutor,
    plan: &Plan,
    t0: f64,
    phase: Phase,
    progress: Progress<'_>,
) -> Result<Sample, String> {
    let mut futures = Vec::with_capacity(plan.len());
    let mut slice = now_ms();
    let mut paused = 0.0;
    for input in plan.inputs() {
        let future = pool.submit(measured, input).map_err(|e| e.to_string())?;
        let record = future.result(None).map_err(|e| e.to_string())?;
        futures.push(future);
        progress(phase, &record, futures.len());
        let now = now_ms();
        if now - slice > SLICE_MS {
            let _ = wasm_bindgen_futures::JsFuture::from(yield_to_event_loop()).await;
            if stopped() {
                return Err(STOPPED.into());
            }
            slice = now_ms();
            paused += slice - now;
        }
    }
    let seconds = (now_ms() - t0 - paused) / 1000.0;
    collect(futures, t0, seconds)
}

/// Runs `plan` on `backend`: one cold run, then `plan.repeat` warm runs.
pub async fn run_backend(
    plan: &Plan,
    backend: Backend,
    progress: Progress<'_>,
) -> Result<BackendRun, String> {
    STOP.with(|s| s.set(false));
    let workers = plan.workers as usize;
    let mut startup_s = None;
    let mut samples = Vec::new();
    let run_workers = match backend {
        Backend::Serial => {
            let t0 = now_ms();
            let pool = SerialExecutor::new();
            samples.push(timed_serial(&pool, plan, t0, Phase::Cold, progress).await?);
            for r in 0..plan.repeat {
                let t0 = now_ms();
                samples.push(timed_serial(&pool, plan, t0, Phase::Warm(r), progress).await?);
            }
            1
        }
        Backend::Workers => {
            let t0 = now_ms();
            let pool = WorkerPoolExecutor::new(workers).map_err(|e| e.to_string())?;
            let chunksize = Some(plan.pool_chunksize());
            let result = async {
                samples.push(timed_map(&pool, plan, chunksize, t0, Phase::Cold, progress).await?);
                for r in 0..plan.repeat {
                    let t0 = now_ms();
                    let phase = Phase::Warm(r);
                    samples.push(timed_map(&pool, plan, chunksize, t0, phase, progress).await?);
                }
                Ok::<_, String>(())
            }
            .await;
            pool.kill();
            result?;
            workers
        }
        Backend::Rayon => {
            let (pool, startup) = start_rayon(workers).await?;
            startup_s = Some(startup.1);
            let t0 = startup.0;
            let chunksize = plan.chunksize.map(|c| c as usize);
            samples.push(timed_map(&*pool, plan, chunksize, t0, Phase::Cold, progress).await?);
            for r in 0..plan.repeat {
                let t0 = now_ms();
                let phase = Phase::Warm(r);
                samples.push(timed_map(&*pool, plan, chunksize, t0, phase, progress).await?);
            }
            pool.max_workers()
        }
    };
    let cold = samples.remove(0);
    if let Some(bad) = samples.iter().position(|s| s.outputs != cold.outputs) {
        return Err(format!(
            "{} gave different outputs in warm run {bad} than in the cold run",
            backend.name()
        ));
    }
    Ok(BackendRun {
        backend,
        workers: run_workers as u32,
        cold_s: cold.seconds,
        startup_s,
        warm_s: samples.iter().map(|s| s.seconds).collect(),
        outputs: cold.outputs,
        cold_tasks: cold.tasks,
        tasks: samples.pop().map(|s| s.tasks).unwrap_or_default(),
    })
}

/// Starts the rayon pool; returns it with (when timing started, start-up seconds).
#[cfg(feature = "rayon")]
async fn start_rayon(workers: usize) -> Result<(Box<dyn Executor>, (f64, f64)), String> {
    use wasm_bindgen::JsCast;
    if js_sys::global().dyn_ref::<web_sys::Window>().is_some() {
        return Err(
            "rayon must run in a worker: on the page's main thread it would freeze the page".into(),
        );
    }
    let t0 = now_ms();
    crate::rayon_pool::start_thread_pool(workers)
        .await
        .map_err(|e| e.to_string())?;
    let startup = (now_ms() - t0) / 1000.0;
    let pool = crate::rayon_pool::RayonExecutor::new(workers).map_err(|e| e.to_string())?;
    Ok((Box::new(pool), (t0, startup)))
}

#[cfg(not(feature = "rayon"))]
async fn start_rayon(_workers: usize) -> Result<(Box<dyn Executor>, (f64, f64)), String> {
    Err("this is the plain build: rayon needs the atomics build, loaded in a worker of a cross-origin isolated page".into())
}
