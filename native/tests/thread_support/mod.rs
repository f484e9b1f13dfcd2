//! Checks shared by the thread-pool and rayon test files: what every in-process pool does with
//! closures, panics, names, initializers and shutdown, and races that must resolve every future exactly once,
//! whatever the interleaving.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use primepool::{Error, Executor, ExecutorExt, Future, InProcessExecutor, MapOptions};

/// A generous bound for results that should come at once.
pub const LONG: Option<Duration> = Some(Duration::from_secs(30));

/// Asserts `outcome` is the error of a pool an initializer broke, naming `expected_cause`.
pub fn assert_broken_by<T: std::fmt::Debug>(outcome: Result<T, Error>, expected_cause: &str) {
    match outcome {
        Err(Error::Broken(why)) => {
            assert!(why.starts_with("initializer failed: "), "{why}");
            assert!(why.contains(expected_cause), "{why}");
        }
        other => panic!("expected a broken pool, got {other:?}"),
    }
}

/// The name of the thread running the caller.
pub fn current_thread_name() -> Option<String> {
    std::thread::current().name().map(str::to_owned)
}

/// Busy-waits about `us` microseconds: a task short enough to race with cancellation.
pub fn spin_us(us: u64) -> u64 {
    let end = Instant::now() + Duration::from_micros(us);
    while Instant::now() < end {
        std::hint::spin_loop();
    }
    us
}

/// Waits up to ten seconds for `condition`, so a broken pool fails the test instead of
/// hanging it.
pub fn eventually(condition: impl Fn() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    condition()
}

/// Counts how often each future's done-callbacks ran.
pub struct Resolutions {
    counts: Arc<Vec<AtomicUsize>>,
}

impl Resolutions {
    pub fn watch<T: Send + 'static>(futures: &[Future<T>]) -> Resolutions {
        let counts: Arc<Vec<AtomicUsize>> =
            Arc::new(futures.iter().map(|_| AtomicUsize::new(0)).collect());
        for (i, f) in futures.iter().enumerate() {
            let counts = Arc::clone(&counts);
            f.add_done_callback(move |_| {
                counts[i].fetch_add(1, Ordering::SeqCst);
            });
        }
        Resolutions { counts }
    }

    /// Asserts every future resolved exactly once; call when no callback can still be running.
    pub fn assert_each_exactly_once(&self, context: &str) {
        for (i, c) in self.counts.iter().enumerate() {
            assert_eq!(c.load(Ordering::SeqCst), 1, "future {i} ({context})");
        }
    }
}

/// Cancels every other future of `futures`, from the back: what each `cancel` returned.
fn cancel_every_other_from_the_back<T>(futures: &[Future<T>]) -> Vec<bool> {
    futures
        .iter()
        .rev()
        .step_by(2)
        .map(Future::cancel)
        .collect()
}

/// Asserts that each future [`cancel_every_other_from_the_back`] cancelled (`cancelled`, what
/// it returned) ended cancelled.
fn assert_cancelled_where_cancel_said_so<T: Clone + std::fmt::Debug + PartialEq>(
    futures: &[Future<T>],
    cancelled: &[bool],
    context: &str,
) {
    for (f, &was_cancelled) in futures.iter().rev().step_by(2).zip(cancelled) {
        if was_cancelled {
            assert_eq!(
                f.result(Some(Duration::ZERO)),
                Err(Error::Cancelled),
                "{context}"
            );
        }
    }
}

/// Submits a mix of single tasks and a chunked `map`, then races `Future::cancel` from another
/// thread against `shutdown(cancel_futures = true)`, `iterations` times. Every future must end
/// exactly once, as a result or cancelled, and `cancel() == true` must mean it ended cancelled.
pub fn cancel_races_shutdown(make: &dyn Fn() -> Box<dyn Executor>, iterations: usize) {
    for iteration in 0..iterations {
        let pool = make();
        let futures: Vec<Future<u64>> = (0..12u64)
            .map(|i| pool.submit(spin_us, i % 4 * 20).unwrap())
            .collect();
        let map = pool
            .map_with(
                spin_us,
                (0..12u64).map(|i| i % 3 * 20),
                MapOptions::new().chunksize(3),
            )
            .unwrap();
        let chunks: Vec<_> = map.chunks().map(|(chunk, _)| chunk.clone()).collect();
        drop(map); // unread: its chunks still run, or are cancelled below
        let resolutions = Resolutions::watch(&futures);
        let chunk_resolutions = Resolutions::watch(&chunks);
        let (to_cancel, chunks_to_cancel) = (futures.clone(), chunks.clone());
        let canceller = std::thread::spawn(move || {
            // Chunks first, then single tasks, while the pool shuts down.
            let chunks_cancelled = cancel_every_other_from_the_back(&chunks_to_cancel);
            let cancelled = cancel_every_other_from_the_back(&to_cancel);
            (cancelled, chunks_cancelled)
        });
        let wait = iteration % 2 == 0;
        pool.shutdown(wait, true);
        let (cancelled, chunks_cancelled) = canceller.join().unwrap();
        // Dropping the pool waits for its workers, whose callbacks have then all run.
        drop(pool);
        let context = format!("iteration {iteration}, wait {wait}");
        assert_cancelled_where_cancel_said_so(&futures, &cancelled, &context);
        assert_cancelled_where_cancel_said_so(&chunks, &chunks_cancelled, &context);
        for f in &futures {
            match f.result(Some(Duration::ZERO)) {
                Ok(_) | Err(Error::Cancelled) => {}
                other => panic!("unexpected outcome {other:?} ({context})"),
            }
        }
        for chunk in &chunks {
            match chunk.result(Some(Duration::ZERO)) {
                Ok(outcomes) => assert!(outcomes.iter().all(Result::is_ok), "{context}"),
                Err(Error::Cancelled) => {}
                other => panic!("unexpected chunk outcome {other:?} ({context})"),
            }
        }
        resolutions.assert_each_exactly_once(&context);
        chunk_resolutions.assert_each_exactly_once(&context);
    }
}

/// Submits from another thread while the pool shuts down, `iterations` times: each `submit`
/// either fails with [`Error::ShutDown`] or returns a future that ends exactly once.
pub fn submit_races_shutdown(make: &dyn Fn() -> Box<dyn Executor>, iterations: usize) {
    for iteration in 0..iterations {
        let pool: Arc<dyn Executor> = Arc::from(make());
        let submitter = {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                let mut accepted = Vec::new();
                for i in 0..200u64 {
                    match pool.submit(spin_us, i % 2) {
                        Ok(f) => {
                            let resolved = Arc::new(AtomicUsize::new(0));
                            let counter = Arc::clone(&resolved);
                            f.add_done_callback(move |_| {
                                counter.fetch_add(1, Ordering::SeqCst);
                            });
                            accepted.push((f, resolved));
                        }
                        Err(Error::ShutDown) => break,
                        Err(other) => panic!("unexpected submit error {other:?}"),
                    }
                }
                accepted
            })
        };
        spin_us(iteration as u64 % 7 * 10);
        pool.shutdown(true, iteration % 3 == 0);
        let accepted = submitter.join().unwrap();
        for (i, (f, resolved)) in accepted.iter().enumerate() {
            assert!(
                f.done(),
                "iteration {iteration}: future {i} accepted but not resolved"
            );
            assert!(matches!(f.result(None), Ok(_) | Err(Error::Cancelled)));
            assert_eq!(
                resolved.load(Ordering::SeqCst),
                1,
                "iteration {iteration}, future {i}"
            );
        }
    }
}

/// A one-worker pool's thread is `<default_prefix>_0`; the two threads of `named`, a
/// two-worker pool built with `prefix`, are `<prefix>_0` and `<prefix>_1` (both tasks wait
/// until both run, so they cannot share a thread).
pub fn threads_are_named(
    single: &impl InProcessExecutor,
    default_prefix: &str,
    named: &impl InProcessExecutor,
    prefix: &str,
) {
    let name = single.submit_closure(current_thread_name).unwrap().join();
    assert_eq!(name, Ok(Some(format!("{default_prefix}_0"))));
    let arrived = Arc::new(AtomicUsize::new(0));
    let names: HashSet<_> = (0..2)
        .map(|_| {
            let arrived = Arc::clone(&arrived);
            named
                .submit_closure(move || {
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
        HashSet::from([format!("{prefix}_0"), format!("{prefix}_1")])
    );
}

/// On a one-worker pool, a panicking closure fails its own future with the message and the
/// panic's location (this file), and the same thread (`<default_prefix>_0`) runs the next task.
pub fn a_panic_fails_only_its_future(pool: &impl InProcessExecutor, default_prefix: &str) {
    let panicked = pool
        .submit_closure(|| -> u32 { panic!("index {} out of range", 9) })
        .unwrap();
    match panicked.result(LONG) {
        Err(Error::Panicked(p)) => {
            assert_eq!(p.message, "index 9 out of range");
            assert!(
                p.location
                    .as_deref()
                    .is_some_and(|at| at.contains("thread_support")),
                "{p}"
            );
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    let after = pool.submit_closure(current_thread_name).unwrap().join();
    assert_eq!(after, Ok(Some(format!("{default_prefix}_0"))));
}

/// A panic's own payload comes back through the future, to re-raise with `resume_unwind`:
/// from `submit` and from a `map` chunk.
pub fn a_panic_payload_can_be_re_raised(pool: &impl InProcessExecutor) {
    #[derive(Debug, PartialEq)]
    struct Overdrawn(u32);
    fn overdraw(x: u32) -> u32 {
        if x == 2 {
            std::panic::panic_any(Overdrawn(x));
        }
        x
    }
    let failed = pool.submit_closure(|| overdraw(2)).unwrap().join();
    let payload = failed.unwrap_err().into_panic().expect("a panic error");
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        std::panic::resume_unwind(payload)
    }))
    .unwrap_err();
    assert_eq!(
        again.downcast_ref(),
        Some(&Overdrawn(2)),
        "the same payload, re-raised"
    );
    let results: Vec<_> = pool
        .map_with(overdraw, 0..4, MapOptions::new().chunksize(4))
        .unwrap()
        .collect();
    let Err(Error::Panicked(panic)) = &results[2] else {
        panic!("expected a panic, got {results:?}");
    };
    assert_eq!(
        panic.clone().into_payload().downcast_ref(),
        Some(&Overdrawn(2))
    );
}

/// On a one-worker pool busy with a task, `shutdown(cancel_futures)` cancels every queued
/// `submit` and `map` chunk, and the running task finishes.
pub fn cancel_futures_cancels_what_is_queued(pool: &impl InProcessExecutor) {
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

/// `shutdown(wait = false)` returns at once and refuses new closures; dropping the pool then
/// waits for the six submitted tasks.
pub fn dropping_the_pool_waits_for_submitted_work(pool: impl InProcessExecutor) {
    let finished = Arc::new(AtomicUsize::new(0));
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

/// A task that holds the last handle to its own pool and drops it (after `shutdown(wait)`)
/// does not deadlock: the pool does not wait for the thread dropping it.
pub fn a_task_may_drop_the_last_handle_to_its_own_pool<E: InProcessExecutor + 'static>(pool: E) {
    let pool = Arc::new(pool);
    let (go, wait_for_go) = mpsc::channel::<()>();
    let handle = Arc::clone(&pool);
    let done = pool
        .submit_closure(move || {
            wait_for_go.recv().unwrap();
            handle.shutdown(true, false);
            drop(handle); // The last handle: Drop joins every worker but this one.
            true
        })
        .unwrap();
    drop(pool);
    go.send(()).unwrap();
    assert_eq!(done.result(LONG), Ok(true));
}

/// `shutdown_async` returns at once while a task still runs, and its future resolves once the
/// task is done; the pool takes no more work.
pub fn shutdown_async_waits_without_blocking_the_caller<E: InProcessExecutor + 'static>(
    pool: Arc<E>,
) {
    let (release, gate) = mpsc::channel::<()>();
    let task = pool
        .submit_closure(move || {
            let _ = gate.recv();
            5u32
        })
        .unwrap();
    let (returned, has_returned) = mpsc::channel();
    let caller = Arc::clone(&pool);
    std::thread::spawn(move || {
        let done = caller.shutdown_async(false);
        returned.send(done).unwrap();
    });
    let done = has_returned
        .recv_timeout(Duration::from_secs(60))
        .expect("shutdown_async blocked while a task was running");
    assert!(!done.done(), "resolved while the task still runs");
    assert_eq!(pool.submit(spin_us, 1).unwrap_err(), Error::ShutDown);
    release.send(()).unwrap();
    assert_eq!(primepool_core::conformance::block_on(done), Ok(()));
    assert!(task.done(), "resolved before the task finished");
    assert_eq!(task.result(Some(Duration::ZERO)), Ok(5));
}

/// An initializer as the shared checks hand it to a pool's builder.
pub type Initializer = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A builder factory: the pool its builder makes with `max_workers(workers)` and
/// `initializer(initializer)`.
pub type BuildWith<'a, E> = &'a dyn Fn(usize, Initializer) -> E;

/// On a three-thread pool made by `build`, the initializer runs at most once in each thread
/// (in threads the pool started: 1 to 3 of them), and before any task of that thread: 30
/// tasks each find their thread's initializer done. Returns how many threads ran it.
pub fn the_initializer_runs_once_in_each_thread_before_its_tasks<E: InProcessExecutor>(
    build: BuildWith<'_, E>,
) -> usize {
    let initialized: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&initialized);
    let pool = build(
        3,
        Arc::new(move || {
            seen.lock().unwrap().push(current_thread_name().unwrap());
            Ok(())
        }),
    );
    let futures: Vec<_> = (0..30)
        .map(|_| {
            let initialized = Arc::clone(&initialized);
            pool.submit_closure(move || {
                spin_us(200);
                let me = current_thread_name().unwrap();
                initialized.lock().unwrap().contains(&me)
            })
            .unwrap()
        })
        .collect();
    for f in futures {
        assert_eq!(
            f.join(),
            Ok(true),
            "a task ran before its thread's initializer"
        );
    }
    drop(pool);
    let runs = initialized.lock().unwrap().clone();
    let threads: HashSet<&String> = runs.iter().collect();
    assert_eq!(
        threads.len(),
        runs.len(),
        "an initializer ran twice in one thread"
    );
    assert!(
        (1..=3).contains(&runs.len()),
        "{} initializers for at most 3 threads",
        runs.len()
    );
    runs.len()
}

/// A failing and a panicking initializer each break a two-thread pool made by `build`: each
/// of ten tasks fails with [`Error::Broken`] saying `initializer failed: ` and why, and none
/// runs; a `map` fails alike; once broken the pool refuses work at once, and still after
/// `shutdown`.
pub fn a_failing_or_panicking_initializer_breaks_the_pool<E: InProcessExecutor>(
    build: BuildWith<'_, E>,
) {
    let failing = build(2, Arc::new(|| Err("no database connection".to_owned())));
    let panicking = build(2, Arc::new(|| panic!("no config file")));
    for (pool, cause) in [
        (failing, "no database connection"),
        (panicking, "it panicked: 'no config file'"),
    ] {
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let outcomes: Vec<Result<u32, Error>> = (0..10)
            .map(|i| {
                let ran = Arc::clone(&ran);
                pool.submit_closure(move || {
                    ran.store(true, Ordering::SeqCst);
                    i
                })
                .and_then(|f| f.result(LONG))
            })
            .collect();
        for outcome in outcomes {
            assert_broken_by(outcome, cause);
        }
        assert!(!ran.load(Ordering::SeqCst), "a task ran on a broken pool");
        match pool.map(|x: u32| x, 0..4) {
            Ok(results) => results.for_each(|r| assert_broken_by(r, cause)),
            Err(e) => assert_broken_by(Err::<(), _>(e), cause),
        }
        assert_broken_by(pool.submit_closure(|| 1), cause);
        pool.shutdown(true, false);
        assert_broken_by(pool.submit_closure(|| 1), cause);
    }
    let message = Error::Broken("initializer failed: x".into()).to_string();
    assert_eq!(message, "the executor is broken: initializer failed: x");
}
