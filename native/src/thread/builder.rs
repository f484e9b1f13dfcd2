//! [`ThreadPoolBuilder`]: the options of Python's `ThreadPoolExecutor(...)` constructor.

use std::fmt;
use std::sync::Arc;

use crate::Error;

use super::ThreadPoolExecutor;

/// A worker initializer, type-erased: `Err` carries the text of the failure.
pub(crate) type Initializer = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Runs an initializer, a panic included: the text a broken pool reports, if it failed.
pub(crate) fn run_initializer(initializer: &Initializer) -> Result<(), String> {
    match crate::backend::catch_panic(|| initializer()) {
        Ok(result) => result,
        Err(panicked) => Err(format!("it panicked: {panicked}")),
    }
}

/// The reason a pool whose initializer failed with `why` gives for being broken.
pub(crate) fn broken_by_initializer(why: &str) -> String {
    format!("initializer failed: {why}")
}

/// Wraps a user's initializer as the pools keep it (thread and rayon pools alike).
pub(crate) fn initializer<E: fmt::Display>(
    initializer: impl Fn() -> Result<(), E> + Send + Sync + 'static,
) -> Initializer {
    Arc::new(move || initializer().map_err(|e| e.to_string()))
}

/// The options the thread pool and the rayon pool share (Python's constructor options), held
/// by [`ThreadPoolBuilder`] and [`RayonBuilder`](crate::RayonBuilder) alike.
#[derive(Clone)]
pub(crate) struct PoolOptions {
    /// The thread count asked for; `None`: the pool's own default.
    pub(crate) max_workers: Option<usize>,
    /// Threads are named `<prefix>_<index>`.
    pub(crate) thread_name_prefix: String,
    /// Runs once in each thread before its first task.
    pub(crate) initializer: Option<Initializer>,
}

impl PoolOptions {
    /// No worker count, no initializer, threads named after `default_prefix`.
    pub(crate) fn new(default_prefix: &str) -> Self {
        PoolOptions {
            max_workers: None,
            thread_name_prefix: default_prefix.to_owned(),
            initializer: None,
        }
    }

    /// The thread count: the one asked for, else `default()`; zero is an invalid argument.
    pub(crate) fn worker_count(&self, default: impl FnOnce() -> usize) -> Result<usize, Error> {
        match self.max_workers.unwrap_or_else(default) {
            0 => Err(Error::invalid("max_workers must be at least 1")),
            n => Ok(n),
        }
    }

    /// The builder's `Debug` form under its own name (the initializer shown as present or not).
    pub(crate) fn debug(&self, f: &mut fmt::Formatter<'_>, builder: &str) -> fmt::Result {
        f.debug_struct(builder)
            .field("max_workers", &self.max_workers)
            .field("thread_name_prefix", &self.thread_name_prefix)
            .field("initializer", &self.initializer.is_some())
            .finish()
    }
}

/// The three setters of a builder that holds its [`PoolOptions`] as `options`, written once
/// for the thread and rayon builders; each pool gives each setter its own doc comment (the
/// pools differ in when threads start and initializers run).
macro_rules! pool_option_setters {
    (
        $(#[$max_workers:meta])* max_workers;
        $(#[$thread_name_prefix:meta])* thread_name_prefix;
        $(#[$initializer:meta])* initializer;
    ) => {
        $(#[$max_workers])*
        pub fn max_workers(mut self, max_workers: usize) -> Self {
            self.options.max_workers = Some(max_workers);
            self
        }

        $(#[$thread_name_prefix])*
        pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
            self.options.thread_name_prefix = prefix.into();
            self
        }

        $(#[$initializer])*
        pub fn initializer<E: ::std::fmt::Display>(
            mut self,
            initializer: impl Fn() -> Result<(), E> + Send + Sync + 'static,
        ) -> Self {
            self.options.initializer = Some($crate::thread::builder::initializer(initializer));
            self
        }
    };
}
pub(crate) use pool_option_setters;

/// The prefix of worker thread names when none is given.
pub const DEFAULT_THREAD_NAME_PREFIX: &str = "primepool-thread";

/// Python's default worker count, `min(32, cpus + 4)`: enough threads to keep the cores busy
/// when some tasks wait on I/O, without one thread per core on very large machines.
pub fn default_max_workers() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus + 4).min(32)
}

/// Configures a [`ThreadPoolExecutor`] with the options of Python's constructor
/// (`max_workers`, `thread_name_prefix`, `initializer`).
///
/// ```
/// use primepool::{InProcessExecutor, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::builder()
///     .max_workers(2)
///     .thread_name_prefix("resizer")
///     .initializer(|| -> Result<(), String> { Ok(()) })
///     .build()
///     .unwrap();
/// let name = pool
///     .submit_closure(|| std::thread::current().name().map(str::to_owned))
///     .unwrap();
/// assert_eq!(name.join().unwrap().as_deref(), Some("resizer_0"));
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct ThreadPoolBuilder {
    /// The options the thread and rayon pools share.
    pub(crate) options: PoolOptions,
}

impl fmt::Debug for ThreadPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.options.debug(f, "ThreadPoolBuilder")
    }
}

impl Default for ThreadPoolBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ThreadPoolBuilder {
    /// Python's defaults: [`default_max_workers`] threads named
    /// `primepool-thread_<index>`, no initializer.
    pub fn new() -> Self {
        ThreadPoolBuilder {
            options: PoolOptions::new(DEFAULT_THREAD_NAME_PREFIX),
        }
    }

    pool_option_setters! {
        /// The most threads the pool starts; zero is rejected by [`build`](Self::build).
        max_workers;
        /// Worker threads are named `<prefix>_<index>` (index from 0, in start order), so they
        /// can be told apart in a debugger, a profiler or a panic message.
        thread_name_prefix;
        /// Runs `initializer` once in each worker thread before its first task, to set up
        /// per-thread state. If it fails (returns `Err` or panics), the pool is broken, as in
        /// Python: pending and later tasks fail with [`Error::Broken`], whose text quotes the
        /// error.
        initializer;
    }

    /// Makes the pool. No thread starts until work arrives.
    pub fn build(self) -> Result<ThreadPoolExecutor, Error> {
        ThreadPoolExecutor::from_builder(self)
    }
}

#[cfg(test)]
mod tests {
    use crate::{RayonBuilder, ThreadPoolBuilder};

    #[test]
    fn both_builders_debug_their_shared_options_under_their_own_name() {
        let threads = ThreadPoolBuilder::new()
            .max_workers(3)
            .thread_name_prefix("crawler")
            .initializer(|| -> Result<(), String> { Ok(()) });
        assert_eq!(
            format!("{threads:?}"),
            r#"ThreadPoolBuilder { max_workers: Some(3), thread_name_prefix: "crawler", initializer: true }"#
        );
        assert_eq!(
            format!("{:?}", RayonBuilder::new()),
            r#"RayonBuilder { max_workers: None, thread_name_prefix: "primepool-rayon", initializer: false }"#
        );
    }

    #[test]
    fn both_builders_refuse_zero_workers_alike() {
        let threads = ThreadPoolBuilder::new().max_workers(0).build().unwrap_err();
        let rayon = RayonBuilder::new().max_workers(0).build().unwrap_err();
        assert_eq!(threads, rayon);
        assert!(
            matches!(threads, crate::Error::InvalidArgument(_)),
            "{threads}"
        );
    }
}
