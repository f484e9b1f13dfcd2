//! [`RayonExecutor`]: the executor API on its own work-stealing `rayon::ThreadPool`.
//!
//! Rayon already has the best scheduler in Rust; this adapter gives it Python's executor
//! contract. Jobs wait in a queue this module owns rather than inside rayon, because rayon
//! cannot take back a spawned closure: each `spawn` (one per `execute`, one per batch) runs
//! *some* queued job per pop, so `shutdown(cancel_futures = true)` can still reach and cancel
//! everything that has not started. A batch (a whole `map`) is one `spawn` whose parallel loop
//! pops as many jobs as it brought, letting rayon split and steal the work across its threads.
//!
//! Waiting on shutdown relies on rayon's own rule: a pool's threads exit only after the pool
//! is dropped and every job spawned on it has finished. So `shutdown(wait)` drops the pool and
//! waits for the last thread's exit handler.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};

use crossbeam_channel::{Receiver, Sender};
use rayon::iter::{IntoParallelIterator, ParallelIterator};

use crate::backend::Job;
use crate::sync::{self, lock};
use crate::thread::builder::{
    broken_by_initializer, pool_option_setters, run_initializer, PoolOptions,
};
use crate::{Error, Executor, InProcessExecutor};

/// The prefix of worker thread names when none is given.
pub const DEFAULT_THREAD_NAME_PREFIX: &str = "primepool-rayon";

thread_local! {
    /// The id of the pool whose worker this thread is (0: none), to avoid waiting for oneself.
    static WORKER_OF: Cell<usize> = const { Cell::new(0) };
}

/// What the handle and the pool's threads share: the job queue and the count of live threads.
struct Backlog {
    id: usize,
    sender: Sender<Job>,
    receiver: Receiver<Job>,
    alive: Mutex<usize>,
    exited: Condvar,
    /// Why the pool is broken, once an initializer failed.
    broken: OnceLock<String>,
}

impl Backlog {
    /// Runs the oldest queued job, if `shutdown(cancel_futures)` has not taken it.
    fn run_one(&self) {
        if let Ok(job) = self.receiver.try_recv() {
            match self.broken_error() {
                Some(error) => job.fail(error),
                None => job.run_local(),
            }
        }
    }

    fn broken_error(&self) -> Option<Error> {
        self.broken.get().map(|why| Error::Broken(why.clone()))
    }

    /// An initializer failed: refuse new work and fail what is queued, as the thread pool does.
    fn break_pool(&self, why: &str) {
        let _ = self.broken.set(broken_by_initializer(why));
        while let Ok(job) = self.receiver.try_recv() {
            job.fail(self.broken_error().unwrap_or(Error::ShutDown));
        }
    }

    fn thread_exited(&self) {
        *lock(&self.alive) -= 1;
        self.exited.notify_all();
    }

    fn wait_for_threads(&self) {
        let mut alive = lock(&self.alive);
        while *alive > 0 {
            alive = sync::wait(&self.exited, alive);
        }
    }
}

/// An [`Executor`] on its own `rayon::ThreadPool` of `max_workers` threads: Python's executor
/// API with rayon's work stealing behind it.
///
/// ```
/// use primepool::{ExecutorExt, RayonExecutor};
///
/// let pool = RayonExecutor::new(2).unwrap();
/// let squares: Vec<u64> = pool
///     .map(|x: u64| x * x, 1..4)
///     .unwrap()
///     .collect::<Result<_, _>>()
///     .unwrap();
/// assert_eq!(squares, [1, 4, 9]);
/// ```
pub struct RayonExecutor {
    /// `Some` while the executor takes work; shutdown takes the pool out, closing the gate.
    pool: RwLock<Option<rayon::ThreadPool>>,
    backlog: Arc<Backlog>,
    max_workers: usize,
}

impl fmt::Debug for RayonExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RayonExecutor")
            .field("max_workers", &self.max_workers)
            .finish()
    }
}

/// Configures a [`RayonExecutor`]: worker count, thread names and an initializer.
#[derive(Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct RayonBuilder {
    /// The options the rayon and thread pools share.
    options: PoolOptions,
}

impl fmt::Debug for RayonBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.options.debug(f, "RayonBuilder")
    }
}

impl Default for RayonBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RayonBuilder {
    /// One thread per core (rayon's default), named `primepool-rayon_<index>`.
    pub fn new() -> Self {
        RayonBuilder {
            options: PoolOptions::new(DEFAULT_THREAD_NAME_PREFIX),
        }
    }

    pool_option_setters! {
        /// The pool's thread count; zero is rejected by [`build`](Self::build).
        max_workers;
        /// Threads are named `<prefix>_<index>`, so they can be told apart in a debugger or a
        /// profiler.
        thread_name_prefix;
        /// Runs `initializer` once in each thread before it takes any task, with the same
        /// signature and failure semantics as
        /// [`ThreadPoolBuilder::initializer`](crate::ThreadPoolBuilder::initializer): if it
        /// fails (returns `Err` or panics), the pool is broken: queued tasks fail and later
        /// submits are refused with [`Error::Broken`] saying `initializer failed: ` and why.
        /// Rayon starts every thread at once, so every initializer runs when the pool is built,
        /// in its threads.
        ///
        /// ```
        /// use primepool::{Error, ExecutorExt, RayonExecutor};
        ///
        /// let pool = RayonExecutor::builder()
        ///     .max_workers(2)
        ///     .initializer(|| Err("no database connection"))
        ///     .build()
        ///     .unwrap();
        /// let outcome = pool.submit(|x: u32| x, 1).and_then(|f| f.join());
        /// assert!(matches!(outcome, Err(Error::Broken(why)) if why.contains("no database")));
        /// ```
        initializer;
    }

    /// Starts the pool's threads (rayon starts them all at once).
    pub fn build(self) -> Result<RayonExecutor, Error> {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
        let max_workers = self
            .options
            .worker_count(|| std::thread::available_parallelism().map_or(1, |n| n.get()))?;
        let (sender, receiver) = crossbeam_channel::unbounded();
        let backlog = Arc::new(Backlog {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            sender,
            receiver,
            alive: Mutex::new(max_workers),
            exited: Condvar::new(),
            broken: OnceLock::new(),
        });
        let prefix = self.options.thread_name_prefix;
        let id = backlog.id;
        let on_exit = Arc::clone(&backlog);
        let on_start = Arc::clone(&backlog);
        let init = self.options.initializer;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(max_workers)
            .thread_name(move |index| format!("{prefix}_{index}"))
            .start_handler(move |index| {
                WORKER_OF.with(|w| w.set(id));
                if let Some(initializer) = &init {
                    if let Err(why) = run_initializer(initializer) {
                        log::error!("the initializer of rayon thread {index} failed: {why}");
                        on_start.break_pool(&why);
                    }
                }
            })
            .exit_handler(move |_| on_exit.thread_exited())
            // Tasks and done-callbacks run under catch_unwind; anything else is a bug to log
            // rather than rayon's default, which aborts the process.
            .panic_handler(|payload| {
                let message = crate::backend::panic_message(payload.as_ref());
                log::error!("a rayon job panicked outside a task: {message}");
            })
            .build()
            .map_err(|e| Error::Broken(format!("could not start the rayon pool: {e}")))?;
        Ok(RayonExecutor {
            pool: RwLock::new(Some(pool)),
            backlog,
            max_workers,
        })
    }
}

impl RayonExecutor {
    /// A pool of `max_workers` rayon threads. Zero workers is [`Error::InvalidArgument`].
    pub fn new(max_workers: usize) -> Result<Self, Error> {
        Self::builder().max_workers(max_workers).build()
    }

    /// The pool's options: worker count and thread names.
    pub fn builder() -> RayonBuilder {
        RayonBuilder::new()
    }

    /// Queues `jobs` and makes `spawns` rayon jobs that pop them, while the gate is open.
    fn enqueue(
        &self,
        jobs: impl Iterator<Item = Job>,
        spawn: impl FnOnce(&rayon::ThreadPool, Arc<Backlog>),
    ) -> Result<(), Error> {
        if let Some(error) = self.backlog.broken_error() {
            return Err(error);
        }
        let pool = sync::read(&self.pool);
        let Some(pool) = pool.as_ref() else {
            return Err(Error::ShutDown);
        };
        for job in jobs {
            // Cannot fail: the receiver lives in the backlog.
            let _ = self.backlog.sender.send(job);
        }
        spawn(pool, Arc::clone(&self.backlog));
        Ok(())
    }
}

/// Capturing closures run on the pool's threads, in this process.
impl InProcessExecutor for RayonExecutor {}

impl Executor for RayonExecutor {
    fn name(&self) -> &'static str {
        "rayon"
    }

    fn max_workers(&self) -> usize {
        self.max_workers
    }

    fn execute(&self, job: Job) -> Result<(), Error> {
        self.enqueue(std::iter::once(job), |pool, backlog| {
            pool.spawn(move || backlog.run_one());
        })
    }

    fn execute_batch(&self, jobs: Vec<Job>) -> Result<(), Error> {
        let count = jobs.len();
        if count <= 1 {
            return jobs.into_iter().try_for_each(|job| self.execute(job));
        }
        self.enqueue(jobs.into_iter(), |pool, backlog| {
            pool.spawn(move || {
                (0..count).into_par_iter().for_each(|_| backlog.run_one());
            });
        })
    }

    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let pool = sync::write(&self.pool).take();
        if cancel_futures {
            while let Ok(job) = self.backlog.receiver.try_recv() {
                job.cancel();
            }
        }
        // Rayon lets the threads finish the spawned work, then exit.
        drop(pool);
        let inside = WORKER_OF.with(Cell::get) == self.backlog.id;
        if wait && !inside {
            self.backlog.wait_for_threads();
        }
    }
}

impl Drop for RayonExecutor {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}
