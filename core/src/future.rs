//! [`Future`]: a handle to one task's outcome, with the states and methods of Python's
//! `concurrent.futures.Future`; [`Promise`]: the side a backend completes.
//!
//! A future moves `Pending -> Running -> Finished`, or `Pending -> Cancelled`. It is resolved
//! exactly once: every transition happens under one lock and only from `Pending` or `Running`,
//! so when `cancel`, `shutdown(cancel_futures)` and task completion race, exactly one of them
//! wins and the others are no-ops. A [`Promise`] dropped without resolving its future resolves
//! it with [`Error::Broken`], so a lost task can never leave a waiter hanging.

use std::cell::Cell;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::blocking;
use crate::error::Error;
use crate::spin::SpinBudget;

/// The observable state of a [`Future`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FutureState {
    /// Submitted, not started; can still be cancelled.
    Pending,
    /// Started on a worker; can no longer be cancelled (but see [`Future::terminate`]).
    Running,
    /// Cancelled before it started.
    Cancelled,
    /// Ended with a result or an error.
    Finished,
}

type Callback<T> = Box<dyn FnOnce(&Future<T>) + Send>;
type Hook = Box<dyn FnOnce() + Send>;
type Terminator = Arc<dyn Fn() -> bool + Send + Sync>;
type Deferred<T> = Box<dyn FnOnce() -> Result<T, Error> + Send>;

enum Status<T> {
    Pending,
    Running,
    Cancelled,
    Done(Result<T, Error>),
    /// Finished; the outcome is made on first use, by whoever reads it (see
    /// [`Promise::set_deferred`]).
    Deferred(Deferred<T>),
    /// Finished successfully, and the value was moved out by `join` or `.await`.
    Taken,
}

struct Slot<T> {
    status: Status<T>,
    callbacks: Vec<Callback<T>>,
    /// `wait`/`as_completed` hooks, each with the number [`Future::remove_hook`] takes.
    hooks: Vec<(u64, Hook)>,
    next_hook: u64,
    wakers: Vec<Waker>,
    terminator: Option<Terminator>,
    /// Threads blocked in `wait_done`: completing wakes the condition variable only if some
    /// are (a wake-up is a system call, and most futures are completed with nobody waiting).
    blocked: u32,
}

impl<T> Slot<T> {
    fn state(&self) -> FutureState {
        match self.status {
            Status::Pending => FutureState::Pending,
            Status::Running => FutureState::Running,
            Status::Cancelled => FutureState::Cancelled,
            Status::Done(_) | Status::Deferred(_) | Status::Taken => FutureState::Finished,
        }
    }

    /// Makes a deferred outcome now (on the reading thread), so the status is final.
    fn force(&mut self) {
        if matches!(self.status, Status::Deferred(_)) {
            if let Status::Deferred(make) = std::mem::replace(&mut self.status, Status::Taken) {
                self.status = Status::Done(make());
            }
        }
    }

    fn is_done(&self) -> bool {
        matches!(self.state(), FutureState::Cancelled | FutureState::Finished)
    }
}

struct Inner<T> {
    slot: Mutex<Slot<T>>,
    ready: Condvar,
    /// Set (under the lock) when the future becomes done, so a waiter can spin on it briefly
    /// without taking the lock.
    finished: AtomicBool,
}

thread_local! {
    /// How long this thread waits awake for the next future it blocks on (a thread whose
    /// waits are long, on long tasks, stops spinning after a few of them).
    static WAIT_AWAKE: Cell<SpinBudget> = const { Cell::new(SpinBudget::new()) };
}

/// A handle to the eventual outcome of one task.
///
/// Cloning a `Future` gives another handle to the same task. Reading the result with
/// [`result`](Future::result) clones the value; [`join`](Future::join) and `.await` move it out.
///
/// ```
/// use primepool_core::backend::Promise;
/// use primepool_core::{Future, FutureState};
///
/// let (promise, future) = Promise::<u32>::new();
/// assert_eq!(future.state(), FutureState::Pending);
/// assert!(promise.set_running_or_notify_cancel());
/// assert!(!future.cancel(), "a running future cannot be cancelled");
/// promise.set_result(7);
/// assert_eq!(future.result(None), Ok(7));
/// ```
pub struct Future<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Self {
        Future {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Future")
            .field("state", &self.state())
            .finish()
    }
}

fn lock<T>(inner: &Inner<T>) -> MutexGuard<'_, Slot<T>> {
    // A poisoned lock can only come from a panicking callback's bookkeeping; the slot itself is
    // always left consistent, so keep going.
    inner.slot.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Future<T> {
    /// A future that is already finished with `outcome`.
    pub fn ready(outcome: Result<T, Error>) -> Self {
        let (promise, future) = Promise::new();
        promise.set_outcome(outcome);
        future
    }

    /// The current state.
    pub fn state(&self) -> FutureState {
        lock(&self.inner).state()
    }

    /// Cancels the task if it has not started. Returns `true` if the future is cancelled
    /// (now or before), `false` if it is running or finished.
    pub fn cancel(&self) -> bool {
        let mut slot = lock(&self.inner);
        match slot.status {
            Status::Cancelled => true,
            Status::Pending => {
                slot.status = Status::Cancelled;
                self.fire(slot);
                true
            }
            _ => false,
        }
    }

    /// True if the future was cancelled.
    pub fn cancelled(&self) -> bool {
        self.state() == FutureState::Cancelled
    }

    /// True while the task runs.
    pub fn running(&self) -> bool {
        self.state() == FutureState::Running
    }

    /// True once the task finished or was cancelled.
    pub fn done(&self) -> bool {
        lock(&self.inner).is_done()
    }

    /// Stops a running task by ending the worker that runs it, for backends that can (process
    /// and Web Worker pools); the future then fails with [`Error::Terminated`] and the worker is
    /// replaced. A pending task is cancelled instead. Returns `false` when the task is already
    /// done or its backend cannot stop running work (threads cannot be killed).
    pub fn terminate(&self) -> bool {
        let terminator = {
            let slot = lock(&self.inner);
            match slot.status {
                Status::Pending => {
                    drop(slot);
                    return self.cancel();
                }
                Status::Running => slot.terminator.clone(),
                _ => None,
            }
        };
        terminator.is_some_and(|stop| stop())
    }

    /// Waits up to `timeout` (`None`: forever) for the task and returns a clone of its result,
    /// or the error it ended with ([`Error::Cancelled`] if cancelled, [`Error::TimedOut`] if the
    /// time ran out, [`Error::WouldBlock`] where blocking is impossible).
    pub fn result(&self, timeout: Option<Duration>) -> Result<T, Error>
    where
        T: Clone,
    {
        let mut slot = self.wait_done(timeout)?;
        slot.force();
        match &slot.status {
            Status::Done(outcome) => outcome.clone(),
            Status::Cancelled => Err(Error::Cancelled),
            Status::Taken => Err(Error::ResultTaken),
            Status::Pending | Status::Running | Status::Deferred(_) => {
                unreachable!("wait_done returns only when done, and force ends deferral")
            }
        }
    }

    /// Waits up to `timeout` and returns the error the task ended with, or `None` if it
    /// succeeded (Python's `Future.exception()`). Cancellation, timeout and `WouldBlock` are
    /// returned as `Err`, as Python raises them.
    pub fn error(&self, timeout: Option<Duration>) -> Result<Option<Error>, Error> {
        let mut slot = self.wait_done(timeout)?;
        slot.force();
        match &slot.status {
            Status::Done(Err(e)) => Ok(Some(e.clone())),
            Status::Done(Ok(_)) | Status::Taken => Ok(None),
            Status::Cancelled => Err(Error::Cancelled),
            Status::Pending | Status::Running | Status::Deferred(_) => {
                unreachable!("wait_done returns only when done, and force ends deferral")
            }
        }
    }

    /// Waits for the task without a timeout and moves its result out of the future. Other
    /// handles to the same future then see [`Error::ResultTaken`] from `result`.
    pub fn join(self) -> Result<T, Error> {
        let mut slot = self.wait_done(None)?;
        take_outcome(&mut slot)
    }

    /// Waits up to `timeout` for the task to finish, without reading the outcome. Returns
    /// `true` if it is done.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.wait_done(timeout).is_ok()
    }

    /// Runs `callback` with this future once it is done: at once, in this thread, if it is
    /// already done; otherwise in the thread that completes it. A panicking callback is logged
    /// and ignored, as Python does.
    pub fn add_done_callback(&self, callback: impl FnOnce(&Future<T>) + Send + 'static) {
        let mut slot = lock(&self.inner);
        if slot.is_done() {
            drop(slot);
            run_callback(Box::new(callback), self);
        } else {
            slot.callbacks.push(Box::new(callback));
        }
    }

    /// Registers `hook` to run when the future is done (at once if it is). Used by
    /// [`wait`](crate::wait) and [`as_completed`](crate::as_completed), which remove it with
    /// [`remove_hook`](Future::remove_hook) when they return. `None`: it already ran.
    pub(crate) fn on_done(&self, hook: impl FnOnce() + Send + 'static) -> Option<u64> {
        let mut slot = lock(&self.inner);
        if slot.is_done() {
            drop(slot);
            hook();
            None
        } else {
            let id = slot.next_hook;
            slot.next_hook += 1;
            slot.hooks.push((id, Box::new(hook)));
            Some(id)
        }
    }

    /// Removes the hook `on_done` registered as `id`, if it has not run.
    pub(crate) fn remove_hook(&self, id: u64) {
        lock(&self.inner).hooks.retain(|(hook, _)| *hook != id);
    }

    /// How many hooks wait to run (for tests that check `wait` leaves none behind).
    #[cfg(test)]
    pub(crate) fn hook_count(&self) -> usize {
        lock(&self.inner).hooks.len()
    }

    /// Identifies the task: clones of one future share it, other futures never do.
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as *const () as usize
    }

    /// Returns with the lock held once done, or the reason it could not wait.
    fn wait_done(&self, timeout: Option<Duration>) -> Result<MutexGuard<'_, Slot<T>>, Error> {
        let mut slot = lock(&self.inner);
        if slot.is_done() {
            return Ok(slot);
        }
        if !blocking::allowed() {
            return Err(Error::WouldBlock);
        }
        let began = web_time::Instant::now();
        if timeout != Some(Duration::ZERO) {
            drop(slot);
            self.spin_briefly(began, timeout);
            slot = lock(&self.inner);
        }
        let deadline = timeout.and_then(|t| began.checked_add(t));
        while !slot.is_done() {
            slot.blocked += 1;
            slot = match deadline {
                None => self
                    .inner
                    .ready
                    .wait(slot)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(web_time::Instant::now());
                    if left.is_zero() {
                        slot.blocked -= 1;
                        return Err(Error::timed_out(timeout.unwrap_or_default()));
                    }
                    self.inner
                        .ready
                        .wait_timeout(slot, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            slot.blocked -= 1;
        }
        WAIT_AWAKE.with(|spin| spin.set(spin.get().after_wait(began.elapsed())));
        Ok(slot)
    }

    /// Waits awake for the future to finish, for as long as this thread's budget allows
    /// ([`WAIT_AWAKE`]) and never past `timeout` from `began`. A short task is usually done
    /// by then, and a blocked waiter's wake-up costs tens of microseconds on a virtual
    /// machine (more than a lone task's whole round trip to a worker process). After a few
    /// pauses it yields the CPU between checks, so a runnable thread (often the one that
    /// completes this future, e.g. a process pool's I/O thread) is not held up by the spinning.
    fn spin_briefly(&self, began: web_time::Instant, timeout: Option<Duration>) {
        let budget = WAIT_AWAKE.with(Cell::get);
        let budget = timeout.map_or(budget, |t| budget.capped(t));
        let finished = || self.inner.finished.load(Ordering::Acquire).then_some(());
        let _ = budget.wait_awake(began, finished);
    }

    /// Wakes everyone waiting on this future. Call with the lock held, right after the
    /// transition to a done state; the lock is released before user code runs.
    fn fire(&self, mut slot: MutexGuard<'_, Slot<T>>) {
        let callbacks = std::mem::take(&mut slot.callbacks);
        let hooks = std::mem::take(&mut slot.hooks);
        let wakers = std::mem::take(&mut slot.wakers);
        slot.terminator = None;
        self.inner.finished.store(true, Ordering::Release);
        let blocked = slot.blocked > 0;
        drop(slot);
        if blocked {
            self.inner.ready.notify_all();
        }
        hooks.into_iter().for_each(|(_, hook)| hook());
        wakers.into_iter().for_each(Waker::wake);
        for callback in callbacks {
            run_callback(callback, self);
        }
    }
}

fn take_outcome<T>(slot: &mut Slot<T>) -> Result<T, Error> {
    slot.force();
    match std::mem::replace(&mut slot.status, Status::Taken) {
        Status::Done(Ok(value)) => Ok(value),
        Status::Done(Err(e)) => {
            slot.status = Status::Done(Err(e.clone()));
            Err(e)
        }
        Status::Cancelled => {
            slot.status = Status::Cancelled;
            Err(Error::Cancelled)
        }
        Status::Taken => Err(Error::ResultTaken),
        other @ (Status::Pending | Status::Running | Status::Deferred(_)) => {
            slot.status = other;
            unreachable!("take_outcome is only called on done futures, after force")
        }
    }
}

fn run_callback<T>(callback: Callback<T>, future: &Future<T>) {
    if let Err(panic) = crate::panic::catch(|| callback(future)) {
        log::error!("a done-callback panicked: {panic}");
    }
}

impl<T> std::future::Future for Future<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = lock(&self.inner);
        if slot.is_done() {
            return Poll::Ready(take_outcome(&mut slot));
        }
        if !slot.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            slot.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The completing side of a [`Future`], held by the backend that runs the task.
///
/// Every method that resolves the future reports whether this call did it: exactly one caller
/// ever gets `true`.
#[must_use = "dropping a Promise resolves its future with Error::Broken"]
pub struct Promise<T> {
    future: Future<T>,
}

impl<T> fmt::Debug for Promise<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Promise")
            .field("state", &self.future.state())
            .finish()
    }
}

impl<T> Promise<T> {
    /// A new pending future and the promise that completes it.
    pub fn new() -> (Promise<T>, Future<T>) {
        let future = Future {
            inner: Arc::new(Inner {
                slot: Mutex::new(Slot {
                    status: Status::Pending,
                    callbacks: Vec::new(),
                    hooks: Vec::new(),
                    next_hook: 0,
                    wakers: Vec::new(),
                    terminator: None,
                    blocked: 0,
                }),
                ready: Condvar::new(),
                finished: AtomicBool::new(false),
            }),
        };
        (
            Promise {
                future: future.clone(),
            },
            future,
        )
    }

    /// Another handle to the future this promise completes.
    pub fn future(&self) -> Future<T> {
        self.future.clone()
    }

    /// Marks the task as started, unless it was cancelled (Python's
    /// `set_running_or_notify_cancel`). Returns `false` for a cancelled (or already finished)
    /// future: the backend must then skip the task.
    pub fn set_running_or_notify_cancel(&self) -> bool {
        let mut slot = lock(&self.future.inner);
        match slot.status {
            Status::Pending => {
                slot.status = Status::Running;
                true
            }
            Status::Running => true,
            _ => false,
        }
    }

    /// True if the future was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.future.cancelled()
    }

    /// Lets [`Future::terminate`] stop this task while it runs; `stop` returns whether it did.
    pub fn set_terminator(&self, stop: Arc<dyn Fn() -> bool + Send + Sync>) {
        let mut slot = lock(&self.future.inner);
        if !slot.is_done() {
            slot.terminator = Some(stop);
        }
    }

    /// Finishes the future with a value. Returns `false` if it was already done.
    pub fn set_result(self, value: T) -> bool {
        self.set_outcome(Ok(value))
    }

    /// Finishes the future with an error. Returns `false` if it was already done.
    pub fn set_error(self, error: Error) -> bool {
        self.set_outcome(Err(error))
    }

    /// Finishes the future with `outcome`. Returns `false` if it was already done (cancelled,
    /// or resolved by someone else), in which case nothing changes.
    pub fn set_outcome(self, outcome: Result<T, Error>) -> bool {
        self.resolve(Status::Done(outcome))
    }

    /// Finishes the future with an outcome that `make` produces when it is first read, on the
    /// reading thread: a pool's I/O thread hands over a worker's reply still encoded, and the
    /// consumer decodes it, so the two share that work. Returns `false` if the future was
    /// already done. `make` runs at most once, under the future's lock.
    pub(crate) fn set_deferred(
        self,
        make: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> bool {
        self.resolve(Status::Deferred(Box::new(make)))
    }

    /// Cancels the future if it is still pending (for `shutdown(cancel_futures = true)`).
    /// Returns `true` if the future is cancelled.
    pub fn cancel(self) -> bool {
        self.future.cancel()
    }

    /// Moves the future to a finished `status` unless it is done already.
    fn resolve(&self, status: Status<T>) -> bool {
        let mut slot = lock(&self.future.inner);
        if slot.is_done() {
            return false;
        }
        slot.status = status;
        self.future.fire(slot);
        true
    }
}

impl<T> Drop for Promise<T> {
    fn drop(&mut self) {
        if !self.future.done() {
            self.resolve(Status::Done(Err(Error::Broken(
                "the executor dropped the task without running it".into(),
            ))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    #[test]
    fn a_new_future_is_pending_and_not_done() {
        let (_p, f) = Promise::<u8>::new();
        assert_eq!(f.state(), FutureState::Pending);
        assert!(!f.done() && !f.running() && !f.cancelled());
    }

    #[test]
    fn cancel_succeeds_only_while_pending() {
        let (p, f) = Promise::<u8>::new();
        assert!(f.cancel());
        assert!(f.cancel(), "cancelling twice still reports cancelled");
        assert!(f.cancelled() && f.done());
        assert!(
            !p.set_running_or_notify_cancel(),
            "a cancelled task must be skipped"
        );
        assert_eq!(f.result(None), Err(Error::Cancelled));
    }

    #[test]
    fn cancel_of_a_running_future_returns_false() {
        let (p, f) = Promise::<u8>::new();
        assert!(p.set_running_or_notify_cancel());
        assert!(f.running());
        assert!(!f.cancel());
        assert!(p.set_result(1));
        assert!(!f.cancel(), "a finished future cannot be cancelled");
        assert_eq!(f.result(None), Ok(1));
    }

    #[test]
    fn result_times_out_on_a_pending_future_and_zero_timeout_does_not_block() {
        let (_p, f) = Promise::<u8>::new();
        assert_eq!(
            f.result(Some(Duration::ZERO)),
            Err(Error::timed_out(Duration::ZERO))
        );
        let t = Duration::from_millis(20);
        assert_eq!(f.result(Some(t)), Err(Error::timed_out(t)));
    }

    #[test]
    fn result_with_duration_max_waits_like_no_timeout() {
        let (p, f) = Promise::<u8>::new();
        let h = thread::spawn(move || {
            thread::sleep(Duration::from_millis(10));
            p.set_result(3)
        });
        assert_eq!(f.result(Some(Duration::MAX)), Ok(3));
        assert!(h.join().unwrap());
    }

    #[test]
    fn error_accessor_returns_none_on_success_and_the_error_on_failure() {
        let ok = Future::ready(Ok(1u8));
        assert_eq!(ok.error(None), Ok(None));
        let failed = Future::<u8>::ready(Err(Error::Broken("x".into())));
        assert_eq!(failed.error(None), Ok(Some(Error::Broken("x".into()))));
        assert_eq!(failed.result(None), Err(Error::Broken("x".into())));
        let (_p, cancelled) = Promise::<u8>::new();
        cancelled.cancel();
        assert_eq!(cancelled.error(None), Err(Error::Cancelled));
    }

    #[test]
    fn a_callback_added_to_a_done_future_runs_at_once() {
        let f = Future::ready(Ok(5u8));
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        f.add_done_callback(move |f| {
            s.store(f.result(None).unwrap() as usize, Ordering::SeqCst);
        });
        assert_eq!(seen.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn callbacks_run_once_in_order_when_the_future_finishes() {
        let (p, f) = Promise::<u8>::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        for i in 0..3 {
            let log = log.clone();
            f.add_done_callback(move |_| log.lock().unwrap().push(i));
        }
        assert!(log.lock().unwrap().is_empty());
        p.set_result(1);
        assert_eq!(*log.lock().unwrap(), [0, 1, 2]);
    }

    #[test]
    fn a_panicking_callback_does_not_stop_the_others() {
        let (p, f) = Promise::<u8>::new();
        let ran = Arc::new(AtomicUsize::new(0));
        f.add_done_callback(|_| panic!("callback failure"));
        let r = ran.clone();
        f.add_done_callback(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        });
        assert!(p.set_result(1));
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert_eq!(f.result(None), Ok(1));
    }

    #[test]
    fn cancelling_runs_the_callbacks() {
        let (_p, f) = Promise::<u8>::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        f.add_done_callback(move |f| {
            assert!(f.cancelled());
            r.fetch_add(1, Ordering::SeqCst);
        });
        f.cancel();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_future_resolves_exactly_once_when_cancel_and_completion_race() {
        for _ in 0..2_000 {
            let (p, f) = Promise::<u32>::new();
            let resolutions = Arc::new(AtomicUsize::new(0));
            let r = resolutions.clone();
            f.add_done_callback(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            });
            let f2 = f.clone();
            let canceller = thread::spawn(move || f2.cancel());
            let completer =
                thread::spawn(move || p.set_running_or_notify_cancel() && p.set_result(9));
            let cancelled = canceller.join().unwrap();
            let completed = completer.join().unwrap();
            assert!(cancelled != completed, "exactly one side wins");
            assert_eq!(resolutions.load(Ordering::SeqCst), 1);
            match f.result(None) {
                Ok(9) => assert!(completed),
                Err(Error::Cancelled) => assert!(cancelled),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn a_dropped_promise_breaks_its_future_instead_of_hanging() {
        let (p, f) = Promise::<u8>::new();
        drop(p);
        assert!(matches!(f.result(None), Err(Error::Broken(_))));
    }

    #[test]
    fn join_moves_the_value_out_and_later_reads_say_so() {
        let f = Future::ready(Ok(String::from("v")));
        let other = f.clone();
        assert_eq!(f.join(), Ok("v".to_string()));
        assert_eq!(other.result(None), Err(Error::ResultTaken));
        assert_eq!(other.error(None), Ok(None));
    }

    #[test]
    fn result_blocks_until_another_thread_completes_the_future() {
        let (p, f) = Promise::<u64>::new();
        let h = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            p.set_running_or_notify_cancel();
            p.set_result(42);
        });
        assert_eq!(f.result(Some(Duration::from_secs(10))), Ok(42));
        h.join().unwrap();
    }

    #[test]
    fn blocking_where_forbidden_returns_would_block_not_a_hang() {
        let (_p, f) = Promise::<u8>::new();
        thread::spawn(move || {
            crate::blocking::forbid_on_this_thread();
            assert_eq!(f.result(None), Err(Error::WouldBlock));
            assert!(!f.wait(None));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn terminate_calls_the_backends_terminator_only_while_running() {
        let (p, f) = Promise::<u8>::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        p.set_terminator(Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
            true
        }));
        assert!(p.set_running_or_notify_cancel());
        assert!(f.terminate());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        p.set_error(Error::Terminated("by request".into()));
        assert!(!f.terminate(), "a finished future cannot be terminated");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn terminate_of_a_pending_future_cancels_it() {
        let (_p, f) = Promise::<u8>::new();
        assert!(f.terminate());
        assert!(f.cancelled());
    }

    #[test]
    fn awaiting_a_future_yields_its_result() {
        let (p, f) = Promise::<u8>::new();
        let h = thread::spawn(move || {
            thread::sleep(Duration::from_millis(5));
            p.set_result(11)
        });
        assert_eq!(crate::conformance::block_on(f), Ok(11));
        assert!(h.join().unwrap());
    }

    #[test]
    fn a_deferred_outcome_is_made_once_by_the_first_reader_on_its_thread() {
        let made = Arc::new(AtomicUsize::new(0));
        let made_on = Arc::new(Mutex::new(None));
        let (p, f) = Promise::<u32>::new();
        let (m, on) = (made.clone(), made_on.clone());
        let h = thread::spawn(move || {
            p.set_deferred(move || {
                m.fetch_add(1, Ordering::SeqCst);
                *on.lock().unwrap() = Some(thread::current().id());
                Ok(5)
            })
        });
        assert!(h.join().unwrap(), "the promise resolved the future");
        assert!(f.done());
        assert_eq!(f.state(), FutureState::Finished);
        assert_eq!(made.load(Ordering::SeqCst), 0, "nothing made before a read");
        assert_eq!(f.error(None), Ok(None));
        assert_eq!(f.result(None), Ok(5));
        assert_eq!(f.clone().join(), Ok(5));
        assert_eq!(f.result(None), Err(Error::ResultTaken));
        assert_eq!(made.load(Ordering::SeqCst), 1, "made exactly once");
        assert_eq!(*made_on.lock().unwrap(), Some(thread::current().id()));
    }

    #[test]
    fn a_deferred_error_is_reported_to_every_reader_and_a_done_future_refuses_deferral() {
        let (p, f) = Promise::<u32>::new();
        assert!(p.set_deferred(|| Err(Error::Serialization("bad reply".into()))));
        let bad = Err(Error::Serialization("bad reply".into()));
        assert_eq!(f.result(None), bad);
        assert_eq!(f.clone().join(), bad);
        let (p, f) = Promise::<u32>::new();
        assert!(f.cancel());
        assert!(!p.set_deferred(|| Ok(1)), "already cancelled");
        assert_eq!(f.result(None), Err(Error::Cancelled));
    }
}
