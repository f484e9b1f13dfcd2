//! [`ThreadPoolExecutor`]: a pool of OS threads (placeholder; see issue 3).

/// A pool of OS threads implementing [`Executor`](crate::Executor).
#[derive(Debug)]
pub struct ThreadPoolExecutor;
