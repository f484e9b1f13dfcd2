//! The I/O thread: one per pool, it starts, feeds, watches and reaps the workers.
//!
//! It works in turns: it hands queued jobs to the least loaded workers with room (encoding each
//! as one frame in that worker's outbox), writes every outbox with one system call, sleeps in
//! `poll` on all the channels and its waker at once, decodes the answers in batches under one
//! lock and completes the futures after releasing it. Batching falls out of this shape: while
//! a turn runs, new jobs and answers accumulate, and the next turn moves them all at once.
//!
//! It is also the only thread that starts workers: on Linux a worker's parent-death signal
//! follows the *thread* that started it, and this thread lives exactly as long as the pool.
//! Its reading side is in `answers`, starting and reaping workers in `lifecycle`.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use primepool_core::Error;

use super::conn::{peer_gone, Conn};
use super::frame::{write_frame, MAX_FRAME_LEN};
use super::image;
use super::protocol::{Bytes, ToWorker};
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
pub(super) const EXIT_GRACE: Duration = Duration::from_secs(5);
/// How often the I/O thread checks for workers that died without closing their channel.
pub(super) const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// Consecutive start-up failures after which the pool is declared broken.
pub(super) const MAX_STARTUP_FAILURES: u32 = 3;

/// Starts the pool: its I/O thread, which starts the workers. Returns at once, without
/// waiting for them: the caller can queue work while they boot (it reaches their channels
/// before they are up). If the first workers cannot be started, the pool breaks and says why
/// (the program itself was checked when the pool was built).
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
        .spawn(move || io.run())
        .map_err(|e| io_error("starting the pool's I/O thread", e))?;
    Ok((shared, handle))
}

fn io_error(what: &str, e: io::Error) -> Error {
    Error::Broken(format!("{what}: {e}"))
}

pub(super) struct Io {
    pub(super) shared: Arc<Shared>,
    /// Parallel to `State::workers` (only this thread adds or removes either).
    pub(super) conns: Vec<Conn>,
    pub(super) wake_rx: UnixStream,
    pub(super) startup_failures: u32,
    pub(super) retry_spawn_at: Option<Instant>,
    pub(super) last_sweep: Instant,
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
    fn run(mut self) {
        let _ = self.shared.io_thread.set(std::thread::current().id());
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
                continue; // its future was cancelled
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
                // Waiting for it to exit, usually a matter of microseconds: `poll` watches for
                // the exit where the system can say, else check often.
                if conn.child.exit_fd().is_none() {
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
        fds.push(sys::readable(self.wake_rx.as_raw_fd()));
        let mut index = Vec::with_capacity(self.conns.len());
        let mut exits = Vec::new();
        for (i, conn) in self.conns.iter().enumerate() {
            match &conn.stream {
                Some(stream) => {
                    let mut fd = sys::readable(stream.as_raw_fd());
                    if conn.pending() > 0 {
                        fd.events |= libc::POLLOUT;
                    }
                    fds.push(fd);
                    index.push(i);
                }
                // Closed, waiting for its exit (reaped after the wait).
                None => exits.extend(conn.child.exit_fd().map(sys::readable)),
            }
        }
        let streams = fds.len();
        fds.extend(exits);
        let ready = sys::poll(&mut fds, timeout).unwrap_or(0);
        fds.truncate(streams);
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
    pub(super) fn flush(&mut self, i: usize) {
        match self.conns[i].flush() {
            Ok(()) => {}
            Err(e) if peer_gone(&e) => self.conns[i].close(Instant::now()),
            Err(e) => self.on_channel_error(i, &format!("writing to the worker: {e}")),
        }
    }
}

fn deadline(from: Instant, after: Duration) -> Option<Instant> {
    from.checked_add(after)
}

fn saturating_micros(t: Duration) -> u64 {
    u64::try_from(t.as_micros()).unwrap_or(u64::MAX)
}
