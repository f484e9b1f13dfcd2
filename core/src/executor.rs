//! The executor traits: [`Executor`], object-safe, which every backend implements, and
//! [`ExecutorExt`], the typed `submit` and `map` on top of it.
//!
//! The split mirrors `std::io::Read` and its extension traits: backends move type-erased
//! [`Job`]s, so a program can hold a `Vec<Box<dyn Executor>>` (the benchmark does); users call
//! the generic methods, which are available on every executor, `dyn` ones included.

use std::collections::VecDeque;
use std::future::{poll_fn, Future as _};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
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

    /// The chunk sizes `map` uses for `items` inputs when no chunk size is given, in input
    /// order. The default is [`factoring_chunks`] over `max_workers`: large chunks first, for
    /// few messages, then smaller and smaller ones, so the workers finish together. Python's
    /// default of one input per message is the known trap this avoids.
    fn auto_chunks(&self, items: usize) -> Vec<usize> {
        factoring_chunks(items, self.max_workers())
    }
}

/// The automatic chunk schedule: *factoring* (Hummel, Schonberg and Flynn, 1992) with a cap.
/// Chunks come in rounds of one per worker; each round hands out half of what is left, in
/// equal chunks, but no chunk holds more than an eighth of a worker's share. The capped first
/// rounds keep every stage of a process pool busy at once (encoding, sending, running and
/// decoding overlap: one huge first chunk would run them one after another); the halving
/// rounds keep the number of messages low (20 chunks for 100 inputs on 2 workers, 46 for a
/// million) and end on single inputs, so a worker that falls behind (a slower task, a busier
/// core) is made up for by the others, and every worker finishes within about one input's
/// time.
///
/// ```
/// use primepool_core::backend::factoring_chunks;
///
/// let mut expected = vec![7; 12];
/// expected.extend([4, 4, 2, 2, 1, 1, 1, 1]);
/// assert_eq!(factoring_chunks(100, 2), expected);
/// assert_eq!(factoring_chunks(3, 8), [1, 1, 1]);
/// assert!(factoring_chunks(0, 2).is_empty());
/// ```
pub fn factoring_chunks(items: usize, workers: usize) -> Vec<usize> {
    factoring_chunks_capped(items, workers, 8)
}

/// [`factoring_chunks`] with another cap: no chunk holds more than `1 / share_parts` of a
/// worker's share (`factoring_chunks` uses 8). A backend whose every chunk costs more (a
/// network round trip, a broker's work) takes fewer, larger chunks with a smaller number;
/// the schedule still halves what is left each round and ends on single inputs.
///
/// ```
/// use primepool_core::backend::{factoring_chunks, factoring_chunks_capped};
///
/// assert_eq!(factoring_chunks_capped(100, 2, 8), factoring_chunks(100, 2));
/// let larger = factoring_chunks_capped(100, 2, 4);
/// assert_eq!(larger, [13, 13, 13, 13, 12, 12, 6, 6, 3, 3, 2, 2, 1, 1]);
/// assert_eq!(larger.iter().sum::<usize>(), 100);
/// ```
pub fn factoring_chunks_capped(items: usize, workers: usize, share_parts: usize) -> Vec<usize> {
    let workers = workers.max(1);
    let cap = items
        .div_ceil(workers.saturating_mul(share_parts.max(1)))
        .max(1);
    let mut sizes = Vec::new();
    let mut left = items;
    while left > 0 {
        let size = left.div_ceil(workers.saturating_mul(2)).clamp(1, cap);
        for _ in 0..workers {
            let take = size.min(left);
            if take == 0 {
                break;
            }
            sizes.push(take);
            left -= take;
        }
    }
    sizes
}

/// A chunk size that gives each worker about four chunks. The Web Worker benchmark sizes its
/// messages with it.
///
/// ```
/// assert_eq!(primepool_core::backend::balanced_chunksize(100, 2), 13);
/// assert_eq!(primepool_core::backend::balanced_chunksize(3, 8), 1);
/// ```
pub fn balanced_chunksize(items: usize, workers: usize) -> usize {
    items.div_ceil(workers.max(1).saturating_mul(4)).max(1)
}

/// The sizes of `map`'s chunks for `total` inputs: a chunk size asked for is used as it is
/// (the last chunk takes the rest); without one, the executor's automatic schedule.
fn chunk_sizes(
    total: usize,
    asked: Option<usize>,
    auto: impl FnOnce() -> Vec<usize>,
) -> Vec<usize> {
    if let Some(size) = asked {
        let size = size.max(1);
        let full = total / size;
        let mut sizes = vec![size; full];
        if total % size > 0 {
            sizes.push(total % size);
        }
        return sizes;
    }
    if total == 0 {
        return Vec::new();
    }
    auto()
}

/// Options for [`ExecutorExt::map_with`], set with builder methods (more may be added
/// without breaking callers).
///
/// ```
/// use primepool_core::{ExecutorExt, MapOptions, SerialExecutor};
/// use std::time::Duration;
///
/// let pool = SerialExecutor::new();
/// let options = MapOptions::new()
///     .chunksize(4)
///     .timeout(Duration::from_secs(60))
///     .buffersize(16);
/// // An endless input: only 16 are pulled ahead of what is read.
/// let first: Vec<u64> = pool
///     .map_with(|x: u64| x * 2, 0.., options)
///     .unwrap()
///     .take(3)
///     .collect::<Result<_, _>>()
///     .unwrap();
/// assert_eq!(first, [0, 2, 4]);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapOptions {
    chunksize: Option<usize>,
    timeout: Option<Duration>,
    buffersize: Option<usize>,
}

impl MapOptions {
    /// Default options: automatic chunk size, no timeout, every input taken up front.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inputs per job (one message each on process and Web Worker pools). `None` (the
    /// default): the executor's [`auto_chunks`](Executor::auto_chunks). Zero is an error.
    pub fn chunksize(mut self, chunksize: impl Into<Option<usize>>) -> Self {
        self.chunksize = chunksize.into();
        self
    }

    /// How long the whole map may take, counted from the `map` call, as in Python. `None`
    /// (the default): no limit.
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.timeout = timeout.into();
        self
    }

    /// Python 3.14's `buffersize`: at most `n` inputs are submitted and not yet yielded.
    /// Inputs are then pulled lazily, as results are read, so an endless iterator works and
    /// memory stays bounded; dropping the map stops pulling and cancels the buffered chunks
    /// that have not started. Counted in inputs, not chunks: chunks hold up to the chunk size
    /// (at most `n`; without one, a quarter of the buffer's share per worker), and a new chunk
    /// is pulled once there is room for a whole one. `None` (the default): every input is
    /// taken up front. Zero is an error.
    pub fn buffersize(mut self, n: impl Into<Option<usize>>) -> Self {
        self.buffersize = n.into();
        self
    }
}

/// The typed API, available on every [`Executor`].
pub trait ExecutorExt: Executor {
    /// Schedules `f(arg)` and returns its future. `f` is a plain function (an `fn` item or a
    /// non-capturing closure), so the call can be shipped to another process or Web Worker.
    fn submit<A: Value, R: Value>(&self, f: fn(A) -> R, arg: A) -> Result<Future<R>, Error> {
        let (promise, future) = Promise::new();
        self.execute(Job::call(f, arg, promise))?;
        Ok(future)
    }

    /// Calls `f` on every input; the results come back in input order. All calls are scheduled
    /// before this returns. See [`map_with`](ExecutorExt::map_with).
    fn map<'a, A: Value, R: Value, I>(
        &'a self,
        f: fn(A) -> R,
        inputs: I,
    ) -> Result<Map<'a, R>, Error>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        self.map_with(f, inputs, MapOptions::default())
    }

    /// Shuts down from async code without blocking the runtime's thread: stops taking work at
    /// once (`shutdown(wait = false, cancel_futures)`), then waits for the running work on a
    /// helper thread and resolves the returned future when it is done, as
    /// `shutdown(wait = true)` would return. The helper drops this handle last, so if it was
    /// the last one the executor is dropped there too, off the runtime's thread.
    ///
    /// Where no thread can be started (the browser without threads) the future resolves at
    /// once with [`Error::WouldBlock`]: the executor takes no more work, but nothing here can
    /// wait for the rest; await its futures instead.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use primepool_core::{Executor, ExecutorExt, SerialExecutor};
    ///
    /// let pool: Arc<dyn Executor> = Arc::new(SerialExecutor::new());
    /// let done = pool.clone().shutdown_async(false);
    /// // In async code: `done.await`.
    /// assert_eq!(done.join(), Ok(()));
    /// assert!(pool.submit(|x: u8| x, 1).is_err());
    /// ```
    fn shutdown_async(self: Arc<Self>, cancel_futures: bool) -> Future<()>
    where
        Self: 'static,
    {
        self.shutdown(false, cancel_futures);
        let (promise, future) = Promise::new();
        let promise = Arc::new(Mutex::new(Some(promise)));
        let resolve = Arc::clone(&promise);
        let spawned = std::thread::Builder::new()
            .name("primepool-shutdown".into())
            .spawn(move || {
                self.shutdown(true, false);
                drop(self);
                if let Some(promise) = take(&resolve) {
                    promise.set_result(());
                }
            });
        if let Err(e) = spawned {
            log::debug!("no thread to wait for the shutdown on: {e}");
            if let Some(promise) = take(&promise) {
                promise.set_error(Error::WouldBlock);
            }
        }
        future
    }

    /// [`map`](ExecutorExt::map) with a chunk size, a timeout and a buffer size. A task's
    /// error is yielded at its position, when the iteration reaches it, not before.
    ///
    /// Each chunk is one [`Job`] with one future for all its calls (as Python's process pool
    /// does), so a large `map` costs one shared state per chunk, not per input; cancelling
    /// works per chunk. Without a buffer size every input is taken and scheduled before this
    /// returns; with one, the first chunks are, and the rest as results are read.
    fn map_with<'a, A: Value, R: Value, I>(
        &'a self,
        f: fn(A) -> R,
        inputs: I,
        options: MapOptions,
    ) -> Result<Map<'a, R>, Error>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        if options.chunksize == Some(0) {
            return Err(Error::invalid("chunksize must be at least 1"));
        }
        if options.buffersize == Some(0) {
            return Err(Error::invalid("buffersize must be at least 1"));
        }
        let deadline = options
            .timeout
            .and_then(|t| web_time::Instant::now().checked_add(t));
        let mut map = Map {
            chunks: VecDeque::new(),
            ready: Vec::new().into_iter(),
            remaining: 0,
            deadline,
            timeout: options.timeout,
            begun: false,
            buffered: options.buffersize.is_some(),
            feed: None,
            alarm: None,
        };
        if let Some(capacity) = options.buffersize {
            let chunk = options
                .chunksize
                .unwrap_or_else(|| balanced_chunksize(capacity, self.max_workers()))
                .min(capacity);
            let mut inputs = inputs.into_iter();
            let pull = move |size: usize| -> Result<Option<(MapChunk<R>, bool)>, Error> {
                let args: Vec<A> = inputs.by_ref().take(size).collect();
                if args.is_empty() {
                    return Ok(None);
                }
                let len = args.len();
                let (job, future) = Job::chunk(f, args);
                self.execute(job)?;
                Ok(Some((MapChunk { future, len }, len == size)))
            };
            map.feed = Some(Feed {
                pull: Box::new(pull),
                capacity,
                chunk,
            });
            map.fill()?;
            return Ok(map);
        }
        let inputs: Vec<A> = inputs.into_iter().collect();
        let total = inputs.len();
        let sizes = chunk_sizes(total, options.chunksize, || self.auto_chunks(total));
        debug_assert_eq!(
            sizes.iter().sum::<usize>(),
            total,
            "chunks cover the inputs"
        );
        let mut jobs = Vec::with_capacity(sizes.len());
        map.chunks.reserve(sizes.len());
        let mut inputs = inputs.into_iter();
        for size in sizes {
            let args: Vec<A> = inputs.by_ref().take(size).collect();
            let len = args.len();
            let (job, future) = Job::chunk(f, args);
            map.chunks.push_back(MapChunk { future, len });
            jobs.push(job);
        }
        map.remaining = total;
        self.execute_batch(jobs)?;
        Ok(map)
    }
}

impl<E: Executor + ?Sized> ExecutorExt for E {}

/// Takes the promise out of its shared slot (whoever comes first resolves it).
fn take<T>(slot: &Mutex<Option<Promise<T>>>) -> Option<Promise<T>> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Executors whose tasks run in this process (serial, threads, rayon), which can therefore
/// take capturing closures as well as plain functions. Process and Web Worker pools do not
/// implement it: a closure cannot leave the process, and the compiler says so.
///
/// ```
/// use primepool_core::{InProcessExecutor, SerialExecutor};
///
/// let pool = SerialExecutor::new();
/// let words = vec!["con", "current"];
/// let joined = pool.submit_closure(move || words.concat()).unwrap();
/// assert_eq!(joined.join().unwrap(), "concurrent");
/// ```
pub trait InProcessExecutor: Executor {
    /// Schedules a closure, which may capture anything `'static`, and returns its future.
    fn submit_closure<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<Future<R>, Error> {
        let (promise, future) = Promise::new();
        self.execute(Job::closure(f, promise))?;
        Ok(future)
    }
}

/// The future of one `map` chunk: every call's outcome, in input order.
pub type ChunkFuture<R> = Future<Vec<Result<R, Error>>>;

#[derive(Debug)]
struct MapChunk<R> {
    future: ChunkFuture<R>,
    len: usize,
}

/// Pulls the next chunk of up to `n` inputs and submits it: the chunk, and whether the
/// inputs may have more. `None`: they ended.
type Pull<'a, R> = Box<dyn FnMut(usize) -> Result<Option<(MapChunk<R>, bool)>, Error> + Send + 'a>;

/// The lazily read inputs of a map with a buffer size.
struct Feed<'a, R> {
    pull: Pull<'a, R>,
    /// The buffer size: inputs submitted and not yet yielded, at most.
    capacity: usize,
    /// Inputs per chunk.
    chunk: usize,
}

impl<R> std::fmt::Debug for Feed<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("capacity", &self.capacity)
            .field("chunk", &self.chunk)
            .finish_non_exhaustive()
    }
}

/// The results of a `map`, in input order; also a [`Stream`](futures_core::Stream).
///
/// Iterating blocks on each chunk in turn; [`next_async`](Map::next_async) (or the `Stream`)
/// awaits instead. A task's error is yielded in its place and iteration goes on; a chunk that
/// failed as a whole (its worker died) yields its error once per input; a timeout, or
/// [`Error::WouldBlock`] where blocking is impossible, is yielded once, then the chunks not
/// started are cancelled and iteration ends. With a buffer size, a failure to submit a later
/// chunk (the pool was shut down) is yielded once after the results before it, and iteration
/// ends.
///
/// Dropping a `Map` whose iteration has not begun lets every task run, as Python does (so
/// `pool.map(f, xs)?` alone still does the work, though the results are lost: hence
/// `#[must_use]`); dropping it once iteration has begun cancels the chunks that have not
/// started. A map with a buffer size stops pulling inputs when dropped and cancels the buffered
/// chunks that have not started, begun or not.
#[derive(Debug)]
#[must_use = "a map's results are read by iterating it; dropped unread, its tasks still run"]
pub struct Map<'a, R> {
    chunks: VecDeque<MapChunk<R>>,
    /// The outcomes of the chunk being yielded (taken from its future, not copied).
    ready: std::vec::IntoIter<Result<R, Error>>,
    /// Results submitted (or yielded in `ready`) and not yet taken.
    remaining: usize,
    deadline: Option<web_time::Instant>,
    timeout: Option<Duration>,
    /// A result was asked for: dropping now cancels what has not started.
    begun: bool,
    /// Made with a buffer size.
    buffered: bool,
    /// The inputs not yet pulled, for a map with a buffer size; `None` once they ended.
    feed: Option<Feed<'a, R>>,
    /// Wakes an awaiting task at the deadline.
    alarm: Option<crate::timer::Alarm>,
}

impl<R> Map<'_, R> {
    /// How many results have not been taken yet; for a map with a buffer size, of the inputs
    /// pulled so far.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// The futures of the chunks not yet reached, each with its number of inputs: for progress
    /// reports, `wait`, or `terminate` (with a buffer size: the buffered ones). Taking results
    /// from them directly leaves `Map` with [`Error::ResultTaken`] for those inputs; observe
    /// them, do not `join` them.
    pub fn chunks(&self) -> impl Iterator<Item = (&ChunkFuture<R>, usize)> {
        self.chunks.iter().map(|c| (&c.future, c.len))
    }

    /// Pulls and submits chunks while the buffer has room for a whole one.
    fn fill(&mut self) -> Result<(), Error> {
        while let Some(feed) = &mut self.feed {
            if feed.capacity.saturating_sub(self.remaining) < feed.chunk {
                break;
            }
            match (feed.pull)(feed.chunk) {
                Ok(Some((chunk, more))) => {
                    self.remaining += chunk.len;
                    self.chunks.push_back(chunk);
                    if !more {
                        self.feed = None;
                    }
                }
                Ok(None) => self.feed = None,
                Err(e) => {
                    self.feed = None;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Ends the iteration: stops pulling and cancels the chunks that have not started.
    fn end(&mut self) {
        self.feed = None;
        self.chunks.drain(..).for_each(|c| {
            c.future.cancel();
        });
        self.remaining = 0;
    }

    /// Makes a finished chunk's outcomes the ones to yield next.
    fn unpack(&mut self, len: usize, outcome: Result<Vec<Result<R, Error>>, Error>) {
        self.ready = match outcome {
            Ok(outcomes) => outcomes.into_iter(),
            Err(e) => std::iter::repeat_n(e, len)
                .map(Err)
                .collect::<Vec<_>>()
                .into_iter(),
        };
    }

    /// The next outcome of the chunk being yielded, then room made for the next chunk. A
    /// failure to submit it is yielded after the chunks already submitted.
    fn take_ready(&mut self) -> Option<Result<R, Error>> {
        let next = self.ready.next()?;
        self.remaining -= 1;
        if let Err(e) = self.fill() {
            self.chunks.push_back(MapChunk {
                future: Future::ready(Err(e)),
                len: 1,
            });
            self.remaining += 1;
        }
        Some(next)
    }

    fn timed_out(&mut self) -> Option<Result<R, Error>> {
        self.end();
        Some(Err(Error::timed_out(self.timeout.unwrap_or_default())))
    }

    /// The async step (`next_async` and the `Stream`): the next result once its chunk is
    /// done, or the time-out at the deadline, for which an alarm wakes the task (see
    /// [`crate::timer`]).
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<R, Error>>> {
        self.begun = true;
        if self.ready.len() == 0 {
            let Some(chunk) = self.chunks.front_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(&mut chunk.future).poll(cx) {
                Poll::Ready(outcome) => {
                    let len = chunk.len;
                    self.chunks.pop_front();
                    self.unpack(len, outcome);
                }
                Poll::Pending => {
                    if let Some(deadline) = self.deadline {
                        if web_time::Instant::now() >= deadline {
                            return Poll::Ready(self.timed_out());
                        }
                        self.alarm
                            .get_or_insert_with(|| crate::timer::Alarm::at(deadline))
                            .arm(cx.waker());
                    }
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(self.take_ready())
    }

    /// The next result, awaited rather than blocked on (the browser's form). The map's
    /// timeout applies: at the deadline the time-out is yielded, as [`Iterator::next`] does.
    pub async fn next_async(&mut self) -> Option<Result<R, Error>> {
        poll_fn(|cx| self.poll_step(cx)).await
    }

    /// Awaits every result, in input order.
    pub async fn collect_async(mut self) -> Vec<Result<R, Error>> {
        let mut out = Vec::with_capacity(self.remaining);
        while let Some(result) = self.next_async().await {
            out.push(result);
        }
        out
    }
}

// A `Map` is never pinned in place: its results are moved out, never borrowed across polls.
impl<R> Unpin for Map<'_, R> {}

impl<R> futures_core::Stream for Map<'_, R> {
    type Item = Result<R, Error>;

    /// Like [`Map::next_async`], the timeout included.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_step(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        Iterator::size_hint(self)
    }
}

impl<R> Iterator for Map<'_, R> {
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.begun = true;
        if self.ready.len() == 0 {
            let chunk = self.chunks.front()?;
            let left = self
                .deadline
                .map(|d| d.saturating_duration_since(web_time::Instant::now()));
            if !chunk.future.wait(left) {
                if !blocking::allowed() {
                    // Once: a `for` loop on a thread that must not block ends.
                    self.end();
                    return Some(Err(Error::WouldBlock));
                }
                return self.timed_out();
            }
            let chunk = self.chunks.pop_front()?;
            let outcome = chunk.future.join();
            self.unpack(chunk.len, outcome);
        }
        self.take_ready()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.feed {
            Some(_) => (self.remaining, None),
            None => (self.remaining, Some(self.remaining)),
        }
    }
}

impl<R> Drop for Map<'_, R> {
    fn drop(&mut self) {
        if self.begun || self.buffered {
            self.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{chunk_sizes, factoring_chunks, Executor, ExecutorExt, MapOptions};
    use crate::{job::Job, Error};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// An executor that holds its jobs until told to run them: a pool whose workers are busy.
    #[derive(Default)]
    struct Held(Mutex<Vec<Job>>);

    impl Executor for Held {
        fn name(&self) -> &'static str {
            "held"
        }
        fn max_workers(&self) -> usize {
            2
        }
        fn execute(&self, job: Job) -> Result<(), Error> {
            self.0.lock().unwrap().push(job);
            Ok(())
        }
        fn shutdown(&self, _wait: bool, _cancel_futures: bool) {}
    }

    impl Held {
        fn run_all(&self) {
            let jobs = std::mem::take(&mut *self.0.lock().unwrap());
            jobs.into_iter().for_each(Job::run_local);
        }
    }

    fn double(x: u64) -> u64 {
        x * 2
    }

    #[test]
    fn an_unread_map_runs_every_task_and_a_begun_one_cancels_the_rest() {
        let pool = Held::default();
        let map = pool
            .map_with(double, 0..6, MapOptions::new().chunksize(1))
            .unwrap();
        let chunks: Vec<_> = map.chunks().map(|(f, _)| f.clone()).collect();
        drop(map);
        pool.run_all();
        for f in &chunks {
            assert_eq!(
                f.state(),
                crate::FutureState::Finished,
                "never read: still runs"
            );
        }
        let mut map = pool
            .map_with(double, 0..6, MapOptions::new().chunksize(1))
            .unwrap();
        let chunks: Vec<_> = map.chunks().map(|(f, _)| f.clone()).collect();
        let first = pool.0.lock().unwrap().remove(0);
        first.run_local();
        assert_eq!(map.next(), Some(Ok(0)));
        drop(map);
        assert!(
            chunks[1..].iter().all(|f| f.cancelled()),
            "begun: the rest is cancelled"
        );
    }

    #[test]
    fn a_map_where_blocking_is_forbidden_yields_would_block_once_then_ends() {
        std::thread::spawn(|| {
            crate::blocking::forbid_on_this_thread();
            let pool = Held::default();
            let got: Vec<_> = pool.map(double, 0..4).unwrap().take(5).collect();
            assert_eq!(got, [Err(Error::WouldBlock)]);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_buffered_map_pulls_only_what_the_buffer_holds() {
        let pool = Held::default();
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let inputs = (0..).inspect(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let options = MapOptions::new().buffersize(6).chunksize(2);
        let mut map = pool.map_with(double, inputs, options).unwrap();
        assert_eq!(pulled.load(Ordering::SeqCst), 6, "three chunks of two");
        assert_eq!(map.chunks().count(), 3);
        pool.run_all();
        assert_eq!(map.next(), Some(Ok(0)));
        assert_eq!(
            pulled.load(Ordering::SeqCst),
            6,
            "no room for a chunk of two yet"
        );
        assert_eq!(map.next(), Some(Ok(2)));
        assert_eq!(
            pulled.load(Ordering::SeqCst),
            8,
            "one chunk pulled for two yielded"
        );
        let chunks: Vec<_> = map.chunks().map(|(f, _)| f.clone()).collect();
        drop(map);
        assert!(
            chunks.last().unwrap().cancelled(),
            "not started: cancelled on drop"
        );
        assert_eq!(pulled.load(Ordering::SeqCst), 8, "dropping stops pulling");
    }

    #[test]
    fn a_zero_buffersize_is_an_error() {
        let err = Held::default()
            .map_with(double, 0.., MapOptions::new().buffersize(0))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }

    #[test]
    fn a_buffered_map_yields_a_failed_submit_after_the_results_before_it() {
        struct Refuses(AtomicUsize);
        impl Executor for Refuses {
            fn name(&self) -> &'static str {
                "refuses"
            }
            fn max_workers(&self) -> usize {
                1
            }
            fn execute(&self, job: Job) -> Result<(), Error> {
                if self.0.fetch_add(1, Ordering::SeqCst) >= 2 {
                    return Err(Error::ShutDown);
                }
                job.run_local();
                Ok(())
            }
            fn shutdown(&self, _wait: bool, _cancel_futures: bool) {}
        }
        let pool = Refuses(AtomicUsize::new(0));
        let got: Vec<_> = pool
            .map_with(double, 0.., MapOptions::new().buffersize(2).chunksize(1))
            .unwrap()
            .take(10)
            .collect();
        assert_eq!(got, [Ok(0), Ok(2), Err(Error::ShutDown)]);
    }

    #[test]
    fn next_async_yields_the_time_out_at_the_deadline_without_a_finished_chunk() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pool = Held::default();
            let options = MapOptions::new().timeout(Duration::from_millis(30));
            let mut map = pool.map_with(double, 0..4, options).unwrap();
            let first = crate::conformance::block_on(map.next_async());
            let after = crate::conformance::block_on(map.next_async());
            tx.send((first, after)).unwrap();
        });
        let (first, after) = rx.recv_timeout(Duration::from_secs(60)).expect("no hang");
        assert_eq!(
            first,
            Some(Err(Error::timed_out(Duration::from_millis(30))))
        );
        assert_eq!(after, None);
    }

    #[test]
    fn a_map_is_a_stream_of_its_results_in_order() {
        use futures_core::Stream;
        let pool = crate::SerialExecutor::new();
        let mut map = pool
            .map_with(double, 0..5, MapOptions::new().chunksize(2))
            .unwrap();
        assert_eq!(Stream::size_hint(&map), (5, Some(5)));
        let got = crate::conformance::block_on(async {
            let mut out = Vec::new();
            while let Some(r) =
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut map).poll_next(cx)).await
            {
                out.push(r.unwrap());
            }
            out
        });
        assert_eq!(got, [0, 2, 4, 6, 8]);
    }

    #[test]
    fn an_asked_chunk_size_is_kept_and_the_last_chunk_takes_the_rest() {
        assert_eq!(chunk_sizes(10, Some(4), || unreachable!()), [4, 4, 2]);
        assert_eq!(chunk_sizes(8, Some(4), || unreachable!()), [4, 4]);
        assert_eq!(
            chunk_sizes(0, Some(4), || unreachable!()),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn automatic_chunks_are_capped_then_halve_what_is_left_down_to_one_input() {
        for workers in [1, 2, 3, 8, 64] {
            for items in [0, 1, 2, 7, 100, 1_000, 200_000] {
                let sizes = chunk_sizes(items, None, || factoring_chunks(items, workers));
                assert_eq!(sizes.iter().sum::<usize>(), items, "{items} on {workers}");
                assert!(sizes.iter().all(|&s| s > 0), "never an empty chunk");
                assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "never growing");
                // No chunk holds more than an eighth of a worker's share.
                let cap = items.div_ceil(8 * workers).max(1);
                assert!(sizes.iter().all(|&s| s <= cap), "{sizes:?}");
                // The last round's chunks are single inputs, so workers end together.
                if items >= workers {
                    assert_eq!(sizes.last(), Some(&1), "{items} on {workers}");
                }
                // Few messages: eight per worker for the capped rounds, then about two per
                // worker for each halving.
                let halvings = (usize::BITS - items.leading_zeros()) as usize;
                let bound = 2 * workers * halvings + 8 * workers;
                assert!(sizes.len() <= bound, "{} > {bound}", sizes.len());
            }
        }
        assert_eq!(
            factoring_chunks(10, 0),
            factoring_chunks(10, 1),
            "no worker: one"
        );
        assert_eq!(factoring_chunks(7, usize::MAX), [1; 7], "no overflow");
    }

    #[test]
    fn a_serial_map_is_one_chunk() {
        let serial = crate::SerialExecutor::new();
        assert_eq!(serial.auto_chunks(100), [100]);
        assert!(serial.auto_chunks(0).is_empty());
    }
}
