//! The I/O thread's reading side: the answers a worker sends, decoded in batches, and what
//! they do to its jobs and to the pool.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use primepool_core::backend::Job;
use primepool_core::Error;

use super::conn::peer_gone;
use super::io::Io;
use super::protocol::{self, FromWorker};
use super::state::*;

impl Io {
    /// Reads and handles everything worker `i` has sent, until it would block or ends.
    pub(super) fn read(&mut self, i: usize) {
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
    pub(super) fn handle_frames(&mut self, i: usize) -> Result<(), String> {
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
    pub(super) fn on_channel_error(&mut self, i: usize, what: &str) {
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
    pub(super) fn break_pool(&mut self, reason: &str) {
        let shared = Arc::clone(&self.shared);
        let failures = break_state(&mut shared.lock(), reason);
        fail_all(failures);
    }
}
