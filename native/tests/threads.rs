//! `ThreadPoolExecutor`: the shared executor suite, then the thread pool's own behaviour
//! (Python's lazy start, names, initializer, closures, panics, shutdown races).

mod thread_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use primepool::thread::{default_max_workers, DEFAULT_THREAD_NAME_PREFIX};
use primepool::{Error, Executor, InProcessExecutor, ThreadPoolExecutor};
use thread_support::{current_thread_name, eventually, LONG};

mod conformance {
    primepool_core::conformance_tests!(|workers: usize| Box::new(
        primepool::ThreadPoolExecutor::new(workers).unwrap()
    ));
}

#[test]
fn zero_workers_is_an_invalid_argument() {
    assert!(matches!(
        ThreadPoolExecutor::new(0),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn the_default_worker_count_is_pythons_min_of_32_and_cpus_plus_4() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(default_max_workers(), (cpus + 4).min(32));
    let pool = ThreadPoolExecutor::builder().build().unwrap();
    assert_eq!(pool.max_workers(), (cpus + 4).min(32));
}

#[test]
fn no_thread_starts_before_work_and_one_task_starts_one_thread() {
    let pool = ThreadPoolExecutor::new(8).unwrap();
    assert_eq!(pool.threads_started(), 0);
    assert_eq!(pool.submit_closure(|| 5).unwrap().result(LONG), Ok(5));
    assert_eq!(pool.threads_started(), 1);
}

#[test]
fn an_idle_worker_is_reused_instead_of_starting_another() {
    let pool = ThreadPoolExecutor::new(8).unwrap();
    let first = pool.submit_closure(current_thread_name).unwrap().join();
    // Let the worker reach its wait, where a submission can claim it.
    std::thread::sleep(Duration::from_millis(100));
    let second = pool.submit_closure(current_thread_name).unwrap().join();
    assert_eq!(first, second);
    assert_eq!(pool.threads_started(), 1);
}

#[test]
fn concurrent_work_starts_threads_up_to_max_workers_and_no_more() {
    let pool = ThreadPoolExecutor::new(4).unwrap();
    let arrived = Arc::new(AtomicUsize::new(0));
    // Each task waits until four run at once: only possible if four threads were started.
    let futures: Vec<_> = (0..12)
        .map(|_| {
            let arrived = Arc::clone(&arrived);
            pool.submit_closure(move || {
                arrived.fetch_add(1, Ordering::SeqCst);
                eventually(|| arrived.load(Ordering::SeqCst) >= 4)
            })
            .unwrap()
        })
        .collect();
    for f in futures {
        assert_eq!(f.join(), Ok(true));
    }
    assert_eq!(pool.threads_started(), 4);
}

#[test]
fn threads_are_named_with_the_prefix_and_their_index() {
    let named = ThreadPoolExecutor::builder()
        .max_workers(2)
        .thread_name_prefix("crawler")
        .build()
        .unwrap();
    thread_support::threads_are_named(
        &ThreadPoolExecutor::new(1).unwrap(),
        DEFAULT_THREAD_NAME_PREFIX,
        &named,
        "crawler",
    );
}

/// A pool of at most `workers` threads running `initializer`: the shared checks' builder
/// factory.
fn with_initializer(
    workers: usize,
    initializer: thread_support::Initializer,
) -> ThreadPoolExecutor {
    ThreadPoolExecutor::builder()
        .max_workers(workers)
        .initializer(move || initializer())
        .build()
        .unwrap()
}

#[test]
fn the_initializer_runs_once_in_each_worker_before_its_tasks() {
    thread_support::the_initializer_runs_once_in_each_thread_before_its_tasks(&with_initializer);
}

#[test]
fn a_failing_or_panicking_initializer_breaks_the_pool_with_its_message() {
    thread_support::a_failing_or_panicking_initializer_breaks_the_pool(&with_initializer);
}

#[test]
fn a_panic_fails_only_its_future_and_the_worker_keeps_working() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    thread_support::a_panic_fails_only_its_future(&pool, DEFAULT_THREAD_NAME_PREFIX);
    assert_eq!(
        pool.threads_started(),
        1,
        "the panic cost the pool its thread"
    );
}

#[test]
fn closures_can_capture_owned_and_shared_state() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let text = String::from("concurrent.futures");
    let total = Arc::new(AtomicUsize::new(0));
    let futures: Vec<_> = (1..=10)
        .map(|i| {
            let total = Arc::clone(&total);
            pool.submit_closure(move || total.fetch_add(i, Ordering::SeqCst))
                .unwrap()
        })
        .collect();
    let upper = pool.submit_closure(move || text.to_uppercase()).unwrap();
    for f in futures {
        f.join().unwrap();
    }
    assert_eq!(total.load(Ordering::SeqCst), 55);
    assert_eq!(upper.join().unwrap(), "CONCURRENT.FUTURES");
    // A result that is not `Clone` can be moved out with `join`.
    let (sender, receiver) = mpsc::channel::<u8>();
    let moved = pool.submit_closure(move || sender).unwrap().join().unwrap();
    moved.send(1).unwrap();
    assert_eq!(receiver.recv(), Ok(1));
}

#[test]
fn cancel_futures_cancels_every_queued_task_and_lets_the_running_one_finish() {
    thread_support::cancel_futures_cancels_what_is_queued(&ThreadPoolExecutor::new(1).unwrap());
}

#[test]
fn shutdown_refuses_closures_and_dropping_the_pool_waits_for_submitted_work() {
    thread_support::dropping_the_pool_waits_for_submitted_work(ThreadPoolExecutor::new(2).unwrap());
}

#[test]
fn a_task_may_drop_the_last_handle_to_its_own_pool_without_deadlock() {
    thread_support::a_task_may_drop_the_last_handle_to_its_own_pool(
        ThreadPoolExecutor::new(2).unwrap(),
    );
}

#[test]
fn cancel_racing_shutdown_resolves_every_future_exactly_once() {
    thread_support::cancel_races_shutdown(&|| Box::new(ThreadPoolExecutor::new(2).unwrap()), 300);
}

#[test]
fn submit_racing_shutdown_never_loses_an_accepted_task() {
    thread_support::submit_races_shutdown(&|| Box::new(ThreadPoolExecutor::new(2).unwrap()), 200);
}

#[test]
fn a_task_and_its_owner_shutting_down_with_wait_at_once_do_not_deadlock() {
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let pool = Arc::new(ThreadPoolExecutor::new(2).unwrap());
        let (started, has_started) = mpsc::channel();
        let inner = Arc::clone(&pool);
        let task = pool
            .submit_closure(move || {
                started.send(()).unwrap();
                // By now the owner is in shutdown(wait), joining this very thread.
                std::thread::sleep(Duration::from_millis(200));
                inner.shutdown(true, false);
                7
            })
            .unwrap();
        let other = pool
            .submit_closure(|| {
                std::thread::sleep(Duration::from_millis(300));
                8
            })
            .unwrap();
        has_started.recv().unwrap();
        pool.shutdown(true, false);
        let got = (
            task.result(Some(Duration::ZERO)),
            other.result(Some(Duration::ZERO)),
        );
        done.send(got).unwrap();
    });
    let got = outcome
        .recv_timeout(Duration::from_secs(120))
        .expect("two shutdown(wait = true) calls deadlocked");
    assert_eq!(got, (Ok(7), Ok(8)), "both returned after the work was done");
}

#[test]
fn a_panic_payload_can_be_re_raised() {
    thread_support::a_panic_payload_can_be_re_raised(&ThreadPoolExecutor::new(2).unwrap());
}

#[test]
fn shutdown_async_waits_for_the_work_without_blocking_the_caller() {
    thread_support::shutdown_async_waits_without_blocking_the_caller(Arc::new(
        ThreadPoolExecutor::new(2).unwrap(),
    ));
}
