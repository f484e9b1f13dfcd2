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
    let workers = workers.max(1);
    let cap = items.div_ceil(workers.saturating_mul(8)).max(1);
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

/// Options for [`ExecutorExt::map_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapOptions {
    /// Inputs per job (one message each on process and Web Worker pools). `None`: the
    /// executor's [`auto_chunks`](Executor::auto_chunks). Zero is an error.
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
        self.execute(Job::call(f, arg, promise))?;
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
    ///
    /// Each chunk is one [`Job`] with one future for all its calls (as Python's process pool
    /// does), so a large `map` costs one shared state per chunk, not per input; cancelling
    /// works per chunk.
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
        let total = inputs.len();
        let sizes = chunk_sizes(total, options.chunksize, || self.auto_chunks(total));
        debug_assert_eq!(
            sizes.iter().sum::<usize>(),
            total,
            "chunks cover the inputs"
        );
        let mut chunks = VecDeque::with_capacity(sizes.len());
        let mut jobs = Vec::with_capacity(sizes.len());
        let mut inputs = inputs.into_iter();
        for size in sizes {
            let args: Vec<A> = inputs.by_ref().take(size).collect();
            let len = args.len();
            let (job, future) = Job::chunk(f, args);
            chunks.push_back(MapChunk { future, len });
            jobs.push(job);
        }
        let map = Map {
            chunks,
            ready: Vec::new().into_iter(),
            remaining: total,
            deadline,
            timeout: options.timeout,
        };
        self.execute_batch(jobs)?;
        Ok(map)
    }
}

impl<E: Executor + ?Sized> ExecutorExt for E {}

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

/// The results of a `map`, in input order.
///
/// Iterating blocks on each chunk in turn (yielding [`Error::WouldBlock`] where blocking is
/// impossible); [`next_async`](Map::next_async) awaits instead. A task's error is yielded in its
/// place and iteration goes on; a chunk that failed as a whole (its worker died) yields its
/// error once per input; a timeout is yielded once, then the remaining chunks are cancelled and
/// iteration ends. Dropping a `Map` cancels the chunks that have not started.
#[derive(Debug)]
#[must_use = "dropping a Map cancels the chunks that have not started: iterate or collect it"]
pub struct Map<R> {
    chunks: VecDeque<MapChunk<R>>,
    /// The outcomes of the chunk being yielded (taken from its future, not copied).
    ready: std::vec::IntoIter<Result<R, Error>>,
    remaining: usize,
    deadline: Option<web_time::Instant>,
    timeout: Option<Duration>,
}

impl<R> Map<R> {
    /// How many results have not been taken yet.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// The futures of the chunks not yet reached, each with its number of inputs: for progress
    /// reports, `wait`, or `terminate`. Taking results from them directly leaves `Map` with
    /// [`Error::ResultTaken`] for those inputs; observe them, do not `join` them.
    pub fn chunks(&self) -> impl Iterator<Item = (&ChunkFuture<R>, usize)> {
        self.chunks.iter().map(|c| (&c.future, c.len))
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

    fn take_ready(&mut self) -> Option<Result<R, Error>> {
        let next = self.ready.next()?;
        self.remaining -= 1;
        Some(next)
    }

    /// The next result, awaited rather than blocked on (the browser's form). The timeout
    /// does not apply here; race it against a timer if needed.
    pub async fn next_async(&mut self) -> Option<Result<R, Error>> {
        if self.ready.len() == 0 {
            let chunk = self.chunks.pop_front()?;
            let outcome = chunk.future.await;
            self.unpack(chunk.len, outcome);
        }
        self.take_ready()
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

impl<R> Iterator for Map<R> {
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ready.len() == 0 {
            let chunk = self.chunks.front()?;
            let left = self
                .deadline
                .map(|d| d.saturating_duration_since(web_time::Instant::now()));
            if !chunk.future.wait(left) {
                if !blocking::allowed() {
                    return Some(Err(Error::WouldBlock));
                }
                self.chunks.drain(..).for_each(|c| {
                    c.future.cancel();
                });
                self.remaining = 0;
                return Some(Err(Error::TimedOut(self.timeout.unwrap_or_default())));
            }
            let chunk = self.chunks.pop_front()?;
            let outcome = chunk.future.join();
            self.unpack(chunk.len, outcome);
        }
        self.take_ready()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<R> Drop for Map<R> {
    fn drop(&mut self) {
        for chunk in &self.chunks {
            chunk.future.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{chunk_sizes, factoring_chunks, Executor};

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
