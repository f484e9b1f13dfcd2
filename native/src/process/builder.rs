//! [`ProcessPoolBuilder`]: the options of Python's `ProcessPoolExecutor(...)`, and a few more.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use primepool_core::Error;

use super::spawn::WorkerCommand;
use super::state::Config;
use super::worker;
use super::ProcessPoolExecutor;

/// Configures a [`ProcessPoolExecutor`]; made by [`ProcessPoolExecutor::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use primepool::{ExecutorExt, ProcessPoolExecutor};
///
/// fn setup() { /* runs once in each worker, like Python's initializer */ }
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() {
///     primepool::run_worker_if_requested();
///     let pool = ProcessPoolExecutor::builder()
///         .max_workers(4)
///         .initializer(setup)
///         .max_tasks_per_child(1000)
///         .task_timeout(Duration::from_secs(60))
///         .build()
///         .unwrap();
///     let squares: Vec<u64> = pool.map(square, 0..10).unwrap().map(Result::unwrap).collect();
///     assert_eq!(squares[9], 81);
/// }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until .build()"]
pub struct ProcessPoolBuilder {
    max_workers: Option<usize>,
    command: WorkerCommand,
    initializer: Option<fn()>,
    max_tasks_per_child: Option<usize>,
    task_timeout: Option<Duration>,
}

impl ProcessPoolBuilder {
    /// The number of worker processes (default: the machine's available parallelism, as
    /// Python's default of `os.process_cpu_count()`). Zero is an error at `build`.
    pub fn max_workers(mut self, max_workers: usize) -> Self {
        self.max_workers = Some(max_workers);
        self
    }

    /// A function each worker runs once before taking jobs (Python's `initializer`), e.g. to
    /// set up per-process state. If it panics the pool is broken: pending and later tasks fail
    /// with [`Error::Broken`] naming the panic, and no replacement is started (no respawn loop).
    pub fn initializer(mut self, initializer: fn()) -> Self {
        self.initializer = Some(initializer);
        self
    }

    /// Replaces a worker with a fresh process after it has run this many jobs (a `map` chunk
    /// counts as one, as in Python), to bound what a leaking task can accumulate. Zero is an
    /// error at `build`.
    pub fn max_tasks_per_child(mut self, tasks: usize) -> Self {
        self.max_tasks_per_child = Some(tasks);
        self
    }

    /// The longest one call may run; a job of `n` calls (a `map` chunk) gets `n` times it,
    /// counted from when its worker starts it. A job that overruns fails with
    /// [`Error::Terminated`] and its worker is ended and replaced. Zero is an error at `build`.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Starts workers by running `program` with `args` instead of re-running this program.
    ///
    /// The program must be *this same executable* (calls travel as code addresses, and a
    /// worker refuses to run for a different image: the pool then reports [`Error::Broken`]
    /// with the reason), and it must reach [`run_worker_if_requested`](super::run_worker_if_requested)
    /// with these arguments. This is how a program whose `main` is not its own, such as a test
    /// harness, provides workers: point at `std::env::current_exe()` with the arguments that
    /// select an entry point calling `run_worker_if_requested`.
    pub fn worker_command<I, S>(mut self, program: impl Into<PathBuf>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.command.program = Some(program.into());
        self.command.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Like [`worker_command`](Self::worker_command) without arguments.
    pub fn worker_executable(self, program: impl Into<PathBuf>) -> Self {
        self.worker_command(program, std::iter::empty::<OsString>())
    }

    /// Sets an environment variable for the worker processes (they inherit the rest).
    pub fn worker_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.command.env.push((key.into(), value.into()));
        self
    }

    /// Starts the pool; its workers boot in the background. Fails with
    /// [`Error::InvalidArgument`] for a zero option, or [`Error::Broken`] if the worker program
    /// cannot be found or executed, or if this process is itself a worker whose `main` did not
    /// call [`run_worker_if_requested`](super::run_worker_if_requested) (as Python refuses to
    /// start processes during a child's bootstrapping). If the processes themselves cannot be
    /// started (no memory or process slots), the pool breaks and its futures say why.
    pub fn build(self) -> Result<ProcessPoolExecutor, Error> {
        if let Some(why) = worker::pool_refused_in_worker() {
            return Err(Error::Broken(why));
        }
        let max_workers = match self.max_workers {
            Some(0) => return Err(Error::invalid("max_workers must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if self.max_tasks_per_child == Some(0) {
            return Err(Error::invalid("max_tasks_per_child must be at least 1"));
        }
        if self.task_timeout == Some(Duration::ZERO) {
            return Err(Error::invalid("task_timeout must be longer than zero"));
        }
        let launch = self
            .command
            .prepare()
            .map_err(|e| Error::Broken(e.to_string()))?;
        ProcessPoolExecutor::start(Config {
            max_workers,
            launch,
            initializer: self.initializer,
            max_tasks_per_child: self.max_tasks_per_child,
            task_timeout: self.task_timeout,
        })
    }
}
