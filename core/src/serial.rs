//! [`SerialExecutor`]: every task runs inline, in the caller's thread, at `submit` time (the
//! source document's "normal case", and the baseline of every speed-up).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Error;
use crate::executor::{Executor, InProcessExecutor};
use crate::job::Job;

/// Runs each task immediately in the calling thread; its future is done when `submit` returns.
#[derive(Debug, Default)]
pub struct SerialExecutor {
    shut_down: AtomicBool,
}

impl SerialExecutor {
    /// A new serial executor.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Executor for SerialExecutor {
    fn name(&self) -> &'static str {
        "serial"
    }

    fn max_workers(&self) -> usize {
        1
    }

    fn execute(&self, job: Job) -> Result<(), Error> {
        if self.shut_down.load(Ordering::Acquire) {
            return Err(Error::ShutDown);
        }
        job.run_local();
        Ok(())
    }

    /// One chunk: every call runs inline anyway, so splitting buys nothing.
    /// One chunk: there is no one to balance with, and nothing to gain from splitting.
    fn auto_chunks(&self, items: usize) -> Vec<usize> {
        if items == 0 {
            Vec::new()
        } else {
            vec![items]
        }
    }

    fn shutdown(&self, _wait: bool, _cancel_futures: bool) {
        self.shut_down.store(true, Ordering::Release);
    }
}

impl InProcessExecutor for SerialExecutor {}

#[cfg(test)]
mod tests {
    crate::conformance_tests!(|_workers| Box::new(crate::SerialExecutor::new()));
}
