//! The shared executor behaviour checks (`primepool_core::conformance`), ported to the browser
//! for [`WorkerPoolExecutor`]: the same behaviours, awaited instead of blocked on (the page's
//! thread never blocks), plus what only a pool of separate instances can do (terminate a
//! running task, survive a dying worker). The browser test calls them through
//! `runConformance()`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use primepool_core::backend::{Job, Promise};
use primepool_core::conformance::{describe, panics_on_13, square};
use primepool_core::{
    as_completed, wait, Error, Executor, ExecutorExt, Future, FutureState, MapOptions, ReturnWhen,
    Unfinished, WorkerId,
};

use crate::clock::now_ms;
use crate::worker_pool::WorkerPoolExecutor;

/// Busy-waits `ms` milliseconds (a worker cannot sleep without atomics), then returns `ms`.
pub fn spin_ms(ms: u64) -> u64 {
    let until = now_ms() + ms as f64;
    while now_ms() < until {}
    ms
}

/// Busy-waits `ms` milliseconds and returns the id of the worker that ran it.
pub fn worker_after_ms(ms: u64) -> u32 {
    spin_ms(ms);
    crate::task::current_worker()
}

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !($cond) {
            return Err(format!($($msg)+));
        }
    };
}

fn pool(workers: usize) -> Result<WorkerPoolExecutor, String> {
    WorkerPoolExecutor::new(workers).map_err(|e| format!("could not start the pool: {e}"))
}

fn ok<T>(r: Result<T, Error>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

/// Gives the event loop turns until `cond` holds or `ms` pass.
async fn until(ms: f64, cond: impl Fn() -> bool) -> bool {
    let deadline = now_ms() + ms;
    while !cond() {
        if now_ms() > deadline {
            return false;
        }
        let _ = wasm_bindgen_futures::JsFuture::from(crate::bench::next_turn()).await;
    }
    true
}

async fn submit_returns_the_result() -> Check {
    let pool = pool(2)?;
    let f = ok(pool.submit(square, 12))?;
    ensure!(f.clone().await == Ok(144), "square(12) was not 144");
    ensure!(
        f.done() && !f.running() && !f.cancelled(),
        "state after the result: {:?}",
        f.state()
    );
    let s = ok(pool.submit(describe, (7, "seven".into())))?;
    ensure!(
        s.await == Ok("seven:7".to_string()),
        "describe gave another string"
    );
    Ok(())
}

async fn map_keeps_input_order() -> Check {
    let pool = pool(3)?;
    let inputs: Vec<u64> = (0..40).map(|i| (i * 7) % 5).collect();
    for chunksize in [None, Some(1), Some(3), Some(100)] {
        let options = MapOptions::new().chunksize(chunksize);
        let got = ok(pool.map_with(spin_ms, inputs.clone(), options))?
            .collect_async()
            .await;
        let got: Vec<u64> = ok(got.into_iter().collect())?;
        ensure!(got == inputs, "chunksize {chunksize:?}: {got:?}");
    }
    let squares = ok(pool.map(square, 0..1000))?.collect_async().await;
    let squares: Vec<u64> = ok(squares.into_iter().collect())?;
    ensure!(
        squares == (0..1000).map(|x| x * x).collect::<Vec<_>>(),
        "squares out of order"
    );
    Ok(())
}

async fn map_of_nothing_is_empty() -> Check {
    let pool = pool(2)?;
    ensure!(
        ok(pool.map(square, Vec::new()))?.remaining() == 0,
        "results from no inputs"
    );
    Ok(())
}

async fn map_rejects_a_zero_chunksize() -> Check {
    let pool = pool(1)?;
    let err = pool.map_with(square, [1, 2], MapOptions::new().chunksize(0));
    ensure!(matches!(err, Err(Error::InvalidArgument(_))), "{err:?}");
    Ok(())
}

async fn a_panic_ends_only_its_worker_and_task() -> Check {
    let pool = pool(2)?;
    let results = ok(pool.map_with(panics_on_13, 10..17, MapOptions::new().chunksize(1)))?
        .collect_async()
        .await;
    for (x, r) in (10..17).zip(results) {
        if x == 13 {
            match r {
                Err(Error::WorkerDied {
                    worker: WorkerId::WebWorker(_),
                    status,
                }) => ensure!(
                    status.contains("unlucky number") && status.contains("conformance.rs"),
                    "the panic's message or location is missing: {status}"
                ),
                other => return Err(format!("13 should have ended its worker: {other:?}")),
            }
        } else {
            ensure!(r == Ok(x), "{x} gave {r:?}");
        }
    }
    ensure!(ok(pool.submit(square, 3))?.await == Ok(9), "the pool broke");
    Ok(())
}

async fn submit_after_shutdown_fails() -> Check {
    let pool = pool(2)?;
    pool.shutdown(true, false);
    ensure!(
        pool.submit(square, 1).unwrap_err() == Error::ShutDown,
        "submit accepted"
    );
    ensure!(
        pool.map(square, [1]).unwrap_err() == Error::ShutDown,
        "map accepted"
    );
    pool.shutdown(true, true);
    Ok(())
}

async fn shutdown_lets_queued_work_finish_then_ends_the_workers() -> Check {
    let pool = pool(2)?;
    let futures: Vec<_> = ok((0..6).map(|_| pool.submit(spin_ms, 20)).collect())?;
    pool.shutdown(true, false); // cannot wait on the page: returns at once
    for f in futures {
        ensure!(
            f.await == Ok(20),
            "a queued task did not finish after shutdown"
        );
    }
    let ended = until(2000.0, || pool.worker_ids().is_empty()).await;
    ensure!(
        ended,
        "workers still alive after the work: {:?}",
        pool.worker_ids()
    );
    Ok(())
}

async fn shutdown_with_cancel_resolves_every_future() -> Check {
    let pool = pool(1)?;
    let resolved = Arc::new(AtomicUsize::new(0));
    let mut futures = Vec::new();
    for _ in 0..20 {
        let f = ok(pool.submit(spin_ms, 10))?;
        let r = resolved.clone();
        f.add_done_callback(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        });
        futures.push(f);
    }
    pool.shutdown(true, true);
    let mut cancelled = 0;
    for f in futures {
        let outcome = f.await;
        ensure!(
            matches!(outcome, Ok(10) | Err(Error::Cancelled)),
            "{outcome:?}"
        );
        cancelled += usize::from(outcome == Err(Error::Cancelled));
    }
    // A worker holds one job at a time: at least 19 of the 20 were still queued.
    ensure!(
        cancelled >= 10,
        "only {cancelled} of 20 queued tasks were cancelled"
    );
    ensure!(
        resolved.load(Ordering::SeqCst) == 20,
        "a done-callback did not run"
    );
    Ok(())
}

/// With a buffer size, `map` reads an endless input lazily: only the buffer is pulled ahead of
/// what was yielded, and dropping the map stops the pulling.
async fn a_buffered_map_reads_an_endless_input_and_pulls_only_its_buffer() -> Check {
    let pool = pool(2)?;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let inputs = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let options = MapOptions::new().buffersize(6).chunksize(2);
    let mut map = ok(pool.map_with(square, inputs, options))?;
    ensure!(
        pulled.load(Ordering::SeqCst) == 6,
        "pulled {pulled:?} up front"
    );
    for i in 0..20u64 {
        let got = map.next_async().await;
        ensure!(got == Some(Ok(i * i)), "result {i}: {got:?}");
        let ahead = pulled.load(Ordering::SeqCst) - (i as usize + 1);
        ensure!(ahead <= 6, "{ahead} inputs pulled ahead of a buffer of 6");
    }
    let before = pulled.load(Ordering::SeqCst);
    drop(map);
    ensure!(
        pulled.load(Ordering::SeqCst) == before,
        "pulled after the drop"
    );
    Ok(())
}

/// On the page, iterating a `Map` or an `as_completed` yields `WouldBlock` once and ends, so a
/// `for` loop there terminates; an awaited map's or `as_completed`'s timeout comes at its
/// deadline.
async fn blocking_iteration_on_the_page_yields_would_block_once_and_an_awaited_timeout_fires(
) -> Check {
    let pool = pool(1)?;
    let mut map = ok(pool.map(spin_ms, [200, 200]))?;
    let first = map.next();
    ensure!(first == Some(Err(Error::WouldBlock)), "{first:?}");
    ensure!(map.next().is_none(), "the map went on after WouldBlock");
    let futures = vec![ok(pool.submit(spin_ms, 200))?];
    let yielded = as_completed(&futures, None).count();
    ensure!(
        yielded == 1,
        "as_completed yielded {yielded} items, not one error"
    );
    let options = MapOptions::new().timeout(std::time::Duration::from_millis(50));
    let mut timed = ok(pool.map_with(spin_ms, [2_000, 1], options))?;
    let slow: Vec<_> = timed.chunks().map(|(f, _)| f.clone()).collect();
    let outcome = timed.next_async().await;
    ensure!(
        matches!(outcome, Some(Err(Error::TimedOut { .. }))),
        "{outcome:?}"
    );
    ensure!(
        slow[0].state() != FutureState::Finished,
        "the time-out came when the 2 s task ended, not at its 50 ms deadline"
    );
    // An awaited `as_completed` yields its time-out at the deadline too, once, then ends.
    let queued = vec![ok(pool.submit(spin_ms, 1))?];
    let mut finished = as_completed(&queued, Some(std::time::Duration::from_millis(50)));
    let outcome = finished.next_async().await.map(|r| r.map(|_| ()));
    let timed_out = Error::TimedOut {
        after: std::time::Duration::from_millis(50),
        unfinished: Some(Unfinished { count: 1, of: 1 }),
    };
    ensure!(outcome == Some(Err(timed_out)), "as_completed: {outcome:?}");
    let after = finished.next_async().await.map(|r| r.map(|_| ()));
    ensure!(
        after.is_none(),
        "as_completed went on after its time-out: {after:?}"
    );
    ensure!(
        slow[0].state() != FutureState::Finished,
        "the as_completed time-out came when the 2 s task ended, not at its 50 ms deadline"
    );
    pool.kill();
    Ok(())
}

async fn cancel_agrees_with_the_outcome() -> Check {
    let pool = pool(1)?;
    let futures: Vec<_> = ok((0..10).map(|_| pool.submit(spin_ms, 5)).collect())?;
    let cancelled: Vec<bool> = futures.iter().rev().map(Future::cancel).collect();
    for (f, was_cancelled) in futures.into_iter().rev().zip(cancelled) {
        let outcome = f.await;
        ensure!(
            (outcome == Err(Error::Cancelled)) == was_cancelled,
            "cancel said {was_cancelled}, outcome {outcome:?}"
        );
    }
    Ok(())
}

async fn as_completed_sees_every_future_and_blocking_calls_refuse() -> Check {
    let pool = pool(2)?;
    let futures: Vec<_> = ok((0..8u64)
        .map(|i| pool.submit(spin_ms, i % 3 + 20))
        .collect())?;
    ensure!(
        futures[0].result(None) == Err(Error::WouldBlock),
        "a blocking result() on the page did not refuse"
    );
    ensure!(
        matches!(
            wait(&futures, None, ReturnWhen::AllCompleted),
            Err(Error::WouldBlock)
        ),
        "a blocking wait() on the page did not refuse"
    );
    let mut seen = Vec::new();
    let mut finished = as_completed(&futures, None);
    while let Some(f) = finished.next_async().await {
        seen.push(ok(ok(f)?.result(None))?);
    }
    seen.sort_unstable();
    ensure!(seen == [20, 20, 20, 21, 21, 21, 22, 22], "{seen:?}");
    Ok(())
}

async fn done_callbacks_run_for_every_task() -> Check {
    let pool = pool(2)?;
    let count = Arc::new(AtomicUsize::new(0));
    let mut futures = Vec::new();
    for i in 0..50 {
        let f = ok(pool.submit(square, i))?;
        let c = count.clone();
        f.add_done_callback(move |f| {
            if f.done() {
                c.fetch_add(1, Ordering::SeqCst);
            }
        });
        futures.push(f);
    }
    for f in futures {
        ok(f.await)?;
    }
    ensure!(
        count.load(Ordering::SeqCst) == 50,
        "{} callbacks",
        count.load(Ordering::SeqCst)
    );
    Ok(())
}

async fn reports_its_worker_count_and_tasks_spread_over_workers() -> Check {
    let pool = pool(3)?;
    ensure!(
        pool.max_workers() == 3 && pool.name() == "workers",
        "{}",
        pool.max_workers()
    );
    ensure!(pool.worker_ids() == [0, 1, 2], "{:?}", pool.worker_ids());
    let ran = ok(pool.map_with(worker_after_ms, [40; 9], MapOptions::new().chunksize(1)))?
        .collect_async()
        .await;
    let mut ids: Vec<u32> = ok(ran.into_iter().collect())?;
    ids.sort_unstable();
    ids.dedup();
    ensure!(ids.len() >= 2, "only worker(s) {ids:?} ran tasks");
    Ok(())
}

async fn terminate_ends_the_running_task_and_replaces_its_worker() -> Check {
    let pool = pool(2)?;
    let long = ok(pool.submit(spin_ms, 10_000))?;
    let short = ok(pool.submit(spin_ms, 30))?;
    ensure!(
        until(5000.0, || long.running()).await,
        "the long task never started"
    );
    let t0 = now_ms();
    ensure!(long.terminate(), "terminate() refused a running task");
    let outcome = long.await;
    let took = now_ms() - t0;
    ensure!(matches!(outcome, Err(Error::Terminated(_))), "{outcome:?}");
    let quick = took < 1000.0;
    ensure!(quick, "terminating took {took} ms");
    ensure!(short.await == Ok(30), "the other task was disturbed");
    ensure!(
        pool.worker_ids().iter().any(|&id| id >= 2),
        "no replacement worker: {:?}",
        pool.worker_ids()
    );
    ensure!(
        ok(pool.submit(square, 5))?.await == Ok(25),
        "the pool broke"
    );
    Ok(())
}

async fn a_closure_job_fails_instead_of_hanging() -> Check {
    let pool = pool(1)?;
    let (promise, future) = Promise::new();
    ok(pool.execute(Job::closure(|| 1u8, promise)))?;
    ensure!(
        matches!(future.await, Err(Error::Serialization(_))),
        "a closure was accepted"
    );
    Ok(())
}

/// Runs every check; returns `(name, None)` for a pass and `(name, Some(why))` for a failure.
pub async fn run_all() -> Vec<(&'static str, Option<String>)> {
    let mut out = Vec::new();
    macro_rules! run {
        ($($check:ident),* $(,)?) => {
            $( out.push((stringify!($check), $check().await.err())); )*
        };
    }
    run!(
        submit_returns_the_result,
        map_keeps_input_order,
        map_of_nothing_is_empty,
        map_rejects_a_zero_chunksize,
        a_panic_ends_only_its_worker_and_task,
        submit_after_shutdown_fails,
        shutdown_lets_queued_work_finish_then_ends_the_workers,
        shutdown_with_cancel_resolves_every_future,
        a_buffered_map_reads_an_endless_input_and_pulls_only_its_buffer,
        blocking_iteration_on_the_page_yields_would_block_once_and_an_awaited_timeout_fires,
        cancel_agrees_with_the_outcome,
        as_completed_sees_every_future_and_blocking_calls_refuse,
        done_callbacks_run_for_every_task,
        reports_its_worker_count_and_tasks_spread_over_workers,
        terminate_ends_the_running_task_and_replaces_its_worker,
        a_closure_job_fails_instead_of_hanging,
    );
    out
}
