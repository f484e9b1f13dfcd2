//! [`Job`]: the type-erased unit of work that crosses the object-safe [`Executor`] trait.
//!
//! A job is work with exactly one [`Promise`]: a `submit` is one call to a function
//! ([`Job::call`]); a `map` chunk is many calls to one function with one promise for all their
//! outcomes ([`Job::chunk`]), so a large `map` costs one shared state per chunk; a closure
//! ([`Job::closure`]) runs only in this process. Backends never see the argument and result
//! types: they either run the job here ([`Job::run_local`]: threads, rayon, serial) or ship it
//! ([`Job::start`], [`Job::task_fn`], [`Job::encode_args`], then [`Job::complete_encoded`] with
//! the reply: processes, Web Workers).
//!
//! [`Executor`]: crate::Executor

use std::sync::Arc;

use crate::call::{self, Outcome, Part, TaskFn, Value};
use crate::error::Error;
use crate::future::{Future, Promise};
use crate::panic;

/// Work with the promise of its future: one call, a chunk of calls, or a closure.
#[must_use = "a dropped Job never runs: its future resolves with Error::Broken"]
pub struct Job {
    inner: Box<dyn Erased>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("len", &self.len()).finish()
    }
}

/// What a [`Job`] does, with its types erased.
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
    fn on_cancel(&self, hook: Box<dyn FnOnce() + Send>);
}

/// The typed side of a job: what runs and how its result travels. Every job has one promise
/// ([`WithPromise`]), so the promise handling is written once.
trait Work: Send + 'static {
    /// What the job's one future resolves to.
    type Output: Send + 'static;
    /// How many calls.
    fn len(&self) -> usize;
    /// The shippable function, if the work can leave this process.
    fn task_fn(&self) -> Option<TaskFn>;
    /// The arguments, encoded for [`TaskFn::invoke`].
    fn encode_args(&self) -> Result<Vec<u8>, Error>;
    /// Runs here; panics become [`Error::Panicked`].
    fn run(self) -> Result<Self::Output, Error>;
    /// Reads a worker's reply to the encoded arguments of `calls` calls.
    fn decode(bytes: &[u8], calls: usize) -> Result<Self::Output, Error>;
    /// Whether a worker's reply is decoded by the future's first reader rather than on the
    /// thread that receives it: worth a copy of the reply only when it is large.
    const DECODE_ON_READ: bool = false;
}

/// Decodes a worker's reply to `calls` calls (the output of [`TaskFn::invoke`]): one outcome
/// per call, in order, panics as [`Error::Panicked`]. A reply that does not decode, or holds
/// the wrong number of outcomes, is an [`Error::Serialization`].
fn decode_outcomes<R: Value>(bytes: &[u8], calls: usize) -> Result<Vec<Result<R, Error>>, Error> {
    let outcomes = call::decode_part::<Vec<Outcome<R>>>(bytes, Part::Result)?;
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

/// A `submit`: one call to `f`.
struct Call<A, R> {
    f: fn(A) -> R,
    arg: A,
}

impl<A: Value, R: Value> Work for Call<A, R> {
    type Output = R;

    fn len(&self) -> usize {
        1
    }

    fn task_fn(&self) -> Option<TaskFn> {
        Some(TaskFn::new(self.f))
    }

    fn encode_args(&self) -> Result<Vec<u8>, Error> {
        // The wire carries a chunk of arguments (`Vec<A>`); a call is a chunk of one.
        call::encode_part(std::slice::from_ref(&self.arg), Part::Argument)
    }

    fn run(self) -> Result<R, Error> {
        let Call { f, arg } = self;
        panic::catch(|| f(arg)).map_err(Error::Panicked)
    }

    fn decode(bytes: &[u8], _calls: usize) -> Result<R, Error> {
        decode_outcomes::<R>(bytes, 1)?
            .pop()
            .unwrap_or_else(|| unreachable!("decode_outcomes checked there is one outcome"))
    }
}

/// A `map` chunk: `f` on each argument, one outcome per call, in order. One shared state per
/// chunk instead of one per call is what makes a large `map` cheap.
struct Chunk<A, R> {
    f: fn(A) -> R,
    args: Vec<A>,
}

impl<A: Value, R: Value> Work for Chunk<A, R> {
    type Output = Vec<Result<R, Error>>;
    /// A `map` chunk's reply holds many outcomes: its consumer decodes them, so a pool's
    /// I/O thread only moves bytes and the decoding runs beside it instead of in line.
    const DECODE_ON_READ: bool = true;

    fn len(&self) -> usize {
        self.args.len()
    }

    fn task_fn(&self) -> Option<TaskFn> {
        Some(TaskFn::new(self.f))
    }

    fn encode_args(&self) -> Result<Vec<u8>, Error> {
        call::encode_part(&self.args, Part::Argument)
    }

    fn run(self) -> Result<Self::Output, Error> {
        let Chunk { f, args } = self;
        Ok(args
            .into_iter()
            .map(|arg| panic::catch(|| f(arg)).map_err(Error::Panicked))
            .collect())
    }

    fn decode(bytes: &[u8], calls: usize) -> Result<Self::Output, Error> {
        decode_outcomes::<R>(bytes, calls)
    }
}

/// A (possibly capturing) closure: it runs only in this process.
struct Closure<R> {
    f: Box<dyn FnOnce() -> R + Send>,
}

impl<R: Send + 'static> Work for Closure<R> {
    type Output = R;

    fn len(&self) -> usize {
        1
    }

    fn task_fn(&self) -> Option<TaskFn> {
        None
    }

    fn encode_args(&self) -> Result<Vec<u8>, Error> {
        Err(Error::Serialization(
            "a closure cannot leave this process; submit a plain fn to this executor".into(),
        ))
    }

    fn run(self) -> Result<R, Error> {
        panic::catch(self.f).map_err(Error::Panicked)
    }

    fn decode(_bytes: &[u8], _calls: usize) -> Result<R, Error> {
        Err(Error::Serialization(
            "a closure job cannot take an encoded result".into(),
        ))
    }
}

/// Work and the promise of its one future.
struct WithPromise<W: Work> {
    work: W,
    promise: Promise<W::Output>,
}

impl<W: Work> Erased for WithPromise<W> {
    fn len(&self) -> usize {
        self.work.len()
    }

    fn task_fn(&self) -> Option<TaskFn> {
        self.work.task_fn()
    }

    fn start(&mut self) -> usize {
        if self.promise.set_running_or_notify_cancel() {
            self.work.len()
        } else {
            0
        }
    }

    fn encode_args(&self) -> Result<Vec<u8>, Error> {
        self.work.encode_args()
    }

    fn run_local(self: Box<Self>) {
        let WithPromise { work, promise } = *self;
        if promise.set_running_or_notify_cancel() {
            promise.set_outcome(work.run());
        }
    }

    fn complete_encoded(self: Box<Self>, bytes: &[u8]) {
        let calls = self.work.len();
        if W::DECODE_ON_READ {
            let bytes = bytes.to_vec();
            self.promise.set_deferred(move || W::decode(&bytes, calls));
        } else {
            self.promise.set_outcome(W::decode(bytes, calls));
        }
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

    fn on_cancel(&self, hook: Box<dyn FnOnce() + Send>) {
        let future = self.promise.future();
        let observed = future.clone();
        future.on_done(move || {
            if observed.cancelled() {
                hook();
            }
        });
    }
}

impl Job {
    fn new<W: Work>(work: W, promise: Promise<W::Output>) -> Job {
        Job {
            inner: Box::new(WithPromise { work, promise }),
        }
    }

    /// A job calling `f(arg)` and completing `promise` with the outcome (a `submit`).
    pub fn call<A: Value, R: Value>(f: fn(A) -> R, arg: A, promise: Promise<R>) -> Job {
        Job::new(Call { f, arg }, promise)
    }

    /// A `map` chunk: `f` on each argument, with one future for the chunk's outcomes, in order.
    /// Cancelling that future cancels the whole chunk, as in Python's process pool.
    pub fn chunk<A: Value, R: Value>(
        f: fn(A) -> R,
        args: Vec<A>,
    ) -> (Job, Future<Vec<Result<R, Error>>>) {
        let (promise, future) = Promise::new();
        (Job::new(Chunk { f, args }, promise), future)
    }

    /// A job running a (possibly capturing) closure. It can only run in this process:
    /// [`encode_args`](Job::encode_args) fails for it.
    pub fn closure<R: Send + 'static>(
        f: impl FnOnce() -> R + Send + 'static,
        promise: Promise<R>,
    ) -> Job {
        Job::new(Closure { f: Box::new(f) }, promise)
    }

    /// How many calls the job holds: 1 for a call or a closure, the chunk's length for a chunk.
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

    /// Before shipping: marks the job's future as running, unless it was cancelled. Returns how
    /// many calls to send (zero: it was cancelled, nothing to send).
    pub fn start(&mut self) -> usize {
        self.inner.start()
    }

    /// The arguments, encoded (a postcard `Vec<A>`, of one for a call), for
    /// [`TaskFn::invoke`] on the far side.
    pub fn encode_args(&self) -> Result<Vec<u8>, Error> {
        self.inner.encode_args()
    }

    /// Runs the job here, unless its future was cancelled: a chunk's calls in order. Panics
    /// become [`Error::Panicked`] (per call, in a chunk).
    pub fn run_local(self) {
        self.inner.run_local()
    }

    /// Completes the job's future from the encoded reply of [`TaskFn::invoke`]. Bytes that do
    /// not decode, or hold the wrong number of outcomes, fail it with
    /// [`Error::Serialization`].
    pub fn complete_encoded(self, bytes: &[u8]) {
        self.inner.complete_encoded(bytes)
    }

    /// Fails the job's future with `error` (e.g. the worker holding the job died).
    pub fn fail(self, error: Error) {
        self.inner.fail(error)
    }

    /// Cancels the job's future if it has not started (for `shutdown(cancel_futures = true)`).
    pub fn cancel(self) {
        self.inner.cancel()
    }

    /// Lets [`Future::terminate`](crate::Future::terminate) on the job's future call `stop`
    /// while the job runs.
    pub fn set_terminator(&self, stop: Arc<dyn Fn() -> bool + Send + Sync>) {
        self.inner.set_terminator(stop)
    }

    /// Runs `hook` when the job's future is cancelled (at once, on this thread, if it already
    /// is; otherwise on the thread that cancels it), and never if it ends any other way. A
    /// backend whose queue lives elsewhere (the cluster's stream) uses it to take a cancelled
    /// job out of that queue. The hook must be quick and must not block.
    pub fn on_cancel(&self, hook: impl FnOnce() + Send + 'static) {
        self.inner.on_cancel(Box::new(hook))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plus_one(x: u32) -> u32 {
        x + 1
    }

    fn call(x: u32) -> (Job, Future<u32>) {
        let (p, f) = Promise::new();
        (Job::call(plus_one, x, p), f)
    }

    /// What a worker would answer: runs the shipped job's function on its encoded arguments.
    fn reply(job: &Job) -> Vec<u8> {
        job.task_fn()
            .unwrap()
            .invoke(&job.encode_args().unwrap())
            .unwrap()
    }

    #[test]
    fn a_shipped_call_completes_from_the_reply_and_a_cancelled_one_is_not_started() {
        let (mut jobs, futures): (Vec<_>, Vec<_>) = (0..3).map(call).unzip();
        assert!(futures[1].cancel());
        let started: Vec<usize> = jobs.iter_mut().map(Job::start).collect();
        assert_eq!(started, [1, 0, 1], "a cancelled call has nothing to send");
        assert!(futures[0].running() && futures[2].running());
        for (job, started) in jobs.into_iter().zip(started) {
            if started > 0 {
                let reply = reply(&job);
                job.complete_encoded(&reply);
            }
        }
        assert_eq!(futures[0].result(None), Ok(1));
        assert_eq!(futures[1].result(None), Err(Error::Cancelled));
        assert_eq!(futures[2].result(None), Ok(3));
    }

    #[test]
    fn a_reply_with_the_wrong_count_fails_the_job_instead_of_misassigning() {
        // A call answered with two outcomes must not take the first.
        let (mut job, future) = call(1);
        assert_eq!(job.start(), 1);
        let two = call::encode(&vec![Outcome::Returned(5u32), Outcome::Returned(6u32)]).unwrap();
        job.complete_encoded(&two);
        assert!(matches!(future.result(None), Err(Error::Serialization(_))));
        // A chunk of two answered with one outcome must not yield a short list.
        let (mut job, future) = Job::chunk(plus_one, vec![1, 2]);
        assert_eq!(job.start(), 2);
        let one = call::encode(&vec![Outcome::Returned(5u32)]).unwrap();
        job.complete_encoded(&one);
        assert!(matches!(future.result(None), Err(Error::Serialization(_))));
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
        let reply = reply(&job);
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
    fn the_cancel_hook_runs_once_for_a_cancelled_job_and_never_for_a_finished_one() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = |hits: &Arc<AtomicUsize>| {
            let hits = hits.clone();
            move || {
                hits.fetch_add(1, Ordering::SeqCst);
            }
        };
        let (job, future) = call(1);
        job.on_cancel(counter(&hits));
        assert!(future.cancel());
        assert!(future.cancel(), "cancelling again is harmless");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        job.on_cancel(counter(&hits));
        assert_eq!(hits.load(Ordering::SeqCst), 2, "already cancelled: at once");
        let (job, future) = call(2);
        job.on_cancel(counter(&hits));
        job.run_local();
        assert_eq!(future.result(None), Ok(3));
        assert_eq!(
            hits.load(Ordering::SeqCst),
            2,
            "a finished job is not cancelled"
        );
    }

    #[test]
    fn failing_a_job_fails_its_future_with_that_very_error() {
        let gone = Error::Broken("gone".into());
        let (job, future) = call(1);
        job.fail(gone.clone());
        assert_eq!(future.result(None), Err(gone.clone()));
        let (job, chunk) = Job::chunk(plus_one, vec![1, 2]);
        job.fail(gone.clone());
        assert_eq!(chunk.result(None), Err(gone));
    }
}
