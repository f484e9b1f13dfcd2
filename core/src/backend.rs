//! What a new backend needs: the machinery behind [`Executor`](crate::Executor).
//!
//! A user of primepool never names anything here: they build an executor, `submit` and `map`
//! through [`ExecutorExt`](crate::ExecutorExt), and hold [`Future`](crate::Future)s. This module
//! is for the author of an executor (a new kind of pool, or a test double), and for the
//! crates of primepool's own backends.
//! None of it is at the crate root:
//!
//! ```compile_fail
//! use primepool_core::Job; // error: `Job` is `primepool_core::backend::Job`
//! ```
//!
//! # The contract
//!
//! [`Executor::execute`](crate::Executor::execute) receives a [`Job`]: type-erased work with
//! exactly one [`Promise`], the side of a [`Future`](crate::Future) that a backend completes.
//! A backend either
//!
//! - runs the job in its own address space with [`Job::run_local`] (the serial, thread and
//!   rayon pools): every call runs under [`catch_panic`] and the job completes its promise; or
//! - ships it across a boundary (processes, Web Workers): [`Job::start`] marks its future as
//!   running (it returns 0 when the future was cancelled: drop the job, there is nothing to
//!   send), [`Job::task_fn`] gives the function as a [`TaskFn`] (two code addresses, meaningful
//!   only in the identical program image: see [`TaskFn::from_raw`]), [`Job::encode_args`] the
//!   arguments; the far side calls [`TaskFn::invoke`] on those bytes, and the reply goes back
//!   to [`Job::complete_encoded`]. If the far side is lost, [`Job::fail`] resolves the job's
//!   future with the error (for a process, [`Error::WorkerDied`](crate::Error::WorkerDied)).
//!
//! Whatever happens, every job's future is resolved exactly once: a job or promise dropped
//! unresolved resolves its future with [`Error::Broken`](crate::Error::Broken), so no caller
//! waits forever on lost work. Never complete a future while holding a lock a done-callback
//! could need: callbacks run on the completing thread.
//!
//! A backend that splits `map` inputs itself can reuse the schedules of the built-in pools
//! ([`factoring_chunks`], the default of
//! [`Executor::auto_chunks`](crate::Executor::auto_chunks), and [`balanced_chunksize`]);
//! [`encode`] and [`decode`] are the postcard encoding that every boundary uses, so values
//! cross the same way whichever backend carries them.
//!
//! An awaited [`Map`](crate::Map) or [`as_completed`](crate::as_completed) with a timeout is
//! woken at its deadline by a timer: core's own thread by default; a host where that thread
//! is impossible or unwanted (the browser's page, which has `setTimeout`) installs a
//! [`timer::Driver`] first.
//!
//! The behaviour every executor must show is written once, in `primepool_core::conformance`
//! (feature `conformance`), and expanded in each backend's tests with
//! `primepool_core::conformance_tests!`.
//!
//! ```
//! use primepool_core::backend::{Job, Promise};
//! use primepool_core::{Error, Executor, ExecutorExt};
//!
//! /// A toy executor that runs every job at once, on the caller's thread.
//! struct Inline;
//!
//! impl Executor for Inline {
//!     fn name(&self) -> &'static str {
//!         "inline"
//!     }
//!     fn max_workers(&self) -> usize {
//!         1
//!     }
//!     fn execute(&self, job: Job) -> Result<(), Error> {
//!         job.run_local();
//!         Ok(())
//!     }
//!     fn shutdown(&self, _wait: bool, _cancel_futures: bool) {}
//! }
//!
//! fn double(x: u32) -> u32 {
//!     2 * x
//! }
//!
//! assert_eq!(Inline.submit(double, 21).unwrap().result(None), Ok(42));
//! let (promise, future) = Promise::new();
//! Inline.execute(Job::call(double, 5, promise)).unwrap();
//! assert_eq!(future.result(None), Ok(10));
//! ```

// The file stays `src/timer.rs`; the crate's own code names it `crate::timer` (lib.rs).
#[path = "timer.rs"]
pub mod timer;

pub use crate::call::{decode, encode, TaskFn};
pub use crate::executor::{
    balanced_chunksize, factoring_chunks, factoring_chunks_capped, ChunkFuture,
};
pub use crate::future::Promise;
pub use crate::job::Job;
pub use crate::panic::{catch as catch_panic, payload_message as panic_message};
pub use crate::spin::SpinBudget;
