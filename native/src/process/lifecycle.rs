//! The I/O thread's side of worker lifecycles: starting workers, reaping the ones that ended
//! (and deciding the fate of what they held), and reaping them all at the end.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use primepool_core::Error;

use super::conn::Conn;
use super::frame::{FrameReader, MAX_FRAME_LEN};
use super::image;
use super::io::{Io, EXIT_GRACE, MAX_STARTUP_FAILURES, SWEEP_EVERY};
use super::spawn;
use super::state::*;
use super::sys;

impl Io {
    /// Reaps workers that have exited, failing or requeueing what they held; kills those that
    /// overstay after their channel closed.
    pub(super) fn reap(&mut self, now: Instant) {
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
                    status.signal() == Some(libc::SIGKILL),
                    &shared.config,
                    &mut self.startup_failures,
                )
            };
            fail_all(failures);
        }
    }

    /// Decides the fate of the jobs a dead worker held.
    /// Starts workers until the pool is at full strength (when there is reason to); returns
    /// whether it started any. Starting one costs a `posix_spawn`: they boot in parallel.
    pub(super) fn spawn_missing(&mut self, initial: bool) -> Result<bool, Error> {
        let mut started = false;
        while self.spawn_one(initial)? {
            started = true;
        }
        Ok(started)
    }

    /// Starts one worker if the pool is short of its strength; returns whether it did.
    pub(super) fn spawn_one(&mut self, initial: bool) -> Result<bool, Error> {
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
        match spawn::spawn(&config.launch, initializer) {
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
    pub(super) fn close_all(&mut self) {
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
            if self.conns.is_empty() {
                break;
            }
            // Sleep until a worker exits: on the descriptors that say so where the system has
            // them (an exit takes a few hundred microseconds, which a timer would overshoot),
            // else on a doubling timer.
            let mut watch: Vec<libc::pollfd> = self
                .conns
                .iter()
                .filter_map(|conn| conn.child.exit_fd())
                .map(sys::readable)
                .collect();
            if watch.len() == self.conns.len() {
                let grace = self
                    .conns
                    .iter()
                    .filter_map(|conn| conn.closed_at)
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
