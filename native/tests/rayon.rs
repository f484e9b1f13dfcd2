//! `RayonExecutor`: the shared executor suite, then what the rayon adapter adds (names, batch
//! parallelism, cancelling queued work that rayon itself could not take back, shutdown races).

mod thread_support;

use std::collections::HashSet;
use std::sync::Mutex;

use primepool::rayon_pool::DEFAULT_THREAD_NAME_PREFIX;
use primepool::{Error, ExecutorExt, InProcessExecutor, MapOptions, RayonExecutor};
use thread_support::{current_thread_name, eventually};

mod conformance {
    primepool_core::conformance_tests!(|workers: usize| Box::new(
        primepool::RayonExecutor::new(workers).unwrap()
    ));
}

#[test]
fn zero_workers_is_an_invalid_argument() {
    assert!(matches!(
        RayonExecutor::new(0),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn threads_are_named_with_the_prefix_and_their_index() {
    let named = RayonExecutor::builder()
        .max_workers(2)
        .thread_name_prefix("stealer")
        .build()
        .unwrap();
    thread_support::threads_are_named(
        &RayonExecutor::new(1).unwrap(),
        DEFAULT_THREAD_NAME_PREFIX,
        &named,
        "stealer",
    );
}

/// Threads that ran `meets_the_others`, for the batch test only.
static MET: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records this thread, then waits (bounded) until three distinct threads have arrived.
fn meets_the_others(_: u32) -> bool {
    let me = current_thread_name().unwrap_or_default();
    MET.lock().unwrap().push(me);
    eventually(|| {
        let met = MET.lock().unwrap();
        met.iter().collect::<HashSet<_>>().len() >= 3
    })
}

#[test]
fn a_mapped_batch_is_spread_over_every_thread_of_the_pool() {
    let pool = RayonExecutor::new(3).unwrap();
    // One spawn carries the whole batch; rayon must still split it across all three threads,
    // or no call sees three distinct threads and each times out with `false`.
    let all_met = pool
        .map_with(meets_the_others, 0..6, MapOptions::new().chunksize(1))
        .unwrap()
        .all(|met| met == Ok(true));
    assert!(all_met);
}

#[test]
fn a_panic_fails_only_its_future_and_the_worker_keeps_working() {
    thread_support::a_panic_fails_only_its_future(
        &RayonExecutor::new(1).unwrap(),
        DEFAULT_THREAD_NAME_PREFIX,
    );
}

#[test]
fn cancel_futures_cancels_every_queued_task_and_batch() {
    thread_support::cancel_futures_cancels_what_is_queued(&RayonExecutor::new(1).unwrap());
}

#[test]
fn closures_can_capture_state() {
    let pool = RayonExecutor::new(2).unwrap();
    let words: Vec<String> = ["work", "stealing"].map(String::from).to_vec();
    let joined = pool.submit_closure(move || words.join("-")).unwrap();
    assert_eq!(joined.join().unwrap(), "work-stealing");
}

#[test]
fn shutdown_without_wait_returns_and_dropping_then_waits() {
    thread_support::dropping_the_pool_waits_for_submitted_work(RayonExecutor::new(2).unwrap());
}

#[test]
fn a_task_may_drop_the_last_handle_to_its_own_pool_without_deadlock() {
    thread_support::a_task_may_drop_the_last_handle_to_its_own_pool(RayonExecutor::new(2).unwrap());
}

#[test]
fn cancel_racing_shutdown_resolves_every_future_exactly_once() {
    thread_support::cancel_races_shutdown(&|| Box::new(RayonExecutor::new(2).unwrap()), 300);
}

#[test]
fn submit_racing_shutdown_never_loses_an_accepted_task() {
    thread_support::submit_races_shutdown(&|| Box::new(RayonExecutor::new(2).unwrap()), 200);
}

/// A pool of `workers` rayon threads running `initializer`: the shared checks' builder factory.
fn with_initializer(workers: usize, initializer: thread_support::Initializer) -> RayonExecutor {
    RayonExecutor::builder()
        .max_workers(workers)
        .initializer(move || initializer())
        .build()
        .unwrap()
}

#[test]
fn the_initializer_runs_once_in_each_thread_before_its_tasks() {
    let runs = thread_support::the_initializer_runs_once_in_each_thread_before_its_tasks(
        &with_initializer,
    );
    assert_eq!(
        runs, 3,
        "rayon starts every thread, and each runs the initializer"
    );
}

#[test]
fn a_failing_or_panicking_initializer_breaks_the_pool_as_the_thread_pools_does() {
    thread_support::a_failing_or_panicking_initializer_breaks_the_pool(&with_initializer);
}

#[test]
fn a_panic_payload_can_be_re_raised() {
    thread_support::a_panic_payload_can_be_re_raised(&RayonExecutor::new(2).unwrap());
}

#[test]
fn shutdown_async_waits_for_the_work_without_blocking_the_caller() {
    thread_support::shutdown_async_waits_without_blocking_the_caller(std::sync::Arc::new(
        RayonExecutor::new(2).unwrap(),
    ));
}
