//! The benchmark's task: one workload call, timed where it runs and tagged with the worker that
//! ran it, so the page can draw which worker ran which value, and when.

use std::cell::Cell;

use primepool_core::workload::Workload;
use serde::{Deserialize, Serialize};

use crate::clock::now_ms;

thread_local! {
    static WORKER: Cell<u32> = const { Cell::new(0) };
}

/// Records which worker this thread is, for the tasks it runs: a pool worker's id, set once
/// when it starts. Threads that never call it report worker 0 (the serial backend).
pub fn set_current_worker(id: u32) {
    WORKER.with(|w| w.set(id));
}

/// The worker running the current task: a rayon thread's index in the thread pool, otherwise
/// the id given to [`set_current_worker`].
pub fn current_worker() -> u32 {
    #[cfg(feature = "rayon")]
    if let Some(index) = rayon::current_thread_index() {
        return u32::try_from(index).unwrap_or(u32::MAX);
    }
    WORKER.with(Cell::get)
}

/// One timed call, as it comes back from whichever worker ran it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The input value.
    pub value: u32,
    /// The workload's output for it.
    pub output: u32,
    /// The worker that ran it (see [`current_worker`]).
    pub worker: u32,
    /// When the call started and ended: milliseconds on the shared clock
    /// ([`crate::clock::now_ms`]); the report rebases them on the run's start.
    pub start_ms: f64,
    /// See `start_ms`.
    pub end_ms: f64,
}

/// The function every backend maps: runs `workload` on `value` and times it. A plain `fn`, so
/// it can be shipped to a Web Worker by identity.
pub fn measured((workload, value): (Workload, u32)) -> TaskRecord {
    let start_ms = now_ms();
    let output = workload.function()(value);
    let end_ms = now_ms();
    TaskRecord {
        value,
        output,
        worker: current_worker(),
        start_ms,
        end_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measured_call_returns_the_workload_output_with_its_worker_and_times() {
        std::thread::spawn(|| {
            set_current_worker(7);
            let r = measured((Workload::Seed, 9_999));
            assert_eq!((r.value, r.output, r.worker), (9_999, 9_991, 7));
            assert!(r.end_ms >= r.start_ms && r.start_ms > 0.0);
        })
        .join()
        .unwrap();
        assert_eq!(measured((Workload::Primes, 10)).worker, 0);
    }
}
