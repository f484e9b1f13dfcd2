//! [`ProcessPoolExecutor`]: real worker processes (placeholder; see issue 4).

/// A pool of worker processes implementing [`Executor`](crate::Executor).
#[derive(Debug)]
pub struct ProcessPoolExecutor;

/// Call first thing in `main`: in a worker process started by a [`ProcessPoolExecutor`] this
/// runs the worker loop and exits; in any other process it returns at once.
pub fn run_worker_if_requested() {}
