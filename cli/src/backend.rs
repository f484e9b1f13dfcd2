//! The one place that turns a backend name and a worker count into an executor, so the
//! benchmark, the demo and the tests all build pools the same way.

use primepool::{
    Error, Executor, ProcessPoolExecutor, RayonExecutor, SerialExecutor, ThreadPoolExecutor,
};

use super::args::Backend;

/// Builds the executor for `backend` with `workers` workers (the serial backend always has one).
/// The cluster backend connects to `cluster` (a server URL), whose workers run the tasks.
pub fn make_executor(
    backend: Backend,
    workers: usize,
    cluster: Option<&str>,
) -> Result<Box<dyn Executor>, Error> {
    if workers == 0 {
        return Err(Error::invalid("max_workers must be at least 1"));
    }
    match backend {
        Backend::Serial => Ok(Box::new(SerialExecutor::new())),
        Backend::Threads => Ok(Box::new(ThreadPoolExecutor::new(workers)?)),
        Backend::Rayon => Ok(Box::new(RayonExecutor::new(workers)?)),
        Backend::Processes => Ok(Box::new(ProcessPoolExecutor::new(workers)?)),
        Backend::Cluster => match cluster {
            Some(url) => Ok(Box::new(super::cluster::connect(url)?)),
            None => Err(Error::invalid(
                "the cluster backend needs a server URL (--connect)",
            )),
        },
    }
}

/// How many workers `backend` really uses when asked for `workers`.
pub fn effective_workers(backend: Backend, workers: usize) -> usize {
    match backend {
        Backend::Serial => 1,
        _ => workers,
    }
}
