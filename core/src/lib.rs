//! The target-independent heart of primepool: the executor model of Python's
//! `concurrent.futures`, in Rust.
//!
//! - [`Executor`] is the object-safe trait every backend implements (serial, threads, rayon,
//!   OS processes, Web Workers); [`ExecutorExt`] adds the typed `submit` and `map` on top.
//! - [`Future`] is a handle to one task's outcome, with Python's states and methods, and it can
//!   be `.await`ed.
//! - [`wait()`] and [`as_completed`] watch many futures at once.
//! - [`TaskFn`] turns a plain `fn(A) -> R` into a call that can cross a process or Web Worker
//!   boundary (the Rust counterpart of pickling a top-level function).
//! - [`workload`] holds the CPU-bound functions the benchmark maps over, and [`report`] the
//!   schema of its JSON report, shared by the CLI, the web page and the tools that read it.
//!
//! ```
//! use primepool_core::{ExecutorExt, SerialExecutor, workload::seed_count_prime};
//!
//! let pool = SerialExecutor::new();
//! let future = pool.submit(seed_count_prime, 9_991).unwrap();
//! assert_eq!(future.result(None), Ok(583)); // 9991 = 97 * 103: 9991 - 97 * 97 + 1
//! let all: Vec<u32> = pool
//!     .map(seed_count_prime, 9_972..9_975)
//!     .unwrap()
//!     .collect::<Result<_, _>>()
//!     .unwrap();
//! assert_eq!(all, [9_969, 0, 9_971]);
//! ```
//!
//! This crate has no target-specific dependencies: it builds for native targets and for
//! `wasm32-unknown-unknown`. Blocking calls follow the contract in [`blocking`].

pub mod blocking;
pub mod call;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod error;
pub mod executor;
pub mod future;
pub mod job;
pub mod panic;
pub mod report;
pub mod serial;
pub mod wait;
pub mod workload;

pub use call::{TaskFn, Value};
pub use error::{Error, TaskPanic, WorkerId};
pub use executor::{ChunkFuture, Executor, ExecutorExt, InProcessExecutor, Map, MapOptions};
pub use future::{Future, FutureState, Promise};
pub use job::Job;
pub use serial::SerialExecutor;
pub use wait::{as_completed, wait, AsCompleted, ReturnWhen, Waited};
