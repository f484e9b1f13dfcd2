//! What a pool's handle and its I/O thread share: the queue of jobs waiting for a worker, the
//! pool's flags, and the requests the I/O thread acts on. Submitting threads push jobs onto
//! the queue (under one lock) and wake the I/O thread if it sleeps; `Future::terminate`
//! marks a job's [`Ticket`] and leaves a request here. Everything about the workers
//! themselves lives with the I/O thread (see `remote`), which publishes their pids here.
//!
//! One shortcut saves a lone task the I/O thread's wake-up on its way out: while the I/O
//! thread sleeps, it publishes the idle workers as [`Lane`]s (their channel, nothing in
//! flight, nothing unsent). A thread submitting one job when nothing is queued takes a lane
//! and writes the job's `Run` frame to that worker itself, under the state lock (which thus
//! orders it with every other write to that channel), and leaves a [`Direct`] record; the
//! I/O thread takes the record into the worker's window first thing when it wakes, before it
//! reads anything from any worker, so the answer finds the job where a job sent by the I/O
//! thread would be. Lanes exist only while the I/O thread sleeps with a bounded timeout, so
//! its periodic checks go on, and it withdraws them before it closes any channel.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::ThreadId;
use std::time::Duration;

use primepool_core::backend::Job;
use primepool_core::Error;

use super::frame::{write_frame, MAX_FRAME_LEN};
use super::image;
use super::protocol::{Bytes, ToWorker};
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

/// An idle worker a submitting thread may send one job to itself (see the module docs).
pub(super) struct Lane {
    /// The worker's process id: which worker the I/O thread gives the job to.
    pub(super) pid: u32,
    /// The pool's end of its channel.
    pub(super) stream: Arc<UnixStream>,
}

/// A job a submitting thread sent through a [`Lane`], for the I/O thread to take into that
/// worker's window.
pub(super) struct Direct {
    pub(super) pid: u32,
    pub(super) id: u64,
    pub(super) job: Job,
    pub(super) calls: u32,
    pub(super) ticket: Arc<Ticket>,
    /// The end of the `Run` frame the channel did not take at once (usually nothing), for the
    /// I/O thread to send before anything else.
    pub(super) unsent: Vec<u8>,
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
    /// Idle workers a submitting thread may write one job to, while the I/O thread sleeps.
    pub(super) lanes: Vec<Lane>,
    /// Jobs sent through lanes, not yet in their worker's window.
    pub(super) direct: Vec<Direct>,
}

/// What the pool handle and the I/O thread share.
pub(super) struct Shared {
    state: Mutex<State>,
    finished: Condvar,
    waker: UnixStream,
    pub(super) config: Config,
    io_thread: OnceLock<ThreadId>,
    /// Set (under the lock) when a job goes out through a lane, cleared when the I/O thread
    /// takes it in: lets that thread skip the lock when there is nothing to take.
    direct_sent: AtomicBool,
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
            direct_sent: AtomicBool::new(false),
        }
    }

    /// Whether a job may have gone out through a lane since the I/O thread last took them in.
    /// (The submitting thread sets it before it writes the job's frame, so a reader that has
    /// read the answer sees it.)
    pub(super) fn sent_direct(&self) -> bool {
        self.direct_sent.load(Ordering::Acquire)
    }

    /// The I/O thread is taking every job sent through a lane in (`state` is the lock's).
    pub(super) fn adopted(&self, _state: &mut State) {
        self.direct_sent.store(false, Ordering::Release);
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

    /// Submits one job (the executor's `execute`): straight to an idle worker when a lane is
    /// published and nothing is queued (see the module docs), else as [`submit`](Self::submit)
    /// does.
    pub(super) fn submit_one(self: &Arc<Self>, job: Job) -> Result<(), Error> {
        let state = self.lock();
        let open = !state.shutdown && state.broken.is_none();
        if open && state.queue.is_empty() && !state.lanes.is_empty() && shippable(&job).is_ok() {
            return self.send_direct(state, job);
        }
        self.queue(state, [job])
    }

    /// Queues jobs (the executor's `execute_batch`). A closure job cannot leave this process,
    /// nor a function outside the main executable: such a job fails at once, with the reason,
    /// and so does the call.
    pub(super) fn submit(&self, jobs: impl IntoIterator<Item = Job>) -> Result<(), Error> {
        self.queue(self.lock(), jobs)
    }

    fn queue(
        &self,
        mut state: MutexGuard<'_, State>,
        jobs: impl IntoIterator<Item = Job>,
    ) -> Result<(), Error> {
        if state.shutdown {
            return Err(Error::ShutDown);
        }
        if let Some(why) = &state.broken {
            return Err(Error::Broken(why.clone()));
        }
        let mut refused = Vec::new();
        for job in jobs {
            if let Err(e) = shippable(&job) {
                refused.push((job, e));
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
        let Some(error) = refused.first().map(|(_, e)| e.clone()) else {
            return Ok(());
        };
        fail_all(refused);
        Err(error)
    }

    /// Sends `job` through a lane: the `Run` frame goes to that worker now, from this thread.
    fn send_direct(
        self: &Arc<Self>,
        mut state: MutexGuard<'_, State>,
        mut job: Job,
    ) -> Result<(), Error> {
        let id = state.next_id;
        state.next_id += 1;
        let mut frame = Vec::new();
        let calls = match encode_run(&mut job, id, &self.config, true, &mut frame) {
            Ok(Some(calls)) => calls,
            // Its future was cancelled: nothing to send.
            Ok(None) => return Ok(()),
            Err(e) => {
                drop(state);
                job.fail(e);
                return Ok(());
            }
        };
        let Some(lane) = state.lanes.pop() else {
            unreachable!("send_direct is called with a lane published");
        };
        let ticket = Arc::new(Ticket::default());
        job.set_terminator(terminator(self, id, Arc::clone(&ticket)));
        self.direct_sent.store(true, Ordering::Release);
        let mut written = 0;
        while written < frame.len() {
            match (&*lane.stream).write(&frame[written..]) {
                Ok(n) if n > 0 => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // Full, or the worker is gone: the I/O thread sends the rest, or finds out.
                _ => break,
            }
        }
        frame.drain(..written);
        let unsent = !frame.is_empty();
        state.direct.push(Direct {
            pid: lane.pid,
            id,
            job,
            calls,
            ticket,
            unsent: frame,
        });
        if unsent {
            self.wake(state);
        }
        Ok(())
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

/// Starts `job` (id `id`) and appends its `Run` frame to `out` (`lone`: it goes through a
/// lane): the number of calls it makes,
/// `None` if its future was cancelled (nothing to send), or the error the job must fail with.
pub(super) fn encode_run(
    job: &mut Job,
    id: u64,
    config: &Config,
    lone: bool,
    out: &mut Vec<u8>,
) -> Result<Option<u32>, Error> {
    let calls = job.start();
    if calls == 0 {
        return Ok(None);
    }
    let task = job.task_fn().ok_or_else(closure_error)?;
    let args = job.encode_args()?;
    let calls = u32::try_from(calls).unwrap_or(u32::MAX);
    let (trampoline, func) = task.to_raw();
    let run = ToWorker::Run {
        id,
        trampoline: image::to_offset(trampoline),
        func: image::to_offset(func),
        timeout_us: config
            .task_timeout
            .map(|t| saturating_micros(t.saturating_mul(calls))),
        lone,
        args: Bytes(&args),
    };
    write_frame(out, &run, MAX_FRAME_LEN)
        .map_err(|e| Error::Serialization(format!("sending the argument: {e}")))?;
    Ok(Some(calls))
}

fn saturating_micros(t: Duration) -> u64 {
    u64::try_from(t.as_micros()).unwrap_or(u64::MAX)
}

/// Whether `job` can be sent to a worker: a plain `fn` (a closure cannot leave this process)
/// whose code lies in the image the workers run.
fn shippable(job: &Job) -> Result<(), Error> {
    let task = job.task_fn().ok_or_else(closure_error)?;
    let (trampoline, func) = task.to_raw();
    image::check_shippable(trampoline, func)
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
