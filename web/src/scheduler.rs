//! The Web Worker pool's bookkeeping, apart from JavaScript: which worker holds which job, what
//! waits in the queue, who replaces a dead worker. Keeping it free of `web-sys` lets it be
//! tested natively with a fake transport; `worker_pool` plugs in the real Web Workers.
//!
//! Every method returns the [`Settle`]ments it decided instead of completing futures itself:
//! completing a future runs user callbacks, which may call back into the pool, so the caller
//! applies them after releasing its borrow of the scheduler.

use std::collections::VecDeque;
use std::sync::Arc;

use primepool_core::backend::{Job, TaskFn};
use primepool_core::{Error, WorkerId};

/// How the scheduler reaches its workers (Web Workers in the browser, fakes in tests).
pub trait Transport {
    /// A live worker.
    type Handle;
    /// Starts worker `id` in `slot`; it reports readiness later through
    /// [`Scheduler::on_ready`].
    fn spawn(&mut self, slot: usize, id: u32) -> Result<Self::Handle, String>;
    /// Sends a call to an idle, ready worker; the reply comes through
    /// [`Scheduler::on_reply`] with the same `token`.
    fn send(
        &mut self,
        worker: &Self::Handle,
        token: u64,
        call: TaskFn,
        args: Vec<u8>,
    ) -> Result<(), String>;
    /// Ends a worker at once, dropping whatever it was doing.
    fn kill(&mut self, worker: Self::Handle);
    /// What `Future::terminate` calls for the job sent with `token`.
    fn terminator(&self, token: u64) -> Arc<dyn Fn() -> bool + Send + Sync>;
}

/// A decision that completes futures, applied once the scheduler is no longer borrowed.
#[derive(Debug)]
pub enum Settle {
    /// The worker's encoded reply for the job.
    Reply(Job, Vec<u8>),
    /// The job failed as a whole.
    Fail(Job, Error),
    /// The job never started and is cancelled.
    Cancel(Job),
}

impl Settle {
    /// Completes the job's futures.
    pub fn apply(self) {
        match self {
            Settle::Reply(job, bytes) => job.complete_encoded(&bytes),
            Settle::Fail(job, error) => job.fail(error),
            Settle::Cancel(job) => job.cancel(),
        }
    }
}

/// Applies every settlement, in order.
pub fn apply_all(settles: Vec<Settle>) {
    settles.into_iter().for_each(Settle::apply);
}

enum Phase {
    /// Spawned, not ready yet.
    Starting,
    Idle,
    Busy {
        job: Job,
        token: u64,
    },
    /// Ended for good (after shutdown).
    Retired,
}

struct Slot<H> {
    id: u32,
    handle: Option<H>,
    phase: Phase,
}

/// After this many workers in a row die before becoming ready, the pool is broken: something
/// (a missing file, a refused module) stops every worker from starting.
const MAX_FAILED_STARTS: u32 = 3;

/// The state of one Web Worker pool.
pub struct Scheduler<T: Transport> {
    transport: T,
    slots: Vec<Slot<T::Handle>>,
    queue: VecDeque<Job>,
    next_id: u32,
    next_token: u64,
    shut_down: bool,
    broken: Option<String>,
    failed_starts: u32,
}

impl<T: Transport> Scheduler<T> {
    /// Starts `workers` workers (ids `0..workers`).
    pub fn new(mut transport: T, workers: usize) -> Result<Self, Error> {
        if workers == 0 {
            return Err(Error::invalid("max_workers must be at least 1"));
        }
        let mut slots = Vec::with_capacity(workers);
        for slot in 0..workers {
            let id = slot as u32;
            match transport.spawn(slot, id) {
                Ok(handle) => slots.push(Slot {
                    id,
                    handle: Some(handle),
                    phase: Phase::Starting,
                }),
                Err(e) => {
                    for s in slots {
                        if let Some(h) = s.handle {
                            transport.kill(h);
                        }
                    }
                    return Err(Error::Broken(format!("could not start a web worker: {e}")));
                }
            }
        }
        Ok(Scheduler {
            transport,
            next_id: workers as u32,
            slots,
            queue: VecDeque::new(),
            next_token: 0,
            shut_down: false,
            broken: None,
            failed_starts: 0,
        })
    }

    /// The ids of the live workers (a replacement gets a fresh id, like a new pid).
    pub fn worker_ids(&self) -> Vec<u32> {
        self.slots
            .iter()
            .filter(|s| s.handle.is_some())
            .map(|s| s.id)
            .collect()
    }

    /// True once shut down and every worker has ended.
    pub fn finished(&self) -> bool {
        self.shut_down && self.slots.iter().all(|s| s.handle.is_none())
    }

    /// Queues jobs and hands them to idle workers.
    pub fn execute(&mut self, jobs: Vec<Job>) -> Result<Vec<Settle>, Error> {
        if self.shut_down {
            return Err(Error::ShutDown);
        }
        if let Some(why) = &self.broken {
            return Err(Error::Broken(why.clone()));
        }
        self.queue.extend(jobs);
        Ok(self.dispatch())
    }

    /// Worker `id` in `slot` loaded the module and waits for calls.
    pub fn on_ready(&mut self, slot: usize, id: u32) -> Vec<Settle> {
        if let Some(s) = self.slot_mut(slot, id) {
            if matches!(s.phase, Phase::Starting) {
                s.phase = Phase::Idle;
                self.failed_starts = 0;
            }
        }
        self.dispatch()
    }

    /// Worker `id` answered the call sent with `token`: the encoded outcomes, or why it could
    /// not run the call.
    pub fn on_reply(
        &mut self,
        slot: usize,
        id: u32,
        token: u64,
        reply: Result<Vec<u8>, Error>,
    ) -> Vec<Settle> {
        let mut settles = Vec::new();
        if let Some(s) = self.slot_mut(slot, id) {
            if matches!(s.phase, Phase::Busy { token: t, .. } if t == token) {
                if let Phase::Busy { job, .. } = std::mem::replace(&mut s.phase, Phase::Idle) {
                    settles.push(match reply {
                        Ok(bytes) => Settle::Reply(job, bytes),
                        Err(e) => Settle::Fail(job, e),
                    });
                }
            }
        }
        settles.extend(self.dispatch());
        settles
    }

    /// Worker `id` died (an uncaught error, a panic, a failed start): its job fails with
    /// [`Error::WorkerDied`], and a new worker takes its place.
    pub fn on_died(&mut self, slot: usize, id: u32, status: String) -> Vec<Settle> {
        let Some(s) = self.slot_mut(slot, id) else {
            return Vec::new();
        };
        let phase = std::mem::replace(&mut s.phase, Phase::Retired);
        let handle = s.handle.take();
        if let Some(h) = handle {
            self.transport.kill(h);
        }
        let mut settles = Vec::new();
        match phase {
            Phase::Busy { job, .. } => settles.push(Settle::Fail(
                job,
                Error::WorkerDied {
                    worker: WorkerId::WebWorker(id),
                    status: status.clone(),
                },
            )),
            Phase::Starting => {
                self.failed_starts += 1;
                if self.failed_starts >= MAX_FAILED_STARTS {
                    let why = format!("{MAX_FAILED_STARTS} web workers in a row failed to start; the last said: {status}");
                    self.broken = Some(why.clone());
                    settles.extend(
                        self.queue
                            .drain(..)
                            .map(|job| Settle::Fail(job, Error::Broken(why.clone()))),
                    );
                    return settles;
                }
            }
            Phase::Idle | Phase::Retired => {}
        }
        settles.extend(self.replace(slot));
        settles
    }

    /// `Future::terminate` on the job sent with `token`: ends its worker, fails the job with
    /// [`Error::Terminated`], starts a replacement. False if that job is no longer running.
    pub fn terminate(&mut self, token: u64) -> (bool, Vec<Settle>) {
        let Some(slot) = self
            .slots
            .iter()
            .position(|s| matches!(s.phase, Phase::Busy { token: t, .. } if t == token))
        else {
            return (false, Vec::new());
        };
        let s = &mut self.slots[slot];
        let id = s.id;
        let mut settles = Vec::new();
        if let Phase::Busy { job, .. } = std::mem::replace(&mut s.phase, Phase::Retired) {
            settles.push(Settle::Fail(
                job,
                Error::Terminated(format!("web worker {id} was ended")),
            ));
        }
        if let Some(h) = s.handle.take() {
            self.transport.kill(h);
        }
        settles.extend(self.replace(slot));
        (true, settles)
    }

    /// Stops accepting jobs; with `cancel_futures`, queued jobs are cancelled. Workers end as
    /// soon as no queued job needs them.
    pub fn shutdown(&mut self, cancel_futures: bool) -> Vec<Settle> {
        self.shut_down = true;
        let mut settles: Vec<Settle> = Vec::new();
        if cancel_futures {
            settles.extend(self.queue.drain(..).map(Settle::Cancel));
        }
        settles.extend(self.dispatch());
        settles
    }

    /// Ends every worker now (the page's Stop button): running jobs fail with
    /// [`Error::Terminated`], queued ones are cancelled, and the pool is shut down.
    pub fn kill_all(&mut self) -> Vec<Settle> {
        self.shut_down = true;
        let mut settles: Vec<Settle> = self.queue.drain(..).map(Settle::Cancel).collect();
        for s in &mut self.slots {
            if let Phase::Busy { job, .. } = std::mem::replace(&mut s.phase, Phase::Retired) {
                settles.push(Settle::Fail(
                    job,
                    Error::Terminated(format!("web worker {} was stopped", s.id)),
                ));
            }
            if let Some(h) = s.handle.take() {
                self.transport.kill(h);
            }
        }
        settles
    }

    fn slot_mut(&mut self, slot: usize, id: u32) -> Option<&mut Slot<T::Handle>> {
        self.slots.get_mut(slot).filter(|s| s.id == id)
    }

    /// Puts a fresh worker in `slot`, unless the pool is winding down with nothing left to do.
    fn replace(&mut self, slot: usize) -> Vec<Settle> {
        if !(self.shut_down && self.queue.is_empty()) {
            let id = self.next_id;
            self.next_id += 1;
            let s = &mut self.slots[slot];
            s.id = id;
            match self.transport.spawn(slot, id) {
                Ok(h) => {
                    s.handle = Some(h);
                    s.phase = Phase::Starting;
                }
                Err(e) => {
                    let why = format!("could not start a replacement web worker: {e}");
                    self.broken = Some(why.clone());
                    return self
                        .queue
                        .drain(..)
                        .map(|job| Settle::Fail(job, Error::Broken(why.clone())))
                        .collect();
                }
            }
        }
        self.dispatch()
    }

    /// Hands queued jobs to idle workers; retires idle workers once shut down with nothing
    /// left to do.
    fn dispatch(&mut self) -> Vec<Settle> {
        let mut settles = Vec::new();
        for i in 0..self.slots.len() {
            while matches!(self.slots[i].phase, Phase::Idle) {
                let Some(mut job) = self.queue.pop_front() else {
                    break;
                };
                if job.start() == 0 {
                    continue; // its future was cancelled while queued
                }
                let Some(call) = job.task_fn() else {
                    settles.push(Settle::Fail(
                        job,
                        Error::Serialization(
                            "a closure cannot be sent to a web worker; submit a plain fn".into(),
                        ),
                    ));
                    continue;
                };
                let args = match job.encode_args() {
                    Ok(args) => args,
                    Err(e) => {
                        settles.push(Settle::Fail(job, e));
                        continue;
                    }
                };
                let token = self.next_token;
                self.next_token += 1;
                job.set_terminator(self.transport.terminator(token));
                let slot = &mut self.slots[i];
                let handle = slot.handle.as_ref().expect("an idle worker has a handle");
                match self.transport.send(handle, token, call, args) {
                    Ok(()) => slot.phase = Phase::Busy { job, token },
                    Err(e) => settles.push(Settle::Fail(
                        job,
                        Error::Broken(format!("could not send the call to a web worker: {e}")),
                    )),
                }
            }
        }
        if self.shut_down && self.queue.is_empty() {
            for s in &mut self.slots {
                if matches!(s.phase, Phase::Idle | Phase::Starting) {
                    s.phase = Phase::Retired;
                    if let Some(h) = s.handle.take() {
                        self.transport.kill(h);
                    }
                }
            }
        }
        settles
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use primepool_core::backend::Promise;
    use primepool_core::conformance::square;
    use primepool_core::Future;

    use super::*;

    /// Records what the scheduler asks of its workers.
    #[derive(Default)]
    struct Log {
        spawned: Vec<(usize, u32)>,
        sent: Vec<(u32, u64, TaskFn, Vec<u8>)>,
        killed: Vec<u32>,
        refuse_spawn: bool,
    }

    struct Fake(Rc<RefCell<Log>>);

    impl Transport for Fake {
        type Handle = u32;
        fn spawn(&mut self, slot: usize, id: u32) -> Result<u32, String> {
            let mut log = self.0.borrow_mut();
            if log.refuse_spawn {
                return Err("no workers here".into());
            }
            log.spawned.push((slot, id));
            Ok(id)
        }
        fn send(&mut self, w: &u32, token: u64, call: TaskFn, args: Vec<u8>) -> Result<(), String> {
            self.0.borrow_mut().sent.push((*w, token, call, args));
            Ok(())
        }
        fn kill(&mut self, w: u32) {
            self.0.borrow_mut().killed.push(w);
        }
        fn terminator(&self, _token: u64) -> Arc<dyn Fn() -> bool + Send + Sync> {
            Arc::new(|| false)
        }
    }

    fn pool(workers: usize) -> (Scheduler<Fake>, Rc<RefCell<Log>>) {
        let log = Rc::new(RefCell::new(Log::default()));
        (Scheduler::new(Fake(log.clone()), workers).unwrap(), log)
    }

    fn job(value: u64) -> (Job, Future<u64>) {
        let (p, f) = Promise::new();
        (Job::call(square, value, p), f)
    }

    /// What the worker would answer: runs the shipped call here.
    fn answer(log: &Rc<RefCell<Log>>, index: usize) -> (u32, u64, Vec<u8>) {
        let (w, token, call, args) = log.borrow().sent[index].clone();
        (w, token, call.invoke(&args).unwrap())
    }

    #[test]
    fn jobs_wait_until_a_worker_is_ready_then_complete_from_its_reply() {
        let (mut s, log) = pool(2);
        assert_eq!(log.borrow().spawned, [(0, 0), (1, 1)]);
        let (j, chunk) = Job::chunk(square, vec![3, 4]);
        apply_all(s.execute(vec![j]).unwrap());
        assert!(log.borrow().sent.is_empty(), "no worker is ready yet");
        apply_all(s.on_ready(1, 1));
        let (w, token, reply) = answer(&log, 0);
        assert_eq!(w, 1);
        assert!(chunk.running());
        apply_all(s.on_reply(1, 1, token, Ok(reply)));
        assert_eq!(chunk.result(None), Ok(vec![Ok(9), Ok(16)]));
    }

    #[test]
    fn each_worker_holds_one_job_and_takes_the_next_when_it_answers() {
        let (mut s, log) = pool(1);
        let (a, fa) = job(1);
        let (b, fb) = job(2);
        apply_all(s.on_ready(0, 0));
        apply_all(s.execute(vec![a, b]).unwrap());
        assert_eq!(log.borrow().sent.len(), 1);
        let (_, token, reply) = answer(&log, 0);
        apply_all(s.on_reply(0, 0, token, Ok(reply)));
        assert_eq!(log.borrow().sent.len(), 2);
        let (_, token, reply) = answer(&log, 1);
        apply_all(s.on_reply(0, 0, token, Ok(reply)));
        assert_eq!((fa.result(None), fb.result(None)), (Ok(1), Ok(4)));
    }

    #[test]
    fn a_dead_worker_fails_only_its_own_job_and_is_replaced_with_a_new_id() {
        let (mut s, log) = pool(2);
        apply_all(s.on_ready(0, 0));
        apply_all(s.on_ready(1, 1));
        let (a, fa) = job(5);
        let (b, fb) = job(6);
        apply_all(s.execute(vec![a, b]).unwrap());
        apply_all(s.on_died(0, 0, "RuntimeError: unreachable".into()));
        assert_eq!(
            fa.result(None),
            Err(Error::WorkerDied {
                worker: WorkerId::WebWorker(0),
                status: "RuntimeError: unreachable".into()
            })
        );
        assert!(fb.running(), "the other worker's job is untouched");
        assert_eq!(log.borrow().killed, [0]);
        assert_eq!(log.borrow().spawned.last(), Some(&(0, 2)));
        assert_eq!(s.worker_ids(), [2, 1]);
        // A late message from the dead worker is ignored.
        apply_all(s.on_reply(0, 0, 0, Ok(vec![])));
        let (_, token, reply) = answer(&log, 1);
        apply_all(s.on_reply(1, 1, token, Ok(reply)));
        assert_eq!(fb.result(None), Ok(36));
    }

    #[test]
    fn terminating_a_running_job_ends_its_worker_and_starts_another() {
        let (mut s, log) = pool(1);
        apply_all(s.on_ready(0, 0));
        let (a, fa) = job(7);
        let (b, fb) = job(8);
        apply_all(s.execute(vec![a, b]).unwrap());
        let token = log.borrow().sent[0].1;
        let (stopped, settles) = s.terminate(token);
        apply_all(settles);
        assert!(stopped);
        assert!(matches!(fa.result(None), Err(Error::Terminated(_))));
        assert!(!s.terminate(token).0, "already ended");
        apply_all(s.on_ready(0, 1));
        let (_, token, reply) = answer(&log, 1);
        apply_all(s.on_reply(0, 1, token, Ok(reply)));
        assert_eq!(fb.result(None), Ok(64));
    }

    #[test]
    fn shutdown_finishes_queued_work_then_ends_the_workers() {
        let (mut s, log) = pool(2);
        apply_all(s.on_ready(0, 0));
        let (a, fa) = job(2);
        apply_all(s.execute(vec![a]).unwrap());
        apply_all(s.shutdown(false));
        assert!(matches!(s.execute(vec![]), Err(Error::ShutDown)));
        assert_eq!(
            log.borrow().killed,
            [1],
            "the idle starting worker ends at once"
        );
        assert!(!s.finished());
        let (_, token, reply) = answer(&log, 0);
        apply_all(s.on_reply(0, 0, token, Ok(reply)));
        assert_eq!(fa.result(None), Ok(4));
        assert!(s.finished());
    }

    #[test]
    fn shutdown_with_cancel_cancels_what_did_not_start() {
        let (mut s, _log) = pool(1);
        let (a, fa) = job(1);
        let (b, fb) = job(2);
        apply_all(s.execute(vec![a, b]).unwrap());
        apply_all(s.shutdown(true));
        assert!(fa.cancelled() && fb.cancelled());
        assert!(s.finished());
    }

    #[test]
    fn kill_all_ends_every_worker_and_resolves_every_future() {
        let (mut s, log) = pool(2);
        apply_all(s.on_ready(0, 0));
        let (a, fa) = job(1);
        let (b, fb) = job(2);
        apply_all(s.execute(vec![a, b]).unwrap());
        apply_all(s.kill_all());
        assert!(matches!(fa.result(None), Err(Error::Terminated(_))));
        assert_eq!(fb.result(None), Err(Error::Cancelled));
        assert_eq!(log.borrow().killed.len(), 2);
        assert!(s.finished());
    }

    #[test]
    fn workers_that_never_start_break_the_pool_instead_of_respawning_forever() {
        let (mut s, _log) = pool(1);
        let (a, fa) = job(1);
        apply_all(s.execute(vec![a]).unwrap());
        for id in 0..3 {
            apply_all(s.on_died(0, id, "404 primepool_web.js".into()));
        }
        assert!(matches!(fa.result(None), Err(Error::Broken(m)) if m.contains("404")));
        assert!(matches!(s.execute(vec![]), Err(Error::Broken(_))));
    }

    #[test]
    fn a_closure_job_fails_with_a_clear_error_and_cancelled_calls_are_not_sent() {
        let (mut s, log) = pool(1);
        apply_all(s.on_ready(0, 0));
        let (p, f) = Promise::new();
        let (a, fa) = job(1);
        assert!(fa.cancel());
        apply_all(s.execute(vec![a, Job::closure(|| 1u8, p)]).unwrap());
        assert!(matches!(f.result(None), Err(Error::Serialization(_))));
        assert!(log.borrow().sent.is_empty());
    }

    #[test]
    fn a_pool_that_cannot_spawn_is_an_error_and_zero_workers_is_refused() {
        let log = Rc::new(RefCell::new(Log {
            refuse_spawn: true,
            ..Log::default()
        }));
        assert!(matches!(
            Scheduler::new(Fake(log.clone()), 2),
            Err(Error::Broken(_))
        ));
        assert!(matches!(
            Scheduler::new(Fake(log), 0),
            Err(Error::InvalidArgument(_))
        ));
    }
}
