//! The I/O thread: one per pool, it starts, feeds, watches and reaps the workers.
//!
//! It works in turns: it acts on terminate requests, hands queued jobs to the least loaded
//! workers with room (encoding each as one frame in that worker's outbox), writes every outbox
//! with one system call, sleeps in `poll` on all the channels and its waker at once, decodes
//! the answers in batches and completes the futures, with no lock held. Batching falls out of
//! this shape: while a turn runs, new jobs and answers accumulate, and the next turn moves them
//! all at once.
//!
//! A lone job on an idle pool does not wait for this thread: it goes out through a lane (see
//! `state`), and this thread takes it into the worker's window (`adopt`) before it decodes
//! that worker's answers.
//!
//! It owns every [`Remote`] (a worker's process, channel and jobs in flight, in one value);
//! the state it shares with the pool's handle ([`Shared`]) is the queue and the pool's flags.
//! It is also the only thread that starts workers: on Linux a worker's parent-death signal
//! follows the *thread* that started it, and this thread lives exactly as long as the pool.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use primepool_core::Error;

use super::frame::{write_frame, MAX_FRAME_LEN};
use super::image;
use super::protocol::ToWorker;
use super::remote::{
    skipped_error, Ending, Fill, Phase, Remote, StopReason, BUDGET, MAX_STARTUP_FAILURES,
};
use super::spawn;
use super::spin::Spin;
use super::state::{
    encode_run, fail_all, terminator, Config, Direct, Failures, Lane, Queued, Shared, State, Ticket,
};
use super::sys::{self, peer_gone};

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
/// How long after the last job the I/O thread goes on publishing idle workers as lanes.
const LANE_LINGER: Duration = Duration::from_secs(1);

/// Starts the pool: its I/O thread, which starts the workers. Returns at once, without
/// waiting for them: the caller can queue work while they boot (it reaches their channels
/// before they are up). If the first workers cannot be started, the pool breaks and says why
/// (the program itself was checked when the pool was built).
pub(super) fn start(config: Config) -> Result<(Arc<Shared>, JoinHandle<()>), Error> {
    let (waker, wake_rx) = UnixStream::pair().map_err(|e| io_error("creating a socket pair", e))?;
    for end in [&waker, &wake_rx] {
        end.set_nonblocking(true)
            .map_err(|e| io_error("configuring a socket", e))?;
    }
    let shared = Arc::new(Shared::new(config, waker));
    let io = Io::new(Arc::clone(&shared), wake_rx);
    let handle = std::thread::Builder::new()
        .name("primepool-process-pool".into())
        .spawn(move || io.run())
        .map_err(|e| io_error("starting the pool's I/O thread", e))?;
    Ok((shared, handle))
}

fn io_error(what: &str, e: io::Error) -> Error {
    Error::Broken(format!("{what}: {e}"))
}

/// The I/O thread's own state.
struct Io {
    shared: Arc<Shared>,
    /// Every worker not yet reaped (only this thread adds or removes them).
    workers: Vec<Remote>,
    wake_rx: UnixStream,
    startup_failures: u32,
    retry_spawn_at: Option<Instant>,
    last_sweep: Instant,
    /// When a job last went to a worker: lanes are published for a while after it.
    last_work: Instant,
    /// How long this thread waits awake for answers before it sleeps (see `spin`).
    spin: Spin,
    /// The last job sent went through a lane (a lone job): a loop of lone round trips is on,
    /// whose answers this thread waits for awake.
    lone: bool,
}

impl Drop for Io {
    /// Normally every worker is reaped before this; after a panic, make sure none is left.
    fn drop(&mut self) {
        // No channel may stay open through a lane.
        self.shared.lock().lanes.clear();
        for worker in &mut self.workers {
            let _ = worker.process().kill();
            let _ = worker.process().wait();
        }
        if !self.workers.is_empty() {
            self.break_pool("the pool's I/O thread failed");
        }
        self.shared.finish();
    }
}

impl Io {
    /// The I/O thread's state for the pool `shared`, woken through `wake_rx`; no workers yet.
    fn new(shared: Arc<Shared>, wake_rx: UnixStream) -> Self {
        Io {
            shared,
            workers: Vec::new(),
            wake_rx,
            startup_failures: 0,
            retry_spawn_at: None,
            last_sweep: Instant::now(),
            last_work: Instant::now(),
            spin: Spin::default(),
            lone: false,
        }
    }

    fn run(mut self) {
        self.shared.set_io_thread();
        // Done-callbacks and wakers of the pool's futures run on this thread. One that blocked
        // on another future of the pool would stall the thread that completes it, for ever:
        // here a blocking wait returns `Error::WouldBlock` at once instead (the browser
        // contract of `primepool::blocking`).
        primepool_core::blocking::forbid_on_this_thread();
        if let Err(e) = self.spawn_missing(true) {
            self.break_pool(&e.to_string());
        }
        while self.turn() {}
        self.close_all();
    }

    /// One turn of the loop; false when the pool is done.
    fn turn(&mut self) -> bool {
        let now = Instant::now();
        let mut failures = Failures::new();
        let timeout;
        let light;
        let shared = Arc::clone(&self.shared);
        {
            let mut state = shared.lock();
            self.adopt(&mut state);
            self.send_terminations(&mut state, &mut failures);
            self.dispatch(&mut state, now, &mut failures);
            self.rebalance(&state, now);
            self.enforce_deadlines(now);
            self.close_idle(&state, now);
            // After every change to the outboxes and channels (and before ending: a lane
            // holds a channel open).
            self.refresh_lanes(&mut state);
            self.publish(&mut state);
            let idle =
                state.queue.is_empty() && self.workers.iter().all(|w| w.in_flight.is_empty());
            if (state.shutdown || state.broken.is_some()) && idle {
                drop(state);
                fail_all(failures);
                return false;
            }
            timeout = self.poll_timeout(&state, now);
            // Lone jobs through lanes: an answer (or, with the lanes out, the next lone job's)
            // is expected within microseconds, so this thread waits for it awake for a moment.
            // Never while jobs go out in batches, where a spinning thread would take a CPU
            // from the threads that do the work.
            light = self.lone
                && state.queue.is_empty()
                && self.workers.iter().all(|w| w.in_flight.len() <= 1);
            state.sleeping = true;
        }
        fail_all(failures);
        for i in 0..self.workers.len() {
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
        self.wait_and_read(timeout, light);
        self.reap(Instant::now());
        true
    }

    /// The pids of the workers that take work, for [`Shared::worker_pids`], if they changed.
    fn publish(&self, state: &mut State) {
        let serving = || {
            self.workers
                .iter()
                .filter(|w| w.accepts_work())
                .map(Remote::pid)
        };
        if !state.pids.iter().copied().eq(serving()) {
            state.pids = serving().collect();
        }
    }

    /// Acts on the terminate requests: `Terminate` to the worker holding the job, or the job
    /// out of the queue (it was sent once, to a worker that gave it back or died).
    fn send_terminations(&mut self, state: &mut State, failures: &mut Failures) {
        for id in std::mem::take(&mut state.terminations) {
            let held = self.workers.iter_mut().find_map(|worker| {
                let at = worker.in_flight.iter().position(|e| e.id == id)?;
                Some((worker, at))
            });
            if let Some((worker, at)) = held {
                let entry = &mut worker.in_flight[at];
                if entry.stop.is_none() {
                    entry.stop = Some((StopReason::Requested, Instant::now()));
                    let frame = ToWorker::Terminate { id };
                    // A tiny fixed-size message: encoding cannot fail.
                    let _ = write_frame(worker.outbox(), &frame, MAX_FRAME_LEN);
                }
                continue;
            }
            if let Some(at) = state.queue.iter().position(|q| q.id == id) {
                if let Some(queued) = state.queue.remove(at) {
                    failures.push((queued.job, removed_from_queue()));
                }
            }
            // Otherwise its outcome was taken in meanwhile: nothing left to stop.
        }
    }

    /// Hands queued jobs to the least loaded workers with room.
    fn dispatch(&mut self, state: &mut State, now: Instant, failures: &mut Failures) {
        let config = &self.shared.config;
        while !state.queue.is_empty() {
            let best = self
                .workers
                .iter()
                .enumerate()
                .filter(|(_, w)| w.can_take(OUTBOX_SOFT_LIMIT) && w.has_room(now))
                .min_by_key(|(_, w)| w.in_flight.len())
                .map(|(i, _)| i);
            let Some(i) = best else { break };
            let Some(Queued {
                id,
                mut job,
                ticket,
            }) = state.queue.pop_front()
            else {
                break;
            };
            if ticket.as_ref().is_some_and(|t| t.stop_requested()) {
                failures.push((job, removed_from_queue()));
                continue;
            }
            self.last_work = now;
            self.lone = false;
            let worker = &mut self.workers[i];
            let calls = match encode_run(&mut job, id, config, false, worker.outbox()) {
                Ok(Some(calls)) => calls,
                Ok(None) => continue, // its future was cancelled
                Err(e) => {
                    failures.push((job, e));
                    continue;
                }
            };
            let ticket = ticket.unwrap_or_else(|| {
                let ticket = Arc::new(Ticket::default());
                job.set_terminator(terminator(&self.shared, id, Arc::clone(&ticket)));
                ticket
            });
            worker.sent_job(id, job, calls, ticket, config, now);
        }
    }

    /// With the queue empty, takes back jobs waiting behind a long one on a busy worker, for
    /// workers with nothing to do: so that a slow job never holds up the jobs queued behind it
    /// while another worker idles, and the last jobs of a batch spread over every worker.
    fn rebalance(&mut self, state: &State, now: Instant) {
        if !state.queue.is_empty() {
            return;
        }
        let idle = self
            .workers
            .iter()
            .filter(|w| w.accepts_work() && w.is_open() && w.in_flight.is_empty())
            .count();
        let underway = self
            .workers
            .iter()
            .flat_map(|w| &w.in_flight)
            .filter(|e| e.revoking && !e.started)
            .count();
        if idle <= underway {
            return;
        }
        // Every job waiting behind an oldest job that has run long goes back.
        for worker in &mut self.workers {
            if now - worker.head_since < BUDGET || !worker.is_open() {
                continue;
            }
            let mut frames = Vec::new();
            for entry in worker.in_flight.iter_mut().skip(1) {
                if !entry.started && !entry.revoking && entry.stop.is_none() {
                    entry.revoking = true;
                    frames.push(ToWorker::Revoke { id: entry.id });
                }
            }
            for frame in frames {
                // A tiny fixed-size message: encoding cannot fail.
                let _ = write_frame(worker.outbox(), &frame, MAX_FRAME_LEN);
            }
        }
    }

    /// Kills workers that overran a timeout, a stop request or the handshake.
    fn enforce_deadlines(&mut self, now: Instant) {
        let timeout = self.shared.config.task_timeout;
        for worker in &mut self.workers {
            if !worker.is_open() {
                continue;
            }
            let reason = if worker.phase == Phase::Started
                && now - worker.spawned > HANDSHAKE_TIMEOUT
            {
                Some(format!(
                    "it did not answer the handshake within {HANDSHAKE_TIMEOUT:?}; does the \
                     worker program call primepool::run_worker_if_requested() first thing in main?"
                ))
            } else if let Some(head) = worker.in_flight.front() {
                let overran = timeout.is_some_and(|t| {
                    head.started
                        && deadline(worker.head_since, t.saturating_mul(head.calls))
                            .and_then(|d| d.checked_add(STOP_GRACE))
                            .is_some_and(|d| now > d)
                });
                if overran {
                    if let Some(head) = worker.in_flight.front_mut() {
                        head.stop = Some((StopReason::TimedOut, now));
                    }
                    Some("it overran a task's timeout and did not stop itself".to_owned())
                } else {
                    worker
                        .in_flight
                        .iter()
                        .any(|e| matches!(e.stop, Some((_, at)) if now - at > STOP_GRACE))
                        .then(|| {
                            format!("it did not stop a job within {STOP_GRACE:?} of being asked")
                        })
                }
            } else {
                None
            };
            if let Some(reason) = reason {
                worker.ending = Some(Ending::Killed(reason));
                worker.kill(now);
            }
        }
    }

    /// Closes the channel of retiring workers that have answered everything, and of every
    /// worker once the pool is broken or done.
    fn close_idle(&mut self, state: &State, now: Instant) {
        let all_done = state.shutdown && state.queue.is_empty();
        let broken = state.broken.is_some();
        for worker in &mut self.workers {
            let idle = worker.in_flight.is_empty();
            if worker.is_open() && (((worker.retiring || all_done) && idle) || broken) {
                worker.ending.get_or_insert(Ending::Closed);
                worker.close(now);
            }
        }
    }

    fn poll_timeout(&self, state: &State, now: Instant) -> Option<Duration> {
        let mut next: Option<Instant> = self.retry_spawn_at;
        let mut soonest = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        let someone_idle = state.queue.is_empty()
            && self
                .workers
                .iter()
                .any(|w| w.accepts_work() && w.is_open() && w.in_flight.is_empty());
        for worker in &self.workers {
            if let Some(closed) = worker.closed_at() {
                // Waiting for it to exit, usually a matter of microseconds: `poll` watches for
                // the exit where the system can say, else check often.
                if worker.exit_fd().is_none() {
                    soonest(now + Duration::from_millis(1).min(EXIT_GRACE));
                }
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
                    if let Some((_, at)) = entry.stop {
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
        if !state.lanes.is_empty() {
            // A job may go out through a lane without waking this thread: keep the checks
            // that a job in flight needs (see `SWEEP_EVERY`).
            soonest(self.last_sweep + SWEEP_EVERY);
        }
        next.map(|at| at.saturating_duration_since(now))
    }

    /// Sleeps until a channel or the waker is ready (or the timeout), then reads every
    /// readable channel. With only lone jobs about (`light`), it first waits awake for as long
    /// as its [`Spin`] allows: an answer that comes meanwhile needs no wake-up.
    fn wait_and_read(&mut self, timeout: Option<Duration>, light: bool) {
        let mut fds = Vec::with_capacity(self.workers.len() + 1);
        fds.push(sys::readable(self.wake_rx.as_raw_fd()));
        let mut index = Vec::with_capacity(self.workers.len());
        let mut exits = Vec::new();
        for (i, worker) in self.workers.iter().enumerate() {
            match worker.stream() {
                Some(stream) => {
                    let mut fd = sys::readable(stream.as_raw_fd());
                    if worker.pending() > 0 {
                        fd.events |= libc::POLLOUT;
                    }
                    fds.push(fd);
                    index.push(i);
                }
                // Closed, waiting for its exit (reaped after the wait).
                None => exits.extend(worker.exit_fd().map(sys::readable)),
            }
        }
        let streams = fds.len();
        fds.extend(exits);
        let since = Instant::now();
        let spun = (light && timeout != Some(Duration::ZERO))
            .then(|| {
                self.spin.run(since, || {
                    sys::poll(&mut fds, Some(Duration::ZERO))
                        .ok()
                        .filter(|&n| n > 0)
                })
            })
            .flatten();
        let ready = match spun {
            Some(n) => n,
            None => {
                let left = timeout.map(|t| t.saturating_sub(since.elapsed()));
                sys::poll(&mut fds, left).unwrap_or(0)
            }
        };
        if light {
            self.spin.arrived(if ready > 0 {
                since.elapsed()
            } else {
                Duration::MAX
            });
        }
        fds.truncate(streams);
        {
            let shared = Arc::clone(&self.shared);
            let mut state = shared.lock();
            state.sleeping = false;
            state.woken = false;
            self.adopt(&mut state);
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

    /// Takes the jobs sent through lanes into their workers' windows. Done under the state
    /// lock whenever the I/O thread takes it, and before it decodes anything a worker sent, so
    /// an answer always finds its job.
    fn adopt(&mut self, state: &mut State) {
        self.shared.adopted(state);
        if state.direct.is_empty() {
            return;
        }
        let now = Instant::now();
        self.last_work = now;
        self.lone = true;
        for Direct {
            pid,
            id,
            job,
            calls,
            ticket,
            unsent,
        } in state.direct.drain(..)
        {
            let Some(worker) = self.workers.iter_mut().find(|w| w.pid() == pid) else {
                // Its worker was buried meanwhile (it died while idle): the job never reached
                // it, so it goes to another.
                state.queue.push_front(Queued {
                    id,
                    job,
                    ticket: Some(ticket),
                });
                continue;
            };
            worker.outbox().extend_from_slice(&unsent);
            worker.sent_job(id, job, calls, ticket, &self.shared.config, now);
        }
    }

    /// Publishes the idle workers as lanes (after adopting what went through the old ones):
    /// open, ready, nothing in flight, nothing unsent. This thread writes to a channel outside
    /// the lock only when that worker's outbox holds something, so it never writes to a lane,
    /// and every change to an outbox or a channel it makes under the lock is followed by this.
    ///
    /// Lanes are only for pools without per-task timeouts or worker recycling (which this
    /// thread enforces per job), and only within [`LANE_LINGER`] of the last job sent, so an
    /// idle pool sleeps without waking.
    fn refresh_lanes(&mut self, state: &mut State) {
        self.adopt(state);
        state.lanes.clear();
        let config = &self.shared.config;
        if config.task_timeout.is_some()
            || config.max_tasks_per_child.is_some()
            || self.last_work.elapsed() > LANE_LINGER
            || state.shutdown
            || state.broken.is_some()
            || !state.queue.is_empty()
        {
            return;
        }
        state.lanes.extend(
            self.workers
                .iter()
                .filter(|w| {
                    w.phase == Phase::Ready
                        && w.can_take(OUTBOX_SOFT_LIMIT)
                        && w.pending() == 0
                        && w.in_flight.is_empty()
                })
                .filter_map(|w| {
                    Some(Lane {
                        pid: w.pid(),
                        stream: w.shared_stream()?,
                    })
                }),
        );
    }

    /// Writes worker `i`'s outbox. A worker that is gone is left for `reap` to bury.
    fn flush(&mut self, i: usize) {
        match self.workers[i].flush() {
            Ok(()) => {}
            Err(e) if peer_gone(&e) => {
                // The worker is gone, but what it sent before it went (`Started`, `Done`) is
                // still in the socket: take it in before the channel is buried, or a finished
                // job would run again and the job that killed it would be requeued.
                self.read(i);
                self.workers[i].close(Instant::now());
            }
            Err(e) => self.on_channel_error(i, &format!("writing to the worker: {e}")),
        }
    }

    /// Reads and handles everything worker `i` has sent, until it would block or ends.
    fn read(&mut self, i: usize) {
        loop {
            match self.workers[i].fill(Instant::now()) {
                Fill::Data => {}
                Fill::Empty | Fill::Closed => return,
                Fill::Failed(e) => {
                    self.handle_frames(i);
                    self.on_channel_error(i, &e);
                    return;
                }
            }
            if !self.handle_frames(i) {
                return;
            }
        }
    }

    /// Handles the complete frames buffered for worker `i`, completing futures (with no lock
    /// held); false if the worker broke the protocol (it is then killed).
    fn handle_frames(&mut self, i: usize) -> bool {
        let shared = Arc::clone(&self.shared);
        if shared.sent_direct() {
            self.adopt(&mut shared.lock());
        }
        let answers = self.workers[i].take_answers(&self.shared.config, Instant::now());
        if answers.ready {
            self.startup_failures = 0;
        }
        let mut failures = answers.failures;
        if !answers.revoked.is_empty() || self.workers[i].in_flight.is_empty() {
            let pid = self.workers[i].pid();
            let mut state = shared.lock();
            // Given back unstarted: first in line for the next worker with room. (A job asked
            // to terminate meanwhile fails now instead.)
            for entry in answers.revoked.into_iter().rev() {
                if entry.stopping().is_some() {
                    entry.ticket.settle();
                    failures.push((entry.job, skipped_error(pid)));
                } else {
                    state.queue.push_front(Queued {
                        id: entry.id,
                        job: entry.job,
                        ticket: Some(entry.ticket),
                    });
                }
            }
            // A worker that has answered everything is a lane again before its futures
            // complete: the thread that gets the result can send its next job straight away.
            self.refresh_lanes(&mut state);
        }
        let worker = &self.workers[i];
        for (job, range) in answers.replies {
            job.complete_encoded(worker.payload(range));
        }
        fail_all(failures);
        if let Some(reason) = answers.broken {
            self.break_pool(&reason);
        }
        match answers.error {
            Some(e) => {
                self.on_channel_error(i, &e);
                false
            }
            None => true,
        }
    }

    /// Worker `i` sent bytes that are not the protocol, or its channel failed: kill it (its
    /// oldest job fails as if it had died).
    fn on_channel_error(&mut self, i: usize, what: &str) {
        {
            // No job may go to it through a lane any more; one that already did is in its
            // window before it is killed, like any job sent to it.
            let shared = Arc::clone(&self.shared);
            let mut state = shared.lock();
            self.adopt(&mut state);
            let pid = self.workers[i].pid();
            state.lanes.retain(|lane| lane.pid != pid);
        }
        let worker = &mut self.workers[i];
        if worker.ending.is_none() || worker.ending == Some(Ending::SelfStopped) {
            worker.ending = Some(Ending::Killed(format!("protocol error: {what}")));
        }
        worker.kill(Instant::now());
    }

    /// Marks the pool broken, fails everything, closes every channel (at the next turn).
    fn break_pool(&mut self, reason: &str) {
        let shared = Arc::clone(&self.shared);
        let failures = self.break_locked(&mut shared.lock(), reason);
        fail_all(failures);
    }

    /// Marks the state broken and takes every job out, to be failed with the reason.
    fn break_locked(&mut self, state: &mut State, reason: &str) -> Failures {
        let reason = state
            .broken
            .get_or_insert_with(|| reason.to_owned())
            .clone();
        let mut failures: Failures = state
            .queue
            .drain(..)
            .map(|q| (q.job, Error::Broken(reason.clone())))
            .collect();
        for worker in &mut self.workers {
            failures.extend(worker.in_flight.drain(..).map(|e| {
                e.ticket.settle();
                (e.job, Error::Broken(reason.clone()))
            }));
        }
        failures
    }

    /// Reaps workers that have exited, failing or requeueing what they held; kills those that
    /// overstay after their channel closed.
    fn reap(&mut self, now: Instant) {
        let sweep = now - self.last_sweep >= SWEEP_EVERY;
        if sweep {
            self.last_sweep = now;
        }
        let mut i = 0;
        while i < self.workers.len() {
            let worker = &mut self.workers[i];
            if worker.closed_at().is_none() && !sweep {
                i += 1;
                continue;
            }
            let status = match worker.process().try_wait() {
                Ok(Some(status)) => status,
                Ok(None) => {
                    if worker.closed_at().is_some_and(|at| now - at > EXIT_GRACE) {
                        let _ = worker.process().kill();
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
            if worker.is_open() {
                self.read(i);
            }
            let worker = self.workers.remove(i);
            let config = &self.shared.config;
            let burial = worker.bury(status, config, &mut self.startup_failures);
            let mut failures = burial.failures;
            let shared = Arc::clone(&self.shared);
            {
                let mut state = shared.lock();
                if let Some(reason) = &burial.broken {
                    failures.extend(self.break_locked(&mut state, reason));
                }
                match &state.broken {
                    Some(reason) => failures.extend(
                        burial
                            .requeue
                            .into_iter()
                            .map(|e| (e.job, Error::Broken(reason.clone()))),
                    ),
                    None => {
                        for entry in burial.requeue.into_iter().rev() {
                            state.queue.push_front(Queued {
                                id: entry.id,
                                job: entry.job,
                                ticket: Some(entry.ticket),
                            });
                        }
                    }
                }
                self.publish(&mut state);
            }
            fail_all(failures);
        }
    }

    /// Starts workers until the pool is at full strength (when there is reason to); returns
    /// whether it started any. Starting one costs a `posix_spawn`: they boot in parallel.
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
                !state.queue.is_empty() || self.workers.iter().any(|w| !w.in_flight.is_empty());
            if state.broken.is_some() || (state.shutdown && !work_left) {
                return Ok(false);
            }
        }
        let active = self.workers.iter().filter(|w| w.accepts_work()).count();
        if active >= self.shared.config.max_workers {
            return Ok(false);
        }
        if self.retry_spawn_at.is_some_and(|at| Instant::now() < at) {
            return Ok(false);
        }
        self.retry_spawn_at = None;
        let config = &self.shared.config;
        let initializer = config.initializer.map(|f| image::to_offset(f as usize));
        match spawn::spawn(&config.launch, initializer) {
            Ok((process, stream)) => {
                self.workers
                    .push(Remote::new(process, stream, Instant::now()));
                let shared = Arc::clone(&self.shared);
                self.publish(&mut shared.lock());
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
        for worker in &mut self.workers {
            // A worker still starting holds nothing: rather than wait for it to boot only to
            // find its channel closed, end it now.
            if worker.phase < Phase::Ready && worker.in_flight.is_empty() {
                let _ = worker.process().kill();
            }
            worker.close(now);
        }
        let mut leftovers = Vec::new();
        let mut pause = Duration::from_micros(20);
        while !self.workers.is_empty() {
            let now = Instant::now();
            let mut i = 0;
            while i < self.workers.len() {
                let worker = &mut self.workers[i];
                match worker.process().try_wait() {
                    Ok(None) => {
                        if worker.closed_at().is_some_and(|at| now - at > EXIT_GRACE) {
                            let _ = worker.process().kill();
                        }
                        i += 1;
                    }
                    _ => leftovers.extend(self.workers.remove(i).in_flight),
                }
            }
            if self.workers.is_empty() {
                break;
            }
            // Sleep until a worker exits: on the descriptors that say so where the system has
            // them (an exit takes a few hundred microseconds, which a timer would overshoot),
            // else on a doubling timer.
            let mut watch: Vec<libc::pollfd> = self
                .workers
                .iter()
                .filter_map(Remote::exit_fd)
                .map(sys::readable)
                .collect();
            if watch.len() == self.workers.len() {
                let grace = self
                    .workers
                    .iter()
                    .filter_map(Remote::closed_at)
                    .map(|at| (at + EXIT_GRACE).saturating_duration_since(now))
                    .min()
                    .unwrap_or(EXIT_GRACE)
                    .max(Duration::from_millis(1));
                let _ = sys::poll(&mut watch, Some(grace));
            } else {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(5));
            }
        }
        let reason = {
            let mut state = self.shared.lock();
            self.publish(&mut state);
            state
                .broken
                .clone()
                .unwrap_or_else(|| "the pool shut down".into())
        };
        for entry in leftovers {
            entry.ticket.settle();
            entry.job.fail(Error::Broken(reason.clone()));
        }
    }
}

/// The error of a job that `Future::terminate` removed from the pool's queue.
fn removed_from_queue() -> Error {
    Error::Terminated(
        "Future::terminate() removed it from the queue before a worker started it".into(),
    )
}

fn deadline(from: Instant, after: Duration) -> Option<Instant> {
    from.checked_add(after)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use primepool_core::backend::{encode, Job, Promise, TaskFn};
    use primepool_core::{Error, WorkerId};

    use super::*;
    use crate::process::protocol::FromWorker;
    use crate::process::spawn::WorkerCommand;

    fn square(x: u64) -> u64 {
        x * x
    }

    /// An I/O thread's state with one worker: a real child process (`program`) standing in for
    /// the worker, and a channel whose far end the test holds.
    fn io_with_worker(program: &str) -> (Io, UnixStream) {
        let command = WorkerCommand {
            program: Some(program.into()),
            args: Vec::new(),
            env: Vec::new(),
        };
        let launch = command.prepare().unwrap();
        let (process, _) = spawn::spawn(&launch, None).unwrap();
        let config = Config {
            max_workers: 1,
            launch,
            initializer: None,
            max_tasks_per_child: None,
            task_timeout: None,
        };
        let (waker, wake_rx) = UnixStream::pair().unwrap();
        let mut io = Io::new(Arc::new(Shared::new(config, waker)), wake_rx);
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        io.workers.push(Remote::new(process, ours, Instant::now()));
        (io, theirs)
    }

    /// Puts a `square(x)` job in flight to worker 0 as job `id`; returns its future.
    fn in_flight(io: &mut Io, id: u64, x: u64) -> primepool_core::Future<u64> {
        let (promise, future) = Promise::new();
        let mut job = Job::call(square, x, promise);
        assert_eq!(job.start(), 1);
        let config = io.shared.config.clone();
        let ticket = Arc::new(Ticket::default());
        io.workers[0].sent_job(id, job, 1, ticket, &config, Instant::now());
        future
    }

    fn send(to: &mut UnixStream, messages: &[FromWorker<'_>]) {
        let mut frames = Vec::new();
        for message in messages {
            write_frame(&mut frames, message, MAX_FRAME_LEN).unwrap();
        }
        to.write_all(&frames).unwrap();
    }

    /// A write to a worker that died fails (EPIPE); the answers it sent before dying are still
    /// in the socket and must count: the job it finished completes (it must not run again),
    /// and the job it had started fails with `WorkerDied` (it must not be requeued, to crash
    /// the next worker too).
    #[test]
    fn a_failed_write_still_takes_in_what_the_worker_sent_before_it_died() {
        let (mut io, mut theirs) = io_with_worker("true");
        let finished = in_flight(&mut io, 1, 7);
        let crashed = in_flight(&mut io, 2, 8);
        let reply = TaskFn::new(square)
            .invoke(&encode(&vec![7u64]).unwrap())
            .unwrap();
        send(
            &mut theirs,
            &[
                FromWorker::Hello,
                FromWorker::Ready,
                FromWorker::Started { id: 1 },
                FromWorker::Done {
                    id: 1,
                    outcomes: crate::process::protocol::Bytes(&reply),
                },
                FromWorker::Started { id: 2 },
            ],
        );
        drop(theirs); // the worker is gone
        io.workers[0].outbox().extend_from_slice(&[0; 64]); // something to write
        io.flush(0);
        assert_eq!(
            finished.result(Some(Duration::ZERO)),
            Ok(49),
            "the finished job"
        );
        // The stand-in process has exited (`true`); reaping buries the worker.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !io.workers.is_empty() {
            assert!(Instant::now() < deadline, "the worker was not reaped");
            io.last_sweep = Instant::now() - SWEEP_EVERY;
            io.reap(Instant::now());
            std::thread::sleep(Duration::from_millis(5));
        }
        match crashed.result(Some(Duration::ZERO)) {
            Err(Error::WorkerDied {
                worker: WorkerId::Process(_),
                ..
            }) => {}
            other => panic!("the job it had started must fail with WorkerDied, got {other:?}"),
        }
        assert!(io.shared.lock().queue.is_empty(), "nothing requeued");
    }
}
