//! [`Job`]: the type-erased unit of work that crosses the object-safe [`Executor`] trait.
//!
//! A job is a chunk of calls to one function: a single `submit` is one call with the
//! [`Promise`] of its future; a `map` chunk is many calls with one promise for all their
//! outcomes ([`Job::chunk`]), so a large `map` costs one shared state per chunk. Backends never
//! see the argument
//! and result types: they either run the job here ([`Job::run_local`]: threads, rayon, serial)
//! or ship it ([`Job::start`], [`Job::task_fn`], [`Job::encode_args`], then
//! [`Job::complete_encoded`] with the reply: processes, Web Workers).
//!
//! [`Executor`]: crate::Executor

use std::sync::Arc;

use crate::call::{self, Outcome, TaskFn, Value};
use crate::error::Error;
use crate::future::{Future, Promise};
use crate::panic;

/// A chunk of calls to one function, with the promises of their futures.
pub struct Job {
    inner: Box<dyn Erased>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("len", &self.len()).finish()
    }
}

trait Erased: Send {
    fn len(&self) -> usize;
    fn task_fn(&self) -> Option<TaskFn>;
    fn start(&mut self) -> usize;
    fn encode_args(&self) -> Result<Vec<u8>, Error>;
    fn run_local(self: Box<Self>);
    fn complete_encoded(self: Box<Self>, bytes: &[u8]);
    fn fail(self: Box<Self>, error: Error);
    fn cancel(self: Box<Self>);
    fn set_terminator(&self, stop: Arc<dyn Fn() -> bool + Send + Sync>);
}

/// Decodes a worker's reply to `calls` calls (the output of [`TaskFn::invoke`]): one outcome
/// per call, in order, panics as [`Error::Panicked`]. A reply that does not decode, or holds
/// the wrong number of outcomes, is an [`Error::Serialization`].
fn decode_outcomes<R: Value>(bytes: &[u8], calls: usize) -> Result<Vec<Result<R, Error>>, Error> {
    let outcomes = call::decode::<Vec<Outcome<R>>>(bytes)?;
    if outcomes.len() != calls {
        return Err(Error::Serialization(format!(
            "the worker answered {} results for {calls} calls",
            outcomes.len()
        )));
    }
    Ok(outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Outcome::Returned(r) => Ok(r),
            Outcome::Panicked(p) => Err(Error::Panicked(p)),
        })
        .collect())
}

struct Calls<A, R> {
    f: fn(A) -> R,
    items: Vec<(A, Promise<R>)>,
}

impl<A: Value, R: Value> Erased for Calls<A, R> {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn task_fn(&self) -> Option<TaskFn> {
        Some(TaskFn::new(self.f))
    }

    fn start(&mut self) -> usize {
        self.items.retain(|(_, p)| p.set_running_or_notify_cancel());
        self.items.len()
    }

    fn encode_args(&self) -> Result<Vec<u8>, Error> {
        let args: Vec<&A> = self.items.iter().map(|(a, _)| a).collect();
        call::encode(&args)
    }

    fn run_local(self: Box<Self>) {
        let f = self.f;
        for (arg, promise) in self.items {
            if promise.set_running_or_notify_cancel() {
                promise.set_outcome(panic::catch(|| f(arg)).map_err(Error::Panicked));
            }
        }
    }

    fn complete_encoded(self: Box<Self>, bytes: &[u8]) {
        match decode_outcomes::<R>(bytes, self.items.len()) {
            Ok(outcomes) => {
                for ((_, promise), outcome) in self.items.into_iter().zip(outcomes) {
                    promise.set_outcome(outcome);
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(self: Box<Self>, error: Error) {
        for (_, promise) in self.items {
            promise.set_error(error.clone());
        }
    }

    fn cancel(self: Box<Self>) {
        for (_, promise) in self.items {
            promise.cancel();
        }
    }

    fn set_terminator(&self, stop: Arc<dyn Fn() -> bool + Send + Sync>) {
        for (_, promise) in &self.items {
            promise.set_terminator(stop.clone());
        }
    }
}

/// A `map` chunk: one future for the whole chunk, holding each call's outcome in order. One
/// shared state per chunk instead of one per call is what makes a large `map` cheap.
struct Chunk<A, R> {
    f: fn(A) -> R,
    args: Vec<A>,
    promise: Promise<Vec<Result<R, Error>>>,
}

impl<A: Value, R: Value> Erased for Chunk<A, R> {
    fn len(&self) -> usize {
        self.args.len()
    }

    fn task_fn(&self) -> Option<TaskFn> {
        Some(TaskFn::new(self.f))
    }

    fn start(&mut self) -> usize {
        if self.promise.set_running_or_notify_cancel() {
            self.args.len()
        } else {
            0
        }
    }

    fn encode_args(&self) -> Result<Vec<u8>, Error> {
        call::encode(&self.args)
    }

    fn run_local(self: Box<Self>) {
        let Chunk { f, args, promise } = *self;
        if promise.set_running_or_notify_cancel() {
            let outcomes = args
                .into_iter()
                .map(|arg| panic::catch(|| f(arg)).map_err(Error::Panicked))
                .collect();
            promise.set_result(outcomes);
        }
    }

    fn complete_encoded(self: Box<Self>, bytes: &[u8]) {
        let outcome = decode_outcomes::<R>(bytes, self.args.len());
        self.promise.set_outcome(outcome);
    }

    fn fail(self: Box<Self>, error: Error) {
        self.promise.set_error(error);
    }

    fn cancel(self: Box<Self>) {
        self.promise.cancel();
    }

    fn set_terminator(&self, stop: Arc<dyn Fn() -> bool + Send + Sync>) {
        self.promise.set_terminator(stop);
    }
}

struct Closure<R> {
    f: Box<dyn FnOnce() -> R + Send>,
    promise: Promise<R>,
}

impl<R: Send + 'static> Erased for Closure<R> {
    fn len(&self) -> usize {
        1
    }

    fn task_fn(&self) -> Option<TaskFn> {
        None
    }

    fn start(&mut self) -> usize {
        usize::from(self.promise.set_running_or_notify_cancel())
    }

    fn encode_args(&self) -> Result<Vec<u8>, Error> {
        Err(Error::Serialization(
            "a closure cannot leave this process; submit a plain fn to this executor".into(),
        ))
    }

    fn run_local(self: Box<Self>) {
        let Closure { f, promise } = *self;
        if promise.set_running_or_notify_cancel() {
            promise.set_outcome(panic::catch(f).map_err(Error::Panicked));
        }
    }

    fn complete_encoded(self: Box<Self>, _bytes: &[u8]) {
        let message = "a closure job cannot take an encoded result".to_owned();
        self.promise.set_error(Error::Serialization(message));
    }

    fn fail(self: Box<Self>, error: Error) {
        self.promise.set_error(error);
    }

    fn cancel(self: Box<Self>) {
        self.promise.cancel();
    }

    fn set_terminator(&self, stop: Arc<dyn Fn() -> bool + Send + Sync>) {
        self.promise.set_terminator(stop);
    }
}

impl Job {
    /// A job calling `f` on each argument, completing the paired promise.
    pub fn calls<A: Value, R: Value>(f: fn(A) -> R, items: Vec<(A, Promise<R>)>) -> Job {
        Job {
            inner: Box::new(Calls { f, items }),
        }
    }

    /// A `map` chunk: `f` on each argument, with one future for the chunk's outcomes, in order.
    /// Cancelling that future cancels the whole chunk, as in Python's process pool.
    pub fn chunk<A: Value, R: Value>(
        f: fn(A) -> R,
        args: Vec<A>,
    ) -> (Job, Future<Vec<Result<R, Error>>>) {
        let (promise, future) = Promise::new();
        let job = Job {
            inner: Box::new(Chunk { f, args, promise }),
        };
        (job, future)
    }

    /// A job running a (possibly capturing) closure. It can only run in this process:
    /// [`encode_args`](Job::encode_args) fails for it.
    pub fn closure<R: Send + 'static>(
        f: impl FnOnce() -> R + Send + 'static,
        promise: Promise<R>,
    ) -> Job {
        Job {
            inner: Box::new(Closure {
                f: Box::new(f),
                promise,
            }),
        }
    }

    /// How many calls the job holds.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True if the job holds no calls.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shippable identity of the function, or `None` for a closure job.
    pub fn task_fn(&self) -> Option<TaskFn> {
        self.inner.task_fn()
    }

    /// Before shipping: marks every pending call as running and drops the cancelled ones.
    /// Returns how many calls remain (zero: nothing to send).
    pub fn start(&mut self) -> usize {
        self.inner.start()
    }

    /// The remaining calls' arguments, encoded (a postcard `Vec<A>`), for
    /// [`TaskFn::invoke`] on the far side.
    pub fn encode_args(&self) -> Result<Vec<u8>, Error> {
        self.inner.encode_args()
    }

    /// Runs every call here, in order, skipping cancelled ones; panics become
    /// [`Error::Panicked`].
    pub fn run_local(self) {
        self.inner.run_local()
    }

    /// Completes every call from the encoded reply of [`TaskFn::invoke`]. Bytes that do not
    /// decode, or hold the wrong number of outcomes, fail the calls with
    /// [`Error::Serialization`].
    pub fn complete_encoded(self, bytes: &[u8]) {
        self.inner.complete_encoded(bytes)
    }

    /// Fails every call with `error` (e.g. the worker holding them died).
    pub fn fail(self, error: Error) {
        self.inner.fail(error)
    }

    /// Cancels every call that has not started (for `shutdown(cancel_futures = true)`).
    pub fn cancel(self) {
        self.inner.cancel()
    }

    /// Lets [`Future::terminate`](crate::Future::terminate) on any of the job's futures call
    /// `stop` while the job runs.
    pub fn set_terminator(&self, stop: Arc<dyn Fn() -> bool + Send + Sync>) {
        self.inner.set_terminator(stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plus_one(x: u32) -> u32 {
        x + 1
    }

    fn jobs(n: u32) -> (Job, Vec<Future<u32>>) {
        let (items, futures): (Vec<_>, Vec<_>) = (0..n)
            .map(|i| {
                let (p, f) = Promise::new();
                ((i, p), f)
            })
            .unzip();
        (Job::calls(plus_one, items), futures)
    }

    #[test]
    fn a_shipped_job_skips_cancelled_calls_and_completes_the_rest_from_the_reply() {
        let (mut job, futures) = jobs(3);
        assert!(futures[1].cancel());
        assert_eq!(job.start(), 2);
        assert!(futures[0].running() && futures[2].running());
        let reply = job
            .task_fn()
            .unwrap()
            .invoke(&job.encode_args().unwrap())
            .unwrap();
        job.complete_encoded(&reply);
        assert_eq!(futures[0].result(None), Ok(1));
        assert_eq!(futures[1].result(None), Err(Error::Cancelled));
        assert_eq!(futures[2].result(None), Ok(3));
    }

    #[test]
    fn a_reply_with_the_wrong_count_fails_the_calls_instead_of_misassigning() {
        let (mut job, futures) = jobs(2);
        job.start();
        let reply = call::encode(&vec![Outcome::Returned(5u32)]).unwrap();
        job.complete_encoded(&reply);
        for f in futures {
            assert!(matches!(f.result(None), Err(Error::Serialization(_))));
        }
    }

    #[test]
    fn a_chunk_job_holds_every_outcome_in_order_under_one_future() {
        fn odd_panics(x: u32) -> u32 {
            assert!(x % 2 == 0, "odd");
            x
        }
        let (job, local) = Job::chunk(odd_panics, vec![2, 3, 4]);
        job.run_local();
        let outcomes = local.join().unwrap();
        assert_eq!(outcomes[0], Ok(2));
        assert!(matches!(&outcomes[1], Err(Error::Panicked(p)) if p.message == "odd"));
        assert_eq!(outcomes[2], Ok(4));

        let (mut job, shipped) = Job::chunk(odd_panics, vec![6, 8]);
        assert_eq!(job.start(), 2);
        let reply = job
            .task_fn()
            .unwrap()
            .invoke(&job.encode_args().unwrap())
            .unwrap();
        job.complete_encoded(&reply);
        assert_eq!(shipped.join(), Ok(vec![Ok(6), Ok(8)]));
    }

    #[test]
    fn a_cancelled_chunk_is_not_started() {
        let (mut job, future) = Job::chunk(plus_one, vec![1, 2]);
        assert!(future.cancel());
        assert_eq!(job.start(), 0);
        assert_eq!(future.result(None), Err(Error::Cancelled));
    }

    #[test]
    fn a_closure_job_runs_locally_and_refuses_to_be_encoded() {
        let (p, f) = Promise::new();
        let captured = String::from("captured");
        let job = Job::closure(move || captured.len(), p);
        assert!(job.task_fn().is_none());
        assert!(matches!(job.encode_args(), Err(Error::Serialization(_))));
        job.run_local();
        assert_eq!(f.result(None), Ok(8));
    }

    #[test]
    fn failing_a_job_fails_each_future_with_the_same_error() {
        let (job, futures) = jobs(2);
        job.fail(Error::Broken("gone".into()));
        for f in futures {
            assert_eq!(f.result(None), Err(Error::Broken("gone".into())));
        }
    }
}
