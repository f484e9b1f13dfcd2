//! The state a thread pool's handle and its workers share: the work queue, the gate that
//! closes it, the counts that decide when to start a thread, and the thread handles.
//!
//! Ordering notes, because three things race here (submitters, workers, `shutdown`):
//! - Jobs enter the queue only while a submitter holds the gate's read lock and the gate is
//!   open; closing it takes the write lock and drops the only `Sender`. So once `close`
//!   returns, no job can enter any more, and workers leave their loop as soon as the queue is
//!   empty (the channel reports it disconnected). Nothing accepted is ever stranded.
//! - Every job leaves the queue exactly once, through a worker or through a drain
//!   (`cancel_queued`, `break_pool`), so each future is resolved by exactly one party; the
//!   futures' own lock settles `cancel` against a worker starting the task.
//! - `broken` is set before the gate closes and before the drain, so a worker that takes a
//!   job after the failure sees it and fails the job instead of running it.
//! - A thread starts when the queued jobs outnumber the workers waiting for work (Python starts
//!   one when no idle worker can be claimed). A submitter adds its jobs to `queued` before
//!   reading `waiting`; a worker leaves `waiting` before it takes a job off `queued`. So a busy
//!   worker is never counted as waiting while its job is no longer counted as queued: the pool
//!   may start a thread too many (bounded by `max_workers`), never one too few, and work that
//!   needs `max_workers` tasks running at once always gets them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::thread::{JoinHandle, ThreadId};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::backend::Job;
use crate::sync::{self, lock};
use crate::Error;

use super::builder::{broken_by_initializer, Initializer};
use super::worker::{self, Pool};

/// Whether the pool still takes work; the open state owns the queue's only sender.
enum Gate {
    Open(Sender<Job>),
    Closed,
}

pub(crate) struct Registry {
    gate: RwLock<Gate>,
    /// The consuming end, for drains; every worker holds a clone.
    receiver: Receiver<Job>,
    /// Jobs sent or about to be sent and not yet taken off the queue.
    queued: AtomicUsize,
    /// Workers blocked waiting for a job.
    waiting: AtomicUsize,
    /// Threads started so far; read without the lock on the hot path.
    started: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Which threads were started and how many have ended, for `shutdown(wait)` callers that
    /// find the handles already taken by another caller.
    exits: Mutex<Exits>,
    exited: Condvar,
    /// Why the pool is broken, once an initializer failed.
    broken: OnceLock<String>,
    max_workers: usize,
    thread_name_prefix: String,
    initializer: Option<Initializer>,
}

impl Registry {
    pub(crate) fn new(
        max_workers: usize,
        thread_name_prefix: String,
        initializer: Option<Initializer>,
    ) -> Arc<Registry> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        Arc::new(Registry {
            gate: RwLock::new(Gate::Open(sender)),
            receiver,
            queued: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
            exits: Mutex::new(Exits::default()),
            exited: Condvar::new(),
            broken: OnceLock::new(),
            max_workers,
            thread_name_prefix,
            initializer,
        })
    }

    pub(crate) fn max_workers(&self) -> usize {
        self.max_workers
    }

    pub(crate) fn threads_started(&self) -> usize {
        self.started.load(Ordering::Acquire)
    }

    /// The error for work refused or failed because an initializer failed, if one did.
    pub(crate) fn broken_error(&self) -> Option<Error> {
        self.broken.get().map(|why| Error::Broken(why.clone()))
    }

    /// Queues `jobs` (all or none), starting threads for them as Python does: only when no
    /// waiting worker is left to take them, and up to `max_workers`.
    pub(crate) fn submit(
        self: &Arc<Self>,
        jobs: impl ExactSizeIterator<Item = Job>,
    ) -> Result<(), Error> {
        let gate = sync::read(&self.gate);
        let Gate::Open(sender) = &*gate else {
            return Err(self.broken_error().unwrap_or(Error::ShutDown));
        };
        let count = jobs.len();
        let queued = self.queued.fetch_add(count, Ordering::SeqCst) + count;
        let unserved = queued.saturating_sub(self.waiting.load(Ordering::SeqCst));
        let wanted = unserved.min(count);
        // One thread before sending: if not even one can start, the jobs are refused rather
        // than queued where nothing would ever run them.
        if let Err(e) = self.start_workers(wanted.min(1)) {
            self.queued.fetch_sub(count, Ordering::SeqCst);
            return Err(e);
        }
        for job in jobs {
            // Cannot fail: the receiver lives in `self`.
            let _ = sender.send(job);
        }
        // The others once the jobs are queued, so that each finds work the moment it starts.
        // A thread that finds none waits, then sleeps, and is woken when work comes onto a CPU
        // the scheduler picks then, which may be the busy one of its sibling: on 2 CPUs two
        // workers sharing one for a few milliseconds made the seed workload's median wander.
        // (With one thread running these cannot fail: a thread that cannot start is logged
        // and the running ones take the jobs.)
        let _ = self.start_workers(wanted.saturating_sub(1));
        Ok(())
    }

    /// Starts up to `wanted` threads, without passing `max_workers`.
    fn start_workers(self: &Arc<Self>, wanted: usize) -> Result<(), Error> {
        if wanted == 0 || self.started.load(Ordering::Acquire) >= self.max_workers {
            return Ok(());
        }
        let mut threads = lock(&self.threads);
        for _ in 0..wanted {
            let index = threads.len();
            if index >= self.max_workers {
                break;
            }
            let registry = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name(format!("{}_{index}", self.thread_name_prefix))
                .spawn(move || {
                    worker::main_loop(&*registry, index);
                    registry.worker_exited();
                });
            match spawned {
                Ok(handle) => {
                    lock(&self.exits).started.push(handle.thread().id());
                    threads.push(handle);
                    self.started.store(index + 1, Ordering::Release);
                }
                // The running workers will take the jobs.
                Err(e) if index > 0 => {
                    log::warn!("could not start worker thread {index}: {e}; going on with {index}");
                    break;
                }
                Err(e) => {
                    return Err(Error::Broken(format!(
                        "could not start a worker thread: {e}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Takes the next job, waiting for one if the queue is empty; `None` once the pool is
    /// closed and the queue drained.
    fn take_next(&self, receiver: &Receiver<Job>) -> Option<Job> {
        let job = match receiver.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {
                self.waiting.fetch_add(1, Ordering::SeqCst);
                let received = Self::wait_for_job(receiver);
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                received?
            }
        };
        self.queued.fetch_sub(1, Ordering::SeqCst);
        Some(job)
    }

    /// Waits for a job, polling for a few dozen rounds before sleeping (as rayon's workers
    /// do): a task submitted right after the last one then finds its worker awake, so neither
    /// side pays an OS wake-up, which costs more than a no-op task itself.
    fn wait_for_job(receiver: &Receiver<Job>) -> Option<Job> {
        const SPIN_ROUNDS: u32 = 6;
        const YIELD_ROUNDS: u32 = 32;
        for round in 0..SPIN_ROUNDS + YIELD_ROUNDS {
            match receiver.try_recv() {
                Ok(job) => return Some(job),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) if round < SPIN_ROUNDS => {
                    (0..1 << round).for_each(|_| std::hint::spin_loop());
                }
                Err(TryRecvError::Empty) => std::thread::yield_now(),
            }
        }
        receiver.recv().ok()
    }

    /// Takes a job without waiting, for the drains.
    fn take_queued(&self) -> Option<Job> {
        let job = self.receiver.try_recv().ok()?;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        Some(job)
    }

    /// Stops taking work. Queued jobs still run unless drained.
    pub(crate) fn close(&self) {
        *sync::write(&self.gate) = Gate::Closed;
    }

    /// Cancels every job still in the queue (`shutdown(cancel_futures = true)`).
    pub(crate) fn cancel_queued(&self) {
        while let Some(job) = self.take_queued() {
            job.cancel();
        }
    }

    /// Waits until every started thread has finished, except the calling one (a task may
    /// shut down its own pool; it cannot wait for itself).
    ///
    /// The handles are taken out of the lock before joining, so a second caller (a task that
    /// shuts its own pool down while the owner does the same) is never stuck behind a join
    /// of its own thread; it waits for the other threads' exits instead.
    pub(crate) fn join_workers(&self) {
        let handles = std::mem::take(&mut *lock(&self.threads));
        let me = std::thread::current().id();
        for handle in handles {
            if handle.thread().id() != me {
                // Tasks and initializers run under catch_unwind: a worker cannot panic.
                let _ = handle.join();
            }
        }
        let mut exits = lock(&self.exits);
        let own = usize::from(exits.started.contains(&me));
        while exits.ended + own < exits.started.len() {
            exits = sync::wait(&self.exited, exits);
        }
    }

    fn worker_exited(&self) {
        lock(&self.exits).ended += 1;
        self.exited.notify_all();
    }
}

/// The threads a pool started, and how many of them have ended.
#[derive(Default)]
struct Exits {
    started: Vec<ThreadId>,
    ended: usize,
}

impl Pool for Registry {
    fn initializer(&self) -> Option<&Initializer> {
        self.initializer.as_ref()
    }

    /// An initializer failed: refuse new work and fail everything queued, as Python's
    /// `BrokenThreadPool` does.
    fn break_pool(&self, why: String) {
        let _ = self.broken.set(broken_by_initializer(&why));
        self.close();
        while let Some(job) = self.take_queued() {
            self.fail(job);
        }
    }

    fn next_job(&self) -> Option<Job> {
        self.take_next(&self.receiver)
    }

    fn is_broken(&self) -> bool {
        self.broken.get().is_some()
    }

    fn fail(&self, job: Job) {
        let error = self
            .broken_error()
            .unwrap_or_else(|| Error::Broken("the thread pool is broken".into()));
        job.fail(error);
    }
}
