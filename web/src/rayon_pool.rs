//! [`RayonExecutor`]: the browser's thread pool, rayon on wasm-bindgen-rayon's Web Workers
//! sharing one memory (the "atomics" build only).
//!
//! rayon's global pool lives for the page's lifetime and is started once, asynchronously, by
//! [`start_thread_pool`] (wasm-bindgen-rayon's `initThreadPool`). Run it from a worker, never
//! the page's main thread: a thread that waits for rayon there busy-waits and freezes the page,
//! because `Atomics.wait` is forbidden on the main thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};

use primepool_core::backend::Job;
use primepool_core::{blocking, Error, Executor};

static THREADS: OnceLock<usize> = OnceLock::new();

/// The queues of the live executors, for [`cancel_all`].
static LIVE: Mutex<Vec<Weak<Queue>>> = Mutex::new(Vec::new());

/// Cancels every job not yet started on any rayon executor (the page's Stop button): running
/// tasks finish, then the threads go idle, so no CPU is spent while their worker is ended.
pub fn cancel_all() {
    let queues: Vec<Arc<Queue>> = lock(&LIVE).drain(..).filter_map(|q| q.upgrade()).collect();
    for queue in queues {
        let jobs: Vec<Job> = lock(&queue.jobs).drain(..).collect();
        jobs.into_iter().for_each(Job::cancel);
    }
}

/// Starts rayon's global pool with `threads` Web Workers (once per page; later calls with any
/// count return the running pool's size).
pub async fn start_thread_pool(threads: usize) -> Result<usize, Error> {
    if threads == 0 {
        return Err(Error::invalid("max_workers must be at least 1"));
    }
    if let Some(n) = THREADS.get() {
        return Ok(*n);
    }
    wasm_bindgen_futures::JsFuture::from(wasm_bindgen_rayon::init_thread_pool(threads))
        .await
        .map_err(|e| Error::Broken(format!("initThreadPool failed: {e:?}")))?;
    Ok(*THREADS.get_or_init(|| threads))
}

#[derive(Default)]
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    running: Mutex<usize>,
    idle: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// rayon's pool behind the executor trait: jobs run in place on the pool's threads (no
/// serialization), so closures work too; running tasks cannot be terminated, as threads
/// cannot be killed.
pub struct RayonExecutor {
    threads: usize,
    shut_down: AtomicBool,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for RayonExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RayonExecutor")
            .field("threads", &self.threads)
            .finish()
    }
}

impl RayonExecutor {
    /// An executor on the global pool, which [`start_thread_pool`] must have started.
    /// `max_workers` above the pool's size is capped to it.
    pub fn new(max_workers: usize) -> Result<Self, Error> {
        if max_workers == 0 {
            return Err(Error::invalid("max_workers must be at least 1"));
        }
        let threads = THREADS.get().ok_or_else(|| {
            Error::Broken("the rayon pool is not started: await start_thread_pool first".into())
        })?;
        let queue = Arc::<Queue>::default();
        let mut live = lock(&LIVE);
        live.retain(|q| q.strong_count() > 0);
        live.push(Arc::downgrade(&queue));
        Ok(RayonExecutor {
            threads: max_workers.min(*threads),
            shut_down: AtomicBool::new(false),
            queue,
        })
    }
}

impl Executor for RayonExecutor {
    fn name(&self) -> &'static str {
        "rayon"
    }

    fn max_workers(&self) -> usize {
        self.threads
    }

    fn execute(&self, job: Job) -> Result<(), Error> {
        if self.shut_down.load(Ordering::Acquire) {
            return Err(Error::ShutDown);
        }
        lock(&self.queue.jobs).push_back(job);
        *lock(&self.queue.running) += 1;
        let queue = self.queue.clone();
        rayon::spawn(move || {
            // Jobs cancelled by `shutdown(cancel_futures)` are already gone from the queue.
            // (A separate statement, so that the lock is released before the job runs.)
            let job = lock(&queue.jobs).pop_front();
            if let Some(job) = job {
                job.run_local();
            }
            let mut running = lock(&queue.running);
            *running -= 1;
            if *running == 0 {
                queue.idle.notify_all();
            }
        });
        Ok(())
    }

    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.shut_down.store(true, Ordering::Release);
        if cancel_futures {
            let cancelled: Vec<Job> = lock(&self.queue.jobs).drain(..).collect();
            cancelled.into_iter().for_each(Job::cancel);
        }
        if wait && blocking::allowed() {
            let mut running = lock(&self.queue.running);
            while *running > 0 {
                running = self
                    .queue
                    .idle
                    .wait(running)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

impl Drop for RayonExecutor {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}
