//! Integration tests of a user's crate that run its code in worker processes: the one line
//! `primepool::test_support!()` is all the test crate needs, no custom `main`.

use std::time::Duration;

use primepool::{Error, ExecutorExt, ProcessPoolExecutor};
use user_crate::{collatz_steps, longest_collatz};

primepool::test_support!();

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn steps_or_panic(n: u64) -> u32 {
    assert!(n != 13, "thirteen is unlucky");
    collatz_steps(n)
}

fn pool(workers: usize) -> ProcessPoolExecutor {
    primepool::test_support::pool(workers).expect("a process pool of this test binary")
}

#[test]
fn tasks_run_in_other_processes_that_are_the_pools_workers() {
    let pool = pool(2);
    let theirs = pool.submit(pid, ()).unwrap().join().unwrap();
    assert_ne!(theirs, std::process::id());
    assert!(pool.worker_pids().contains(&theirs));
}

#[test]
fn the_crates_functions_map_over_worker_processes() {
    let pool = pool(2);
    let steps: Vec<u32> = pool
        .map(collatz_steps, 1..8)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(steps, [0, 1, 7, 2, 5, 8, 16]);
    assert_eq!(longest_collatz(&pool, 1..10_000), Ok((6_171, 261)));
}

#[test]
fn a_panic_in_a_worker_fails_only_its_task() {
    let pool = pool(2);
    let outcomes: Vec<_> = pool.map(steps_or_panic, 12..15).unwrap().collect();
    assert_eq!(outcomes[0], Ok(9));
    assert!(
        matches!(&outcomes[1], Err(Error::Panicked(p)) if p.message.contains("thirteen")),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(outcomes[2], Ok(17));
}

#[test]
fn the_builder_takes_the_usual_options() {
    let pool = primepool::test_support::builder()
        .expect("a worker command")
        .max_workers(1)
        .max_tasks_per_child(1)
        .task_timeout(Duration::from_secs(600))
        .build()
        .expect("a process pool");
    let first = pool.submit(pid, ()).unwrap().join().unwrap();
    let second = pool.submit(pid, ()).unwrap().join().unwrap();
    assert_ne!(
        first, second,
        "max_tasks_per_child(1) replaces the worker after each task"
    );
}
