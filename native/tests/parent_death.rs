//! Parent death: when the process that owns a pool is killed with SIGKILL (no destructor runs,
//! nothing is closed in order), every worker process must be gone within 2 seconds.
//!
//! The pool's process here is this test binary run again in a "pool process" mode (an ignored
//! test). This test makes itself a child subreaper, so every orphan of that process, listed by
//! the pool or not, becomes this test's child: the check covers workers that were still
//! starting, replacements, and any process the pool might have lost track of.
//!
//! Scenarios, each in a fresh pool process:
//! - `busy`: two pools with CPU-bound tasks running and thousands queued; one pool was made by
//!   a thread that has exited (workers must not depend on that thread), the other has replaced
//!   a worker killed from outside;
//! - `starting`: the pool process is killed right after `new` returns, while workers boot.
//!
//! One `#[test]`: the subreaper role and the children counted belong to the whole process.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use primepool::ExecutorExt;

const LIMIT: Duration = Duration::from_secs(2);
const SCENARIO: &str = "PRIMEPOOL_PARENT_DEATH_SCENARIO";

/// Spins for `ms` milliseconds: a worker busy computing, not sleeping in a system call.
fn spin(ms: u64) -> u32 {
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    std::process::id()
}

/// The pool process: sets up the scenario named in the environment, prints
/// `WORKERS <pid>...`, then waits to be killed.
#[test]
#[ignore = "the pool process of every_worker_ends_within_2_seconds_of_its_pool_process_dying"]
fn pool_process() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    let mut pids = Vec::new();
    let mut pools = Vec::new();
    match scenario.as_str() {
        "busy" => {
            // A pool made by a thread that ends right after.
            let from_thread = std::thread::spawn(|| support::pool(2)).join().unwrap();
            // A pool with a replaced worker.
            let replaced = support::pool(2);
            let first = replaced.submit(spin, 10).unwrap().result(None).unwrap();
            support::signal(first, libc::SIGKILL);
            assert!(support::eventually(Duration::from_secs(20), || {
                let now = replaced.worker_pids();
                now.len() == 2 && !now.contains(&first)
            }));
            for pool in [&from_thread, &replaced] {
                // Every worker busy (one long task each), and thousands queued behind.
                let running: Vec<_> = (0..2).map(|_| pool.submit(spin, 60_000).unwrap()).collect();
                let queued: Vec<_> = (0..5_000).map(|_| pool.submit(spin, 1).unwrap()).collect();
                assert!(support::eventually(Duration::from_secs(20), || running
                    .iter()
                    .all(|f| f.running())));
                std::mem::forget((running, queued));
                pids.extend(pool.worker_pids());
            }
            pools.push(from_thread);
            pools.push(replaced);
        }
        "starting" => {
            let pool = support::pool(4);
            // Forked in the background within a millisecond or so; listed while still booting.
            assert!(support::eventually(Duration::from_secs(20), || pool
                .worker_pids()
                .len()
                == 4));
            pids.extend(pool.worker_pids());
            pools.push(pool);
        }
        other => panic!("unknown scenario {other}"),
    }
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    println!("WORKERS {}", list.join(" "));
    std::thread::sleep(Duration::from_secs(60));
    unreachable!("the test kills this process first");
}

/// Kills the pool process if the test fails before it does.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reaps the zombies of orphans reparented to this (subreaper) process.
fn reap_orphans() {
    for pid in support::children() {
        let mut status = 0;
        // SAFETY: waitpid writes one int into `status`; `pid` is a child of this process (an
        // orphan reparented to it), which no other code here waits for.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    }
}

/// Runs one scenario; returns the workers listed and how long they took to be gone.
fn kill_pool_process(scenario: &str) -> (Vec<u32>, Duration) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let child = Command::new(exe)
        .args([
            "pool_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO, scenario)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the pool process");
    let mut guard = Guard(child);
    let mut lines = BufReader::new(guard.0.stdout.take().unwrap()).lines();
    let listed: Vec<u32> = loop {
        let line = lines
            .next()
            .expect("the pool process ended before naming its workers")
            .expect("reading the pool process");
        // The harness's "test pool_process ... " and the workers' own harness output share the
        // pipe and need not end with a newline first: look for the marker anywhere.
        if let Some(at) = line.find("WORKERS ") {
            break line[at + "WORKERS ".len()..]
                .split_whitespace()
                .map(|p| p.parse().expect("a pid"))
                .collect();
        }
    };
    // Every process the pool process started, listed or not.
    let started = support::children_of(guard.0.id());
    assert!(
        listed.iter().all(|pid| started.contains(pid)),
        "{scenario}: listed workers {listed:?} are not all children of the pool process ({started:?})"
    );

    guard.0.kill().expect("SIGKILL the pool process");
    let killed_at = Instant::now();
    guard.0.wait().expect("reaping the pool process");
    let gone = support::eventually(LIMIT, || {
        started.iter().all(|&pid| support::exited(pid))
            && support::children().iter().all(|&pid| support::exited(pid))
    });
    let took = killed_at.elapsed();
    let alive: Vec<u32> = started
        .iter()
        .copied()
        .filter(|&pid| !support::exited(pid))
        .collect();
    reap_orphans();
    assert!(
        gone,
        "{scenario}: workers {alive:?} (of {started:?}) outlived their pool's process by {LIMIT:?}"
    );
    (started, took)
}

#[test]
fn every_worker_ends_within_2_seconds_of_its_pool_process_dying() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers and changes only this
    // process's own attribute: its orphaned descendants are reparented to it.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    let mut total = 0;
    for scenario in ["busy", "starting"] {
        let (workers, took) = kill_pool_process(scenario);
        assert!(!workers.is_empty(), "{scenario}: no worker was started");
        eprintln!(
            "parent death ({scenario}): {} worker processes gone {took:?} after SIGKILL",
            workers.len()
        );
        total += workers.len();
    }
    // A zombie whose other threads are still exiting cannot be reaped yet: retry briefly.
    let reaped = support::eventually(LIMIT, || {
        reap_orphans();
        support::children().is_empty()
    });
    assert!(reaped, "processes left: {:?}", support::children());
    eprintln!("parent death: {total} workers, 0 left");
}
