//! The target-independent heart of primepool: the executor model of Python's
//! `concurrent.futures`, in Rust.
//!
//! - [`Executor`] is the object-safe trait every backend implements (serial, threads, rayon,
//!   OS processes, Web Workers); [`ExecutorExt`] adds the typed `submit` and `map` on top.
//! - [`Future`] is a handle to one task's outcome, with Python's states and methods, and it can
//!   be `.await`ed.
//! - [`wait()`] and [`as_completed`] watch many futures at once.
//! - [`workload`] holds the CPU-bound functions the benchmark and the examples map over.
//! - [`backend`] is for authors of executors: the type-erased [`backend::Job`] that crosses
//!   the trait, [`backend::TaskFn`] (a plain `fn(A) -> R` as a call that can cross a process
//!   or Web Worker boundary, the Rust counterpart of pickling a top-level function) and the
//!   encoding every boundary uses. Users of the executors never need it.
//! - `report` (feature `report`, for primepool's own tools) is the schema of the benchmark's
//!   JSON report, shared by the CLI, the web page and the tools that read it; it is not part
//!   of the library's API.
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

pub mod backend;
pub mod blocking;
mod call;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
mod executor;
mod future;
mod job;
mod panic;
#[cfg(any(test, feature = "report"))]
pub mod report;
mod serial;
mod spin;
// The timer lives in `backend` (a host installs its driver); core's code names it from here.
use backend::timer;
mod wait;
pub mod workload;

// The user's names. `primepool` (native/src/lib.rs) re-exports them by name: add a new one
// there too.
pub use call::Value;
pub use error::{Error, TaskPanic, Unfinished, WorkerId};
pub use executor::{Executor, ExecutorExt, InProcessExecutor, Map, MapOptions};
pub use future::{Future, FutureState};
pub use serial::SerialExecutor;
pub use wait::{as_completed, wait, AsCompleted, ReturnWhen, Waited};
