//! What a pool's handle and its I/O thread share: the queue of jobs waiting for a worker, the
//! pool's flags, and the requests the I/O thread acts on. Submitting threads only push jobs
//! onto the queue (under one lock) and wake the I/O thread if it sleeps; `Future::terminate`
//! marks a job's [`Ticket`] and leaves a request here. Everything about the workers
//! themselves lives with the I/O thread (see `remote`), which publishes their pids here.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::ThreadId;
use std::time::Duration;

use primepool_core::backend::Job;
use primepool_core::Error;

use super::spawn::Launch;
use crate::sync;

/// The pool's fixed settings.
#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) max_workers: usize,
    pub(super) launch: Launch,
    pub(super) initializer: Option<fn()>,
    pub(super) max_tasks_per_child: Option<usize>,
    pub(super) task_timeout: Option<Duration>,
}

/// A job waiting for a worker.
pub(super) struct Queued {
    pub(super) id: u64,
    pub(super) job: Job,
    /// Set once it was sent to a worker (that died, or gave it back before starting it): its
    /// future is running already (so `shutdown(cancel_futures)` leaves it be), and
    /// `Future::terminate` reaches it through this.
    pub(super) ticket: Option<Arc<Ticket>>,
}

/// What a job's terminator and the I/O thread share once the job was sent to a worker: whether
/// a stop was asked for, and whether the job's outcome was taken in. Whichever comes first
/// wins, so a `terminate` that returns `true` always ends in [`Error::Terminated`].
#[derive(Debug, Default)]
pub(super) struct Ticket(AtomicU8);

const LIVE: u8 = 0;
const STOP: u8 = 1;
const SETTLED: u8 = 2;

impl Ticket {
    /// The terminator's side: `Some(true)` for the first request to stop the job,
    /// `Some(false)` if one was made before, `None` if the job's outcome is already in.
    fn request_stop(&self) -> Option<bool> {
        match self
            .0
            .compare_exchange(LIVE, STOP, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Some(true),
            Err(STOP) => Some(false),
            Err(_) => None,
        }
    }

    /// The I/O thread's side, as it takes the job's outcome in: `false` if a stop was asked
    /// for first (the job must then fail as terminated).
    pub(super) fn settle(&self) -> bool {
        self.0
            .compare_exchange(LIVE, SETTLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether `Future::terminate` asked to stop the job.
    pub(super) fn stop_requested(&self) -> bool {
        self.0.load(Ordering::Acquire) == STOP
    }
}

#[derive(Default)]
pub(super) struct State {
    pub(super) queue: VecDeque<Queued>,
    pub(super) next_id: u64,
    pub(super) shutdown: bool,
    pub(super) broken: Option<String>,
    /// The I/O thread is (about to be) asleep in `poll`: a new job must wake it.
    pub(super) sleeping: bool,
    /// A wake-up byte is on its way.
    pub(super) woken: bool,
    /// Jobs whose futures asked to be terminated, for the I/O thread to act on.
    pub(super) terminations: Vec<u64>,
    /// The pids of the workers that take work, as the I/O thread last published them.
    pub(super) pids: Vec<u32>,
    /// The I/O thread has reaped every worker and ended.
    pub(super) finished: bool,
}

/// What the pool handle and the I/O thread share.
pub(super) struct Shared {
    state: Mutex<State>,
    finished: Condvar,
    waker: UnixStream,
    pub(super) config: Config,
    io_thread: OnceLock<ThreadId>,
}

impl Shared {
    /// The shared state of a new pool whose I/O thread is woken through `waker`.
    pub(super) fn new(config: Config, waker: UnixStream) -> Self {
        Shared {
            state: Mutex::new(State::default()),
            finished: Condvar::new(),
            waker,
            config,
            io_thread: OnceLock::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before anything that can panic
        // (no future is completed and no user code runs under this lock).
        sync::lock(&self.state)
    }

    pub(super) fn wake(&self, mut state: MutexGuard<'_, State>) {
        let wake = state.sleeping && !state.woken;
        state.woken |= wake;
        drop(state);
        if wake {
            // A full buffer means a wake-up is pending anyway.
            let _ = (&self.waker).write(&[1]);
        }
    }

    /// Called by the I/O thread first thing: a shutdown from its own callbacks must not wait
    /// for itself.
    pub(super) fn set_io_thread(&self) {
        let _ = self.io_thread.set(std::thread::current().id());
    }

    fn on_io_thread(&self) -> bool {
        self.io_thread.get() == Some(&std::thread::current().id())
    }

    /// Queues jobs (the executor's `execute` and `execute_batch`). A closure job cannot leave
    /// this process: it fails at once, with the reason, and so does the call.
    pub(super) fn submit(&self, jobs: impl IntoIterator<Item = Job>) -> Result<(), Error> {
        let mut state = self.lock();
        if state.shutdown {
            return Err(Error::ShutDown);
        }
        if let Some(why) = &state.broken {
            return Err(Error::Broken(why.clone()));
        }
        let mut closures = Vec::new();
        for job in jobs {
            if job.task_fn().is_none() {
                closures.push(job);
                continue;
            }
            let id = state.next_id;
            state.next_id += 1;
            state.queue.push_back(Queued {
                id,
                job,
                ticket: None,
            });
        }
        self.wake(state);
        if closures.is_empty() {
            return Ok(());
        }
        for job in closures {
            job.fail(closure_error());
        }
        Err(closure_error())
    }

    /// Stops accepting work; cancels what has not been sent if asked; waits if asked.
    pub(super) fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let mut state = self.lock();
        state.shutdown = true;
        let mut cancelled: Vec<Queued> = Vec::new();
        if cancel_futures {
            // Jobs sent once already (to a worker that died) are running, not pending.
            let (keep, cancel): (VecDeque<_>, VecDeque<_>) =
                state.queue.drain(..).partition(|q| q.ticket.is_some());
            state.queue = keep;
            cancelled = cancel.into();
        }
        self.wake(state);
        for queued in cancelled {
            queued.job.cancel();
        }
        if wait && !self.on_io_thread() {
            let mut state = self.lock();
            while !state.finished {
                state = sync::wait(&self.finished, state);
            }
        }
    }

    /// The pids of the workers currently serving the pool.
    pub(super) fn worker_pids(&self) -> Vec<u32> {
        self.lock().pids.clone()
    }

    /// The I/O thread has ended: every worker is reaped.
    pub(super) fn finish(&self) {
        self.lock().finished = true;
        self.finished.notify_all();
    }
}

/// Futures to fail, collected under the lock and failed after it is released.
pub(super) type Failures = Vec<(Job, Error)>;

pub(super) fn fail_all(failures: Failures) {
    for (job, error) in failures {
        job.fail(error);
    }
}

pub(super) fn closure_error() -> Error {
    Error::Serialization(
        "a closure cannot leave this process; submit a plain fn to a process pool".into(),
    )
}

/// What `Future::terminate` calls for job `id`, sent to a worker with `ticket` (a weak handle:
/// a terminator never keeps a pool alive). It marks the ticket and asks the I/O thread to act:
/// send `Terminate` to the worker holding the job, or drop it from the queue.
pub(super) fn terminator(
    shared: &Arc<Shared>,
    id: u64,
    ticket: Arc<Ticket>,
) -> Arc<dyn Fn() -> bool + Send + Sync> {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    Arc::new(move || {
        let Some(shared) = weak.upgrade() else {
            return false;
        };
        match ticket.request_stop() {
            Some(true) => {
                let mut state = shared.lock();
                state.terminations.push(id);
                shared.wake(state);
                true
            }
            Some(false) => true,
            None => false,
        }
    })
}
