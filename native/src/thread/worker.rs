//! The life of one worker thread: run the initializer, then take jobs until the pool closes.

use std::sync::Arc;

use crate::backend::catch_panic;

use super::registry::Registry;

/// Runs in each worker thread until the queue is closed and empty.
pub(crate) fn main_loop(registry: &Arc<Registry>, index: usize) {
    if let Some(initializer) = registry.initializer() {
        let outcome = match catch_panic(|| initializer()) {
            Ok(result) => result,
            Err(panicked) => Err(format!("it panicked: {panicked}")),
        };
        if let Err(why) = outcome {
            log::error!("the initializer of worker thread {index} failed: {why}");
            registry.break_pool(why);
            return;
        }
    }
    let receiver = registry.receiver();
    while let Some(job) = registry.next_job(&receiver) {
        if registry.broken_error().is_some() {
            registry.fail(job);
        } else {
            job.run_local();
        }
    }
}
