//! The shared executor behaviour suite: written once, run against every backend.
//!
//! A backend crate enables the `conformance` feature in its dev-dependencies and expands
//! [`conformance_tests!`](crate::conformance_tests) with a factory that makes an executor with
//! the given number of workers; each check becomes its own `#[test]`. The task functions live
//! here, in the library, so an executor that ships calls to other processes finds them in its
//! workers too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{as_completed, wait, Error, Executor, ExecutorExt, MapOptions, ReturnWhen};

/// Polls `future` to completion on this thread, parking between wake-ups (native only).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => return out,
            std::task::Poll::Pending => std::thread::park(),
        }
    }
}

/// Makes an executor with the given number of workers.
pub type Factory<'a> = &'a dyn Fn(usize) -> Box<dyn Executor>;

/// Squares its input.
pub fn square(x: u64) -> u64 {
    x * x
}

/// Sleeps `ms` milliseconds, then returns `ms`.
pub fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Panics when `x` is 13, returns `x` otherwise.
pub fn panics_on_13(x: u32) -> u32 {
    assert_ne!(x, 13, "unlucky number");
    x
}

/// Returns a string built from its input, to check non-numeric values.
pub fn describe(x: (u32, String)) -> String {
    format!("{}:{}", x.1, x.0)
}

/// `submit` runs the function on the argument and the future holds the result.
pub fn submit_returns_the_result(make: Factory<'_>) {
    let pool = make(2);
    let f = pool.submit(square, 12).unwrap();
    assert_eq!(f.result(Some(Duration::from_secs(30))), Ok(144));
    assert!(f.done() && !f.running() && !f.cancelled());
    let s = pool.submit(describe, (7, "seven".into())).unwrap();
    assert_eq!(s.join(), Ok("seven:7".to_string()));
}

/// `map` yields results in input order whatever the finishing order, for several chunk sizes.
pub fn map_keeps_input_order(make: Factory<'_>) {
    let pool = make(3);
    let inputs: Vec<u64> = (0..40).map(|i| (i * 7) % 5).collect();
    let expected: Vec<u64> = inputs.clone();
    for chunksize in [None, Some(1), Some(3), Some(100)] {
        let options = MapOptions::new().chunksize(chunksize);
        let got: Vec<u64> = pool
            .map_with(sleep_ms, inputs.clone(), options)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, expected, "chunksize {chunksize:?}");
    }
    let squares: Vec<u64> = pool
        .map(square, 0..1000)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(squares, (0..1000).map(|x| x * x).collect::<Vec<_>>());
}

/// `map` over no inputs yields nothing.
pub fn map_of_nothing_is_empty(make: Factory<'_>) {
    let pool = make(2);
    assert_eq!(pool.map(square, Vec::new()).unwrap().count(), 0);
}

/// A zero chunk size is an error, not a panic or a hang.
pub fn map_rejects_a_zero_chunksize(make: Factory<'_>) {
    let pool = make(1);
    let err = pool
        .map_with(square, [1, 2], MapOptions::new().chunksize(0))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

/// A panicking call fails its own future, at its place in `map`, with message and location;
/// the executor keeps working.
pub fn a_panic_fails_only_its_task(make: Factory<'_>) {
    let pool = make(2);
    for chunksize in [1, 5] {
        let results: Vec<_> = pool
            .map_with(panics_on_13, 10..17, MapOptions::new().chunksize(chunksize))
            .unwrap()
            .collect();
        for (x, r) in (10..17).zip(results) {
            if x == 13 {
                match r {
                    Err(Error::Panicked(p)) => {
                        assert!(p.message.contains("unlucky number"), "{p}");
                        assert!(p.location.is_some_and(|l| l.contains("conformance.rs")));
                    }
                    other => panic!("expected a panic error, got {other:?}"),
                }
            } else {
                assert_eq!(r, Ok(x));
            }
        }
    }
    assert_eq!(pool.submit(square, 3).unwrap().result(None), Ok(9));
}

/// After `shutdown`, `submit` and `map` fail with [`Error::ShutDown`]; shutting down twice is
/// harmless.
pub fn submit_after_shutdown_fails(make: Factory<'_>) {
    let pool = make(2);
    pool.shutdown(true, false);
    assert_eq!(pool.submit(square, 1).unwrap_err(), Error::ShutDown);
    assert_eq!(pool.map(square, [1]).unwrap_err(), Error::ShutDown);
    pool.shutdown(true, true);
}

/// `shutdown(wait = true)` returns only when every submitted task is done.
pub fn shutdown_waits_for_the_work(make: Factory<'_>) {
    let pool = make(2);
    let futures: Vec<_> = (0..6).map(|_| pool.submit(sleep_ms, 20).unwrap()).collect();
    pool.shutdown(true, false);
    for f in &futures {
        assert!(f.done(), "shutdown(wait) returned before a task finished");
        assert_eq!(f.result(Some(Duration::ZERO)), Ok(20));
    }
}

/// `shutdown(cancel_futures = true)` cancels what has not started (the tasks queued behind a
/// running one); everything ends exactly once.
pub fn shutdown_with_cancel_resolves_every_future(make: Factory<'_>) {
    let pool = make(1);
    let blocker = pool.submit(sleep_ms, 300).unwrap();
    // A serial executor runs each task inside `submit`: it never holds one to cancel.
    let inline = blocker.done();
    let give_up = web_time::Instant::now() + Duration::from_secs(60);
    while !inline && !blocker.running() && !blocker.done() {
        assert!(
            web_time::Instant::now() < give_up,
            "the first task never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Long enough that a process pool stops sending more to the busy worker.
    std::thread::sleep(Duration::from_millis(50));
    let resolved = Arc::new(AtomicUsize::new(0));
    let futures: Vec<_> = (0..20)
        .map(|_| {
            let f = pool.submit(sleep_ms, 10).unwrap();
            let r = resolved.clone();
            f.add_done_callback(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            });
            f
        })
        .collect();
    pool.shutdown(true, true);
    assert_eq!(
        blocker.result(Some(Duration::ZERO)),
        Ok(300),
        "running: not cancelled"
    );
    let mut cancelled = 0;
    for f in &futures {
        match f.result(Some(Duration::from_secs(30))) {
            Ok(10) => {}
            Err(Error::Cancelled) => cancelled += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    if inline {
        assert_eq!(cancelled, 0, "nothing was left to cancel");
    } else {
        assert!(
            cancelled >= futures.len() / 2,
            "only {cancelled} of {} queued tasks were cancelled",
            futures.len()
        );
    }
    assert_eq!(resolved.load(Ordering::SeqCst), futures.len());
}

/// `cancel` returns true exactly for the futures that end cancelled.
pub fn cancel_agrees_with_the_outcome(make: Factory<'_>) {
    let pool = make(1);
    let futures: Vec<_> = (0..10).map(|_| pool.submit(sleep_ms, 5).unwrap()).collect();
    let cancelled: Vec<bool> = futures.iter().rev().map(|f| f.cancel()).collect();
    for (f, was_cancelled) in futures.iter().rev().zip(cancelled) {
        let outcome = f.result(Some(Duration::from_secs(30)));
        assert_eq!(
            outcome == Err(Error::Cancelled),
            was_cancelled,
            "{outcome:?}"
        );
    }
}

/// `wait` and `as_completed` see every future of an executor finish.
pub fn wait_and_as_completed_see_every_future(make: Factory<'_>) {
    let pool = make(2);
    let futures: Vec<_> = (0..8u64)
        .map(|i| pool.submit(sleep_ms, i % 3).unwrap())
        .collect();
    let waited = wait(
        &futures,
        Some(Duration::from_secs(30)),
        ReturnWhen::AllCompleted,
    )
    .unwrap();
    assert_eq!(waited.done.len(), 8);
    let mut seen: Vec<u64> = as_completed(&futures, Some(Duration::from_secs(30)))
        .map(|f| f.unwrap().result(None).unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, [0, 0, 0, 1, 1, 1, 2, 2]);
}

/// An `as_completed` whose timeout elapses, iterated, awaited (`next_async`) or polled as a
/// `Stream`, yields the futures already done, then [`Error::TimedOut`] with the unfinished
/// count, once, at the deadline (not when the slow task ends), then ends.
pub fn as_completed_times_out_once_then_ends_in_every_form(make: Factory<'_>) {
    const TIMEOUT: Duration = Duration::from_millis(100);
    let pool = make(2);
    let quick = pool.submit(square, 3).unwrap();
    assert_eq!(quick.result(Some(Duration::from_secs(30))), Ok(9));
    // Three 100 ms deadlines pass while it sleeps, with seconds to spare on a loaded machine.
    let slow = pool.submit(sleep_ms, 3_000).unwrap();
    let futures = [quick, slow];
    if futures[1].done() {
        // A serial executor ran it inside `submit`: finished futures are yielded, late or
        // not, and nothing times out.
        assert_eq!(as_completed(&futures, Some(TIMEOUT)).count(), 2);
        return;
    }
    let timed_out = Error::TimedOut {
        after: TIMEOUT,
        unfinished: Some(crate::Unfinished { count: 1, of: 2 }),
    };
    let outcomes = |got: Vec<Option<Result<&crate::Future<u64>, Error>>>| -> Vec<_> {
        got.into_iter()
            .map(|item| item.map(|r| r.map(|f| f.result(Some(Duration::ZERO)))))
            .collect()
    };
    let expected = vec![Some(Ok(Ok(9))), Some(Err(timed_out)), None];
    let mut iterated = as_completed(&futures, Some(TIMEOUT));
    let got = (0..3).map(|_| iterated.next()).collect();
    assert_eq!(outcomes(got), expected, "iterated");
    let mut awaited = as_completed(&futures, Some(TIMEOUT));
    let got = block_on(async {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(awaited.next_async().await);
        }
        got
    });
    assert_eq!(outcomes(got), expected, "awaited with next_async");
    let mut streamed = as_completed(&futures, Some(TIMEOUT));
    let got = (0..3)
        .map(|_| {
            block_on(std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(std::pin::Pin::new(&mut streamed), cx)
            }))
        })
        .collect();
    assert_eq!(outcomes(got), expected, "polled as a Stream");
    assert!(
        !futures[1].done(),
        "the time-outs came when the slow task ended, not at their deadlines"
    );
}

/// Done-callbacks run once for every future.
pub fn done_callbacks_run_for_every_task(make: Factory<'_>) {
    let pool = make(2);
    let count = Arc::new(AtomicUsize::new(0));
    let futures: Vec<_> = (0..50)
        .map(|i| {
            let f = pool.submit(square, i).unwrap();
            let c = count.clone();
            f.add_done_callback(move |f| {
                assert!(f.done());
                c.fetch_add(1, Ordering::SeqCst);
            });
            f
        })
        .collect();
    for f in &futures {
        f.wait(None);
    }
    pool.shutdown(true, false);
    assert_eq!(count.load(Ordering::SeqCst), 50);
}

/// The worker count is what was asked for (1 for the serial executor, which has one by
/// definition), whatever was asked.
pub fn reports_its_worker_count(make: Factory<'_>) {
    for asked in [3, 2] {
        let pool = make(asked);
        assert!(!pool.name().is_empty());
        let expected = if pool.name() == "serial" { 1 } else { asked };
        assert_eq!(
            pool.max_workers(),
            expected,
            "{} asked for {asked} workers",
            pool.name()
        );
    }
}

/// Futures can be awaited as well as blocked on.
pub fn futures_can_be_awaited(make: Factory<'_>) {
    let pool = make(2);
    let map = pool.map(square, 0..5u64).unwrap();
    let got = block_on(map.collect_async());
    assert_eq!(got, (0..5u64).map(|x| Ok(x * x)).collect::<Vec<_>>());
}

/// A `map` whose results are never read still runs every task (CPython's
/// `test_map_submits_without_iteration`): dropping it unread cancels nothing.
pub fn map_submits_without_iteration(make: Factory<'_>) {
    let pool = make(1);
    let map = pool
        .map_with(sleep_ms, [5; 12], MapOptions::new().chunksize(1))
        .unwrap();
    let chunks: Vec<_> = map.chunks().map(|(f, _)| f.clone()).collect();
    drop(map);
    pool.shutdown(true, false);
    for f in &chunks {
        assert_eq!(f.result(Some(Duration::from_secs(30))), Ok(vec![Ok(5)]));
    }
}

/// `shutdown_async` resolves once every submitted task is done, as `shutdown(wait = true)`
/// returns, and the executor takes no more work.
pub fn shutdown_async_resolves_once_the_work_is_done(make: Factory<'_>) {
    let pool: Arc<dyn Executor> = Arc::from(make(2));
    let futures: Vec<_> = (0..4).map(|_| pool.submit(sleep_ms, 30).unwrap()).collect();
    let done = Arc::clone(&pool).shutdown_async(false);
    assert_eq!(pool.submit(square, 1).unwrap_err(), Error::ShutDown);
    assert_eq!(block_on(done), Ok(()));
    for f in &futures {
        assert_eq!(
            f.result(Some(Duration::ZERO)),
            Ok(30),
            "resolved before the work"
        );
    }
}

/// Counts the inputs an iterator hands out.
fn counted(pulled: &Arc<AtomicUsize>) -> impl Iterator<Item = u64> + Send + 'static {
    let pulled = pulled.clone();
    (0u64..).inspect(move |_| {
        pulled.fetch_add(1, Ordering::SeqCst);
    })
}

/// With a buffer size, `map` reads an endless input lazily and yields its results in order.
pub fn a_buffered_map_reads_an_endless_input(make: Factory<'_>) {
    let pool = make(2);
    for chunksize in [None, Some(1), Some(3)] {
        let options = MapOptions::new().buffersize(8).chunksize(chunksize);
        let got: Vec<u64> = pool
            .map_with(square, 0u64.., options)
            .unwrap()
            .take(100)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            got,
            (0..100).map(|x| x * x).collect::<Vec<_>>(),
            "{chunksize:?}"
        );
    }
}

/// A full buffer: only `buffersize` inputs are pulled ahead of what has been yielded, and
/// dropping the map stops the pulling.
pub fn a_buffered_map_pulls_no_more_than_its_buffer_ahead(make: Factory<'_>) {
    let pool = make(2);
    for (buffersize, chunksize) in [(5, Some(1)), (6, Some(3)), (8, None)] {
        let pulled = Arc::new(AtomicUsize::new(0));
        let options = MapOptions::new()
            .buffersize(buffersize)
            .chunksize(chunksize);
        let mut map = pool
            .map_with(sleep_ms, counted(&pulled).map(|_| 1), options)
            .unwrap();
        if chunksize.is_some() {
            assert_eq!(
                pulled.load(Ordering::SeqCst),
                buffersize,
                "the buffer is full"
            );
        }
        for yielded in 1..=20 {
            assert_eq!(map.next(), Some(Ok(1)));
            let ahead = pulled.load(Ordering::SeqCst) - yielded;
            assert!(
                ahead <= buffersize,
                "{ahead} pulled ahead, buffer {buffersize}"
            );
        }
        let chunks: Vec<_> = map.chunks().map(|(f, _)| f.clone()).collect();
        let before = pulled.load(Ordering::SeqCst);
        drop(map);
        assert_eq!(
            pulled.load(Ordering::SeqCst),
            before,
            "dropping stops pulling"
        );
        for f in &chunks {
            assert!(
                f.wait(Some(Duration::from_secs(30))),
                "a buffered chunk never ended"
            );
        }
    }
}

/// With a buffer size, a task's error is still yielded at its place and iteration goes on.
pub fn a_buffered_map_yields_errors_in_place(make: Factory<'_>) {
    let pool = make(2);
    let options = MapOptions::new().buffersize(4).chunksize(2);
    let results: Vec<_> = pool
        .map_with(panics_on_13, 10u32.., options)
        .unwrap()
        .take(7)
        .collect();
    for (x, r) in (10..17).zip(results) {
        if x == 13 {
            assert!(matches!(r, Err(Error::Panicked(_))), "{r:?}");
        } else {
            assert_eq!(r, Ok(x));
        }
    }
}

/// A buffered map's timeout is yielded once, then it ends and pulls nothing more.
pub fn a_buffered_map_times_out_once_and_stops_pulling(make: Factory<'_>) {
    let pool = make(1);
    let pulled = Arc::new(AtomicUsize::new(0));
    let options = MapOptions::new()
        .buffersize(2)
        .chunksize(1)
        .timeout(Duration::from_millis(100));
    let mut map = pool
        .map_with(sleep_ms, counted(&pulled).map(|_| 300), options)
        .unwrap();
    if map.chunks().all(|(f, _)| f.done()) {
        // A serial executor ran both inside `map`: finished results are yielded, late or not,
        // as Python's `result(timeout)` returns a finished future's result.
        assert_eq!(map.next(), Some(Ok(300)));
        return;
    }
    assert_eq!(
        map.next(),
        Some(Err(Error::timed_out(Duration::from_millis(100))))
    );
    assert_eq!(map.next(), None);
    assert_eq!(pulled.load(Ordering::SeqCst), 2);
}

/// Expands to one `#[test]` per behaviour of the shared suite, for the executor made by the
/// factory expression (a closure `|workers: usize| -> Box<dyn Executor>`).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@tests $factory;
            submit_returns_the_result, map_keeps_input_order, map_of_nothing_is_empty,
            map_rejects_a_zero_chunksize, a_panic_fails_only_its_task,
            submit_after_shutdown_fails, shutdown_waits_for_the_work,
            shutdown_with_cancel_resolves_every_future, cancel_agrees_with_the_outcome,
            wait_and_as_completed_see_every_future,
            as_completed_times_out_once_then_ends_in_every_form, done_callbacks_run_for_every_task,
            reports_its_worker_count, futures_can_be_awaited, map_submits_without_iteration,
            a_buffered_map_reads_an_endless_input,
            a_buffered_map_pulls_no_more_than_its_buffer_ahead,
            a_buffered_map_yields_errors_in_place,
            a_buffered_map_times_out_once_and_stops_pulling,
            shutdown_async_resolves_once_the_work_is_done);
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let factory = $factory;
                $crate::conformance::$name(&|workers: usize| -> ::std::boxed::Box<dyn $crate::Executor> {
                    factory(workers)
                });
            }
        )*
    };
}
