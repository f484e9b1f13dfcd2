//! The benchmark runner: the source document's comparison, each timing covering what the
//! document's covered (pool creation, all the work, and shutdown), and the outputs check.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use primepool::workload::Workload;
use primepool::{Error, Executor, ExecutorExt, Future, Map, MapOptions};

use super::args::{Backend, Mode, ValueRange};
use super::backend::{effective_workers, make_executor};
use super::interrupt::Interrupt;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The function mapped over the values.
    pub workload: Workload,
    /// One `map` call, or one `submit` per value.
    pub mode: Mode,
    /// The inputs.
    pub values: ValueRange,
    /// The backends, serial first, each once.
    pub backends: Vec<Backend>,
    /// Workers per pool (serial always has one).
    pub workers: usize,
    /// Timings per backend.
    pub repeat: usize,
    /// Inputs per `map` job; `None`: the executor's automatic choice.
    pub chunksize: Option<usize>,
    /// The server URL the cluster backend connects to (when it is among the backends).
    pub cluster_url: Option<String>,
}

impl BenchConfig {
    /// Puts serial first (the baseline every speedup divides) and drops repeated backends.
    pub fn normalise_backends(backends: &[Backend]) -> Vec<Backend> {
        let mut out = vec![Backend::Serial];
        for &backend in backends {
            if !out.contains(&backend) {
                out.push(backend);
            }
        }
        out
    }

    /// How many tasks the whole run executes (for the progress bar).
    pub fn total_tasks(&self) -> u64 {
        (self.values.len() * self.backends.len() * self.repeat) as u64
    }
}

/// One backend's timings and outputs.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Which backend.
    pub backend: Backend,
    /// How many workers it used.
    pub workers: usize,
    /// One wall-clock time per repetition, in run order.
    pub times: Vec<Duration>,
    /// The outputs of its first repetition, in input order.
    pub outputs: Vec<u32>,
    /// The first repetition whose outputs differed from the first one's, if any.
    pub inconsistent_run: Option<usize>,
}

/// Why a benchmark stopped early.
#[derive(Debug)]
pub enum BenchError {
    /// Ctrl-C was pressed.
    Interrupted,
    /// A backend could not be built or a task failed.
    Failed {
        /// The backend that failed.
        backend: Backend,
        /// What went wrong.
        error: Error,
    },
}

/// Runs every backend `repeat` times, interleaved, so that a change in the machine's load
/// during the run affects every backend alike, and in a rotating order (serial, threads, ...;
/// then threads, rayon, ...), so that no backend always runs right after the same one. That
/// matters: on Linux, threads started just after a long single-threaded run (serial) often
/// share one CPU for several milliseconds before the scheduler spreads them (measured here:
/// thread-pool median 57.9 ms right after serial, 49.7 ms right after the process pool).
pub fn run(
    config: &BenchConfig,
    progress: &ProgressBar,
    interrupt: &Interrupt,
) -> Result<Vec<Measured>, BenchError> {
    let mut measured: Vec<Measured> = config
        .backends
        .iter()
        .map(|&backend| Measured {
            backend,
            workers: effective_workers(backend, config.workers),
            times: Vec::with_capacity(config.repeat),
            outputs: Vec::new(),
            inconsistent_run: None,
        })
        .collect();
    let count = measured.len();
    for round in 0..config.repeat {
        for k in 0..count {
            let entry = &mut measured[(round + k) % count];
            progress.set_message(entry.backend.name());
            let (time, outputs) = run_once(config, entry.backend, progress, interrupt)?;
            log::info!(
                "{} run {}/{}: {:.4} s",
                entry.backend,
                round + 1,
                config.repeat,
                time.as_secs_f64()
            );
            entry.times.push(time);
            if round == 0 {
                entry.outputs = outputs;
            } else if outputs != entry.outputs && entry.inconsistent_run.is_none() {
                entry.inconsistent_run = Some(round + 1);
            }
        }
    }
    Ok(measured)
}

/// One timing: pool creation, all the work, and shutdown (the drop at the end).
fn run_once(
    config: &BenchConfig,
    backend: Backend,
    progress: &ProgressBar,
    interrupt: &Interrupt,
) -> Result<(Duration, Vec<u32>), BenchError> {
    let fail = |error: Error| {
        if interrupt.is_set() {
            BenchError::Interrupted
        } else {
            BenchError::Failed { backend, error }
        }
    };
    let f = config.workload.function();
    let start = Instant::now();
    let executor: Arc<dyn Executor> =
        make_executor(backend, config.workers, config.cluster_url.as_deref())
            .map_err(fail)?
            .into();
    interrupt.watch_executor(&executor);
    // Progress is counted by done-callbacks, so it moves as tasks finish on the workers; with
    // no terminal to draw on, no callback is attached and the timing carries no extra cost.
    let scheduled = schedule(config, &*executor, f).map_err(fail);
    let outputs = scheduled.and_then(|scheduled| {
        scheduled.watch(progress, interrupt);
        scheduled.collect().map_err(fail)
    });
    interrupt.unwatch();
    drop(executor);
    let elapsed = start.elapsed();
    if interrupt.is_set() {
        return Err(BenchError::Interrupted);
    }
    Ok((elapsed, outputs?))
}

/// The work handed to a pool: one `map`, or one future per `submit`.
enum Scheduled<'a> {
    Map(Map<'a, u32>),
    Submitted(Vec<Future<u32>>),
}

impl Scheduled<'_> {
    /// Moves the progress bar as tasks (or `map` chunks) finish, and lets Ctrl-C terminate
    /// them. With no terminal to draw on, no callback is attached and the timing carries no
    /// extra cost.
    fn watch(&self, progress: &ProgressBar, interrupt: &Interrupt) {
        fn advance<T>(progress: &ProgressBar, future: &Future<T>, tasks: usize) {
            let progress = progress.clone();
            future.add_done_callback(move |_| progress.inc(tasks as u64));
        }
        // (`is_hidden` takes the bar's lock: asked once, not once per task.)
        let progress = (!progress.is_hidden()).then_some(progress);
        match self {
            Scheduled::Map(map) => {
                if let Some(progress) = progress {
                    for (chunk, tasks) in map.chunks() {
                        advance(progress, chunk, tasks);
                    }
                }
                interrupt.watch_futures(map.chunks().map(|(chunk, _)| chunk));
            }
            Scheduled::Submitted(futures) => {
                if let Some(progress) = progress {
                    for future in futures {
                        advance(progress, future, 1);
                    }
                }
                interrupt.watch_futures(futures.iter());
            }
        }
    }

    /// Every output, in input order, or the first error.
    fn collect(self) -> Result<Vec<u32>, Error> {
        match self {
            Scheduled::Map(map) => map.collect(),
            Scheduled::Submitted(futures) => futures.into_iter().map(Future::join).collect(),
        }
    }
}

/// Hands every value to the pool, as one `map` or as one `submit` each.
fn schedule<'a>(
    config: &BenchConfig,
    executor: &'a dyn Executor,
    f: fn(u32) -> u32,
) -> Result<Scheduled<'a>, Error> {
    match config.mode {
        Mode::Map => {
            let options = MapOptions::new().chunksize(config.chunksize);
            Ok(Scheduled::Map(executor.map_with(
                f,
                config.values.values(),
                options,
            )?))
        }
        Mode::Submit => config
            .values
            .values()
            .map(|value| executor.submit(f, value))
            .collect::<Result<_, _>>()
            .map(Scheduled::Submitted),
    }
}

/// Where two backends' outputs first differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The backend that disagrees with serial.
    pub backend: Backend,
    /// The input whose output differs (`None`: the output lists differ in length, or the
    /// backend disagreed with itself between repetitions).
    pub value: Option<u32>,
    /// Serial's output for that input.
    pub expected: Option<u32>,
    /// The backend's output for that input.
    pub got: Option<u32>,
    /// The repetition that differed from the backend's first, when that is the problem.
    pub run: Option<usize>,
}

/// Compares every backend's outputs with serial's (the first entry) and with its own earlier
/// repetitions; returns every disagreement.
pub fn check_outputs(values: &ValueRange, measured: &[Measured]) -> Vec<Mismatch> {
    let Some(baseline) = measured.first() else {
        return Vec::new();
    };
    let mut mismatches = Vec::new();
    for entry in measured {
        if let Some(run) = entry.inconsistent_run {
            mismatches.push(Mismatch {
                backend: entry.backend,
                value: None,
                expected: None,
                got: None,
                run: Some(run),
            });
        }
        if entry.outputs == baseline.outputs {
            continue;
        }
        let first_difference = values
            .values()
            .zip(baseline.outputs.iter().zip(&entry.outputs))
            .find(|(_, (a, b))| a != b);
        mismatches.push(match first_difference {
            Some((value, (&expected, &got))) => Mismatch {
                backend: entry.backend,
                value: Some(value),
                expected: Some(expected),
                got: Some(got),
                run: None,
            },
            None => Mismatch {
                backend: entry.backend,
                value: None,
                expected: None,
                got: None,
                run: None,
            },
        });
    }
    mismatches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &[f64]) -> Vec<Duration> {
        s.iter().map(|&x| Duration::from_secs_f64(x)).collect()
    }

    #[test]
    fn serial_is_put_first_and_duplicates_dropped() {
        use Backend::*;
        assert_eq!(
            BenchConfig::normalise_backends(&[Processes, Threads, Serial, Threads]),
            [Serial, Processes, Threads]
        );
    }

    fn entry(backend: Backend, outputs: Vec<u32>) -> Measured {
        Measured {
            backend,
            workers: 2,
            times: secs(&[1.0]),
            outputs,
            inconsistent_run: None,
        }
    }

    #[test]
    fn a_differing_output_is_reported_with_its_input() {
        let values: ValueRange = "10..13".parse().unwrap();
        let measured = [
            entry(Backend::Serial, vec![1, 2, 3]),
            entry(Backend::Threads, vec![1, 2, 3]),
            entry(Backend::Processes, vec![1, 9, 3]),
        ];
        assert_eq!(
            check_outputs(&values, &measured),
            [Mismatch {
                backend: Backend::Processes,
                value: Some(11),
                expected: Some(2),
                got: Some(9),
                run: None
            }]
        );
    }

    #[test]
    fn missing_outputs_and_unstable_repetitions_are_mismatches_too() {
        let values: ValueRange = "10..13".parse().unwrap();
        let mut unstable = entry(Backend::Rayon, vec![1, 2, 3]);
        unstable.inconsistent_run = Some(2);
        let measured = [
            entry(Backend::Serial, vec![1, 2, 3]),
            entry(Backend::Threads, vec![1, 2]),
            unstable,
        ];
        let found = check_outputs(&values, &measured);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].backend, Backend::Threads);
        assert_eq!(found[1].run, Some(2));
    }

    #[test]
    fn the_serial_backend_runs_the_seed_workload_like_cpython() {
        let config = BenchConfig {
            workload: Workload::Seed,
            mode: Mode::Submit,
            values: "9990..10000".parse().unwrap(),
            backends: vec![Backend::Serial],
            workers: 2,
            repeat: 2,
            chunksize: None,
            cluster_url: None,
        };
        let measured = run(&config, &ProgressBar::hidden(), &Interrupt::default()).unwrap();
        assert_eq!(measured.len(), 1);
        assert_eq!(measured[0].times.len(), 2);
        // The library's seed function, which primepool-core's tests check against CPython's
        // outputs (a packaged crate cannot read core's copy of them, so this one does not).
        let reference: Vec<u32> = (9990..10000)
            .map(primepool::workload::seed_count_prime)
            .collect();
        assert_eq!(measured[0].outputs, reference);
    }
}
