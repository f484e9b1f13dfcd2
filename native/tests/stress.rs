//! Stress: on every native backend, 100,000 tasks mixing no-ops, seed-workload calls and
//! panics, with cancels of pending futures, `as_completed`/`wait` consumers, and a
//! `shutdown(cancel_futures = true)` racing several submitting threads.
//!
//! Asserted: every future resolves exactly once; every result is correct; every error is one
//! the scenario explains; the run ends within a bound; afterwards no worker thread or child
//! process is left. `PRIMEPOOL_SOAK=N` repeats the whole run N times (local soak runs).
//!
//! This file holds a single `#[test]` so that counting this process's threads and children is
//! not disturbed by other tests running in parallel.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use primepool::workload::seed_count_prime;
use primepool::{as_completed, wait, Error, Executor, ExecutorExt, Future, ReturnWhen};

const TASKS: usize = 100_000;
const SUBMITTERS: usize = 4;
const BOUND: Duration = Duration::from_secs(60);

/// The task: a no-op most of the time, some real work every 10th call, a panic every 100th.
fn mixed(x: u32) -> u32 {
    match x % 100 {
        13 => panic!("task {x} panics on purpose"),
        r if r % 10 == 1 => seed_count_prime(200 + x % 300),
        _ => x,
    }
}

fn expected(x: u32) -> Option<u32> {
    match x % 100 {
        13 => None,
        r if r % 10 == 1 => Some(seed_count_prime(200 + x % 300)),
        _ => Some(x),
    }
}

struct Tracked {
    input: u32,
    future: Future<u32>,
    resolutions: Arc<AtomicUsize>,
    cancelled_by_us: bool,
}

#[derive(Debug, Default)]
struct Tally {
    returned: usize,
    panicked: usize,
    cancelled: usize,
    refused_after_shutdown: usize,
}

fn threads_of_this_process() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// Runs the scenario on one executor and checks every future.
fn stress(name: &str, pool: Box<dyn Executor>) -> Tally {
    let started = Instant::now();
    let pool: Arc<dyn Executor> = Arc::from(pool);
    let tracked = Arc::new(Mutex::new(Vec::<Tracked>::with_capacity(TASKS)));
    let refused = Arc::new(AtomicUsize::new(0));
    let submitted = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|s| {
            let (pool, tracked, refused, submitted, ran) = (
                pool.clone(),
                tracked.clone(),
                refused.clone(),
                submitted.clone(),
                ran.clone(),
            );
            thread::spawn(move || {
                let per = TASKS / SUBMITTERS;
                let mut batch = Vec::new();
                for i in 0..per {
                    let input = (s * per + i) as u32;
                    match pool.submit(mixed, input) {
                        Ok(future) => {
                            let resolutions = Arc::new(AtomicUsize::new(0));
                            let (r, ran) = (resolutions.clone(), ran.clone());
                            future.add_done_callback(move |f| {
                                r.fetch_add(1, Ordering::SeqCst);
                                if !f.cancelled() {
                                    ran.fetch_add(1, Ordering::SeqCst);
                                }
                            });
                            // Cancel one pending future in 50, right after submitting it.
                            let cancelled_by_us = i % 50 == 7 && future.cancel();
                            batch.push(Tracked {
                                input,
                                future,
                                resolutions,
                                cancelled_by_us,
                            });
                        }
                        Err(Error::ShutDown) => {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(other) => panic!("submit failed unexpectedly: {other}"),
                    }
                    submitted.fetch_add(1, Ordering::SeqCst);
                    if batch.len() == 1_000 {
                        // A consumer in the middle of submitting: wait for the first few.
                        let futures: Vec<_> = batch.iter().map(|t| t.future.clone()).collect();
                        let waited = wait(&futures[..10], Some(BOUND), ReturnWhen::FirstCompleted)
                            .expect("wait");
                        assert!(
                            !waited.done.is_empty(),
                            "{BOUND:?} passed with none of 10 done"
                        );
                        tracked.lock().unwrap().append(&mut batch);
                    }
                }
                tracked.lock().unwrap().append(&mut batch);
            })
        })
        .collect();

    // An as_completed consumer over a slice of the early futures.
    let consumer = {
        let (tracked, stop) = (tracked.clone(), stop.clone());
        thread::spawn(move || {
            while tracked.lock().unwrap().len() < 2_000 && !stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(1));
            }
            let futures: Vec<_> = tracked
                .lock()
                .unwrap()
                .iter()
                .take(2_000)
                .map(|t| t.future.clone())
                .collect();
            let mut seen = 0;
            for f in as_completed(&futures, Some(BOUND)) {
                assert!(f.expect("as_completed within the bound").done());
                seen += 1;
            }
            assert_eq!(seen, futures.len());
        })
    };

    // Shut down with cancel_futures while the submitters are still going, once the pool has
    // run some tasks (cancellations do not count): a process pool's workers boot in the
    // background, and on a loaded machine the submitters can get this far before they are up.
    while (submitted.load(Ordering::SeqCst) < TASKS * 3 / 5 || ran.load(Ordering::SeqCst) < 200)
        && started.elapsed() < BOUND / 2
    {
        thread::sleep(Duration::from_millis(1));
    }
    pool.shutdown(true, true);
    for s in submitters {
        s.join().expect("a submitter panicked");
    }
    stop.store(true, Ordering::SeqCst);
    consumer.join().expect("the consumer panicked");

    let mut tally = Tally {
        refused_after_shutdown: refused.load(Ordering::SeqCst),
        ..Tally::default()
    };
    let tracked = std::mem::take(&mut *tracked.lock().unwrap());
    assert_eq!(
        tracked.len() + tally.refused_after_shutdown,
        TASKS,
        "{name}: tasks lost"
    );
    for t in &tracked {
        let outcome = t.future.result(Some(BOUND));
        match (&outcome, expected(t.input)) {
            (Ok(v), Some(want)) => {
                assert_eq!(*v, want, "{name}: wrong result for {}", t.input);
                assert!(
                    !t.cancelled_by_us,
                    "{name}: a cancelled future returned a value"
                );
                tally.returned += 1;
            }
            (Err(Error::Panicked(p)), None) => {
                assert!(p.message.contains("panics on purpose"), "{p}");
                tally.panicked += 1;
            }
            (Err(Error::Cancelled), _) => tally.cancelled += 1,
            (other, want) => panic!(
                "{name}: input {} gave {other:?}, expected {want:?}",
                t.input
            ),
        }
        assert_eq!(
            t.resolutions.load(Ordering::SeqCst),
            1,
            "{name}: resolved more or less than once"
        );
    }
    assert!(
        tally.refused_after_shutdown > 0,
        "{name}: the shutdown did not race the submitters"
    );
    drop(pool);
    assert!(
        started.elapsed() < BOUND,
        "{name}: took {:?}",
        started.elapsed()
    );
    eprintln!("stress {name}: {tally:?} in {:?}", started.elapsed());
    tally
}

/// Makes a fresh executor for one round.
type Maker = Box<dyn Fn() -> Box<dyn Executor>>;

fn executors() -> Vec<(&'static str, Maker)> {
    vec![
        (
            "serial",
            Box::new(|| Box::new(primepool::SerialExecutor::new())),
        ),
        (
            "threads",
            Box::new(|| Box::new(primepool::ThreadPoolExecutor::new(4).expect("a thread pool"))),
        ),
        (
            "rayon",
            Box::new(|| Box::new(primepool::RayonExecutor::new(4).expect("a rayon pool"))),
        ),
        ("processes", Box::new(|| Box::new(support::pool(2)))),
    ]
}

#[test]
fn every_backend_resolves_every_future_exactly_once_under_stress() {
    let threads_before = threads_of_this_process();
    for round in 0..support::soak_rounds() {
        for (name, make) in executors() {
            let tally = stress(name, make());
            assert!(
                tally.returned > 0 && tally.panicked > 0,
                "round {round} {name}: {tally:?}"
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            while (threads_of_this_process() > threads_before || !support::children().is_empty())
                && Instant::now() < deadline
            {
                thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(
                threads_of_this_process(),
                threads_before,
                "{name}: worker threads left behind"
            );
            assert_eq!(
                support::children(),
                Vec::<u32>::new(),
                "{name}: child processes left behind"
            );
        }
    }
}
