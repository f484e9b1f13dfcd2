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

    /// The chunk size `map` uses when none is given, for `items` inputs. The default gives
    /// each worker about sixteen chunks ([`balanced_chunksize`] over `4 * max_workers`): few
    /// enough that per-chunk overhead vanishes on a large `map`, enough that a worker which
    /// finishes early finds more work. Python's default of 1 is the known trap this avoids.
    /// `map` then evens the chunks out and makes their number a multiple of the worker count.
    fn auto_chunksize(&self, items: usize) -> usize {
        balanced_chunksize(items, self.max_workers().saturating_mul(4))
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
    items.div_ceil(workers.max(1).saturating_mul(4)).max(1)
}

/// The sizes of `map`'s chunks for `total` inputs. A chunk size asked for is used as it is
/// (the last chunk takes the rest). The automatic one (`auto()` gives the executor's chunk size
/// and worker count) is turned into near-equal chunks, as many as it implies rounded up to a
/// multiple of the worker count, so that no worker is left running the last chunk alone.
fn chunk_sizes(
    total: usize,
    asked: Option<usize>,
    auto: impl FnOnce() -> (usize, usize),
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
    let (size, workers) = auto();
    let pieces = total.div_ceil(size.max(1));
    let pieces = if pieces > 1 {
        pieces
            .checked_next_multiple_of(workers.max(1))
            .map_or(total, |p| p.min(total))
    } else {
        pieces
    };
    let (base, extra) = (total / pieces, total % pieces);
    (0..pieces).map(|i| base + usize::from(i < extra)).collect()
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
        let sizes = chunk_sizes(total, options.chunksize, || {
            (self.auto_chunksize(total), self.max_workers())
        });
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
            ready: VecDeque::new(),
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
pub struct Map<R> {
    chunks: VecDeque<MapChunk<R>>,
    ready: VecDeque<Result<R, Error>>,
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

    /// Moves a finished chunk's outcomes into `ready`.
    fn unpack(&mut self, len: usize, outcome: Result<Vec<Result<R, Error>>, Error>) {
        match outcome {
            Ok(outcomes) => self.ready.extend(outcomes),
            Err(e) => self.ready.extend(std::iter::repeat_n(e, len).map(Err)),
        }
    }

    fn take_ready(&mut self) -> Option<Result<R, Error>> {
        let next = self.ready.pop_front()?;
        self.remaining -= 1;
        Some(next)
    }

    /// The next result, awaited rather than blocked on (the browser's form). The timeout
    /// does not apply here; race it against a timer if needed.
    pub async fn next_async(&mut self) -> Option<Result<R, Error>> {
        if self.ready.is_empty() {
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
        if self.ready.is_empty() {
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
    use super::chunk_sizes;

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
    fn automatic_chunks_are_even_and_a_multiple_of_the_worker_count() {
        // 100 inputs at about 4 a chunk on 2 workers: 26 chunks of 3 or 4, not 25 of 4.
        let sizes = chunk_sizes(100, None, || (4, 2));
        assert_eq!(sizes.len(), 26);
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(sizes.iter().all(|&s| s == 3 || s == 4));
        assert_eq!(
            chunk_sizes(3, None, || (1, 8)),
            [1, 1, 1],
            "never an empty chunk"
        );
        assert_eq!(chunk_sizes(5, None, || (5, 1)), [5]);
        assert_eq!(chunk_sizes(0, None, || (1, 2)), Vec::<usize>::new());
        assert_eq!(chunk_sizes(7, None, || (usize::MAX, usize::MAX)), [7]);
        assert_eq!(
            chunk_sizes(3, None, || (1, usize::MAX - 1)).len(),
            3,
            "no overflow"
        );
    }
}
