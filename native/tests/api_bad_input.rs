//! Bad input at every door of the executor API, on every native backend: zero worker counts
//! and options, a zero chunk size, timeouts of zero and of `Duration::MAX`, calls after
//! shutdown, the result of a cancelled future, worker programs that cannot serve. Each gives
//! the documented [`Error`] (or the documented result), never a panic or a hang.

mod support;

use std::time::{Duration, Instant};

use primepool::backend::{Job, Promise};
use primepool::{
    as_completed, wait, Error, Executor, ExecutorExt, FutureState, InProcessExecutor, MapOptions,
    ProcessPoolBuilder, ProcessPoolExecutor, RayonExecutor, ReturnWhen, SerialExecutor,
    ThreadPoolExecutor,
};
use primepool_core::conformance::block_on;

/// Long enough that a task submitted behind it is still pending when the test looks.
const HOLD_MS: u64 = 300;
const WAIT: Option<Duration> = Some(Duration::from_secs(60));

fn square(x: u64) -> u64 {
    x * x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Every native backend, with `workers` workers (the serial executor has one).
fn backends(workers: usize) -> Vec<Box<dyn Executor>> {
    vec![
        Box::new(SerialExecutor::new()),
        Box::new(ThreadPoolExecutor::new(workers).unwrap()),
        Box::new(RayonExecutor::new(workers).unwrap()),
        Box::new(support::pool(workers)),
    ]
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(Error::InvalidArgument(message)) => {
            assert!(!message.is_empty(), "{what}: the error says why")
        }
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn zero_workers_is_an_invalid_argument_at_every_constructor() {
    assert_invalid(ThreadPoolExecutor::new(0), "ThreadPoolExecutor::new(0)");
    assert_invalid(
        ThreadPoolExecutor::builder().max_workers(0).build(),
        "thread builder",
    );
    assert_invalid(RayonExecutor::new(0), "RayonExecutor::new(0)");
    assert_invalid(
        RayonExecutor::builder().max_workers(0).build(),
        "rayon builder",
    );
    assert_invalid(ProcessPoolExecutor::new(0), "ProcessPoolExecutor::new(0)");
    assert_invalid(support::builder().max_workers(0).build(), "process builder");
}

#[test]
fn zero_process_pool_options_are_invalid_arguments_and_an_endless_timeout_is_none() {
    let pool = |b: ProcessPoolBuilder| b.max_workers(1).build();
    assert_invalid(
        pool(support::builder().max_tasks_per_child(0)),
        "max_tasks_per_child(0)",
    );
    assert_invalid(
        pool(support::builder().task_timeout(Duration::ZERO)),
        "task_timeout(0)",
    );
    // Duration::MAX as a per-task timeout (and times a chunk of 1,000 calls) is simply no limit.
    let endless = pool(support::builder().task_timeout(Duration::MAX)).unwrap();
    let sum: u64 = endless
        .map_with(square, 0..3000, MapOptions::new().chunksize(1000))
        .unwrap()
        .map(Result::unwrap)
        .sum();
    assert_eq!(sum, (0..3000).map(square).sum::<u64>());
    assert_eq!(endless.submit(sleep_ms, 20).unwrap().result(WAIT), Ok(20));
}

#[test]
fn a_huge_worker_count_on_a_lazy_thread_pool_starts_only_the_threads_it_needs() {
    let pool = ThreadPoolExecutor::new(usize::MAX).unwrap();
    assert_eq!(pool.max_workers(), usize::MAX);
    let results: Vec<_> = pool.map(square, 0..100).unwrap().collect();
    assert_eq!(results, (0..100).map(|x| Ok(x * x)).collect::<Vec<_>>());
    assert!(pool.threads_started() <= 100, "{}", pool.threads_started());
}

#[test]
fn chunksize_zero_is_an_invalid_argument_and_a_huge_one_is_one_chunk() {
    for pool in backends(2) {
        let name = pool.name();
        assert_invalid(
            pool.map_with(square, [1, 2, 3], MapOptions::new().chunksize(0)),
            name,
        );
        let results: Vec<_> = pool
            .map_with(square, 0..50, MapOptions::new().chunksize(usize::MAX))
            .unwrap()
            .collect();
        assert_eq!(
            results,
            (0..50).map(|x| Ok(x * x)).collect::<Vec<_>>(),
            "{name}"
        );
        // The refused map left the pool working.
        assert_eq!(
            pool.submit(square, 12).unwrap().result(WAIT),
            Ok(144),
            "{name}"
        );
    }
}

#[test]
fn zero_timeouts_time_out_at_once_and_max_timeouts_wait_for_the_result() {
    for pool in backends(1) {
        let name = pool.name();
        let serial = name == "serial";
        let hold = pool.submit(sleep_ms, HOLD_MS).unwrap();
        let behind = pool.submit(sleep_ms, 1).unwrap();
        let started = Instant::now();
        if serial {
            // Runs inline: already done, so no timeout can expire.
            assert_eq!(behind.result(Some(Duration::ZERO)), Ok(1), "{name}");
        } else {
            assert_eq!(
                behind.result(Some(Duration::ZERO)),
                Err(Error::timed_out(Duration::ZERO)),
                "{name}"
            );
            assert_eq!(
                behind.error(Some(Duration::ZERO)),
                Err(Error::timed_out(Duration::ZERO)),
                "{name}"
            );
            assert!(!behind.wait(Some(Duration::ZERO)), "{name}");
            let waited = wait(
                std::slice::from_ref(&behind),
                Some(Duration::ZERO),
                ReturnWhen::AllCompleted,
            )
            .unwrap();
            assert_eq!((waited.done.len(), waited.not_done.len()), (0, 1), "{name}");
            let mut ac = as_completed(std::slice::from_ref(&behind), Some(Duration::ZERO));
            assert!(
                matches!(ac.next(), Some(Err(Error::TimedOut { after, .. })) if after.is_zero()),
                "{name}"
            );
            assert!(
                ac.next().is_none(),
                "{name}: as_completed ends after its timeout"
            );
            assert!(
                started.elapsed() < Duration::from_millis(HOLD_MS),
                "{name}: zero timeouts must not wait"
            );
        }
        // Duration::MAX is "no limit", not an overflow.
        let max = Some(Duration::MAX);
        assert!(behind.wait(max), "{name}");
        assert_eq!(behind.result(max), Ok(1), "{name}");
        assert_eq!(behind.error(max), Ok(None), "{name}");
        assert_eq!(hold.result(max), Ok(HOLD_MS), "{name}");
        let futures = [hold.clone(), behind.clone()];
        let waited = wait(&futures, max, ReturnWhen::AllCompleted).unwrap();
        assert_eq!(waited.done.len(), 2, "{name}");
        assert_eq!(as_completed(&futures, max).filter(Result::is_ok).count(), 2);
        let all: Vec<_> = pool
            .map_with(square, 0..20, MapOptions::new().timeout(Duration::MAX))
            .unwrap()
            .collect();
        assert_eq!(
            all,
            (0..20).map(|x| Ok(x * x)).collect::<Vec<_>>(),
            "{name}"
        );
    }
}

#[test]
fn a_map_with_a_zero_timeout_yields_one_timeout_and_cancels_the_rest() {
    for pool in backends(1) {
        let name = pool.name();
        if name == "serial" {
            continue; // runs inline: every result is ready before the iteration starts
        }
        let _hold = pool.submit(sleep_ms, HOLD_MS).unwrap();
        let mut map = pool
            .map_with(
                sleep_ms,
                [1, 1, 1],
                MapOptions::new().timeout(Duration::ZERO),
            )
            .unwrap();
        let futures_left = map.remaining();
        assert_eq!(futures_left, 3);
        assert_eq!(
            map.next(),
            Some(Err(Error::timed_out(Duration::ZERO))),
            "{name}"
        );
        assert_eq!(map.next(), None, "{name}: iteration ends after the timeout");
        assert_eq!(
            pool.submit(square, 4).unwrap().result(WAIT),
            Ok(16),
            "{name}"
        );
    }
}

#[test]
fn every_door_after_shutdown_says_shut_down() {
    for pool in backends(2) {
        let name = pool.name();
        let before = pool.submit(sleep_ms, 20).unwrap();
        pool.shutdown(true, false);
        assert_eq!(
            before.result(Some(Duration::ZERO)),
            Ok(20),
            "{name}: shutdown waits"
        );
        assert_eq!(
            pool.submit(square, 1).unwrap_err(),
            Error::ShutDown,
            "{name}"
        );
        assert_eq!(
            pool.map(square, [1, 2]).unwrap_err(),
            Error::ShutDown,
            "{name}"
        );
        assert_eq!(
            pool.map_with(square, [1], MapOptions::new().chunksize(1))
                .unwrap_err(),
            Error::ShutDown,
            "{name}"
        );
        // A job refused at the door resolves its futures (Broken: it was dropped), never hangs.
        let (promise, future) = Promise::<u64>::new();
        let job = Job::call(square, 3, promise);
        assert_eq!(pool.execute_batch(vec![job]).unwrap_err(), Error::ShutDown);
        assert!(
            matches!(future.result(WAIT), Err(Error::Broken(_))),
            "{name}: a refused job's future must resolve"
        );
        // Shutting down again, in any mode, is harmless.
        pool.shutdown(false, true);
        pool.shutdown(true, true);
        drop(pool);
    }
    let threads = ThreadPoolExecutor::new(1).unwrap();
    threads.shutdown(true, false);
    assert_eq!(threads.submit_closure(|| 1).unwrap_err(), Error::ShutDown);
    let rayon = RayonExecutor::new(1).unwrap();
    rayon.shutdown(true, false);
    assert_eq!(rayon.submit_closure(|| 1).unwrap_err(), Error::ShutDown);
}

#[test]
fn a_cancelled_future_reports_cancelled_at_every_accessor() {
    for pool in backends(1) {
        let name = pool.name();
        let hold = pool.submit(sleep_ms, HOLD_MS).unwrap();
        // A process pool ships a window of jobs ahead to its worker, and a shipped job counts as
        // started (as in Python's call queue): enough tasks in between keep the victim in the
        // pool's own queue.
        let fillers: Vec<_> = (0..300).map(|x| pool.submit(square, x).unwrap()).collect();
        let victim = pool.submit(square, 5).unwrap();
        if name == "serial" {
            // Runs inline: nothing is ever pending, so nothing can be cancelled.
            assert!(!victim.cancel(), "{name}");
            assert_eq!(victim.result(None), Ok(25));
            continue;
        }
        assert!(victim.cancel(), "{name}: a pending task can be cancelled");
        assert!(
            victim.cancel(),
            "{name}: cancelling twice says cancelled again"
        );
        assert_eq!(victim.state(), FutureState::Cancelled, "{name}");
        assert!(victim.done() && victim.cancelled() && !victim.running());
        assert_eq!(victim.result(None), Err(Error::Cancelled), "{name}");
        assert_eq!(victim.result(Some(Duration::ZERO)), Err(Error::Cancelled));
        assert_eq!(victim.error(None), Err(Error::Cancelled), "{name}");
        assert!(!victim.terminate(), "{name}: nothing to terminate");
        let (tx, rx) = std::sync::mpsc::channel();
        victim.add_done_callback(move |f| tx.send(f.cancelled()).unwrap());
        assert_eq!(rx.try_recv(), Ok(true), "{name}: callback runs at once");
        assert_eq!(block_on(victim.clone()), Err(Error::Cancelled), "{name}");
        assert_eq!(victim.clone().join(), Err(Error::Cancelled), "{name}");
        // A finished task cannot be cancelled, and a taken result is reported as taken.
        assert_eq!(hold.result(WAIT), Ok(HOLD_MS));
        assert!(!hold.cancel(), "{name}");
        let other = hold.clone();
        assert_eq!(hold.join(), Ok(HOLD_MS));
        assert_eq!(other.result(None), Err(Error::ResultTaken), "{name}");
        for (x, f) in fillers.into_iter().enumerate() {
            assert_eq!(f.result(WAIT), Ok((x * x) as u64), "{name}");
        }
    }
}

#[test]
fn a_worker_program_that_cannot_serve_breaks_the_pool_with_a_reason() {
    // A program that does not exist: the pool cannot start.
    let missing = ProcessPoolExecutor::builder()
        .max_workers(1)
        .worker_executable("/nonexistent/primepool-worker")
        .build();
    assert!(
        matches!(&missing, Err(Error::Broken(why)) if !why.is_empty()),
        "{missing:?}"
    );
    // A program that exits at once instead of serving: tasks fail with Broken, naming the cause.
    let started = Instant::now();
    match ProcessPoolExecutor::builder()
        .max_workers(1)
        .worker_executable("/bin/true")
        .build()
    {
        Err(Error::Broken(why)) => assert!(!why.is_empty()),
        Ok(pool) => {
            let outcome = pool.submit(square, 2).unwrap().result(WAIT);
            assert!(
                matches!(&outcome, Err(Error::Broken(why)) if why.contains("run_worker_if_requested")),
                "{outcome:?}"
            );
            assert!(
                matches!(pool.submit(square, 2), Err(Error::Broken(_)))
                    || matches!(
                        pool.submit(square, 2).unwrap().result(WAIT),
                        Err(Error::Broken(_))
                    ),
                "a broken pool stays broken"
            );
        }
        Err(other) => panic!("expected Broken, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "no respawn loop"
    );
}
