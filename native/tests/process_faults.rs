//! The process pool under faults, with real processes: tasks that abort, exit or crash,
//! workers killed from outside, tasks terminated or timed out, and what is left afterwards.
//! Only the job a dead worker was running may fail; everything else must complete.

mod support;

use std::time::{Duration, Instant};

use primepool::{Error, Executor, ExecutorExt, WorkerId};

const WAIT: Option<Duration> = Some(Duration::from_secs(60));

fn square(x: u64) -> u64 {
    x * x
}

fn abort(_: ()) -> u64 {
    std::process::abort()
}

fn exit_with(code: i32) -> u64 {
    std::process::exit(code)
}

fn segfault(_: ()) -> u64 {
    // SAFETY: signal and raise have no memory-safety preconditions. The default action (std
    // installs a handler for stack overflows) makes SIGSEGV end this worker process, which is
    // what the test wants: a crash like a real segmentation fault, without undefined behaviour.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
    unreachable!("SIGSEGV ends the process")
}

fn sleep_then_pid(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

/// Asserts `result` is a worker-died error whose status mentions `status`; returns the pid.
fn died(result: Result<impl std::fmt::Debug, Error>, status: &str) -> u32 {
    match result {
        Err(Error::WorkerDied {
            worker: WorkerId::Process(pid),
            status: s,
        }) => {
            assert!(s.contains(status), "status {s:?} should mention {status:?}");
            pid
        }
        other => panic!("expected a worker-died error, got {other:?}"),
    }
}

#[test]
fn a_task_that_aborts_fails_alone_while_100_others_succeed() {
    let pool = support::pool(2);
    // Workers start in the background: wait until both are listed.
    assert!(support::eventually(Duration::from_secs(20), || pool
        .worker_pids()
        .len()
        == 2));
    let before = pool.worker_pids();
    let mut squares = Vec::new();
    let mut crash = None;
    for i in 0..101u64 {
        if i == 50 {
            crash = Some(pool.submit(abort, ()).unwrap());
        } else {
            squares.push((i, pool.submit(square, i).unwrap()));
        }
    }
    let dead = died(crash.unwrap().result(WAIT), "SIGABRT");
    assert!(before.contains(&dead), "{dead} was one of {before:?}");
    for (i, f) in squares {
        assert_eq!(f.result(WAIT), Ok(i * i), "task {i}");
    }
    assert!(
        support::eventually(Duration::from_secs(20), || {
            let now = pool.worker_pids();
            now.len() == 2 && !now.contains(&dead)
        }),
        "a replacement joins: {:?}",
        pool.worker_pids()
    );
    assert!(support::exited(dead));
}

#[test]
fn exit_and_segfault_in_a_task_name_the_status() {
    let pool = support::pool(1);
    died(
        pool.submit(exit_with, 3).unwrap().result(WAIT),
        "exit status 3",
    );
    died(pool.submit(segfault, ()).unwrap().result(WAIT), "SIGSEGV");
    assert_eq!(pool.submit(square, 7).unwrap().result(WAIT), Ok(49));
}

#[test]
fn sigkill_of_a_busy_worker_from_outside_fails_only_its_task() {
    let pool = support::pool(2);
    let long: Vec<_> = (0..2)
        .map(|_| pool.submit(sleep_then_pid, 1500).unwrap())
        .collect();
    let fast: Vec<_> = (0..100u64)
        .map(|i| (i, pool.submit(square, i).unwrap()))
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let victim = pool.worker_pids()[0];
    support::signal(victim, libc::SIGKILL);
    let outcomes: Vec<_> = long.iter().map(|f| f.result(WAIT)).collect();
    let failed: Vec<_> = outcomes.iter().filter(|r| r.is_err()).collect();
    assert_eq!(failed.len(), 1, "{outcomes:?}");
    assert_eq!(died(failed[0].clone(), "SIGKILL"), victim);
    assert!(outcomes.iter().any(|r| matches!(r, Ok(p) if *p != victim)));
    for (i, f) in fast {
        assert_eq!(f.result(WAIT), Ok(i * i), "task {i}");
    }
    assert!(support::eventually(Duration::from_secs(20), || {
        pool.worker_pids().len() == 2
    }));
}

#[test]
fn terminate_stops_a_running_task_and_a_fresh_worker_takes_over() {
    let pool = support::pool(1);
    let first = pool.submit(pid, ()).unwrap().result(WAIT).unwrap();
    let stuck = pool.submit(sleep_then_pid, 60_000).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert!(stuck.terminate());
    match stuck.result(WAIT) {
        Err(Error::Terminated(why)) => assert!(why.contains("terminate"), "{why}"),
        other => panic!("expected terminated, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    let next = pool.submit(pid, ()).unwrap().result(WAIT).unwrap();
    assert_ne!(next, first, "the worker was replaced");
    assert!(support::exited(first));
    assert!(!stuck.terminate(), "a finished future cannot be terminated");
}

/// A worker's main thread reads its channel between jobs and hands it to the control thread
/// while a long job runs: after each hand-over both ways, lone tasks still come back right
/// from the same worker, and a terminate still reaches a running task.
#[test]
fn the_channel_changes_hands_around_long_tasks_and_terminate_still_reaches_them() {
    let pool = support::pool(1);
    let worker = pool.submit(pid, ()).unwrap().result(WAIT).unwrap();
    for round in 0..3u64 {
        for x in 0..20u64 {
            let got = pool.submit(square, x + round).unwrap().result(WAIT);
            assert_eq!(
                got,
                Ok((x + round) * (x + round)),
                "round {round}, task {x}"
            );
        }
        // Long enough for the control thread to take the channel over.
        let long = pool.submit(sleep_then_pid, 30).unwrap().result(WAIT);
        assert_eq!(long, Ok(worker), "round {round}: the same worker ran it");
    }
    let stuck = pool.submit(sleep_then_pid, 60_000).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(stuck.terminate());
    match stuck.result(WAIT) {
        Err(Error::Terminated(why)) => assert!(why.contains("terminate"), "{why}"),
        other => panic!("expected terminated, got {other:?}"),
    }
    for x in 0..20u64 {
        assert_eq!(pool.submit(square, x).unwrap().result(WAIT), Ok(x * x));
    }
    // The stopped worker exits right after it says so; the pool reaps it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !support::exited(worker) {
        assert!(Instant::now() < deadline, "worker {worker} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn terminating_a_task_queued_in_a_worker_drops_it_without_killing_the_worker() {
    let pool = support::pool(1);
    let running = pool.submit(sleep_then_pid, 400).unwrap();
    let queued = pool.submit(sleep_then_pid, 60_000).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(queued.terminate());
    assert!(matches!(queued.result(WAIT), Err(Error::Terminated(_))));
    let worker = running.result(WAIT).unwrap();
    assert_eq!(pool.submit(pid, ()).unwrap().result(WAIT), Ok(worker));
}

#[test]
fn a_task_over_its_timeout_is_terminated_and_frees_the_worker() {
    let pool = support::builder()
        .max_workers(1)
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let quick = pool.submit(sleep_then_pid, 10).unwrap();
    let slow = pool.submit(sleep_then_pid, 60_000).unwrap();
    let after = pool.submit(square, 5).unwrap();
    let first = quick.result(WAIT).unwrap();
    match slow.result(WAIT) {
        Err(Error::Terminated(why)) => assert!(why.contains("timeout of 300ms"), "{why}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(after.result(WAIT), Ok(25), "the job behind it still runs");
    assert_ne!(pool.submit(pid, ()).unwrap().result(WAIT), Ok(first));
}

#[test]
fn after_shutdown_no_worker_process_remains() {
    let pool = support::builder()
        .max_workers(3)
        .max_tasks_per_child(5)
        .build()
        .unwrap();
    let mut seen = pool.worker_pids();
    let results: Vec<_> = pool
        .map(sleep_then_pid, (0..40).map(|i| i % 3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    seen.extend(results);
    seen.extend(pool.worker_pids());
    pool.shutdown(true, false);
    for pid in &seen {
        assert!(
            support::stat(*pid).is_none(),
            "worker {pid} remains after shutdown"
        );
    }
    drop(pool);
}

/// Run as a child process: a pool through crashes, kills and recycling, then a check that
/// this process has no child left at all (no zombie, no live worker).
#[test]
#[ignore = "run as a child process by a_process_that_used_a_pool_has_no_children_left"]
fn use_a_pool_then_count_children() {
    {
        let pool = support::builder()
            .max_workers(2)
            .max_tasks_per_child(3)
            .build()
            .unwrap();
        let _ = pool.submit(abort, ()).unwrap().result(WAIT);
        let _ = pool.submit(exit_with, 1).unwrap().result(WAIT);
        let busy = pool.submit(sleep_then_pid, 2000).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        for pid in pool.worker_pids() {
            support::signal(pid, libc::SIGKILL);
        }
        assert!(matches!(busy.result(WAIT), Err(Error::WorkerDied { .. })));
        let total: u64 = pool.map(square, 0..100).unwrap().map(|r| r.unwrap()).sum();
        assert_eq!(total, 328_350);
    }
    let left = support::children();
    assert!(left.is_empty(), "children left: {left:?}");
    println!("NO CHILDREN LEFT");
}

#[test]
fn a_process_that_used_a_pool_has_no_children_left() {
    let out = support::run_ignored_test("use_a_pool_then_count_children", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("NO CHILDREN LEFT"),
        "{out:?}"
    );
}

#[test]
fn a_slow_task_does_not_hold_up_the_tasks_submitted_after_it() {
    let pool = support::pool(2);
    // Warm up, so that both workers are ready and their windows have adapted.
    for f in (0..20u64)
        .map(|i| pool.submit(square, i).unwrap())
        .collect::<Vec<_>>()
    {
        f.result(WAIT).unwrap();
    }
    let slow = pool.submit(sleep_then_pid, 4000).unwrap();
    let started = Instant::now();
    let quick: Vec<_> = (0..20)
        .map(|_| pool.submit(sleep_then_pid, 20).unwrap())
        .collect();
    for f in &quick {
        f.result(WAIT).unwrap();
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "20 quick tasks took {took:?}: they waited behind the slow one"
    );
    assert!(!slow.done(), "the slow task still runs");
    assert!(slow.terminate());
}

fn spin_then_echo(x: u64) -> u64 {
    let until = Instant::now() + Duration::from_micros(x % 500);
    while Instant::now() < until {}
    x
}

#[test]
fn workers_killed_at_random_lose_only_the_tasks_they_were_running() {
    const TASKS: u64 = 3000;
    const KILLS: usize = 15;
    let pool = support::pool(2);
    let futures: Vec<_> = (0..TASKS)
        .map(|i| pool.submit(spin_then_echo, i).unwrap())
        .collect();
    let mut killed = Vec::new();
    for k in 0..KILLS {
        std::thread::sleep(Duration::from_millis(15));
        let pids = pool.worker_pids();
        if let Some(&pid) = pids.get(k % pids.len().max(1)) {
            if !killed.contains(&pid) {
                support::signal(pid, libc::SIGKILL);
                killed.push(pid);
            }
        }
    }
    let mut died = 0;
    for (i, f) in futures.iter().enumerate() {
        match f.result(WAIT) {
            Ok(x) => assert_eq!(x, i as u64),
            Err(Error::WorkerDied {
                worker: WorkerId::Process(pid),
                status,
            }) => {
                assert!(killed.contains(&pid), "{pid} was not killed");
                assert!(status.contains("SIGKILL"), "{status}");
                died += 1;
            }
            Err(e) => panic!("task {i}: unexpected {e:?}"),
        }
    }
    assert!(
        died <= killed.len(),
        "{died} tasks failed for {} kills",
        killed.len()
    );
    assert!(support::eventually(Duration::from_secs(20), || pool
        .worker_pids()
        .len()
        == 2));
    drop(pool);
    for pid in killed {
        assert!(
            support::stat(pid).is_none(),
            "killed worker {pid} was reaped"
        );
    }
}

/// Writes bytes that are not the protocol (a frame header announcing 4 GiB) into every socket
/// this worker holds: its channel to the pool.
fn corrupt_the_channel(_: ()) -> u64 {
    let garbage = [0xffu8; 16];
    for fd in 3..256 {
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat writes into a buffer of the right type and size; we read it only on
        // success. write reads `garbage`, a live buffer of the length given.
        unsafe {
            if libc::fstat(fd, stat.as_mut_ptr()) == 0
                && stat.assume_init().st_mode & libc::S_IFMT == libc::S_IFSOCK
            {
                libc::write(fd, garbage.as_ptr().cast(), garbage.len());
            }
        }
    }
    std::thread::sleep(Duration::from_secs(30));
    0
}

#[test]
fn garbage_from_a_worker_fails_its_task_with_a_protocol_error_and_the_pool_recovers() {
    let pool = support::pool(1);
    let started = Instant::now();
    assert!(support::eventually(Duration::from_secs(20), || !pool
        .worker_pids()
        .is_empty()));
    let worker = pool.worker_pids()[0];
    let dead = died(
        pool.submit(corrupt_the_channel, ()).unwrap().result(WAIT),
        "protocol error",
    );
    assert_eq!(dead, worker);
    assert!(started.elapsed() < Duration::from_secs(20), "no hang");
    assert_eq!(pool.submit(square, 9).unwrap().result(WAIT), Ok(81));
}
