//! The pool's side: one I/O thread per pool that starts, feeds, watches and reaps the workers.
//!
//! Submitting threads only push jobs onto a queue under the state lock and, if the I/O thread
//! is asleep in `poll`, write one byte to wake it. The I/O thread does everything else, in
//! turns: it hands queued jobs to the least loaded workers (encoding each as one frame in that
//! worker's outbox), writes every outbox with one system call, sleeps in `poll` on all the
//! channels at once, decodes the answers in batches and completes the futures outside the
//! lock. Batching falls out of this shape: while a turn runs, new jobs and answers accumulate,
//! and the next turn moves them all at once.
//!
//! Each worker has a bounded, adaptive window of jobs in flight: enough that it never waits a
//! round trip for its next job, small enough that a slow job delays little behind it. The
//! window is sized from the worker's recent job durations (many for microsecond jobs, two for
//! slow ones), and a worker whose current job has run longer than [`BUDGET`] gets nothing more
//! until it answers, so a long task does not hold a queue of short ones hostage.
//!
//! A worker answers its jobs in order and before starting the next one, so the oldest
//! unanswered job is the one it is running. When a worker dies, that job alone fails (with
//! [`Error::WorkerDied`]); the jobs queued behind it never started and go back to the front of
//! the pool's queue; a replacement is started. The I/O thread is also the only thread that
//! starts workers: on Linux a worker's parent-death signal follows the *thread* that forked
//! it, and this thread lives exactly as long as the pool.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use primepool_core::{Error, Job, WorkerId};

use super::frame::{write_frame, FrameReader, MAX_FRAME_LEN};
use super::image;
use super::protocol::{self, Bytes, FromWorker, ToWorker};
use super::spawn::{self, WorkerCommand};
use super::sys;

/// The queued work a worker should hold, in time: the window adapts to keep about this much.
pub(crate) const BUDGET: Duration = Duration::from_millis(2);
/// The most jobs in flight to one worker.
const MAX_WINDOW: usize = 128;
/// The fewest: one running and one ready, so a worker never waits a round trip.
const MIN_WINDOW: usize = 2;
/// A worker with this much unsent output gets no new jobs until it reads.
const OUTBOX_SOFT_LIMIT: usize = 4 << 20;
/// How long a worker may take to start and answer the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a worker may take to stop a job it was asked to stop, or to honour its timeout,
/// before the pool kills it.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a worker may take to exit once its channel is closed, before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);
/// How often the I/O thread checks for workers that died without closing their channel.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// Consecutive start-up failures after which the pool is declared broken.
const MAX_STARTUP_FAILURES: u32 = 3;

/// The pool's fixed settings.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub max_workers: usize,
    pub command: WorkerCommand,
    pub initializer: Option<fn()>,
    pub max_tasks_per_child: Option<usize>,
    pub task_timeout: Option<Duration>,
}

/// A job waiting for a worker.
struct Queued {
    id: u64,
    job: Job,
    /// It was sent to a worker that died before starting it: its futures are running already.
    requeued: bool,
}

/// Why a job in flight is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Requested,
    TimedOut,
}

struct InFlight {
    id: u64,
    job: Job,
    calls: u32,
    /// Where its frame ends in the channel's byte stream (see `Conn::delivered`).
    frame_end: u64,
    /// Set when the job is being stopped, with the time the request went out.
    stop: Option<(StopReason, Option<Instant>)>,
}

/// How far a worker has come through start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Started,
    Greeted,
    Ready,
}

/// Why a worker is going away, once the pool knows it is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// The pool closed its channel (retired, shut down, pool broken): its exit is expected.
    Closed,
    /// It said it is ending itself to stop a job; nothing else it held had started.
    SelfStopped,
    /// The pool killed it, for this reason.
    Killed(String),
}

/// What the whole pool knows about a worker (the I/O thread keeps the channel itself).
struct WorkerInfo {
    pid: u32,
    phase: Phase,
    spawned: Instant,
    ending: Option<Ending>,
    /// It has been sent its `max_tasks_per_child` jobs: no more, then it is closed.
    retiring: bool,
    in_flight: VecDeque<InFlight>,
    sent: usize,
    /// When the oldest job in flight became the oldest (about when the worker started it).
    head_since: Instant,
    /// Recent job durations, exponentially averaged, in nanoseconds.
    service_ns: f64,
}

impl WorkerInfo {
    fn accepts_work(&self) -> bool {
        self.ending.is_none() && !self.retiring
    }

    fn window(&self) -> usize {
        let fit = BUDGET.as_nanos() as f64 / self.service_ns.max(1.0);
        (fit as usize).clamp(MIN_WINDOW, MAX_WINDOW)
    }

    fn has_room(&self, now: Instant) -> bool {
        self.in_flight.is_empty()
            || (self.in_flight.len() < self.window() && now - self.head_since < BUDGET)
    }

    /// Takes job `id` out of the window, updating the duration estimate if it was the oldest.
    fn take(&mut self, id: u64, now: Instant) -> Option<InFlight> {
        let at = self.in_flight.iter().position(|e| e.id == id)?;
        if at == 0 {
            let sample = (now - self.head_since).as_nanos() as f64;
            self.service_ns += (sample - self.service_ns) / 4.0;
            self.head_since = now;
        }
        self.in_flight.remove(at)
    }
}

pub(crate) struct State {
    queue: VecDeque<Queued>,
    workers: Vec<WorkerInfo>,
    next_id: u64,
    shutdown: bool,
    broken: Option<String>,
    /// The I/O thread is (about to be) asleep in `poll`: a new job must wake it.
    sleeping: bool,
    /// A wake-up byte is on its way.
    woken: bool,
    /// Jobs whose futures asked to be terminated while in flight.
    terminations: Vec<u64>,
    /// The I/O thread has reaped every worker and ended.
    finished: bool,
}

/// What the pool handle and the I/O thread share.
pub(crate) struct Shared {
    state: Mutex<State>,
    finished: Condvar,
    waker: UnixStream,
    pub(crate) config: Config,
    io_thread: OnceLock<ThreadId>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before anything that can panic
        // (user code never runs under this lock), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self, mut state: MutexGuard<'_, State>) {
        let wake = state.sleeping && !state.woken;
        state.woken |= wake;
        drop(state);
        if wake {
            // A full buffer means a wake-up is pending anyway.
            let _ = (&self.waker).write(&[1]);
        }
    }

    fn on_io_thread(&self) -> bool {
        self.io_thread.get() == Some(&std::thread::current().id())
    }

    /// Queues jobs (the executor's `execute` and `execute_batch`).
    pub(crate) fn submit(&self, jobs: Vec<Job>) -> Result<(), Error> {
        // A closure cannot leave this process: fail it now, with a reason, not at dispatch.
        let (jobs, closures): (Vec<Job>, Vec<Job>) =
            jobs.into_iter().partition(|j| j.task_fn().is_some());
        let refused = !closures.is_empty();
        for job in closures {
            job.fail(closure_error());
        }
        let mut state = self.lock();
        if state.shutdown {
            return Err(Error::ShutDown);
        }
        if let Some(why) = &state.broken {
            return Err(Error::Broken(why.clone()));
        }
        for job in jobs {
            let id = state.next_id;
            state.next_id += 1;
            state.queue.push_back(Queued {
                id,
                job,
                requeued: false,
            });
        }
        self.wake(state);
        if refused {
            return Err(closure_error());
        }
        Ok(())
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
    fn terminate(&self, id: u64) -> bool {
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

    fn finish(&self) {
        self.lock().finished = true;
        self.finished.notify_all();
    }
}

/// Starts the pool: its I/O thread, which starts the workers. Fails if the first workers
/// cannot be started.
pub(crate) fn start(config: Config) -> Result<(Arc<Shared>, std::thread::JoinHandle<()>), Error> {
    let (waker, wake_rx) = UnixStream::pair().map_err(|e| io_error("creating a socket pair", e))?;
    for end in [&waker, &wake_rx] {
        end.set_nonblocking(true)
            .map_err(|e| io_error("configuring a socket", e))?;
    }
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            workers: Vec::new(),
            next_id: 0,
            shutdown: false,
            broken: None,
            sleeping: false,
            woken: false,
            terminations: Vec::new(),
            finished: false,
        }),
        finished: Condvar::new(),
        waker,
        config,
        io_thread: OnceLock::new(),
    });
    let (started_tx, started_rx) = mpsc::channel();
    let io = Io {
        shared: Arc::clone(&shared),
        conns: Vec::new(),
        wake_rx,
        startup_failures: 0,
        retry_spawn_at: None,
        last_sweep: Instant::now(),
    };
    let handle = std::thread::Builder::new()
        .name("primepool-process-pool".into())
        .spawn(move || io.run(&started_tx))
        .map_err(|e| io_error("starting the pool's I/O thread", e))?;
    match started_rx.recv() {
        Ok(Ok(())) => Ok((shared, handle)),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => {
            let _ = handle.join();
            Err(Error::Broken(
                "the pool's I/O thread ended during start-up".into(),
            ))
        }
    }
}

fn io_error(what: &str, e: io::Error) -> Error {
    Error::Broken(format!("{what}: {e}"))
}

/// The I/O thread's own side of a worker: its process and channel.
struct Conn {
    child: Child,
    /// `None` once the channel is closed (by us, or end-of-file from the worker).
    stream: Option<UnixStream>,
    reader: FrameReader,
    outbox: Vec<u8>,
    written: usize,
    /// Bytes the worker's socket accepted so far: a job whose frame ends beyond this never
    /// reached the worker (it was already gone) and can safely run elsewhere.
    delivered: u64,
    /// Since when the pool has been waiting for the process to exit.
    closed_at: Option<Instant>,
}

impl Conn {
    fn pending(&self) -> usize {
        self.outbox.len() - self.written
    }

    /// The stream position just past everything queued so far.
    fn queued_end(&self) -> u64 {
        self.delivered + self.pending() as u64
    }

    fn close(&mut self, now: Instant) {
        self.stream = None;
        self.closed_at.get_or_insert(now);
    }

    fn kill(&mut self, now: Instant) {
        let _ = self.child.kill();
        self.close(now);
    }

    /// Writes as much of the outbox as the channel takes now.
    fn flush(&mut self) -> io::Result<()> {
        let Some(stream) = &mut self.stream else {
            self.outbox.clear();
            self.written = 0;
            return Ok(());
        };
        while self.written < self.outbox.len() {
            match stream.write(&self.outbox[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    self.delivered += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.outbox.len() {
            self.outbox.clear();
            self.written = 0;
        } else if self.written > (1 << 20) {
            self.outbox.drain(..self.written);
            self.written = 0;
        }
        Ok(())
    }
}

/// Futures to fail, collected under the lock and failed after it is released.
type Failures = Vec<(Job, Error)>;

struct Io {
    shared: Arc<Shared>,
    /// Parallel to `State::workers` (only this thread adds or removes either).
    conns: Vec<Conn>,
    wake_rx: UnixStream,
    startup_failures: u32,
    retry_spawn_at: Option<Instant>,
    last_sweep: Instant,
}

impl Drop for Io {
    /// Normally every worker is reaped before this; after a panic, make sure none is left.
    fn drop(&mut self) {
        for conn in &mut self.conns {
            let _ = conn.child.kill();
            let _ = conn.child.wait();
        }
        if !self.conns.is_empty() {
            let mut state = self.shared.lock();
            state
                .broken
                .get_or_insert_with(|| "the pool's I/O thread failed".into());
            state.queue.clear();
            state.workers.clear();
        }
        self.shared.finish();
    }
}

impl Io {
    fn run(mut self, started: &mpsc::Sender<Result<(), Error>>) {
        let _ = self.shared.io_thread.set(std::thread::current().id());
        // The constructor waits for the first worker only: the others start while it boots
        // and the first tasks are on their way.
        if let Err(e) = self.spawn_missing(true) {
            let _ = started.send(Err(e));
            self.close_all();
            return;
        }
        let _ = started.send(Ok(()));
        while self.turn() {}
        self.close_all();
    }

    /// One turn of the loop; false when the pool is done.
    fn turn(&mut self) -> bool {
        let now = Instant::now();
        let mut failures = Failures::new();
        let timeout;
        let shared = Arc::clone(&self.shared);
        {
            let mut state = shared.lock();
            self.send_terminations(&mut state);
            self.dispatch(&mut state, now, &mut failures);
            self.enforce_deadlines(&mut state, now);
            self.close_idle(&mut state, now);
            let idle =
                state.queue.is_empty() && state.workers.iter().all(|w| w.in_flight.is_empty());
            if (state.shutdown || state.broken.is_some()) && idle {
                drop(state);
                fail_all(failures);
                return false;
            }
            timeout = self.poll_timeout(&state, now);
            state.sleeping = true;
        }
        fail_all(failures);
        for i in 0..self.conns.len() {
            self.flush(i);
        }
        let timeout = match self.spawn_missing(false) {
            // One worker per turn, so that the new one gets work before the next is started.
            Ok(true) => Some(Duration::ZERO),
            Ok(false) => timeout,
            Err(e) => {
                self.break_pool(&e.to_string());
                Some(Duration::ZERO)
            }
        };
        self.wait_and_read(timeout);
        self.reap(Instant::now());
        true
    }

    /// Sends `Terminate` for the jobs whose futures asked for it.
    fn send_terminations(&mut self, state: &mut State) {
        for id in std::mem::take(&mut state.terminations) {
            for (worker, conn) in state.workers.iter_mut().zip(&mut self.conns) {
                if let Some(entry) = worker.in_flight.iter_mut().find(|e| e.id == id) {
                    if let Some((_, sent)) = &mut entry.stop {
                        *sent = Some(Instant::now());
                    }
                    let frame = ToWorker::Terminate { id };
                    // A tiny fixed-size message: encoding cannot fail.
                    let _ = write_frame(&mut conn.outbox, &frame, MAX_FRAME_LEN);
                }
            }
        }
    }

    /// Hands queued jobs to the least loaded workers with room.
    fn dispatch(&mut self, state: &mut State, now: Instant, failures: &mut Failures) {
        let config = &self.shared.config;
        while !state.queue.is_empty() {
            let best = state
                .workers
                .iter()
                .zip(&self.conns)
                .enumerate()
                .filter(|(_, (w, c))| {
                    w.accepts_work()
                        && c.stream.is_some()
                        && c.pending() < OUTBOX_SOFT_LIMIT
                        && w.has_room(now)
                })
                .min_by_key(|(_, (w, _))| w.in_flight.len())
                .map(|(i, _)| i);
            let Some(i) = best else { break };
            let Some(Queued { id, mut job, .. }) = state.queue.pop_front() else {
                break;
            };
            let calls = job.start();
            if calls == 0 {
                continue; // every call was cancelled
            }
            let Some(task) = job.task_fn() else {
                failures.push((job, closure_error()));
                continue;
            };
            let args = match job.encode_args() {
                Ok(args) => args,
                Err(e) => {
                    failures.push((job, e));
                    continue;
                }
            };
            let calls = u32::try_from(calls).unwrap_or(u32::MAX);
            let (trampoline, func) = task.to_raw();
            let run = ToWorker::Run {
                id,
                trampoline: image::to_offset(trampoline),
                func: image::to_offset(func),
                timeout_us: config
                    .task_timeout
                    .map(|t| saturating_micros(t.saturating_mul(calls))),
                args: Bytes(&args),
            };
            if let Err(e) = write_frame(&mut self.conns[i].outbox, &run, MAX_FRAME_LEN) {
                failures.push((job, Error::Serialization(e)));
                continue;
            }
            job.set_terminator(terminator(&self.shared, id));
            let frame_end = self.conns[i].queued_end();
            let worker = &mut state.workers[i];
            if worker.in_flight.is_empty() {
                worker.head_since = now;
            }
            worker.in_flight.push_back(InFlight {
                id,
                job,
                calls,
                frame_end,
                stop: None,
            });
            worker.sent += 1;
            if config.max_tasks_per_child.is_some_and(|m| worker.sent >= m) {
                worker.retiring = true;
            }
        }
    }

    /// Kills workers that overran a timeout, a stop request or the handshake.
    fn enforce_deadlines(&mut self, state: &mut State, now: Instant) {
        let timeout = self.shared.config.task_timeout;
        for (worker, conn) in state.workers.iter_mut().zip(&mut self.conns) {
            if conn.stream.is_none() {
                continue;
            }
            let reason = if worker.phase == Phase::Started
                && now - worker.spawned > HANDSHAKE_TIMEOUT
            {
                Some(format!(
                    "it did not answer the handshake within {HANDSHAKE_TIMEOUT:?}; does the \
                     worker program call primepool::run_worker_if_requested() first thing in main?"
                ))
            } else if let Some(head) = worker.in_flight.front_mut() {
                let overran = timeout.is_some_and(|t| {
                    worker.phase == Phase::Ready
                        && deadline(worker.head_since, t.saturating_mul(head.calls))
                            .and_then(|d| d.checked_add(STOP_GRACE))
                            .is_some_and(|d| now > d)
                });
                if overran {
                    head.stop = Some((StopReason::TimedOut, Some(now)));
                    Some("it overran a task's timeout and did not stop itself".to_owned())
                } else {
                    worker
                        .in_flight
                        .iter()
                        .any(|e| matches!(e.stop, Some((_, Some(at))) if now - at > STOP_GRACE))
                        .then(|| {
                            format!("it did not stop a job within {STOP_GRACE:?} of being asked")
                        })
                }
            } else {
                None
            };
            if let Some(reason) = reason {
                worker.ending = Some(Ending::Killed(reason));
                conn.kill(now);
            }
        }
    }

    /// Closes the channel of retiring workers that have answered everything, and of every
    /// worker once the pool is broken or done.
    fn close_idle(&mut self, state: &mut State, now: Instant) {
        let all_done = state.shutdown && state.queue.is_empty();
        let broken = state.broken.is_some();
        for (worker, conn) in state.workers.iter_mut().zip(&mut self.conns) {
            let idle = worker.in_flight.is_empty();
            if conn.stream.is_some() && ((worker.retiring && idle) || (all_done && idle) || broken)
            {
                worker.ending.get_or_insert(Ending::Closed);
                conn.close(now);
            }
        }
    }

    fn poll_timeout(&self, state: &State, now: Instant) -> Option<Duration> {
        let mut next: Option<Instant> = self.retry_spawn_at;
        let mut soonest = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        for (worker, conn) in state.workers.iter().zip(&self.conns) {
            if let Some(closed) = conn.closed_at {
                // Waiting for it to exit: check often, it is usually a matter of microseconds.
                soonest(now + Duration::from_millis(1).min(EXIT_GRACE));
                soonest(closed + EXIT_GRACE);
                continue;
            }
            if worker.phase == Phase::Started {
                soonest(worker.spawned + HANDSHAKE_TIMEOUT);
            }
            if !worker.in_flight.is_empty() {
                soonest(self.last_sweep + SWEEP_EVERY);
                if let (Some(t), Some(head)) =
                    (self.shared.config.task_timeout, worker.in_flight.front())
                {
                    if let Some(d) = deadline(worker.head_since, t.saturating_mul(head.calls)) {
                        if let Some(d) = d.checked_add(STOP_GRACE) {
                            soonest(d);
                        }
                    }
                }
                for entry in &worker.in_flight {
                    if let Some((_, Some(at))) = entry.stop {
                        soonest(at + STOP_GRACE);
                    }
                }
                // A worker held back only by the age of its oldest job gets more work once it
                // answers, which wakes us anyway.
            }
        }
        if !state.terminations.is_empty() {
            return Some(Duration::ZERO);
        }
        next.map(|at| at.saturating_duration_since(now))
    }

    /// Sleeps until a channel or the waker is ready (or the timeout), then reads every
    /// readable channel.
    fn wait_and_read(&mut self, timeout: Option<Duration>) {
        let mut fds = Vec::with_capacity(self.conns.len() + 1);
        fds.push(libc::pollfd {
            fd: self.wake_rx.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        let mut index = Vec::with_capacity(self.conns.len());
        for (i, conn) in self.conns.iter().enumerate() {
            if let Some(stream) = &conn.stream {
                let mut events = libc::POLLIN;
                if conn.pending() > 0 {
                    events |= libc::POLLOUT;
                }
                fds.push(libc::pollfd {
                    fd: stream.as_raw_fd(),
                    events,
                    revents: 0,
                });
                index.push(i);
            }
        }
        let ready = sys::poll(&mut fds, timeout).unwrap_or(0);
        {
            let mut state = self.shared.lock();
            state.sleeping = false;
            state.woken = false;
        }
        if ready == 0 {
            return;
        }
        if fds[0].revents != 0 {
            let mut sink = [0u8; 64];
            while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
        }
        for (fd, &i) in fds[1..].iter().zip(&index) {
            if fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                self.read(i);
            }
            if fd.revents & libc::POLLOUT != 0 {
                self.flush(i);
            }
        }
    }

    /// Writes worker `i`'s outbox. A worker that is gone is left for `reap` to bury.
    fn flush(&mut self, i: usize) {
        match self.conns[i].flush() {
            Ok(()) => {}
            Err(e) if peer_gone(&e) => self.conns[i].close(Instant::now()),
            Err(e) => self.on_channel_error(i, &format!("writing to the worker: {e}")),
        }
    }

    /// Reads and handles everything worker `i` has sent, until it would block or ends.
    fn read(&mut self, i: usize) {
        loop {
            let conn = &mut self.conns[i];
            let Some(stream) = &mut conn.stream else {
                return;
            };
            match conn.reader.fill(stream) {
                Ok(0) => {
                    let now = Instant::now();
                    let truncated = conn.reader.finish().err();
                    conn.close(now);
                    if let Some(e) = truncated {
                        self.on_channel_error(i, &e.to_string());
                    }
                    return;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if peer_gone(&e) => {
                    conn.close(Instant::now());
                    return;
                }
                Err(e) => {
                    self.on_channel_error(i, &format!("reading from the worker: {e}"));
                    return;
                }
            }
            if let Err(e) = self.handle_frames(i) {
                self.on_channel_error(i, &e);
                return;
            }
        }
    }

    /// Handles the complete frames buffered for worker `i`: one lock for the batch, futures
    /// completed after it.
    fn handle_frames(&mut self, i: usize) -> Result<(), String> {
        let conn = &mut self.conns[i];
        let mut ranges = Vec::new();
        let mut framing = Ok(());
        loop {
            match conn.reader.next_frame() {
                Ok(Some(range)) => ranges.push(range),
                Ok(None) => break,
                Err(e) => {
                    framing = Err(e.to_string());
                    break;
                }
            }
        }
        let reader = &conn.reader;
        let now = Instant::now();
        let mut replies: Vec<(Job, &[u8])> = Vec::with_capacity(ranges.len());
        let mut failures = Failures::new();
        let mut broken = None;
        let mut result = framing;
        let shared = Arc::clone(&self.shared);
        {
            let mut state = shared.lock();
            let worker = &mut state.workers[i];
            let pid = worker.pid;
            for range in ranges {
                let message = match protocol::decode::<FromWorker<'_>>(reader.payload(range)) {
                    Ok(m) => m,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                };
                let (id, outcome) = match message {
                    FromWorker::Hello => {
                        worker.phase = worker.phase.max(Phase::Greeted);
                        continue;
                    }
                    FromWorker::Ready => {
                        worker.phase = Phase::Ready;
                        self.startup_failures = 0;
                        continue;
                    }
                    FromWorker::Refused { reason } => {
                        broken = Some(reason);
                        break;
                    }
                    FromWorker::InitFailed { panic } => {
                        broken = Some(format!(
                            "the initializer panicked in worker process {pid}: {panic}"
                        ));
                        break;
                    }
                    FromWorker::Done { id, outcomes } => (id, Ok(outcomes.0)),
                    FromWorker::Failed { id, error } => (id, Err(Error::Serialization(error))),
                    FromWorker::Skipped { id } => (
                        id,
                        Err(Error::Terminated(format!(
                            "Future::terminate() removed it from worker process {pid} before it started"
                        ))),
                    ),
                    FromWorker::Stopped { id, timed_out } => {
                        worker.ending = Some(Ending::SelfStopped);
                        let reason = if timed_out { StopReason::TimedOut } else { StopReason::Requested };
                        let Some(entry) = worker.take(id, now) else {
                            continue;
                        };
                        let error = stop_error(reason, pid, entry.calls, &self.shared.config);
                        failures.push((entry.job, error));
                        continue;
                    }
                };
                let Some(entry) = worker.take(id, now) else {
                    result = Err(format!("an answer for job {id}, which it does not hold"));
                    break;
                };
                match (entry.stop, outcome) {
                    (Some(_), _) => failures.push((
                        entry.job,
                        Error::Terminated(
                            "Future::terminate() was called as it finished; its result was discarded"
                                .into(),
                        ),
                    )),
                    (None, Ok(bytes)) => replies.push((entry.job, bytes)),
                    (None, Err(e)) => failures.push((entry.job, e)),
                }
            }
            if let Some(reason) = &broken {
                failures.extend(break_state(&mut state, reason));
            }
        }
        for (job, bytes) in replies {
            job.complete_encoded(bytes);
        }
        fail_all(failures);
        if let Some(reason) = broken {
            self.break_pool(&reason);
        }
        result
    }

    /// Worker `i` sent bytes that are not the protocol, or its channel failed: kill it (its
    /// oldest job fails as if it had died).
    fn on_channel_error(&mut self, i: usize, what: &str) {
        let now = Instant::now();
        let shared = Arc::clone(&self.shared);
        let mut state = shared.lock();
        let worker = &mut state.workers[i];
        if worker.ending.is_none() || worker.ending == Some(Ending::SelfStopped) {
            worker.ending = Some(Ending::Killed(format!("protocol error: {what}")));
        }
        self.conns[i].kill(now);
    }

    /// Marks the pool broken, fails everything, closes every channel.
    fn break_pool(&mut self, reason: &str) {
        let shared = Arc::clone(&self.shared);
        let failures = break_state(&mut shared.lock(), reason);
        fail_all(failures);
    }

    /// Reaps workers that have exited, failing or requeueing what they held; kills those that
    /// overstay after their channel closed.
    fn reap(&mut self, now: Instant) {
        let sweep = now - self.last_sweep >= SWEEP_EVERY;
        if sweep {
            self.last_sweep = now;
        }
        let mut i = 0;
        while i < self.conns.len() {
            let conn = &mut self.conns[i];
            if conn.closed_at.is_none() && !sweep {
                i += 1;
                continue;
            }
            let status = match conn.child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) => {
                    if conn.closed_at.is_some_and(|at| now - at > EXIT_GRACE) {
                        let _ = conn.child.kill();
                    }
                    i += 1;
                    continue;
                }
                Err(_) => {
                    // Not ours to wait for any more (e.g. someone reaped it): treat as gone.
                    std::process::ExitStatus::default()
                }
            };
            // Take in what it managed to send before it went.
            if conn.stream.is_some() {
                self.read(i);
            }
            let delivered = self.conns.remove(i).delivered;
            let shared = Arc::clone(&self.shared);
            let failures = {
                let mut state = shared.lock();
                let worker = state.workers.remove(i);
                bury(
                    &mut state,
                    worker,
                    delivered,
                    &sys::describe(status),
                    &shared.config,
                    &mut self.startup_failures,
                )
            };
            fail_all(failures);
        }
    }

    /// Decides the fate of the jobs a dead worker held.
    /// Starts one worker if the pool is short of its strength (and there is reason to);
    /// returns whether it started one.
    fn spawn_missing(&mut self, initial: bool) -> Result<bool, Error> {
        {
            let state = self.shared.lock();
            let work_left =
                !state.queue.is_empty() || state.workers.iter().any(|w| !w.in_flight.is_empty());
            if state.broken.is_some() || (state.shutdown && !work_left) {
                return Ok(false);
            }
            let active = state.workers.iter().filter(|w| w.accepts_work()).count();
            if active >= self.shared.config.max_workers {
                return Ok(false);
            }
        }
        if self.retry_spawn_at.is_some_and(|at| Instant::now() < at) {
            return Ok(false);
        }
        self.retry_spawn_at = None;
        let config = &self.shared.config;
        let initializer = config.initializer.map(|f| image::to_offset(f as usize));
        match spawn::spawn(&config.command, initializer) {
            Ok((child, stream)) => {
                let now = Instant::now();
                let pid = child.id();
                self.conns.push(Conn {
                    child,
                    stream: Some(stream),
                    reader: FrameReader::new(MAX_FRAME_LEN),
                    outbox: Vec::new(),
                    written: 0,
                    delivered: 0,
                    closed_at: None,
                });
                self.shared.lock().workers.push(WorkerInfo {
                    pid,
                    phase: Phase::Started,
                    spawned: now,
                    ending: None,
                    retiring: false,
                    in_flight: VecDeque::new(),
                    sent: 0,
                    head_since: now,
                    service_ns: BUDGET.as_nanos() as f64 / 4.0,
                });
                Ok(true)
            }
            Err(e) => {
                let error = Error::Broken(e.to_string());
                self.startup_failures += 1;
                if initial || self.startup_failures >= MAX_STARTUP_FAILURES {
                    return Err(error);
                }
                let backoff = Duration::from_millis(50) * self.startup_failures;
                self.retry_spawn_at = Some(Instant::now() + backoff);
                Ok(false)
            }
        }
    }

    /// Closes every channel and reaps every worker: nothing outlives the pool.
    fn close_all(&mut self) {
        let now = Instant::now();
        {
            let state = self.shared.lock();
            for (i, conn) in self.conns.iter_mut().enumerate() {
                // A worker still starting holds nothing: rather than wait for it to boot only
                // to find its channel closed, end it now.
                let starting = state
                    .workers
                    .get(i)
                    .is_some_and(|w| w.phase < Phase::Ready && w.in_flight.is_empty());
                if starting {
                    let _ = conn.child.kill();
                }
                conn.close(now);
            }
        }
        let mut pause = Duration::from_micros(20);
        while !self.conns.is_empty() {
            let now = Instant::now();
            self.conns.retain_mut(|conn| match conn.child.try_wait() {
                Ok(None) => {
                    if conn.closed_at.is_some_and(|at| now - at > EXIT_GRACE) {
                        let _ = conn.child.kill();
                    }
                    true
                }
                _ => false,
            });
            if !self.conns.is_empty() {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(5));
            }
        }
        let mut state = self.shared.lock();
        let leftovers: Vec<_> = state.workers.drain(..).flat_map(|w| w.in_flight).collect();
        let reason = state
            .broken
            .clone()
            .unwrap_or_else(|| "the pool shut down".into());
        drop(state);
        for entry in leftovers {
            entry.job.fail(Error::Broken(reason.clone()));
        }
    }
}

/// Decides the fate of the jobs a dead worker held: a job being stopped fails as terminated;
/// the job it was running (if it was killed or died unexpectedly) fails with
/// [`Error::WorkerDied`]; the others never started and go back to the front of the queue.
fn bury(
    state: &mut State,
    worker: WorkerInfo,
    delivered: u64,
    status: &str,
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
    // A job that never fully reached the worker cannot have started (the worker was gone when
    // it was written): it goes back to the queue with the rest.
    let head_delivered = rest.front().is_some_and(|head| head.frame_end <= delivered);
    if running_head && head_delivered {
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
fn break_state(state: &mut State, reason: &str) -> Failures {
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

/// The error a channel gives once the worker's end is closed (its process ended).
fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

fn fail_all(failures: Failures) {
    for (job, error) in failures {
        job.fail(error);
    }
}

fn closure_error() -> Error {
    Error::Serialization(
        "a closure cannot leave this process; submit a plain fn to a process pool".into(),
    )
}

fn stop_error(reason: StopReason, pid: u32, calls: u32, config: &Config) -> Error {
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

fn deadline(from: Instant, after: Duration) -> Option<Instant> {
    from.checked_add(after)
}

fn saturating_micros(t: Duration) -> u64 {
    u64::try_from(t.as_micros()).unwrap_or(u64::MAX)
}

/// What `Future::terminate` calls for job `id` (a weak handle: a terminator never keeps a
/// pool alive).
fn terminator(shared: &Arc<Shared>, id: u64) -> Arc<dyn Fn() -> bool + Send + Sync> {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    Arc::new(move || weak.upgrade().is_some_and(|shared| shared.terminate(id)))
}
