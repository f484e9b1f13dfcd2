//! The executor traits: [`Executor`], object-safe, which every backend implements, and
//! [`ExecutorExt`], the typed `submit` and `map` on top of it.
//!
//! The split mirrors `std::io::Read` and its extension traits: backends move type-erased
//! [`Job`]s, so a program can hold a `Vec<Box<dyn Executor>>` (the benchmark does); users call
//! the generic methods, which are available on every executor, `dyn` ones included.

use std::collections::VecDeque;
use std::time::Duration;

use crate::blocking;
use crate::call::Value;
use crate::error::Error;
use crate::future::{Future, Promise};
use crate::job::Job;

/// A pool that runs tasks: the object-safe core every backend implements.
///
/// Dropping an executor must behave like `shutdown(wait = true, cancel_futures = false)`
/// (Python's `with` block); where blocking is impossible it shuts down without waiting (see
/// [`crate::blocking`]).
pub trait Executor: Send + Sync {
    /// A short name for the backend (`"serial"`, `"threads"`, `"rayon"`, `"processes"`, ...).
    fn name(&self) -> &'static str;

    /// The most tasks this executor runs at the same time.
    fn max_workers(&self) -> usize;

    /// Schedules `job`. After shutdown this fails with [`Error::ShutDown`] and drops the job.
    fn execute(&self, job: Job) -> Result<(), Error>;

    /// Schedules many jobs at once; backends override it to hand them over in one batch.
    fn execute_batch(&self, jobs: Vec<Job>) -> Result<(), Error> {
        jobs.into_iter().try_for_each(|job| self.execute(job))
    }

    /// Stops accepting work. With `cancel_futures`, every task not yet started is cancelled;
    /// with `wait`, returns only when running tasks have finished and workers are released.
    /// Calling it again is harmless.
    fn shutdown(&self, wait: bool, cancel_futures: bool);

    /// The chunk size `map` uses when none is given, for `items` inputs.
    fn auto_chunksize(&self, items: usize) -> usize {
        let _ = items;
        1
    }
}

/// A chunk size that gives each worker about four chunks: few enough messages to keep a
/// process or Web Worker pool's overhead low, enough to balance uneven tasks. Backends whose
/// per-task cost is high return this from [`Executor::auto_chunksize`].
///
/// ```
/// assert_eq!(primepool_core::executor::balanced_chunksize(100, 2), 13);
/// assert_eq!(primepool_core::executor::balanced_chunksize(3, 8), 1);
/// ```
pub fn balanced_chunksize(items: usize, workers: usize) -> usize {
    items.div_ceil(workers.max(1) * 4).max(1)
}

/// Options for [`ExecutorExt::map_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapOptions {
    /// Inputs per job (one message each on process and Web Worker pools). `None`: the
    /// executor's [`auto_chunksize`](Executor::auto_chunksize). Zero is an error.
    pub chunksize: Option<usize>,
    /// How long the whole map may take, counted from the `map` call, as in Python.
    pub timeout: Option<Duration>,
}

impl MapOptions {
    /// Default options: automatic chunk size, no timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the chunk size.
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = Some(chunksize);
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// The typed API, available on every [`Executor`].
pub trait ExecutorExt: Executor {
    /// Schedules `f(arg)` and returns its future. `f` is a plain function (an `fn` item or a
    /// non-capturing closure), so the call can be shipped to another process or Web Worker.
    fn submit<A: Value, R: Value>(&self, f: fn(A) -> R, arg: A) -> Result<Future<R>, Error> {
        let (promise, future) = Promise::new();
        self.execute(Job::calls(f, vec![(arg, promise)]))?;
        Ok(future)
    }

    /// Calls `f` on every input; the results come back in input order. All calls are scheduled
    /// before this returns. See [`map_with`](ExecutorExt::map_with).
    fn map<A: Value, R: Value>(
        &self,
        f: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
    ) -> Result<Map<R>, Error> {
        self.map_with(f, inputs, MapOptions::default())
    }

    /// [`map`](ExecutorExt::map) with a chunk size and a timeout. A task's error is yielded at
    /// its position, when the iteration reaches it, not before.
    fn map_with<A: Value, R: Value>(
        &self,
        f: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
        options: MapOptions,
    ) -> Result<Map<R>, Error> {
        if options.chunksize == Some(0) {
            return Err(Error::invalid("chunksize must be at least 1"));
        }
        let deadline = options
            .timeout
            .and_then(|t| web_time::Instant::now().checked_add(t));
        let inputs: Vec<A> = inputs.into_iter().collect();
        let chunksize = options
            .chunksize
            .unwrap_or_else(|| self.auto_chunksize(inputs.len()))
            .max(1);
        let mut futures = VecDeque::with_capacity(inputs.len());
        let mut jobs = Vec::with_capacity(inputs.len().div_ceil(chunksize));
        let mut inputs = inputs.into_iter().peekable();
        while inputs.peek().is_some() {
            let chunk = inputs
                .by_ref()
                .take(chunksize)
                .map(|arg| {
                    let (promise, future) = Promise::new();
                    futures.push_back(future);
                    (arg, promise)
                })
                .collect();
            jobs.push(Job::calls(f, chunk));
        }
        let map = Map {
            futures,
            deadline,
            timeout: options.timeout,
        };
        self.execute_batch(jobs)?;
        Ok(map)
    }
}

impl<E: Executor + ?Sized> ExecutorExt for E {}

/// The results of a `map`, in input order.
///
/// Iterating blocks on each result in turn (yielding [`Error::WouldBlock`] where blocking is
/// impossible); [`next_async`](Map::next_async) awaits instead. A task's error is yielded in its
/// place and iteration goes on; a timeout is yielded once, then the remaining tasks are
/// cancelled and iteration ends. Dropping a `Map` cancels the calls that have not started.
#[derive(Debug)]
pub struct Map<R> {
    futures: VecDeque<Future<R>>,
    deadline: Option<web_time::Instant>,
    timeout: Option<Duration>,
}

impl<R> Map<R> {
    /// How many results have not been taken yet.
    pub fn remaining(&self) -> usize {
        self.futures.len()
    }

    /// The futures of the results not taken yet, for `wait` or `as_completed`. They are no
    /// longer cancelled when dropped.
    pub fn into_futures(mut self) -> Vec<Future<R>> {
        std::mem::take(&mut self.futures).into()
    }

    /// The next result, awaited rather than blocked on (the browser's form). The timeout
    /// does not apply here; race it against a timer if needed.
    pub async fn next_async(&mut self) -> Option<Result<R, Error>> {
        let future = self.futures.pop_front()?;
        Some(future.await)
    }

    /// Awaits every result, in input order.
    pub async fn collect_async(mut self) -> Vec<Result<R, Error>> {
        let mut out = Vec::with_capacity(self.futures.len());
        while let Some(result) = self.next_async().await {
            out.push(result);
        }
        out
    }
}

impl<R> Iterator for Map<R> {
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let future = self.futures.front()?;
        let left = self
            .deadline
            .map(|d| d.saturating_duration_since(web_time::Instant::now()));
        if !future.wait(left) {
            if !blocking::allowed() {
                return Some(Err(Error::WouldBlock));
            }
            self.futures.drain(..).for_each(|f| {
                f.cancel();
            });
            return Some(Err(Error::TimedOut(self.timeout.unwrap_or_default())));
        }
        self.futures.pop_front().map(Future::join)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.futures.len(), Some(self.futures.len()))
    }
}

impl<R> Drop for Map<R> {
    fn drop(&mut self) {
        for future in &self.futures {
            future.cancel();
        }
    }
}
