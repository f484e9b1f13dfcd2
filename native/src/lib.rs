//! primepool: Python's `concurrent.futures` for Rust — `submit`, futures, `map`, `wait`,
//! `as_completed`, and pools that wait for their work when they go out of scope.
//!
//! Every pool implements one trait, [`Executor`]; the typed [`submit`](ExecutorExt::submit)
//! and [`map`](ExecutorExt::map) come from [`ExecutorExt`] (bring it into scope). A task is a
//! plain function `fn(A) -> R` (an `fn` item or a closure that captures nothing) whose argument
//! and result are serde-serializable ([`Value`]), so the same call runs inline, on a thread, on
//! rayon or in another process. Pools that run tasks in this process also take capturing
//! closures through [`InProcessExecutor::submit_closure`].
//!
//! | Python | primepool |
//! |---|---|
//! | (the normal, sequential case) | [`SerialExecutor`] |
//! | `ThreadPoolExecutor` | [`ThreadPoolExecutor`] ([`ThreadPoolBuilder`]) |
//! | (no equivalent) | [`RayonExecutor`] ([`RayonBuilder`]): a work-stealing rayon pool |
//! | `ProcessPoolExecutor` | [`ProcessPoolExecutor`] ([`ProcessPoolBuilder`], Unix only) |
//! | Dask's `Client`, `distributed` | `ClusterExecutor` (`cluster::ClusterBuilder`; feature `cluster`, Unix only): workers on many hosts, NATS JetStream as the queue |
//! | `if __name__ == "__main__":` | [`run_worker_if_requested`] first in `main` |
//! | `Future` | [`Future`] (also a `std::future::Future`), [`FutureState`] |
//! | `map(fn, xs, timeout=, chunksize=)` | [`ExecutorExt::map`], [`ExecutorExt::map_with`] with [`MapOptions`], yielding a [`Map`] |
//! | `wait`, `as_completed` | [`wait()`] ([`ReturnWhen`], [`Waited`]), [`as_completed`] ([`AsCompleted`]) |
//! | `CancelledError`, `TimeoutError`, `BrokenProcessPool` | [`Error`] ([`TaskPanic`], [`WorkerId`], [`Unfinished`]) |
//!
//! Dropping a [`Future`] does not cancel its task, as in Python: a `submit` may be fire and
//! forget, so `Future` is not `#[must_use]` ([`Future::cancel`] cancels). What is `#[must_use]`
//! is what does nothing, or loses results, when dropped unused: the builders, [`Map`] and
//! [`AsCompleted`].
//!
//! [`workload`] holds the CPU-bound functions of the benchmark and the examples. Writing a new
//! executor? The machinery it needs (the type-erased `Job`, `Promise`, `TaskFn`, the encoding)
//! is in [`backend`]; nothing else here is needed for it.
//!
//! # One example per backend
//!
//! Serial: every task runs inline, in `submit` (Python's normal case, the baseline).
//!
//! ```
//! use primepool::{ExecutorExt, SerialExecutor};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let pool = SerialExecutor::new();
//! let future = pool.submit(square, 7).unwrap();
//! assert!(future.done());
//! assert_eq!(future.result(None), Ok(49));
//! ```
//!
//! Threads: Python's `ThreadPoolExecutor`, on threads that really run in parallel.
//!
//! ```
//! use primepool::{as_completed, ExecutorExt, InProcessExecutor, ThreadPoolExecutor};
//! use primepool::workload::seed_count_prime;
//!
//! let pool = ThreadPoolExecutor::new(2).unwrap();
//! let futures: Vec<_> = (9_990..9_993)
//!     .map(|n| pool.submit(seed_count_prime, n).unwrap())
//!     .collect();
//! let mut counts: Vec<u32> = as_completed(&futures, None)
//!     .map(|f| f.unwrap().result(None).unwrap())
//!     .collect();
//! counts.sort_unstable();
//! assert_eq!(counts, [583, 9_987, 9_989]);
//!
//! // A capturing closure, which only an in-process pool can run.
//! let name = String::from("primepool");
//! let len = pool.submit_closure(move || name.len()).unwrap();
//! assert_eq!(len.join(), Ok(9));
//! ```
//!
//! Rayon: the same API on a work-stealing `rayon` pool of its own.
//!
//! ```
//! use std::time::Duration;
//! use primepool::{ExecutorExt, MapOptions, RayonExecutor};
//!
//! let pool = RayonExecutor::builder().max_workers(2).build().unwrap();
//! let options = MapOptions::new().chunksize(8).timeout(Duration::from_secs(600));
//! let squares: Vec<u64> = pool
//!     .map_with(|x: u64| x * x, 0..100, options)
//!     .unwrap()
//!     .collect::<Result<_, _>>()
//!     .unwrap();
//! assert_eq!(squares[99], 9_801);
//! ```
//!
//! Processes: real worker processes. Workers are new runs of the program itself, so `main`
//! starts with [`run_worker_if_requested`] (in a crate's own `#[test]`s, whose `main` is the
//! test harness, put [`test_support!`] in the test crate and make pools with
//! [`test_support::pool`]). A panic fails only its task; a worker that dies
//! fails only the task it ran, and is replaced.
//!
//! ```
//! # #[cfg(unix)]
//! # mod unix {
//! use primepool::{Error, ExecutorExt, ProcessPoolExecutor};
//!
//! fn whoami(_: ()) -> u32 {
//!     std::process::id()
//! }
//!
//! fn checked_div((a, b): (u32, u32)) -> u32 {
//!     a / b // panics when b == 0
//! }
//!
//! pub fn main() {
//!     primepool::run_worker_if_requested(); // a worker serves the pool here and exits
//!     let pool = ProcessPoolExecutor::new(2).unwrap();
//!     let pid = pool.submit(whoami, ()).unwrap().result(None).unwrap();
//!     assert_ne!(pid, std::process::id());
//!     let failed = pool.submit(checked_div, (1, 0)).unwrap().result(None);
//!     assert!(matches!(failed, Err(Error::Panicked(_))));
//!     assert_eq!(pool.submit(checked_div, (9, 3)).unwrap().join(), Ok(3));
//! } // dropping the pool waits for its tasks and reaps every worker
//! # }
//! # fn main() {
//! #     #[cfg(unix)]
//! #     unix::main();
//! # }
//! ```
//!
//! # Platforms
//!
//! The serial, thread and rayon pools build wherever Rust's standard library has threads. The
//! process pool is Unix-only: [`ProcessPoolExecutor`], [`ProcessPoolBuilder`] and the
//! [`process`] module exist only with `cfg(unix)`, and elsewhere [`run_worker_if_requested`]
//! is a no-op (there are no workers to serve), so a program that calls it first thing builds
//! everywhere.

#[cfg(all(unix, feature = "cluster"))]
pub mod cluster;
#[cfg(unix)]
pub mod process;
pub mod rayon_pool;
mod sync;
pub mod test_support;
pub mod thread;

pub use primepool_core::{
    as_completed, backend, blocking, wait, workload, AsCompleted, Error, Executor, ExecutorExt,
    Future, FutureState, InProcessExecutor, Map, MapOptions, ReturnWhen, SerialExecutor, TaskPanic,
    Unfinished, Value, Waited, WorkerId,
};

// Inlined, so the front page lists the pools beside the rest of what a user names.
#[cfg(all(unix, feature = "cluster"))]
#[doc(inline)]
pub use cluster::ClusterExecutor;
#[cfg(unix)]
#[doc(inline)]
pub use process::{run_worker_if_requested, ProcessPoolBuilder, ProcessPoolExecutor};
#[doc(inline)]
pub use rayon_pool::{RayonBuilder, RayonExecutor};
#[doc(inline)]
pub use thread::{ThreadPoolBuilder, ThreadPoolExecutor};

/// Call this first thing in `main`. The process pool exists only on Unix, so elsewhere there
/// is never a worker to serve and this returns at once; a program that calls it builds on
/// every platform.
#[cfg(not(unix))]
pub fn run_worker_if_requested() {}
