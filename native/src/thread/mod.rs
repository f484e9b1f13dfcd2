//! [`ThreadPoolExecutor`]: Python's thread pool, on OS threads that really run in parallel.
//!
//! In CPython the GIL keeps a thread pool from speeding up CPU-bound work; here the same API
//! scales with the cores. The behaviour follows Python's: threads start lazily, one per job
//! that finds no idle worker, up to `max_workers`, and are reused; an initializer runs once per
//! thread and its failure breaks the pool; dropping the pool waits for its work.
//!
//! The handle is a thin facade over a private `Registry` (queue, gate, threads); `worker` is
//! the thread's loop; `builder` holds the constructor's options.

pub(crate) mod builder;
mod registry;
mod worker;

use std::fmt;
use std::sync::Arc;

use crate::backend::Job;
use crate::{Error, Executor, InProcessExecutor};

pub use builder::{default_max_workers, ThreadPoolBuilder, DEFAULT_THREAD_NAME_PREFIX};
use registry::Registry;

/// A pool of OS threads implementing [`Executor`], with Python's `ThreadPoolExecutor`
/// semantics.
///
/// Besides the shippable `fn` items that [`ExecutorExt::submit`](crate::ExecutorExt::submit)
/// takes, a thread pool can run capturing closures: see
/// [`InProcessExecutor::submit_closure`].
///
/// ```
/// use primepool::{ExecutorExt, ThreadPoolExecutor, workload::seed_count_prime};
///
/// let pool = ThreadPoolExecutor::new(2).unwrap();
/// let counts: Vec<u32> = pool
///     .map(seed_count_prime, 9_972..9_975)
///     .unwrap()
///     .collect::<Result<_, _>>()
///     .unwrap();
/// assert_eq!(counts, [9_969, 0, 9_971]);
/// // Dropping the pool waits for its work, like leaving Python's `with` block.
/// ```
pub struct ThreadPoolExecutor {
    registry: Arc<Registry>,
}

impl fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolExecutor")
            .field("max_workers", &self.registry.max_workers())
            .field("threads_started", &self.registry.threads_started())
            .finish()
    }
}

impl ThreadPoolExecutor {
    /// A pool of at most `max_workers` threads with the default options. Zero workers is
    /// [`Error::InvalidArgument`].
    pub fn new(max_workers: usize) -> Result<Self, Error> {
        Self::builder().max_workers(max_workers).build()
    }

    /// All of Python's constructor options: worker count, thread names, initializer.
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::new()
    }

    fn from_builder(builder: ThreadPoolBuilder) -> Result<Self, Error> {
        let options = builder.options;
        let max_workers = options.worker_count(default_max_workers)?;
        Ok(ThreadPoolExecutor {
            registry: Registry::new(max_workers, options.thread_name_prefix, options.initializer),
        })
    }

    /// How many threads the pool has started so far: threads start only when work finds no
    /// idle worker, so this shows whether the pool stayed as small as its load.
    pub fn threads_started(&self) -> usize {
        self.registry.threads_started()
    }
}

/// Capturing closures run on the pool's threads, in this process.
impl InProcessExecutor for ThreadPoolExecutor {}

impl Executor for ThreadPoolExecutor {
    fn name(&self) -> &'static str {
        "threads"
    }

    fn max_workers(&self) -> usize {
        self.registry.max_workers()
    }

    fn execute(&self, job: Job) -> Result<(), Error> {
        self.registry.submit(std::iter::once(job))
    }

    fn execute_batch(&self, jobs: Vec<Job>) -> Result<(), Error> {
        self.registry.submit(jobs.into_iter())
    }

    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.registry.close();
        if cancel_futures {
            self.registry.cancel_queued();
        }
        if wait {
            self.registry.join_workers();
        }
    }
}

impl Drop for ThreadPoolExecutor {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}
