//! [`ProcessPoolExecutor`]: Python's `ProcessPoolExecutor`, with real worker processes.
//!
//! Each task runs in a separate OS process: crash isolation, separate memory, and tasks that
//! can be stopped. Workers are new runs of the program itself (Python's "spawn" start method),
//! so the program's `main` must begin with [`run_worker_if_requested`], the counterpart of
//! Python's `if __name__ == "__main__":` guard:
//!
//! ```
//! use primepool::{ExecutorExt, ProcessPoolExecutor};
//!
//! fn whoami(_: ()) -> u32 {
//!     std::process::id()
//! }
//!
//! fn main() {
//!     primepool::run_worker_if_requested(); // a worker serves the pool here and exits
//!     let pool = ProcessPoolExecutor::new(2).unwrap();
//!     let pid = pool.submit(whoami, ()).unwrap().result(None).unwrap();
//!     assert_ne!(pid, std::process::id());
//!     assert!(pool.worker_pids().contains(&pid));
//! } // dropping the pool waits for its tasks and reaps every worker
//! ```
//!
//! How it works, module by module:
//! - `spawn` starts a worker from `/proc/self/exe` (Linux) with one inherited socket
//!   that is not stdin/stdout/stderr, so tasks print to the terminal as in Python;
//! - `image` identifies the program image (GNU build-id, else the executable's file identity);
//!   a call crosses as code offsets from a marker function, and a worker that runs a
//!   different image refuses (the pool becomes [`Error::Broken`] with the
//!   reason) rather than jump to the wrong code;
//! - `frame` and `protocol`: length-prefixed postcard messages with a hard size cap;
//! - `state` (what the pool's handle and its I/O thread share: the queue, the pool's flags,
//!   terminate requests), `remote` (one worker as the I/O thread sees it, in one value: its
//!   process, channel, window of jobs in flight, decoding its answers, and who fails when it
//!   dies) and `io` (one I/O thread per pool: dispatch to the least loaded worker, batched
//!   writes, `poll`, completing futures, starting, replacing and reaping workers);
//! - `worker`: the worker's loop.
//!
//! Failure semantics, beyond Python's (where one dead worker breaks the whole pool): a panic
//! fails only its task; a worker that dies (abort, segfault, `exit`, SIGKILL from outside)
//! fails only the job it was running, with [`Error::WorkerDied`]
//! naming the pid and signal, and is replaced; [`Future::terminate`](crate::Future::terminate)
//! and the per-task timeout end the worker and fail the task with
//! [`Error::Terminated`]. If the pool's process dies, its workers exit
//! at once (end-of-file on their channel, plus the parent-death signal on Linux).
//!
//! Done-callbacks ([`Future::add_done_callback`](crate::Future::add_done_callback)) and async
//! wakers of a process pool's futures run on the pool's one I/O thread, which also completes
//! every other future of the pool: they must be quick and must not block. A blocking call made
//! there (`result`, `wait`, iterating a `Map`, a shutdown that waits) on a future that is not
//! done returns [`Error::WouldBlock`] at once instead of stalling the pool for ever (see
//! [`blocking`](crate::blocking)); hand such work to another thread, or `.await` it.
//!
//! Test binaries, whose `main` is the test harness, get workers from
//! [`test_support`](mod@crate::test_support): `primepool::test_support!()` adds an ignored `#[test]`
//! whose body is `run_worker_if_requested()`, and its builder points
//! [`ProcessPoolBuilder::worker_command`] at the harness binary itself, with arguments that
//! select that test.
//!
//! Platforms: Linux is first-class. Other Unix systems build and work without the parent-death
//! signal (workers still leave when their channel closes) and identify the image by its file.
//! This module exists only on Unix (`cfg(unix)`); elsewhere the crate has the serial, thread
//! and rayon pools, and `run_worker_if_requested` does nothing.

mod builder;
mod frame;
pub(crate) mod image;
mod io;
pub(crate) mod protocol;
mod remote;
mod spawn;
mod spin;
mod state;
mod sys;
mod worker;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use primepool_core::backend::Job;
use primepool_core::{Error, Executor};

pub use builder::ProcessPoolBuilder;
// The wire decoding, public only for the fuzz targets and the wire tests: not part of the API.
#[doc(hidden)]
pub use frame::{FrameError, FrameReader, MAX_FRAME_LEN};
#[doc(hidden)]
pub use protocol::decode_any_message;
pub use worker::run_worker_if_requested;

use state::{Config, Shared};

/// A pool of worker processes implementing [`Executor`]: Python's `ProcessPoolExecutor`.
///
/// See the [module documentation](self) for the contract with `main` and the failure
/// semantics. Dropping the pool is `shutdown(wait = true)`: it waits for every task and
/// reaps every worker.
pub struct ProcessPoolExecutor {
    shared: Arc<Shared>,
    io_thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for ProcessPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPoolExecutor")
            .field("max_workers", &self.shared.config.max_workers)
            .field("worker_pids", &self.worker_pids())
            .finish()
    }
}

impl ProcessPoolExecutor {
    /// A pool of `max_workers` worker processes with default options. Zero is
    /// [`Error::InvalidArgument`]. It returns without waiting for the workers to boot: work
    /// submitted meanwhile is on its way to them as they come up.
    pub fn new(max_workers: usize) -> Result<Self, Error> {
        Self::builder().max_workers(max_workers).build()
    }

    /// A builder, for the initializer, worker recycling, timeouts and the worker command.
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder::default()
    }

    /// The process ids of the workers serving the pool now (workers being replaced excluded),
    /// so a program can see, or signal, the processes that run its tasks. Workers start in the
    /// background, so right after [`new`](Self::new) the list may still be short.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shared.worker_pids()
    }

    fn start(config: Config) -> Result<Self, Error> {
        let (shared, io_thread) = io::start(config)?;
        Ok(ProcessPoolExecutor {
            shared,
            io_thread: Mutex::new(Some(io_thread)),
        })
    }
}

impl Executor for ProcessPoolExecutor {
    fn name(&self) -> &'static str {
        "processes"
    }

    fn max_workers(&self) -> usize {
        self.shared.config.max_workers
    }

    fn execute(&self, job: Job) -> Result<(), Error> {
        self.shared.submit_one(job)
    }

    fn execute_batch(&self, jobs: Vec<Job>) -> Result<(), Error> {
        self.shared.submit(jobs)
    }

    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.shared.shutdown(wait, cancel_futures);
    }
}

impl Drop for ProcessPoolExecutor {
    fn drop(&mut self) {
        self.shared.shutdown(true, false);
        let handle = crate::sync::get_mut(&mut self.io_thread).take();
        if let Some(handle) = handle {
            // Dropped from one of its own done-callbacks (on the I/O thread): it cannot join
            // itself; it ends on its own once the work is done.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}
