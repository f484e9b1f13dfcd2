//! Chaos: while 10,000 tasks run on a process pool, random workers are killed with SIGKILL from
//! outside (at least 50 kills, at random moments, of workers up for at least 50 ms).
//!
//! Asserted: a task fails only if the worker holding it was killed, with
//! [`Error::WorkerDied`] naming that worker and SIGKILL, and at most one task per kill; every
//! other task returns its own correct value; the pool ends at full size; no zombie is left
//! while the pool lives, and no child at all once it is dropped.
//!
//! This file holds a single `#[test]`, so the children counted are this scenario's only.
//! `PRIMEPOOL_CHAOS_SEED=N` replays the random choices of a failing run (the seed is printed);
//! `PRIMEPOOL_SOAK=N` runs the scenario N times (local soak runs).

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use primepool::{Error, ExecutorExt, WorkerId};

const TASKS: u64 = 10_000;
const WORKERS: usize = 4;
const MIN_KILLS: usize = 50;
/// How long a worker must have been listed before it may be killed (past its start-up).
const OLD_ENOUGH: Duration = Duration::from_millis(50);
/// Ample for the work (about 3 s of CPU) plus a replacement worker per kill, on a busy machine.
const BOUND: Duration = Duration::from_secs(90);

/// What a task computes: cheap to check, different for every input.
fn expected(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

/// Spins 100 to 700 µs (so workers are usually mid-task when killed), then answers with the
/// pid that ran it and its value.
fn work(x: u64) -> (u32, u64) {
    let until = Instant::now() + Duration::from_micros(100 + (x % 7) * 100);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    (std::process::id(), expected(x))
}

/// A small xorshift generator: the kill schedule needs no more, and the seed replays it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Children of this process that are zombies (dead, not reaped by the pool).
fn zombies() -> Vec<u32> {
    support::children()
        .into_iter()
        .filter(|&pid| matches!(support::stat(pid), Some((_, 'Z'))))
        .collect()
}

#[test]
fn sigkilled_workers_fail_only_the_tasks_they_held_and_the_pool_recovers() {
    let seed = std::env::var("PRIMEPOOL_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    for round in 0..support::soak_rounds() {
        chaos_round(seed.wrapping_add(round * 2));
    }
}

/// One run of the scenario with the kill schedule drawn from `seed`.
fn chaos_round(seed: u64) {
    let started = Instant::now();
    eprintln!("chaos seed {seed} (PRIMEPOOL_CHAOS_SEED={seed} replays it)");
    let mut rng = Rng(seed | 1); // xorshift must not start at zero

    let pool = support::pool(WORKERS);
    let futures: Vec<_> = (0..TASKS)
        .map(|x| pool.submit(work, x).expect("submit"))
        .collect();

    // Kill a random worker every 2 to 20 ms until MIN_KILLS, while tasks remain. Only
    // workers listed for OLD_ENOUGH are candidates: three kills in a row of workers still
    // starting break the pool (a known bug, see the ignored test below).
    let mut killed: HashSet<u32> = HashSet::new();
    let mut first_seen: HashMap<u32, Instant> = HashMap::new();
    let mut kills_while_busy = 0;
    while killed.len() < MIN_KILLS + 10 && started.elapsed() < BOUND {
        std::thread::sleep(Duration::from_millis(2 + rng.below(19)));
        let now = Instant::now();
        let pids: Vec<u32> = pool
            .worker_pids()
            .into_iter()
            .filter(|&pid| now - *first_seen.entry(pid).or_insert(now) >= OLD_ENOUGH)
            .collect();
        if pids.is_empty() {
            continue;
        }
        let pid = pids[rng.below(pids.len() as u64) as usize];
        if killed.contains(&pid) {
            continue; // listed again before the pool noticed its death
        }
        // SAFETY: kill has no memory-safety preconditions. `pid` is a worker of our pool that
        // the pool has not reaped (it is still listed, and only the pool reaps it), so the pid
        // cannot have been reused by an unrelated process.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill({pid}) failed");
        killed.insert(pid);
        if futures.iter().rev().any(|f| !f.done()) {
            kills_while_busy += 1;
        }
    }
    assert!(
        kills_while_busy >= MIN_KILLS,
        "only {kills_while_busy} kills landed while tasks remained (seed {seed})"
    );

    // Every task: its own value from a live worker, or WorkerDied from a killed one.
    let mut failures_per_pid: HashMap<u32, usize> = HashMap::new();
    let mut ran_on: HashSet<u32> = HashSet::new();
    for (x, f) in futures.iter().enumerate() {
        let x = x as u64;
        match f.result(Some(BOUND.saturating_sub(started.elapsed()))) {
            Ok((pid, value)) => {
                assert_eq!(value, expected(x), "task {x} returned a wrong value");
                ran_on.insert(pid);
            }
            Err(Error::WorkerDied {
                worker: WorkerId::Process(pid),
                status,
            }) => {
                assert!(
                    killed.contains(&pid),
                    "task {x} failed on worker {pid}, which was not killed (seed {seed})"
                );
                assert!(status.contains("SIGKILL"), "task {x}: status {status:?}");
                *failures_per_pid.entry(pid).or_default() += 1;
            }
            Err(other) => panic!("task {x}: unexpected {other:?} (seed {seed})"),
        }
    }
    let failures: usize = failures_per_pid.values().sum();
    if let Some((pid, n)) = failures_per_pid.iter().find(|(_, &n)| n > 1) {
        panic!("killed worker {pid} failed {n} tasks; it held one at a time (seed {seed})");
    }
    assert!(failures > 0, "no kill hit a running task: the test is void");

    assert!(
        support::eventually(Duration::from_secs(20), || pool.worker_pids().len()
            == WORKERS),
        "the pool did not return to {WORKERS} workers: {:?}",
        pool.worker_pids()
    );
    assert!(
        support::eventually(Duration::from_secs(5), || zombies().is_empty()),
        "zombies left while the pool runs: {:?}",
        zombies()
    );
    assert!(
        pool.worker_pids().iter().all(|pid| !killed.contains(pid)),
        "a killed worker is still listed"
    );
    // The pool still works after the storm.
    assert_eq!(
        pool.submit(work, 7).unwrap().result(Some(BOUND)).unwrap().1,
        expected(7)
    );
    drop(pool);
    let left = support::children();
    assert!(left.is_empty(), "children left after drop: {left:?}");

    let elapsed = started.elapsed();
    assert!(elapsed < BOUND, "took {elapsed:?}");
    eprintln!(
        "chaos: {TASKS} tasks, {} kills ({kills_while_busy} while busy), {failures} tasks failed \
         with WorkerDied (at most one per kill), {} succeeded on {} distinct workers, 0 lost, \
         0 leaked, {elapsed:?}",
        killed.len(),
        TASKS as usize - failures,
        ran_on.len(),
    );
}

/// Returns the number of a task, after a pause long enough for a kill to land.
fn slow_echo(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(50));
    x
}

/// The initializer of [`sigkills_of_starting_workers_do_not_break_the_pool`]: slow, so that a
/// worker stays in start-up long enough to be killed there, and it leaves a mark when it is
/// done, so the test can tell that a kill landed before the worker was ready.
fn slow_start() {
    std::thread::sleep(Duration::from_millis(500));
    let dir = std::env::var_os("CHAOS_READY_DIR").expect("set by the test");
    std::fs::write(
        std::path::Path::new(&dir).join(std::process::id().to_string()),
        b"",
    )
    .expect("marking the worker ready");
}

/// A SIGKILL from outside (the OOM killer, an operator) while a worker starts is no sign of a
/// misconfigured worker program: however many such kills land, the pool replaces the worker
/// and keeps serving (only workers that exit on their own before they are ready break it).
/// Each kill is checked to have landed on a worker still starting (its initializer never
/// finished), so the test cannot pass by killing ready workers only.
#[test]
fn sigkills_of_starting_workers_do_not_break_the_pool() {
    let ready = std::env::temp_dir().join(format!("primepool-chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ready);
    std::fs::create_dir_all(&ready).unwrap();
    let pool = support::builder()
        .max_workers(1)
        .initializer(slow_start)
        .worker_env("CHAOS_READY_DIR", &ready)
        .build()
        .unwrap();
    assert_eq!(
        pool.submit(slow_echo, 1).unwrap().result(Some(BOUND)),
        Ok(1)
    );
    let mut last = pool.worker_pids()[0];
    support::signal(last, libc::SIGKILL);
    // Kill each replacement as soon as it is listed: within its slow initializer.
    let mut killed_starting = Vec::new();
    while killed_starting.len() < 4 {
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.worker_pids().first().is_none_or(|&p| p == last) {
            assert!(
                Instant::now() < deadline,
                "no replacement after {} kills",
                killed_starting.len() + 1
            );
            std::thread::sleep(Duration::from_micros(100));
        }
        last = pool.worker_pids()[0];
        support::signal(last, libc::SIGKILL);
        killed_starting.push(last);
    }
    assert_eq!(
        pool.submit(slow_echo, 2)
            .and_then(|f| f.result(Some(BOUND))),
        Ok(2),
        "the pool must replace workers killed during start-up and go on"
    );
    drop(pool);
    for pid in killed_starting {
        assert!(
            !ready.join(pid.to_string()).exists(),
            "worker {pid} was ready when it was killed: the test must kill starting workers"
        );
    }
    let _ = std::fs::remove_dir_all(&ready);
}
