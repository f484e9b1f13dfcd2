//! Process pools in `cargo test`: the `#[test]`s and integration tests of your own crate, with
//! no custom `main`.
//!
//! A process pool's workers are new runs of the program itself, which begin with
//! [`run_worker_if_requested`](crate::run_worker_if_requested) in `main`. A test binary's
//! `main` is the test harness, so it needs another way in: put [`test_support!`](crate::test_support!)
//! in the test crate (an integration test file, or the `#[cfg(test)]` module of a library),
//! and make pools with [`builder`] or [`pool`]. The macro adds one ignored test, the workers'
//! entry point; [`builder`] starts workers by running the same test binary with arguments that
//! select only that test. `cargo test` itself skips it (it is `#[ignore]`d, and when run on
//! purpose outside a pool it returns at once).
//!
//! ```no_run
//! // tests/pool.rs of your crate
//! primepool::test_support!();
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! #[test]
//! fn squares_in_worker_processes() {
//!     let pool = primepool::test_support::pool(2).unwrap();
//!     let squares: Vec<u64> = primepool::ExecutorExt::map(&pool, square, 0..4)
//!         .unwrap()
//!         .collect::<Result<_, _>>()
//!         .unwrap();
//!     assert_eq!(squares, [0, 1, 4, 9]);
//! }
//! ```
//!
//! Each worker that starts prints the harness's `running 1 test` line on the test binary's
//! standard output (the harness prints it before the entry point takes over); tasks' own
//! output goes there too, as it does from a program's workers.
//!
//! This works with the standard test harness (libtest, as `cargo test` and `cargo nextest`
//! build it). A test target with `harness = false` has a `main` of its own: call
//! `run_worker_if_requested()` first thing there and use [`ProcessPoolExecutor::new`] as a
//! program would.
//!
//! On platforms without the process pool (not Unix) the macro still expands, to a test that
//! does nothing, and only [`worker_main`] and [`ENTRY`] exist here.
//!
//! Backends that start workers of their own reuse the same entry point: [`worker_main`] is
//! what the macro's test runs (add a backend's worker check there), and [`worker_command`] is
//! the program and arguments that reach it.
//!
//! With the `cluster` feature, [`nats`] adds what a test of code using
//! [`ClusterExecutor`](crate::ClusterExecutor) needs: a scratch `nats-server -js` on a free
//! port, and cluster workers running this test binary through the same entry point.
//!
//! [`ProcessPoolExecutor::new`]: crate::ProcessPoolExecutor::new

#[cfg(unix)]
use std::ffi::OsString;
#[cfg(unix)]
use std::path::PathBuf;
#[cfg(unix)]
use std::process::{Command, Stdio};
#[cfg(unix)]
use std::sync::OnceLock;

#[cfg(unix)]
use crate::{Error, ProcessPoolBuilder, ProcessPoolExecutor};

#[cfg(all(unix, feature = "cluster"))]
pub mod nats;

/// The name of the test that [`test_support!`](crate::test_support!) adds. The harness is
/// given it as a filter (a substring of the full test path), so the macro may sit in any
/// module of the test crate.
pub const ENTRY: &str = "__primepool_test_worker";

/// The harness arguments after the program: only the entry point, even though it is ignored,
/// on the main thread, with output going straight to the terminal.
#[cfg(unix)]
const HARNESS_ARGS: [&str; 5] = [ENTRY, "--ignored", "--nocapture", "--test-threads=1", "-q"];

/// What the test added by [`test_support!`](crate::test_support!) runs: in a worker process,
/// serve the pool that started it and exit; anywhere else, return at once.
pub fn worker_main() {
    crate::run_worker_if_requested();
}

#[cfg(unix)]
/// The program and arguments that start this test binary as a worker: the binary itself,
/// running only the entry point of [`test_support!`](crate::test_support!). Fails with
/// [`Error::Broken`] (saying what to add) if this binary has no such entry point, or its path
/// cannot be found.
pub fn worker_command() -> Result<(PathBuf, Vec<OsString>), Error> {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let exe = CHECKED
        .get_or_init(check_entry)
        .clone()
        .map_err(Error::Broken)?;
    Ok((exe, HARNESS_ARGS.iter().map(OsString::from).collect()))
}

#[cfg(unix)]
/// A [`ProcessPoolBuilder`] whose workers are this test binary: set more options, then
/// `build`. Fails as [`worker_command`] does.
pub fn builder() -> Result<ProcessPoolBuilder, Error> {
    let (program, args) = worker_command()?;
    Ok(ProcessPoolExecutor::builder().worker_command(program, args))
}

#[cfg(unix)]
/// A pool of `max_workers` processes running this test binary, with the default options.
/// Zero is [`Error::InvalidArgument`]; a binary without the entry point fails as
/// [`worker_command`] does.
pub fn pool(max_workers: usize) -> Result<ProcessPoolExecutor, Error> {
    builder()?.max_workers(max_workers).build()
}

#[cfg(unix)]
/// Asks the harness, once per process, whether this binary has the entry point, so that a
/// forgotten macro is a clear error at once rather than workers that exit before their
/// handshake.
fn check_entry() -> Result<PathBuf, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the test binary's path for the workers: {e}"))?;
    let listed = Command::new(&exe)
        .args([ENTRY, "--ignored", "--list"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "cannot run {} to look for its workers' entry point: {e}",
                exe.display()
            )
        })?;
    let found = String::from_utf8_lossy(&listed.stdout).lines().any(|line| {
        line.strip_suffix(": test")
            .is_some_and(|name| name.ends_with(ENTRY))
    });
    if found {
        Ok(exe)
    } else {
        Err(format!(
            "{} has no entry point for process-pool workers: add `primepool::test_support!();` \
             to the test crate (a test binary's main is the test harness, so the workers need \
             that ignored test to reach run_worker_if_requested)",
            exe.display()
        ))
    }
}

/// Adds the entry point of process-pool workers to a test crate: an ignored `#[test]` that
/// runs [`test_support::worker_main`](crate::test_support::worker_main). Use it once per test
/// binary (in an integration test file, or in a library's `#[cfg(test)]` module), then make
/// pools with [`test_support::builder`](crate::test_support::builder) or
/// [`test_support::pool`](crate::test_support::pool). See the
/// [`test_support`](mod@crate::test_support) module.
///
/// ```no_run
/// primepool::test_support!();
///
/// #[test]
/// fn runs_in_another_process() {
///     fn pid(_: ()) -> u32 {
///         std::process::id()
///     }
///     let pool = primepool::test_support::pool(1).unwrap();
///     let theirs = primepool::ExecutorExt::submit(&pool, pid, ()).unwrap().join().unwrap();
///     assert_ne!(theirs, std::process::id());
/// }
/// ```
#[macro_export]
macro_rules! test_support {
    () => {
        /// The entry point of primepool's process-pool workers in this test binary: run by
        /// the pools of `primepool::test_support`, skipped by `cargo test`.
        #[test]
        #[ignore = "the entry point of primepool's worker processes, run by the process pool"]
        fn __primepool_test_worker() {
            $crate::test_support::worker_main();
        }
    };
}
