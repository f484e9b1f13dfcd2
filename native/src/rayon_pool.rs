//! [`RayonExecutor`]: the executor API on a rayon pool (placeholder; see issue 3).

/// An executor on its own `rayon::ThreadPool`.
#[derive(Debug)]
pub struct RayonExecutor;
