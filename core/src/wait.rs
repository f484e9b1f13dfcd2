//! Watching many futures at once: [`wait`] (Python's `concurrent.futures.wait`) and
//! [`as_completed`].
//!
//! Both register a hook on every future that records its index in a shared queue when it
//! finishes, so the cost is proportional to the number of futures, not to the number of
//! wake-ups times the number of futures.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::blocking;
use crate::error::Error;
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
    /// Finished or cancelled futures, in input order.
    pub done: Vec<&'a Future<T>>,
    /// The others, in input order.
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

impl Signal {
    fn watch<T>(futures: &[Future<T>]) -> Arc<Signal> {
        let signal = Arc::new(Signal::default());
        for (index, future) in futures.iter().enumerate() {
            let weak: Weak<Signal> = Arc::downgrade(&signal);
            future.on_done(move || {
                if let Some(signal) = weak.upgrade() {
                    let waker = {
                        let mut q = signal.lock();
                        q.finished.push_back(index);
                        q.waker.take()
                    };
                    signal.changed.notify_all();
                    if let Some(w) = waker {
                        w.wake();
                    }
                }
            });
        }
        signal
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
/// done and not done. A timeout is not an error here, as in Python: look at `not_done`. Where
/// blocking is impossible, a condition not yet met gives [`Error::WouldBlock`].
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
    let signal = Signal::watch(futures);
    let mut done = vec![false; futures.len()];
    let mut count = 0;
    loop {
        let met = match return_when {
            ReturnWhen::FirstCompleted => count > 0 || futures.is_empty(),
            ReturnWhen::FirstException | ReturnWhen::AllCompleted => count == futures.len(),
        };
        if met {
            break;
        }
        match signal.next(deadline) {
            Ok(Some(i)) => {
                if !std::mem::replace(&mut done[i], true) {
                    count += 1;
                }
                let failed = matches!(futures[i].error(Some(Duration::ZERO)), Ok(Some(_)));
                if return_when == ReturnWhen::FirstException && failed {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return Err(e),
        }
    }
    // Futures that finished after the last pop still count as done.
    for (i, f) in futures.iter().enumerate() {
        done[i] |= f.done();
    }
    let (done_fs, not_done) = futures
        .iter()
        .zip(&done)
        .partition::<Vec<_>, _>(|(_, d)| **d);
    Ok(Waited {
        done: done_fs.into_iter().map(|(f, _)| f).collect(),
        not_done: not_done.into_iter().map(|(f, _)| f).collect(),
    })
}

/// Yields `futures` as they finish (already-finished ones first). With a `timeout` (counted
/// from this call), an [`Error::TimedOut`] is yielded once if time runs out, then iteration
/// ends. [`AsCompleted::next_async`] awaits instead of blocking.
pub fn as_completed<T>(futures: &[Future<T>], timeout: Option<Duration>) -> AsCompleted<'_, T> {
    AsCompleted {
        signal: Signal::watch(futures),
        futures,
        left: futures.len(),
        deadline: deadline(timeout),
        timeout,
    }
}

/// The iterator returned by [`as_completed`].
#[must_use = "iterators are lazy: as_completed yields nothing unless iterated"]
pub struct AsCompleted<'a, T> {
    signal: Arc<Signal>,
    futures: &'a [Future<T>],
    left: usize,
    deadline: Option<web_time::Instant>,
    timeout: Option<Duration>,
}

impl<'a, T> AsCompleted<'a, T> {
    /// The next future to finish, awaited rather than blocked on.
    pub async fn next_async(&mut self) -> Option<&'a Future<T>> {
        if self.left == 0 {
            return None;
        }
        let index = poll_fn(|cx| {
            let mut q = self.signal.lock();
            match q.finished.pop_front() {
                Some(i) => Poll::Ready(i),
                None => {
                    q.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        self.left -= 1;
        Some(&self.futures[index])
    }
}

impl<'a, T> Iterator for AsCompleted<'a, T> {
    type Item = Result<&'a Future<T>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        match self.signal.next(self.deadline) {
            Ok(Some(i)) => {
                self.left -= 1;
                Some(Ok(&self.futures[i]))
            }
            Ok(None) => {
                self.left = 0;
                Some(Err(Error::TimedOut(self.timeout.unwrap_or_default())))
            }
            Err(e) => Some(Err(e)),
        }
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
        assert!(matches!(it.next(), Some(Err(Error::TimedOut(_)))));
        assert!(it.next().is_none());
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
                n += f.result(None).unwrap();
            }
            n
        });
        assert_eq!(got, 10);
        h.join().unwrap();
    }
}
