//! The state a pool's handle and its I/O thread share, and the rules that decide a job's fate.
//!
//! Submitting threads only push jobs onto the queue (under one lock) and wake the I/O thread
//! if it sleeps; `Future::terminate` marks a job here. Each worker has a bounded, adaptive
//! window of jobs in flight: enough that it never waits a round trip for its next job, small
//! enough that a slow job delays little behind it. The window is sized from the worker's recent
//! job durations (up to [`MAX_WINDOW`] for microsecond jobs, [`MIN_WINDOW`] for jobs longer
//! than [`BUDGET`]); a worker whose current job has run longer than [`BUDGET`] gets nothing more
//! until it answers, and the jobs waiting behind that job are taken back when another worker
//! idles, so a long task never holds a queue of short ones hostage.
//!
//! A worker runs its jobs in order, says `Started` before each and answers it before starting
//! the next, so the pool always knows which job it is running. When a worker dies, that job
//! alone fails (with [`Error::WorkerDied`]); the jobs queued behind it never started and go
//! back to the front of the pool's queue (see [`bury`]).

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use primepool_core::backend::Job;
use primepool_core::{Error, WorkerId};

use super::io::MAX_STARTUP_FAILURES;
use super::spawn::Launch;

/// The queued work a worker should hold, in time: the window adapts to keep about this much.
pub(super) const BUDGET: Duration = Duration::from_millis(2);
/// The most jobs in flight to one worker.
pub(super) const MAX_WINDOW: usize = 128;
/// The fewest: one running and one waiting, so a worker never idles for a round trip between
/// jobs. (A job waiting behind a long one is taken back for an idle worker: see
/// `Io::rebalance`.)
pub(super) const MIN_WINDOW: usize = 2;

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
    /// It was sent to a worker that died or gave it back before starting it: its futures are
    /// running already (so `shutdown(cancel_futures)` leaves it be).
    pub(super) requeued: bool,
}

/// Why a job in flight is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopReason {
    Requested,
    TimedOut,
}

pub(super) struct InFlight {
    pub(super) id: u64,
    pub(super) job: Job,
    pub(super) calls: u32,
    /// The worker said it started it: only such a job can be blamed for the worker's death.
    pub(super) started: bool,
    /// The pool asked for it back (for an idle worker); it may still start here.
    pub(super) revoking: bool,
    /// Set when the job is being stopped, with the time the request went out.
    pub(super) stop: Option<(StopReason, Option<Instant>)>,
}

/// How far a worker has come through start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Phase {
    Started,
    Greeted,
    Ready,
}

/// Why a worker is going away, once the pool knows it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ending {
    /// The pool closed its channel (retired, shut down, pool broken): its exit is expected.
    Closed,
    /// It said it is ending itself to stop a job; nothing else it held had started.
    SelfStopped,
    /// The pool killed it, for this reason.
    Killed(String),
}

/// What the whole pool knows about a worker (the I/O thread keeps the channel itself).
pub(super) struct WorkerInfo {
    pub(super) pid: u32,
    pub(super) phase: Phase,
    pub(super) spawned: Instant,
    pub(super) ending: Option<Ending>,
    /// It has been sent its `max_tasks_per_child` jobs: no more, then it is closed.
    pub(super) retiring: bool,
    pub(super) in_flight: VecDeque<InFlight>,
    pub(super) sent: usize,
    /// When the oldest job in flight became the oldest (about when the worker started it).
    pub(super) head_since: Instant,
    /// Recent job durations, exponentially averaged, in nanoseconds.
    pub(super) service_ns: f64,
}

impl WorkerInfo {
    pub(super) fn accepts_work(&self) -> bool {
        self.ending.is_none() && !self.retiring
    }

    pub(super) fn window(&self) -> usize {
        let fit = BUDGET.as_nanos() as f64 / self.service_ns.max(1.0);
        (fit as usize).clamp(MIN_WINDOW, MAX_WINDOW)
    }

    pub(super) fn has_room(&self, now: Instant) -> bool {
        self.in_flight.is_empty()
            || (self.in_flight.len() < self.window() && now - self.head_since < BUDGET)
    }

    /// Takes job `id` out of the window, updating the duration estimate if it was the oldest.
    pub(super) fn take(&mut self, id: u64, now: Instant) -> Option<InFlight> {
        let at = self.in_flight.iter().position(|e| e.id == id)?;
        let entry = self.in_flight.remove(at)?;
        if at == 0 {
            if entry.started {
                let sample = (now - self.head_since).as_nanos() as f64;
                self.service_ns += (sample - self.service_ns) / 4.0;
            }
            self.head_since = now;
        }
        Some(entry)
    }
}

#[derive(Default)]
pub(super) struct State {
    pub(super) queue: VecDeque<Queued>,
    pub(super) workers: Vec<WorkerInfo>,
    pub(super) next_id: u64,
    pub(super) shutdown: bool,
    pub(super) broken: Option<String>,
    /// The I/O thread is (about to be) asleep in `poll`: a new job must wake it.
    pub(super) sleeping: bool,
    /// A wake-up byte is on its way.
    pub(super) woken: bool,
    /// Jobs whose futures asked to be terminated while in flight.
    pub(super) terminations: Vec<u64>,
    /// The I/O thread has reaped every worker and ended.
    pub(super) finished: bool,
}

/// What the pool handle and the I/O thread share.
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) finished: Condvar,
    pub(super) waker: UnixStream,
    pub(crate) config: Config,
    pub(super) io_thread: OnceLock<ThreadId>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before anything that can panic
        // (no future is completed and no callback runs under this lock; only arguments'
        // `Serialize` impls do), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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

    pub(super) fn on_io_thread(&self) -> bool {
        self.io_thread.get() == Some(&std::thread::current().id())
    }

    /// Queues jobs (the executor's `execute` and `execute_batch`). A closure job cannot leave
    /// this process: it fails at once, with the reason, and so does the call.
    pub(crate) fn submit(&self, jobs: impl IntoIterator<Item = Job>) -> Result<(), Error> {
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
                requeued: false,
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
    pub(crate) fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let mut state = self.lock();
        state.shutdown = true;
        let mut cancelled: Vec<Queued> = Vec::new();
        if cancel_futures {
            // Jobs sent once already (to a worker that died) are running, not pending.
            let (keep, cancel): (VecDeque<_>, VecDeque<_>) =
                state.queue.drain(..).partition(|q| q.requeued);
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
                state = self.finished.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// The pids of the workers currently serving the pool.
    pub(crate) fn worker_pids(&self) -> Vec<u32> {
        let state = self.lock();
        state
            .workers
            .iter()
            .filter(|w| w.accepts_work())
            .map(|w| w.pid)
            .collect()
    }

    /// The terminator of job `id`: what `Future::terminate` calls while it runs.
    pub(super) fn terminate(&self, id: u64) -> bool {
        let mut state = self.lock();
        let mut found = None;
        for worker in &mut state.workers {
            if let Some(entry) = worker.in_flight.iter_mut().find(|e| e.id == id) {
                let first = entry.stop.is_none();
                if first {
                    entry.stop = Some((StopReason::Requested, None));
                }
                found = Some(first);
                break;
            }
        }
        if let Some(first) = found {
            if first {
                state.terminations.push(id);
                self.wake(state);
            }
            return true;
        }
        if let Some(at) = state.queue.iter().position(|q| q.id == id) {
            let queued = state.queue.remove(at);
            drop(state);
            if let Some(queued) = queued {
                queued.job.fail(Error::Terminated(
                    "Future::terminate() removed it from the queue before a worker started it"
                        .into(),
                ));
            }
            return true;
        }
        false
    }

    pub(super) fn finish(&self) {
        self.lock().finished = true;
        self.finished.notify_all();
    }
}

/// Futures to fail, collected under the lock and failed after it is released.
pub(super) type Failures = Vec<(Job, Error)>;
/// Decides the fate of the jobs a dead worker held: a job being stopped fails as terminated;
/// the job it was running (if it was killed or died unexpectedly) fails with
/// [`Error::WorkerDied`]; the others never started and go back to the front of the queue.
pub(super) fn bury(
    state: &mut State,
    worker: WorkerInfo,
    status: &str,
    sigkilled: bool,
    config: &Config,
    startup_failures: &mut u32,
) -> Failures {
    let mut failures = Failures::new();
    let pid = worker.pid;
    let mut held = worker.in_flight;
    // Jobs being stopped fail as terminated, wherever they were.
    let mut rest = VecDeque::with_capacity(held.len());
    for entry in held.drain(..) {
        match entry.stop {
            Some((reason, _)) => {
                failures.push((entry.job, stop_error(reason, pid, entry.calls, config)))
            }
            None => rest.push_back(entry),
        }
    }
    let running_head = match &worker.ending {
        Some(Ending::Closed | Ending::SelfStopped) => false,
        Some(Ending::Killed(_)) => true,
        // A SIGKILL from outside (an operator, the OOM killer) says nothing about the worker
        // program, so it does not count towards breaking the pool; a worker that exits or
        // crashes on its own before it is ready does.
        None if worker.phase < Phase::Ready && sigkilled => false,
        None if worker.phase < Phase::Ready => {
            *startup_failures += 1;
            if *startup_failures >= MAX_STARTUP_FAILURES {
                let reason = format!(
                    "worker processes keep ending before they are ready (the last, process \
                     {pid}: {status}); does the worker program call \
                     primepool::run_worker_if_requested() first thing in main?"
                );
                failures.extend(
                    rest.into_iter()
                        .map(|e| (e.job, Error::Broken(reason.clone()))),
                );
                failures.extend(break_state(state, &reason));
                return failures;
            }
            false
        }
        None => true,
    };
    // Only a job the worker said it started can have been running; one it never started (it
    // may have died idle, before reading it) goes back to the queue with the rest.
    let head_started = rest.front().is_some_and(|head| head.started);
    if running_head && head_started {
        if let Some(head) = rest.pop_front() {
            let status = match &worker.ending {
                Some(Ending::Killed(why)) => format!("{status}; the pool killed it: {why}"),
                _ => status.to_owned(),
            };
            failures.push((
                head.job,
                Error::WorkerDied {
                    worker: WorkerId::Process(pid),
                    status,
                },
            ));
        }
    }
    if let Some(reason) = &state.broken {
        failures.extend(
            rest.into_iter()
                .map(|e| (e.job, Error::Broken(reason.clone()))),
        );
    } else {
        for entry in rest.into_iter().rev() {
            state.queue.push_front(Queued {
                id: entry.id,
                job: entry.job,
                requeued: true,
            });
        }
    }
    failures
}

/// Marks the state broken and takes every job out, to be failed with the reason.
pub(super) fn break_state(state: &mut State, reason: &str) -> Failures {
    let reason = state
        .broken
        .get_or_insert_with(|| reason.to_owned())
        .clone();
    let mut failures: Failures = state
        .queue
        .drain(..)
        .map(|q| (q.job, Error::Broken(reason.clone())))
        .collect();
    for worker in &mut state.workers {
        failures.extend(
            worker
                .in_flight
                .drain(..)
                .map(|e| (e.job, Error::Broken(reason.clone()))),
        );
    }
    failures
}

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

pub(super) fn stop_error(reason: StopReason, pid: u32, calls: u32, config: &Config) -> Error {
    Error::Terminated(match reason {
        StopReason::Requested => format!(
            "Future::terminate() ended worker process {pid}, which was running it; a \
             replacement was started"
        ),
        StopReason::TimedOut => {
            let limit = config
                .task_timeout
                .map(|t| t.saturating_mul(calls))
                .unwrap_or_default();
            format!(
                "it ran longer than its timeout of {limit:?}; worker process {pid} was ended and \
                 a replacement started"
            )
        }
    })
}

/// What `Future::terminate` calls for job `id` (a weak handle: a terminator never keeps a
/// pool alive).
pub(super) fn terminator(shared: &Arc<Shared>, id: u64) -> Arc<dyn Fn() -> bool + Send + Sync> {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    Arc::new(move || weak.upgrade().is_some_and(|shared| shared.terminate(id)))
}
