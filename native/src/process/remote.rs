//! A worker process as the pool's I/O thread sees it, in one value: the process, its channel
//! and the bytes in transit, how far it has come through start-up, and its window of jobs in
//! flight. Only the I/O thread holds these, so no lock guards them.
//!
//! Each worker has a bounded, adaptive window of jobs in flight: enough that it never waits a
//! round trip for its next job, small enough that a slow job delays little behind it. The
//! window is sized from the worker's recent job durations (up to [`MAX_WINDOW`] for
//! microsecond jobs, [`MIN_WINDOW`] for jobs longer than [`BUDGET`]); a worker whose current
//! job has run longer than [`BUDGET`] gets nothing more until it answers, and the jobs waiting
//! behind that job are taken back when another worker idles, so a long task never holds a
//! queue of short ones hostage.
//!
//! A worker runs its jobs in order, says `Started` before each and answers it before starting
//! the next, so the pool always knows which job it is running. When a worker dies, that job
//! alone fails (with [`Error::WorkerDied`]); the jobs queued behind it never started and go
//! back to the front of the pool's queue (see [`Remote::bury`]).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use primepool_core::backend::Job;
use primepool_core::{Error, WorkerId};

use super::frame::{FrameReader, MAX_FRAME_LEN};
use super::protocol::{self, FromWorker};
use super::spawn::Process;
use super::state::{Config, Failures, Ticket};
use super::sys::{self, peer_gone};
use super::worker::EXIT_NO_CHANNEL;

/// The queued work a worker should hold, in time: the window adapts to keep about this much.
pub(super) const BUDGET: Duration = Duration::from_millis(2);
/// The most jobs in flight to one worker.
pub(super) const MAX_WINDOW: usize = 128;
/// The fewest: one running and one waiting, so a worker never idles for a round trip between
/// jobs. (A job waiting behind a long one is taken back for an idle worker: see
/// `Io::rebalance`.)
pub(super) const MIN_WINDOW: usize = 2;
/// Consecutive start-up failures after which the pool is declared broken.
pub(super) const MAX_STARTUP_FAILURES: u32 = 3;

/// Why a job in flight is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopReason {
    Requested,
    TimedOut,
}

/// A job sent to a worker and not answered yet.
pub(super) struct InFlight {
    pub(super) id: u64,
    pub(super) job: Job,
    pub(super) calls: u32,
    /// Shared with the job's terminator: whether `Future::terminate` asked to stop it.
    pub(super) ticket: Arc<Ticket>,
    /// The worker said it started it: only such a job can be blamed for the worker's death.
    pub(super) started: bool,
    /// The pool asked for it back (for an idle worker); it may still start here.
    pub(super) revoking: bool,
    /// Set when the pool sent a stop request (`Terminate`, or a timeout it enforces), with the
    /// time the request went out.
    pub(super) stop: Option<(StopReason, Instant)>,
}

impl InFlight {
    /// Why the job is being stopped, if it is: the pool's own request, or a terminate the
    /// pool has not acted on yet.
    pub(super) fn stopping(&self) -> Option<StopReason> {
        self.stop.map(|(reason, _)| reason).or_else(|| {
            self.ticket
                .stop_requested()
                .then_some(StopReason::Requested)
        })
    }
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

/// One worker process, as the I/O thread knows it.
pub(super) struct Remote {
    process: Process,
    /// `None` once the channel is closed (by us, or end-of-file from the worker). Shared only
    /// with [`Lane`](super::state::Lane)s, which the I/O thread withdraws before it closes
    /// anything, so dropping this closes the channel.
    stream: Option<Arc<UnixStream>>,
    reader: FrameReader,
    outbox: Vec<u8>,
    written: usize,
    /// Since when the pool has been waiting for the process to exit.
    closed_at: Option<Instant>,
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
    service_ns: f64,
}

/// What a batch of a worker's frames asks of the pool, beyond its own window.
#[derive(Default)]
pub(super) struct Answers {
    /// Results to complete, as ranges of the worker's read buffer ([`Remote::payload`]).
    pub(super) replies: Vec<(Job, Range<usize>)>,
    pub(super) failures: Failures,
    /// Jobs given back unstarted, in window order: first in line for the next worker.
    pub(super) revoked: Vec<InFlight>,
    /// The worker says the pool cannot work (a different image, a failed initializer).
    pub(super) broken: Option<String>,
    /// The worker finished starting up.
    pub(super) ready: bool,
    /// The worker broke the protocol: kill it.
    pub(super) error: Option<String>,
}

/// What becomes of the jobs a dead worker held.
pub(super) struct Burial {
    pub(super) failures: Failures,
    /// Jobs that never started, in order: back to the front of the queue.
    pub(super) requeue: Vec<InFlight>,
    /// Workers keep dying before they are ready: the pool breaks, for this reason.
    pub(super) broken: Option<String>,
}

/// How reading a worker's channel went.
pub(super) enum Fill {
    /// Bytes arrived (perhaps not a whole frame).
    Data,
    /// Nothing more to read now.
    Empty,
    /// The channel is closed (end of file, or the worker is gone).
    Closed,
    /// The channel failed, or the stream ended inside a frame.
    Failed(String),
}

impl Remote {
    /// A worker just started, with the pool's end of its channel.
    pub(super) fn new(process: Process, stream: UnixStream, now: Instant) -> Self {
        Remote {
            process,
            stream: Some(Arc::new(stream)),
            reader: FrameReader::new(MAX_FRAME_LEN),
            outbox: Vec::new(),
            written: 0,
            closed_at: None,
            phase: Phase::Started,
            spawned: now,
            ending: None,
            retiring: false,
            in_flight: VecDeque::new(),
            sent: 0,
            head_since: now,
            // A window of two until the first answers tell how long jobs take.
            service_ns: BUDGET.as_nanos() as f64 / 2.0,
        }
    }

    /// The worker's process id.
    pub(super) fn pid(&self) -> u32 {
        self.process.id()
    }

    pub(super) fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// A descriptor that becomes readable when the process ends, where the system has one.
    pub(super) fn exit_fd(&self) -> Option<RawFd> {
        self.process.exit_fd()
    }

    /// The channel, while it is open.
    pub(super) fn stream(&self) -> Option<&UnixStream> {
        self.stream.as_deref()
    }

    /// The channel, for a caller to write a `Run` frame itself while this worker is a
    /// [`Lane`](super::state::Lane).
    pub(super) fn shared_stream(&self) -> Option<Arc<UnixStream>> {
        self.stream.clone()
    }

    pub(super) fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// Since when the pool has been waiting for the process to exit, once its channel closed.
    pub(super) fn closed_at(&self) -> Option<Instant> {
        self.closed_at
    }

    /// Where encoded frames for the worker go; [`flush`](Self::flush) sends them.
    pub(super) fn outbox(&mut self) -> &mut Vec<u8> {
        &mut self.outbox
    }

    /// Bytes in the outbox not written yet.
    pub(super) fn pending(&self) -> usize {
        self.outbox.len() - self.written
    }

    pub(super) fn close(&mut self, now: Instant) {
        self.stream = None;
        self.closed_at.get_or_insert(now);
    }

    pub(super) fn kill(&mut self, now: Instant) {
        let _ = self.process.kill();
        self.close(now);
    }

    /// Writes as much of the outbox as the channel takes now.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        let Some(stream) = self.stream.as_deref() else {
            self.outbox.clear();
            self.written = 0;
            return Ok(());
        };
        while self.written < self.outbox.len() {
            match (&*stream).write(&self.outbox[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
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

    /// Reads once from the channel into the frame buffer. At end of file the channel is
    /// closed (and a frame cut short is a failure).
    pub(super) fn fill(&mut self, now: Instant) -> Fill {
        loop {
            let Some(mut stream) = self.stream.as_deref() else {
                return Fill::Closed;
            };
            return match self.reader.fill(&mut stream) {
                Ok(0) => {
                    self.close(now);
                    match self.reader.finish() {
                        Ok(()) => Fill::Closed,
                        Err(e) => Fill::Failed(e.to_string()),
                    }
                }
                Ok(_) => Fill::Data,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Fill::Empty,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if peer_gone(&e) => {
                    self.close(now);
                    Fill::Closed
                }
                Err(e) => Fill::Failed(format!("reading from the worker: {e}")),
            };
        }
    }

    /// The bytes of a reply range from [`Answers::replies`].
    pub(super) fn payload(&self, range: Range<usize>) -> &[u8] {
        self.reader.payload(range)
    }

    pub(super) fn accepts_work(&self) -> bool {
        self.ending.is_none() && !self.retiring
    }

    /// It takes new jobs now: not going away, channel open, not backed up.
    pub(super) fn can_take(&self, outbox_limit: usize) -> bool {
        self.accepts_work() && self.is_open() && self.pending() < outbox_limit
    }

    pub(super) fn window(&self) -> usize {
        let fit = BUDGET.as_nanos() as f64 / self.service_ns.max(1.0);
        (fit as usize).clamp(MIN_WINDOW, MAX_WINDOW)
    }

    pub(super) fn has_room(&self, now: Instant) -> bool {
        self.in_flight.is_empty()
            || (self.in_flight.len() < self.window() && now - self.head_since < BUDGET)
    }

    /// Takes a job whose `Run` frame was just sent (or queued in the outbox) into the window.
    pub(super) fn sent_job(
        &mut self,
        id: u64,
        job: Job,
        calls: u32,
        ticket: Arc<Ticket>,
        config: &Config,
        now: Instant,
    ) {
        if self.in_flight.is_empty() {
            self.head_since = now;
        }
        self.in_flight.push_back(InFlight {
            id,
            job,
            calls,
            ticket,
            started: false,
            revoking: false,
            stop: None,
        });
        self.sent += 1;
        if config.max_tasks_per_child.is_some_and(|m| self.sent >= m) {
            self.retiring = true;
        }
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

    /// Decodes the complete frames buffered from the worker and applies them to its window.
    /// No lock is needed: what concerns the rest of the pool is returned.
    pub(super) fn take_answers(&mut self, config: &Config, now: Instant) -> Answers {
        let mut answers = Answers::default();
        let mut ranges = Vec::new();
        loop {
            match self.reader.next_frame() {
                Ok(Some(range)) => ranges.push(range),
                Ok(None) => break,
                Err(e) => {
                    answers.error = Some(e.to_string());
                    break;
                }
            }
        }
        let pid = self.pid();
        for range in ranges {
            let message = match protocol::decode::<FromWorker<'_>>(self.reader.payload(range)) {
                Ok(m) => m,
                Err(e) => {
                    answers.error = Some(e);
                    break;
                }
            };
            let (id, outcome) = match message {
                FromWorker::Started { id } => {
                    if let Some(at) = self.in_flight.iter().position(|e| e.id == id) {
                        self.in_flight[at].started = true;
                        if at == 0 {
                            self.head_since = now;
                        }
                    }
                    continue;
                }
                FromWorker::Hello => {
                    self.phase = self.phase.max(Phase::Greeted);
                    continue;
                }
                FromWorker::Ready => {
                    self.phase = Phase::Ready;
                    answers.ready = true;
                    continue;
                }
                FromWorker::Refused { reason } => {
                    answers.broken = Some(reason);
                    break;
                }
                FromWorker::InitFailed { panic } => {
                    answers.broken = Some(format!(
                        "the initializer panicked in worker process {pid}: {panic}"
                    ));
                    break;
                }
                FromWorker::Done { id, outcomes } => (id, Ok(self.reader.range_of(outcomes.0))),
                FromWorker::Failed { id, error } => (id, Err(Error::Serialization(error))),
                FromWorker::Skipped { id } => {
                    if let Some(entry) = self.take(id, now) {
                        entry.ticket.settle();
                        answers.failures.push((entry.job, skipped_error(pid)));
                    }
                    continue;
                }
                FromWorker::Revoked { id } => {
                    if let Some(entry) = self.take(id, now) {
                        answers.revoked.push(entry);
                    }
                    continue;
                }
                FromWorker::Stopped { id, timed_out } => {
                    self.ending = Some(Ending::SelfStopped);
                    let reason = if timed_out {
                        StopReason::TimedOut
                    } else {
                        StopReason::Requested
                    };
                    if let Some(entry) = self.take(id, now) {
                        entry.ticket.settle();
                        let error = stop_error(reason, pid, entry.calls, config);
                        answers.failures.push((entry.job, error));
                    }
                    continue;
                }
            };
            let Some(entry) = self.take(id, now) else {
                answers.error = Some(format!("an answer for job {id}, which it does not hold"));
                break;
            };
            // Settling first: a terminate that comes later finds the job answered.
            let asked_to_stop = !entry.ticket.settle() || entry.stop.is_some();
            match (asked_to_stop, outcome) {
                (true, _) => answers.failures.push((
                    entry.job,
                    Error::Terminated(
                        "Future::terminate() was called as it finished; its result was discarded"
                            .into(),
                    ),
                )),
                (false, Ok(range)) => answers.replies.push((entry.job, range)),
                (false, Err(e)) => answers.failures.push((entry.job, e)),
            }
        }
        answers
    }

    /// Decides the fate of the jobs the worker held, now that it is dead (`exit` says how it
    /// ended): a job being stopped fails as terminated; the job it was running (if it was
    /// killed or died unexpectedly) fails with [`Error::WorkerDied`]; the others never started
    /// and go back to the queue. A worker that dies on its own before it is ready counts
    /// towards `startup_failures`.
    pub(super) fn bury(
        self,
        exit: ExitStatus,
        config: &Config,
        startup_failures: &mut u32,
    ) -> Burial {
        let mut burial = Burial {
            failures: Failures::new(),
            requeue: Vec::new(),
            broken: None,
        };
        let pid = self.pid();
        let status = &sys::describe(exit);
        let sigkilled = exit.signal() == Some(libc::SIGKILL);
        // Jobs being stopped fail as terminated, wherever they were.
        let mut rest = VecDeque::with_capacity(self.in_flight.len());
        for entry in self.in_flight {
            match entry.stopping() {
                Some(reason) => {
                    entry.ticket.settle();
                    let error = stop_error(reason, pid, entry.calls, config);
                    burial.failures.push((entry.job, error));
                }
                None => rest.push_back(entry),
            }
        }
        let running_head = match &self.ending {
            Some(Ending::Closed | Ending::SelfStopped) => false,
            Some(Ending::Killed(_)) => true,
            // A SIGKILL from outside (an operator, the OOM killer) says nothing about the
            // worker program, so it does not count towards breaking the pool; a worker that
            // exits or crashes on its own before it is ready does.
            None if self.phase < Phase::Ready && sigkilled => false,
            // It never got its channel: every worker will fail the same way, so say why now
            // (not "does it call run_worker_if_requested", which it does).
            None if self.phase < Phase::Ready && exit.code() == Some(EXIT_NO_CHANNEL) => {
                burial.broken = Some(format!(
                    "worker process {pid} did not receive its channel ({status}): the socket \
                     descriptor the pool passed to it did not survive the exec. The C \
                     library's posix_spawn must clear close-on-exec on a dup2(fd, fd) file \
                     action, as POSIX.1-2024 specifies and glibc and musl do; this one does \
                     not (or the worker program closed the descriptor before calling \
                     primepool::run_worker_if_requested())"
                ));
                false
            }
            None if self.phase < Phase::Ready => {
                *startup_failures += 1;
                if *startup_failures >= MAX_STARTUP_FAILURES {
                    burial.broken = Some(format!(
                        "worker processes keep ending before they are ready (the last, process \
                         {pid}: {status}); does the worker program call \
                         primepool::run_worker_if_requested() first thing in main?"
                    ));
                }
                false
            }
            None => true,
        };
        // Only a job the worker said it started can have been running; one it never started
        // (it may have died idle, before reading it) goes back to the queue with the rest.
        if running_head && rest.front().is_some_and(|head| head.started) {
            if let Some(head) = rest.pop_front() {
                head.ticket.settle();
                let status = match &self.ending {
                    Some(Ending::Killed(why)) => format!("{status}; the pool killed it: {why}"),
                    _ => status.to_owned(),
                };
                burial.failures.push((
                    head.job,
                    Error::WorkerDied {
                        worker: WorkerId::Process(pid),
                        status,
                    },
                ));
            }
        }
        burial.requeue = rest.into();
        burial
    }
}

/// The error of a job that `Future::terminate` removed before it started.
pub(super) fn skipped_error(pid: u32) -> Error {
    Error::Terminated(format!(
        "Future::terminate() removed it from worker process {pid} before it started"
    ))
}

/// The error of a job stopped for `reason` in worker `pid`.
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
