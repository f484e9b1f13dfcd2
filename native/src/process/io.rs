//! The I/O thread: one per pool, it starts, feeds, watches and reaps the workers.
//!
//! It works in turns: it hands queued jobs to the least loaded workers with room (encoding each
//! as one frame in that worker's outbox), writes every outbox with one system call, sleeps in
//! `poll` on all the channels and its waker at once, decodes the answers in batches under one
//! lock and completes the futures after releasing it. Batching falls out of this shape: while
//! a turn runs, new jobs and answers accumulate, and the next turn moves them all at once.
//!
//! It is also the only thread that starts workers: on Linux a worker's parent-death signal
//! follows the *thread* that forked it, and this thread lives exactly as long as the pool.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use primepool_core::{Error, Job};

use super::conn::{peer_gone, Conn};
use super::frame::{write_frame, FrameReader, MAX_FRAME_LEN};
use super::image;
use super::protocol::{self, Bytes, FromWorker, ToWorker};
use super::spawn;
use super::state::*;
use super::sys;

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
pub(super) const MAX_STARTUP_FAILURES: u32 = 3;

/// Starts the pool: its I/O thread, which starts the workers. Fails if the first workers
/// cannot be started.
pub(crate) fn start(config: Config) -> Result<(Arc<Shared>, std::thread::JoinHandle<()>), Error> {
    let (waker, wake_rx) = UnixStream::pair().map_err(|e| io_error("creating a socket pair", e))?;
    for end in [&waker, &wake_rx] {
        end.set_nonblocking(true)
            .map_err(|e| io_error("configuring a socket", e))?;
    }
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
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
            let failures = break_state(&mut self.shared.lock(), "the pool's I/O thread failed");
            fail_all(failures);
        }
        self.shared.finish();
    }
}

impl Io {
    fn run(mut self, started: &mpsc::Sender<Result<(), Error>>) {
        let _ = self.shared.io_thread.set(std::thread::current().id());
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
            self.rebalance(&mut state, now);
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
            // New workers can take jobs at once.
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
            let worker = &mut state.workers[i];
            if worker.in_flight.is_empty() {
                worker.head_since = now;
            }
            worker.in_flight.push_back(InFlight {
                id,
                job,
                calls,
                started: false,
                revoking: false,
                stop: None,
            });
            worker.sent += 1;
            if config.max_tasks_per_child.is_some_and(|m| worker.sent >= m) {
                worker.retiring = true;
            }
        }
    }

    /// With the queue empty, takes back jobs waiting behind a long one on a busy worker, for
    /// workers with nothing to do: so that a slow job never holds up the jobs queued behind it
    /// while another worker idles, and the last jobs of a batch spread over every worker.
    fn rebalance(&mut self, state: &mut State, now: Instant) {
        if !state.queue.is_empty() {
            return;
        }
        let idle = state
            .workers
            .iter()
            .zip(&self.conns)
            .filter(|(w, c)| w.accepts_work() && c.stream.is_some() && w.in_flight.is_empty())
            .count();
        let underway = state
            .workers
            .iter()
            .flat_map(|w| &w.in_flight)
            .filter(|e| e.revoking && !e.started)
            .count();
        if idle <= underway {
            return;
        }
        // Every job waiting behind an oldest job that has run long goes back.
        for (worker, conn) in state.workers.iter_mut().zip(&mut self.conns) {
            if now - worker.head_since < BUDGET || conn.stream.is_none() {
                continue;
            }
            for entry in worker.in_flight.iter_mut().skip(1) {
                if !entry.started && !entry.revoking && entry.stop.is_none() {
                    entry.revoking = true;
                    let frame = ToWorker::Revoke { id: entry.id };
                    // A tiny fixed-size message: encoding cannot fail.
                    let _ = write_frame(&mut conn.outbox, &frame, MAX_FRAME_LEN);
                }
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
                    head.started
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
            if conn.stream.is_some() && (((worker.retiring || all_done) && idle) || broken) {
                worker.ending.get_or_insert(Ending::Closed);
                conn.close(now);
            }
        }
    }

    fn poll_timeout(&self, state: &State, now: Instant) -> Option<Duration> {
        let mut next: Option<Instant> = self.retry_spawn_at;
        let mut soonest = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        let someone_idle = state.queue.is_empty()
            && state
                .workers
                .iter()
                .zip(&self.conns)
                .any(|(w, c)| w.accepts_work() && c.stream.is_some() && w.in_flight.is_empty());
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
                // Jobs waiting behind the oldest can go to an idle worker once it has run long
                // (see `rebalance`).
                let waiting = worker
                    .in_flight
                    .iter()
                    .skip(1)
                    .any(|e| !e.started && !e.revoking && e.stop.is_none());
                if someone_idle && waiting {
                    soonest(worker.head_since + BUDGET);
                }
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
        let mut revoked = Vec::new();
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
                    FromWorker::Started { id } => {
                        if let Some(at) = worker.in_flight.iter().position(|e| e.id == id) {
                            worker.in_flight[at].started = true;
                            if at == 0 {
                                worker.head_since = now;
                            }
                        }
                        continue;
                    }
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
                    FromWorker::Revoked { id } => {
                        if let Some(entry) = worker.take(id, now) {
                            revoked.push(entry);
                        }
                        continue;
                    }
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
            // Given back unstarted: first in line for the next worker with room. (A job asked
            // to terminate meanwhile fails now instead.)
            for entry in revoked.into_iter().rev() {
                match entry.stop {
                    Some(_) => failures.push((
                        entry.job,
                        Error::Terminated(format!(
                            "Future::terminate() removed it from worker process {pid} before it started"
                        )),
                    )),
                    None => state.queue.push_front(Queued {
                        id: entry.id,
                        job: entry.job,
                        requeued: true,
                    }),
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
            self.conns.remove(i);
            let shared = Arc::clone(&self.shared);
            let failures = {
                let mut state = shared.lock();
                let worker = state.workers.remove(i);
                bury(
                    &mut state,
                    worker,
                    &sys::describe(status),
                    &shared.config,
                    &mut self.startup_failures,
                )
            };
            fail_all(failures);
        }
    }

    /// Decides the fate of the jobs a dead worker held.
    /// Starts workers until the pool is at full strength (when there is reason to); returns
    /// whether it started any. Starting one costs a `fork`: they boot in parallel.
    fn spawn_missing(&mut self, initial: bool) -> Result<bool, Error> {
        let mut started = false;
        while self.spawn_one(initial)? {
            started = true;
        }
        Ok(started)
    }

    /// Starts one worker if the pool is short of its strength; returns whether it did.
    fn spawn_one(&mut self, initial: bool) -> Result<bool, Error> {
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
                    // A window of two until the first answers tell how long jobs take.
                    service_ns: BUDGET.as_nanos() as f64 / 2.0,
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

fn deadline(from: Instant, after: Duration) -> Option<Instant> {
    from.checked_add(after)
}

fn saturating_micros(t: Duration) -> u64 {
    u64::try_from(t.as_micros()).unwrap_or(u64::MAX)
}
