//! primepool: Python's `concurrent.futures` for Rust, native backends.
//!
//! - [`SerialExecutor`]: runs each task inline (the "normal case").
//! - [`ThreadPoolExecutor`]: OS threads, started lazily, with capturing closures too.
//! - [`RayonExecutor`]: the same API on a work-stealing `rayon` pool.
//! - [`ProcessPoolExecutor`]: real worker processes; calls and results cross by IPC.
//!
//! Everything target-independent (the [`Executor`] traits, [`Future`], [`wait()`],
//! [`as_completed`], [`Error`], the workloads) comes from `primepool-core` and is re-exported
//! here.

pub use primepool_core::*;

pub mod process;
pub mod rayon_pool;
pub mod thread;

pub use process::{run_worker_if_requested, ProcessPoolExecutor};
pub use rayon_pool::RayonExecutor;
pub use thread::ThreadPoolExecutor;
