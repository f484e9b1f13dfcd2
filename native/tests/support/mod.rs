//! How the process-pool tests get worker processes, and checks on processes.
//!
//! A test binary's `main` is the test harness, which never calls
//! `primepool::run_worker_if_requested()`. So this module uses what the library ships for
//! users' tests: `primepool::test_support!()` adds the workers' entry point (an ignored test),
//! and `primepool::test_support::builder()` starts workers by running this test binary with
//! arguments that select it. A test file uses this with `mod support;`.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the support"
)]

use std::time::{Duration, Instant};

use primepool::{ProcessPoolBuilder, ProcessPoolExecutor};

primepool::test_support!();

/// A builder whose workers are this test binary.
pub fn builder() -> ProcessPoolBuilder {
    primepool::test_support::builder().expect("a worker command for this test binary")
}

/// A pool of `workers` processes running this test binary.
pub fn pool(workers: usize) -> ProcessPoolExecutor {
    builder()
        .max_workers(workers)
        .build()
        .expect("a process pool")
}

/// A pool of `workers` processes running this test binary, or the error `build` gave.
pub fn pool_result(workers: usize) -> Result<ProcessPoolExecutor, primepool::Error> {
    builder().max_workers(workers).build()
}

/// Process `pid`'s parent pid and state letter (`R`, `S`, `Z`...), or `None` if it is gone.
pub fn stat(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses; the last ')' ends it.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// True if `pid` no longer runs (gone, or a zombie waiting for someone else's `wait`).
pub fn exited(pid: u32) -> bool {
    !matches!(stat(pid), Some((_, state)) if state != 'Z')
}

/// The pids of this process's children (zombies included), from `/proc`.
pub fn children() -> Vec<u32> {
    children_of(std::process::id())
}

/// The pids of the children of `parent` (zombies included), from `/proc`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|(ppid, _)| ppid == parent))
        .collect()
}

/// How many times a long scenario runs: `PRIMEPOOL_SOAK=N` (local soak runs), else once. A
/// value that is not a whole number fails the test with a message rather than running once.
pub fn soak_rounds() -> u64 {
    match std::env::var("PRIMEPOOL_SOAK") {
        Ok(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("PRIMEPOOL_SOAK={n:?} is not a whole number of rounds")),
        Err(_) => 1,
    }
}

/// Waits up to `limit` for `condition`, polling.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; `pid` is a worker of a pool this test
    // owns and has not reaped, so the pid cannot have been reused.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

/// Runs this test binary's ignored test `name` as a child process (with extra environment)
/// and returns its output.
pub fn run_ignored_test(name: &str, env: &[(&str, &str)]) -> std::process::Output {
    let exe = std::env::current_exe().expect("the test binary's path");
    std::process::Command::new(exe)
        .args(ignored_test_args(name))
        .envs(env.iter().copied())
        .output()
        .expect("running the test binary")
}

/// The harness arguments that run only this test binary's ignored test `name`.
pub fn ignored_test_args(name: &str) -> [&str; 5] {
    [
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]
}

/// A pool of one worker process that runs this test binary's ignored test `entry` instead of
/// the usual worker entry point (a worker program that misbehaves in some way).
pub fn pool_running(entry: &str) -> ProcessPoolExecutor {
    let exe = std::env::current_exe().expect("the test binary's path");
    ProcessPoolExecutor::builder()
        .max_workers(1)
        .worker_command(exe, ignored_test_args(entry))
        .build()
        .expect("a process pool")
}
