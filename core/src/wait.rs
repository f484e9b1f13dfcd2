//! Watching many futures at once: [`wait`] (Python's `concurrent.futures.wait`) and
//! [`as_completed`].
//!
//! Both register a hook on every future that records its index in a shared queue when it
//! finishes, so the cost is proportional to the number of futures, not to the number of
//! wake-ups times the number of futures. The hooks are removed when `wait` returns and when an
//! [`AsCompleted`] is dropped, so watching long-lived futures again and again leaves nothing
//! behind on them. Python takes sets of futures: a future listed twice (clones of one
//! future included) is watched, returned and yielded once, at its first place.

use std::collections::{HashSet, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::blocking;
use crate::error::{Error, Unfinished};
use crate::future::Future;

/// When [`wait`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReturnWhen {
    /// As soon as any future finishes or is cancelled.
    FirstCompleted,
    /// As soon as any future fails; like `AllCompleted` if none fails.
    FirstException,
    /// When every future is done.
    #[default]
    AllCompleted,
}

/// What [`wait`] found: the futures that are done and those that are not.
#[derive(Debug)]
pub struct Waited<'a, T> {
    /// Finished or cancelled futures, in input order, each once.
    pub done: Vec<&'a Future<T>>,
    /// The others, in input order, each once.
    pub not_done: Vec<&'a Future<T>>,
}

#[derive(Default)]
struct Queue {
    finished: VecDeque<usize>,
    waker: Option<Waker>,
}

/// Indices of finished futures, in finishing order.
#[derive(Default)]
struct Signal {
    queue: Mutex<Queue>,
    changed: Condvar,
}

/// The distinct futures of `futures` (a clone is the same future), in first-seen order.
fn distinct<T>(futures: &[Future<T>]) -> Vec<&Future<T>> {
    let mut seen = HashSet::with_capacity(futures.len());
    futures.iter().filter(|f| seen.insert(f.id())).collect()
}

/// A hook on each of some futures, removed again on drop.
struct Watch<'a, T> {
    signal: Arc<Signal>,
    futures: Vec<&'a Future<T>>,
    hooks: Vec<Option<u64>>,
}

impl<'a, T> Watch<'a, T> {
    fn new(futures: &'a [Future<T>]) -> Self {
        let signal = Arc::new(Signal::default());
        let futures = distinct(futures);
        let hooks = futures
            .iter()
            .enumerate()
            .map(|(index, future)| {
                let weak: Weak<Signal> = Arc::downgrade(&signal);
                future.on_done(move || {
                    if let Some(signal) = weak.upgrade() {
                        signal.push(index);
                    }
                })
            })
            .collect();
        Watch {
            signal,
            futures,
            hooks,
        }
    }
}

impl<T> Drop for Watch<'_, T> {
    fn drop(&mut self) {
        for (future, hook) in self.futures.iter().zip(&self.hooks) {
            if let Some(id) = hook {
                future.remove_hook(*id);
            }
        }
    }
}

impl Signal {
    fn push(&self, index: usize) {
        let waker = {
            let mut q = self.lock();
            q.finished.push_back(index);
            q.waker.take()
        };
        self.changed.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pops the next finished index, waiting until `deadline`. `Ok(None)`: time is up.
    fn next(&self, deadline: Option<web_time::Instant>) -> Result<Option<usize>, Error> {
        let mut q = self.lock();
        loop {
            if let Some(i) = q.finished.pop_front() {
                return Ok(Some(i));
            }
            if !blocking::allowed() {
                return Err(Error::WouldBlock);
            }
            q = match deadline {
                None => self.changed.wait(q).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(web_time::Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    let (q, _) = self
                        .changed
                        .wait_timeout(q, left)
                        .unwrap_or_else(|e| e.into_inner());
                    q
                }
            };
        }
    }
}

fn deadline(timeout: Option<Duration>) -> Option<web_time::Instant> {
    timeout.and_then(|t| web_time::Instant::now().checked_add(t))
}

/// Waits until `return_when` holds for `futures`, or `timeout` passes, and splits them into
/// done and not done, each future once (in the order of its first place in `futures`). A
/// timeout is not an error here, as in Python: look at `not_done`. Where blocking is
/// impossible, a condition not yet met gives [`Error::WouldBlock`]. The hooks `wait` puts on
/// the futures are removed before it returns.
///
/// ```
/// use primepool_core::{wait, ExecutorExt, ReturnWhen, SerialExecutor};
///
/// let pool = SerialExecutor::new();
/// let futures: Vec<_> = (1..=3u32).map(|n| pool.submit(|n: u32| n * n, n).unwrap()).collect();
/// let waited = wait(&futures, None, ReturnWhen::AllCompleted).unwrap();
/// assert_eq!(waited.done.len(), 3);
/// ```
pub fn wait<T>(
    futures: &[Future<T>],
    timeout: Option<Duration>,
    return_when: ReturnWhen,
) -> Result<Waited<'_, T>, Error> {
    let deadline = deadline(timeout);
    let watch = Watch::new(futures);
    let watched = &watch.futures;
    let mut done = vec![false; watched.len()];
    let mut count = 0;
    loop {
        let met = match return_when {
            ReturnWhen::FirstCompleted => count > 0 || watched.is_empty(),
            ReturnWhen::FirstException | ReturnWhen::AllCompleted => count == watched.len(),
        };
        if met {
            break;
        }
        match watch.signal.next(deadline) {
            Ok(Some(i)) => {
                if !std::mem::replace(&mut done[i], true) {
                    count += 1;
                }
                let failed = matches!(watched[i].error(Some(Duration::ZERO)), Ok(Some(_)));
                if return_when == ReturnWhen::FirstException && failed {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return Err(e),
        }
    }
    // Futures that finished after the last pop still count as done.
    let (done_fs, not_done) = watched
        .iter()
        .zip(&done)
        .partition::<Vec<_>, _>(|(f, d)| **d || f.done());
    Ok(Waited {
        done: done_fs.into_iter().map(|(f, _)| *f).collect(),
        not_done: not_done.into_iter().map(|(f, _)| *f).collect(),
    })
}

/// Yields `futures` as they finish (already-finished ones first), each future once however
/// often it is listed. With a `timeout` (counted from this call), an [`Error::TimedOut`] that
/// says how many futures are unfinished is yielded once if time runs out, then iteration ends.
/// Where blocking is impossible, [`Error::WouldBlock`] is yielded once and iteration ends:
/// use [`AsCompleted::next_async`] (or the `Stream`) there, which awaits instead of blocking
/// and yields the same time-out at the deadline. Dropping the iterator removes its hooks from
/// the futures.
pub fn as_completed<T>(futures: &[Future<T>], timeout: Option<Duration>) -> AsCompleted<'_, T> {
    let watch = Watch::new(futures);
    AsCompleted {
        left: watch.futures.len(),
        watch,
        deadline: deadline(timeout),
        timeout,
        alarm: None,
    }
}

/// The iterator returned by [`as_completed`].
///
/// It is also a [`Stream`](futures_core::Stream) of the same items as the iterator, the
/// time-out included (an alarm wakes the task at the deadline: see [`crate::timer`]).
#[must_use = "iterators are lazy: as_completed yields nothing unless iterated"]
pub struct AsCompleted<'a, T> {
    watch: Watch<'a, T>,
    left: usize,
    deadline: Option<web_time::Instant>,
    timeout: Option<Duration>,
    alarm: Option<crate::timer::Alarm>,
}

impl<'a, T> AsCompleted<'a, T> {
    /// The time-out, once: nothing more is yielded after it.
    fn timed_out(&mut self) -> Error {
        let unfinished = Unfinished {
            count: std::mem::take(&mut self.left),
            of: self.watch.futures.len(),
        };
        Error::TimedOut {
            after: self.timeout.unwrap_or_default(),
            unfinished: Some(unfinished),
        }
    }

    /// The async step (`next_async` and the `Stream`): the next future to finish, or the
    /// time-out at the deadline, for which an alarm wakes the task (see [`crate::timer`]).
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<&'a Future<T>, Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let mut q = self.watch.signal.lock();
        if let Some(i) = q.finished.pop_front() {
            drop(q);
            self.left -= 1;
            return Poll::Ready(Some(Ok(self.watch.futures[i])));
        }
        q.waker = Some(cx.waker().clone());
        drop(q);
        if let Some(deadline) = self.deadline {
            if web_time::Instant::now() >= deadline {
                return Poll::Ready(Some(Err(self.timed_out())));
            }
            self.alarm
                .get_or_insert_with(|| crate::timer::Alarm::at(deadline))
                .arm(cx.waker());
        }
        Poll::Pending
    }

    /// The next future to finish, awaited rather than blocked on (the browser's form). The
    /// timeout applies: at the deadline the [`Error::TimedOut`] is yielded once, as
    /// [`Iterator::next`] does, and then nothing more.
    pub async fn next_async(&mut self) -> Option<Result<&'a Future<T>, Error>> {
        poll_fn(|cx| self.poll_step(cx)).await
    }
}

impl<'a, T> Iterator for AsCompleted<'a, T> {
    type Item = Result<&'a Future<T>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        match self.watch.signal.next(self.deadline) {
            Ok(Some(i)) => {
                self.left -= 1;
                Some(Ok(self.watch.futures[i]))
            }
            Ok(None) => Some(Err(self.timed_out())),
            Err(e) => {
                // Yielded once: a `for` loop on a thread that must not block ends.
                self.left = 0;
                Some(Err(e))
            }
        }
    }
}

// Nothing in an `AsCompleted` is pinned in place.
impl<T> Unpin for AsCompleted<'_, T> {}

impl<'a, T> futures_core::Stream for AsCompleted<'a, T> {
    type Item = Result<&'a Future<T>, Error>;

    /// Like [`AsCompleted::next_async`], the timeout included.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_step(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::future::Promise;
    use std::thread;

    fn pending(n: usize) -> (Vec<Promise<u32>>, Vec<Future<u32>>) {
        (0..n).map(|_| Promise::new()).unzip()
    }

    #[test]
    fn wait_all_completed_returns_every_future_as_done() {
        let (promises, futures) = pending(3);
        let h = thread::spawn(move || {
            for (i, p) in promises.into_iter().enumerate() {
                thread::sleep(Duration::from_millis(2));
                p.set_result(i as u32);
            }
        });
        let w = wait(&futures, None, ReturnWhen::AllCompleted).unwrap();
        assert_eq!((w.done.len(), w.not_done.len()), (3, 0));
        h.join().unwrap();
    }

    #[test]
    fn wait_first_completed_returns_as_soon_as_one_is_done() {
        let (mut promises, futures) = pending(3);
        promises.remove(1).set_result(1);
        let w = wait(
            &futures,
            Some(Duration::from_secs(5)),
            ReturnWhen::FirstCompleted,
        )
        .unwrap();
        assert_eq!(w.done.len(), 1);
        assert_eq!(w.done[0].result(None), Ok(1));
        assert_eq!(w.not_done.len(), 2);
    }

    #[test]
    fn wait_first_exception_returns_at_the_first_failure() {
        let (mut promises, futures) = pending(3);
        promises.remove(0).set_result(0);
        promises.remove(0).set_error(Error::Broken("x".into()));
        let w = wait(
            &futures,
            Some(Duration::from_secs(5)),
            ReturnWhen::FirstException,
        )
        .unwrap();
        assert_eq!(w.done.len(), 2);
        assert_eq!(w.not_done.len(), 1);
        drop(promises);
    }

    #[test]
    fn wait_first_exception_without_failures_waits_for_all() {
        let (promises, futures) = pending(2);
        for p in promises {
            p.set_result(1);
        }
        let w = wait(&futures, None, ReturnWhen::FirstException).unwrap();
        assert_eq!(w.done.len(), 2);
    }

    #[test]
    fn wait_with_a_timeout_returns_the_split_without_an_error() {
        let (_promises, futures) = pending(2);
        let w = wait(
            &futures,
            Some(Duration::from_millis(10)),
            ReturnWhen::AllCompleted,
        )
        .unwrap();
        assert_eq!((w.done.len(), w.not_done.len()), (0, 2));
    }

    #[test]
    fn a_cancelled_future_counts_as_done() {
        let (_promises, futures) = pending(1);
        futures[0].cancel();
        let w = wait(&futures, None, ReturnWhen::AllCompleted).unwrap();
        assert_eq!(w.done.len(), 1);
    }

    #[test]
    fn as_completed_yields_each_future_once_in_finishing_order() {
        let (promises, futures) = pending(3);
        let mut promises: Vec<Option<Promise<u32>>> = promises.into_iter().map(Some).collect();
        promises[2].take().unwrap().set_result(2);
        let h = thread::spawn(move || {
            thread::sleep(Duration::from_millis(5));
            promises[0].take().unwrap().set_result(0);
            thread::sleep(Duration::from_millis(5));
            promises[1].take().unwrap().set_result(1);
        });
        let order: Vec<u32> = as_completed(&futures, None)
            .map(|f| f.unwrap().result(None).unwrap())
            .collect();
        assert_eq!(order, [2, 0, 1]);
        h.join().unwrap();
    }

    #[test]
    fn as_completed_yields_a_timeout_once_then_ends() {
        let (_promises, futures) = pending(2);
        let mut it = as_completed(&futures, Some(Duration::from_millis(10)));
        assert!(matches!(it.next(), Some(Err(Error::TimedOut { .. }))));
        assert!(it.next().is_none());
    }

    #[test]
    fn an_as_completed_timeout_says_how_many_futures_are_unfinished_of_how_many() {
        let (mut promises, futures) = pending(4);
        promises.remove(0).set_result(0);
        promises.remove(0).set_result(1);
        let mut it = as_completed(&futures, Some(Duration::from_millis(10)));
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_ok());
        let err = it.next().unwrap().unwrap_err();
        assert_eq!(
            err,
            Error::TimedOut {
                after: Duration::from_millis(10),
                unfinished: Some(Unfinished { count: 2, of: 4 }),
            }
        );
        assert!(
            err.to_string().starts_with("2 (of 4) futures unfinished"),
            "{err}"
        );
        assert!(it.next().is_none());
    }

    #[test]
    fn wait_returns_a_future_listed_twice_once_in_input_order() {
        let (mut promises, futures) = pending(2);
        let listed = vec![
            futures[1].clone(),
            futures[0].clone(),
            futures[1].clone(),
            futures[0].clone(),
        ];
        promises.remove(0).set_result(0);
        let w = wait(
            &listed,
            Some(Duration::from_millis(10)),
            ReturnWhen::AllCompleted,
        )
        .unwrap();
        assert_eq!(w.done.len(), 1);
        assert_eq!(w.done[0].result(None), Ok(0));
        assert_eq!(w.not_done.len(), 1);
        promises.remove(0).set_result(1);
        let w = wait(&listed, None, ReturnWhen::AllCompleted).unwrap();
        let order: Vec<u32> = w.done.iter().map(|f| f.result(None).unwrap()).collect();
        assert_eq!(order, [1, 0], "first places kept, duplicates dropped");
        assert!(w.not_done.is_empty());
    }

    #[test]
    fn as_completed_yields_a_future_listed_twice_once() {
        let (promises, futures) = pending(2);
        let listed = vec![futures[0].clone(), futures[0].clone(), futures[1].clone()];
        for (i, p) in promises.into_iter().enumerate() {
            p.set_result(i as u32);
        }
        let mut seen: Vec<u32> = as_completed(&listed, Some(Duration::from_secs(5)))
            .map(|f| f.unwrap().result(None).unwrap())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, [0, 1]);
    }

    #[test]
    fn wait_removes_its_hooks_from_the_futures_when_it_returns() {
        let (_promises, futures) = pending(3);
        for _ in 0..50 {
            let w = wait(&futures, Some(Duration::ZERO), ReturnWhen::FirstCompleted).unwrap();
            assert_eq!(w.not_done.len(), 3);
        }
        for f in &futures {
            assert_eq!(f.hook_count(), 0, "a loop of timed-out waits must not grow");
        }
    }

    #[test]
    fn a_dropped_as_completed_removes_its_hooks_from_the_futures() {
        let (mut promises, futures) = pending(3);
        promises.remove(0).set_result(0);
        for _ in 0..20 {
            let mut it = as_completed(&futures, None);
            assert!(it.next().unwrap().is_ok());
        }
        for f in &futures {
            assert_eq!(f.hook_count(), 0);
        }
    }

    #[test]
    fn as_completed_where_blocking_is_forbidden_yields_would_block_once_then_ends() {
        let (promises, futures) = pending(2);
        thread::spawn(move || {
            crate::blocking::forbid_on_this_thread();
            let got: Vec<_> = as_completed(&futures, None).take(5).collect();
            assert_eq!(got.len(), 1, "one error, then the end: {got:?}");
            assert!(matches!(got[0], Err(Error::WouldBlock)));
        })
        .join()
        .unwrap();
        drop(promises);
    }

    #[test]
    fn as_completed_streamed_or_awaited_yields_its_time_out_at_the_deadline_once_then_ends() {
        use futures_core::Stream;
        let (mut promises, futures) = pending(3);
        promises.remove(0).set_result(7);
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let timeout = Some(Duration::from_millis(30));
            let mut streamed = as_completed(&futures, timeout);
            let mut awaited = as_completed(&futures, timeout);
            let got = crate::conformance::block_on(async {
                let mut got = Vec::new();
                for _ in 0..3 {
                    let next = std::future::poll_fn(|cx| Pin::new(&mut streamed).poll_next(cx));
                    got.push(("streamed", next.await));
                }
                for _ in 0..3 {
                    got.push(("awaited", awaited.next_async().await));
                }
                got.into_iter()
                    .map(|(form, r)| (form, r.map(|r| r.map(|f| f.result(None)))))
                    .collect::<Vec<_>>()
            });
            tx.send(got).unwrap();
            drop(promises);
        });
        let got = rx.recv_timeout(Duration::from_secs(60)).expect("no hang");
        let timed_out = Error::TimedOut {
            after: Duration::from_millis(30),
            unfinished: Some(Unfinished { count: 2, of: 3 }),
        };
        for form in got.chunks(3) {
            let outcomes: Vec<_> = form.iter().map(|(_, r)| r.clone()).collect();
            let expected = vec![Some(Ok(Ok(7))), Some(Err(timed_out.clone())), None];
            assert_eq!(outcomes, expected, "{}", form[0].0);
        }
    }

    #[test]
    fn as_completed_can_be_awaited() {
        let (promises, futures) = pending(2);
        let h = thread::spawn(move || {
            for p in promises {
                thread::sleep(Duration::from_millis(2));
                p.set_result(5);
            }
        });
        let mut it = as_completed(&futures, None);
        let got = crate::conformance::block_on(async {
            let mut n = 0;
            while let Some(f) = it.next_async().await {
                n += f.unwrap().result(None).unwrap();
            }
            n
        });
        assert_eq!(got, 10);
        h.join().unwrap();
    }
}
