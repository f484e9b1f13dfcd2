//! `RayonExecutor`: the shared executor suite, then what the rayon adapter adds (names, batch
//! parallelism, cancelling queued work that rayon itself could not take back, shutdown races).

mod thread_support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use primepool::rayon_pool::DEFAULT_THREAD_NAME_PREFIX;
use primepool::{Error, Executor, ExecutorExt, MapOptions, RayonExecutor};
use thread_support::{eventually, spin_us};

const LONG: Option<Duration> = Some(Duration::from_secs(30));

mod conformance {
    primepool_core::conformance_tests!(|workers: usize| Box::new(
        primepool::RayonExecutor::new(workers).unwrap()
    ));
}

fn current_thread_name() -> Option<String> {
    std::thread::current().name().map(str::to_owned)
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
    let pool = RayonExecutor::new(1).unwrap();
    let name = pool.submit_closure(current_thread_name).unwrap().join();
    assert_eq!(name, Ok(Some(format!("{DEFAULT_THREAD_NAME_PREFIX}_0"))));

    let pool = RayonExecutor::builder()
        .max_workers(2)
        .thread_name_prefix("stealer")
        .build()
        .unwrap();
    let arrived = Arc::new(AtomicUsize::new(0));
    let names: HashSet<_> = (0..2)
        .map(|_| {
            let arrived = Arc::clone(&arrived);
            pool.submit_closure(move || {
                arrived.fetch_add(1, Ordering::SeqCst);
                eventually(|| arrived.load(Ordering::SeqCst) == 2);
                current_thread_name()
            })
            .unwrap()
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|f| f.join().unwrap().unwrap())
        .collect();
    assert_eq!(
        names,
        HashSet::from(["stealer_0".into(), "stealer_1".into()])
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
    let pool = RayonExecutor::new(1).unwrap();
    let panicked = pool
        .submit_closure(|| -> u32 { panic!("index {} out of range", 9) })
        .unwrap();
    match panicked.result(LONG) {
        Err(Error::Panicked(p)) => {
            assert_eq!(p.message, "index 9 out of range");
            assert!(
                p.location
                    .as_deref()
                    .is_some_and(|at| at.contains("rayon.rs")),
                "{p}"
            );
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    let after = pool.submit_closure(current_thread_name).unwrap().join();
    assert_eq!(after, Ok(Some(format!("{DEFAULT_THREAD_NAME_PREFIX}_0"))));
}

#[test]
fn cancel_futures_cancels_every_queued_task_and_batch() {
    let pool = RayonExecutor::new(1).unwrap();
    let (release, gate) = mpsc::channel::<()>();
    let running = pool.submit_closure(move || gate.recv().is_ok()).unwrap();
    assert!(eventually(|| running.running()));
    let queued: Vec<_> = (0..10).map(|_| pool.submit(spin_us, 1).unwrap()).collect();
    let mapped = pool.map(spin_us, [1, 2, 3]).unwrap();
    pool.shutdown(false, true);
    release.send(()).unwrap();
    for f in &queued {
        assert_eq!(f.result(LONG), Err(Error::Cancelled));
    }
    assert_eq!(mapped.collect::<Vec<_>>(), vec![Err(Error::Cancelled); 3]);
    assert_eq!(running.result(LONG), Ok(true));
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
    let finished = Arc::new(AtomicUsize::new(0));
    let pool = RayonExecutor::new(2).unwrap();
    for _ in 0..6 {
        let finished = Arc::clone(&finished);
        pool.submit_closure(move || {
            std::thread::sleep(Duration::from_millis(10));
            finished.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    pool.shutdown(false, false);
    assert_eq!(pool.submit_closure(|| 1).unwrap_err(), Error::ShutDown);
    drop(pool);
    assert_eq!(finished.load(Ordering::SeqCst), 6);
}

#[test]
fn a_task_may_drop_the_last_handle_to_its_own_pool_without_deadlock() {
    let pool = Arc::new(RayonExecutor::new(2).unwrap());
    let (go, wait_for_go) = mpsc::channel::<()>();
    let handle = Arc::clone(&pool);
    let done = pool
        .submit_closure(move || {
            wait_for_go.recv().unwrap();
            handle.shutdown(true, false);
            drop(handle);
            true
        })
        .unwrap();
    drop(pool);
    go.send(()).unwrap();
    assert_eq!(done.result(LONG), Ok(true));
}

#[test]
fn cancel_racing_shutdown_resolves_every_future_exactly_once() {
    thread_support::cancel_races_shutdown(&|| Box::new(RayonExecutor::new(2).unwrap()), 300);
}

#[test]
fn submit_racing_shutdown_never_loses_an_accepted_task() {
    thread_support::submit_races_shutdown(&|| Box::new(RayonExecutor::new(2).unwrap()), 200);
}
