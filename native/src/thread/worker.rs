//! The life of one worker thread: run the initializer, then take jobs until the pool closes.
//!
//! The loop sees its pool only through [`Pool`], which the registry implements, so this module
//! does not depend on the registry (the registry starts these loops).

use crate::backend::Job;

use super::builder::{run_initializer, Initializer};

/// What a worker needs from its pool.
pub(crate) trait Pool {
    /// The initializer to run first, if any.
    fn initializer(&self) -> Option<&Initializer>;
    /// Marks the pool broken because an initializer failed, and fails what is queued.
    fn break_pool(&self, why: String);
    /// The next job; `None` once the pool is closed and its queue empty.
    fn next_job(&self) -> Option<Job>;
    /// True once an initializer failed.
    fn is_broken(&self) -> bool;
    /// Fails `job` with the pool's broken error.
    fn fail(&self, job: Job);
}

/// Runs in each worker thread until the queue is closed and empty.
pub(crate) fn main_loop(pool: &impl Pool, index: usize) {
    if let Some(initializer) = pool.initializer() {
        if let Err(why) = run_initializer(initializer) {
            log::error!("the initializer of worker thread {index} failed: {why}");
            pool.break_pool(why);
            return;
        }
    }
    while let Some(job) = pool.next_job() {
        if pool.is_broken() {
            pool.fail(job);
        } else {
            job.run_local();
        }
    }
}
