//! Ctrl-C during a benchmark: stop promptly, end every worker, restore the terminal and exit
//! with status 130 (128 + SIGINT, what shells report for an interrupted command).
//!
//! The handler runs on its own thread. It cancels what has not started, terminates the running
//! tasks (which ends their worker processes) and shuts the current pool down without waiting,
//! so the benchmark thread's waits return at once and it exits through its ordinary clean-up
//! (dropping the pool). If that thread is stuck inside work that cannot be interrupted (the
//! serial backend computes in the benchmark thread itself), the handler exits on its own after
//! a short grace period; a second Ctrl-C exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use indicatif::ProgressBar;
use primepool::{Executor, Future};

/// The exit status of an interrupted command.
pub const EXIT_INTERRUPTED: u8 = 130;

/// How long the handler lets the benchmark thread clean up before exiting by itself.
const GRACE: Duration = Duration::from_secs(2);

/// What a Ctrl-C must stop: the pool being measured, its in-flight futures, the progress bar.
#[derive(Default)]
struct Watched {
    executor: Option<Arc<dyn Executor>>,
    /// `Future::terminate` of each watched future (single tasks or whole `map` chunks).
    terminators: Vec<Arc<dyn Fn() -> bool + Send + Sync>>,
    progress: Option<ProgressBar>,
}

#[derive(Default)]
struct Shared {
    interrupted: AtomicBool,
    watched: Mutex<Watched>,
}

impl Shared {
    fn watched(&self) -> MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cancels and terminates everything being watched, outside the lock.
    fn stop_work(&self) {
        let (executor, terminators) = {
            let watched = self.watched();
            (watched.executor.clone(), watched.terminators.clone())
        };
        if let Some(executor) = &executor {
            executor.shutdown(false, true);
        }
        let terminated = terminators.iter().filter(|terminate| terminate()).count();
        log::info!("interrupted: terminated {terminated} running task(s)");
    }

    fn restore_terminal(&self) {
        if let Some(progress) = self.watched().progress.take() {
            progress.finish_and_clear();
        }
    }
}

/// The benchmark's link to the Ctrl-C handler.
#[derive(Clone, Default)]
pub struct Interrupt {
    shared: Arc<Shared>,
}

impl Interrupt {
    /// Installs the process's Ctrl-C (and SIGTERM) handler.
    pub fn install() -> Result<Self, String> {
        let interrupt = Interrupt::default();
        let shared = Arc::clone(&interrupt.shared);
        ctrlc::set_handler(move || {
            if shared.interrupted.swap(true, Ordering::SeqCst) {
                shared.restore_terminal();
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
            log::info!("interrupted: stopping the benchmark");
            shared.stop_work();
            std::thread::sleep(GRACE);
            log::warn!("the benchmark did not stop within {GRACE:?}; exiting now");
            shared.restore_terminal();
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        })
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
        Ok(interrupt)
    }

    /// True once Ctrl-C was pressed.
    pub fn is_set(&self) -> bool {
        self.shared.interrupted.load(Ordering::SeqCst)
    }

    /// The progress bar to clear on the way out.
    pub fn watch_progress(&self, progress: &ProgressBar) {
        self.shared.watched().progress = Some(progress.clone());
    }

    /// The pool being measured now.
    pub fn watch_executor(&self, executor: &Arc<dyn Executor>) {
        self.shared.watched().executor = Some(Arc::clone(executor));
        if self.is_set() {
            self.shared.stop_work();
        }
    }

    /// The futures of the pool being measured now.
    pub fn watch_futures<'a, T: Send + 'static>(
        &self,
        futures: impl Iterator<Item = &'a Future<T>>,
    ) {
        self.shared.watched().terminators = futures
            .map(|f| {
                let f = f.clone();
                Arc::new(move || f.terminate()) as Arc<dyn Fn() -> bool + Send + Sync>
            })
            .collect();
        if self.is_set() {
            self.shared.stop_work();
        }
    }

    /// Forgets the pool and its futures, so that dropping the pool really shuts it down.
    pub fn unwatch(&self) {
        let mut watched = self.shared.watched();
        watched.executor = None;
        watched.terminators.clear();
    }
}
