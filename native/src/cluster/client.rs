//! The client side of a [`ClusterExecutor`](super::ClusterExecutor): the callers' half
//! ([`Shared`]: admission, counts, shutdown) and the background thread that owns the NATS
//! connection ([`run`]: publishing, replies, acks, cancellation, the reconnect deadline).
//!
//! Callers encode their task on their own thread, take a slot in the in-flight bound and hand
//! the job to the client thread through an unbounded channel, so `submit` never waits for the
//! server. The client thread alone owns the unresolved jobs: it completes their futures
//! without holding any lock (callbacks may submit), then gives the slot back.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use async_nats::{Client, Event};
use bytes::Bytes as Payload;
use futures_util::StreamExt;
use primepool_core::backend::Job;
use primepool_core::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::subjects::Names;
use super::wire::{self, Failure, Presence, Reply, Task, REPLY_TAG};
use crate::process::{image, protocol::Bytes};

/// Room left in a message for its headers (`Nats-Msg-Id` and the protocol's own).
const HEADER_ROOM: usize = 256;

/// What the client thread is asked to do.
pub(crate) enum Command {
    /// Publish task `id` (its message already encoded) and keep its job until it resolves.
    Publish { id: u64, job: Job, payload: Vec<u8> },
    /// The future of task `id` was cancelled: take it out of the stream if not started.
    Cancelled(u64),
    /// `shutdown(cancel_futures = true)`: cancel every task not started.
    CancelAll,
    /// Ask the workers who is there.
    Presence {
        want: Option<usize>,
        within: Duration,
        answer: oneshot::Sender<Result<Vec<(String, u32)>, Error>>,
    },
    /// The executor is dropped: flush and end the thread.
    Stop,
}

/// Settings fixed at build time.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub url: String,
    pub names: Names,
    pub reply_subject: String,
    pub lease: Duration,
    pub max_attempts: u32,
    pub max_in_flight: usize,
    pub reconnect_deadline: Duration,
    pub max_payload: usize,
}

#[derive(Debug, Default)]
struct Counts {
    open: bool,
    broken: Option<Error>,
    in_flight: usize,
    next_id: u64,
}

/// What the executor's callers share with the client thread.
pub(crate) struct Shared {
    pub config: Config,
    counts: Mutex<Counts>,
    /// Signalled when `in_flight` drops or the executor breaks.
    changed: Condvar,
    commands: mpsc::UnboundedSender<Command>,
    pub thread: Mutex<Option<ThreadId>>,
}

impl Shared {
    pub(crate) fn new(config: Config, commands: mpsc::UnboundedSender<Command>) -> Shared {
        Shared {
            config,
            counts: Mutex::new(Counts {
                open: true,
                ..Counts::default()
            }),
            changed: Condvar::new(),
            commands,
            thread: Mutex::new(None),
        }
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn on_client_thread(&self) -> bool {
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) == Some(std::thread::current().id())
    }

    /// Sends a command to the client thread (which outlives every caller that can send).
    pub(crate) fn command(&self, command: Command) -> Result<(), Error> {
        self.commands
            .send(command)
            .map_err(|_| Error::Broken("the cluster client's thread has ended".into()))
    }

    /// Encodes `job`, waits for room in the in-flight bound, and hands it to the client thread.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Error> {
        let payload = match self.encode(&job) {
            Ok(payload) => payload,
            Err(e) => {
                job.fail(e.clone());
                return Err(e);
            }
        };
        let mut counts = self.counts();
        loop {
            if !counts.open {
                return Err(Error::ShutDown);
            }
            if let Some(broken) = &counts.broken {
                return Err(broken.clone());
            }
            // A done-callback on the client thread cannot wait for the client thread.
            if counts.in_flight < self.config.max_in_flight || self.on_client_thread() {
                break;
            }
            counts = self.changed.wait(counts).unwrap_or_else(|e| e.into_inner());
        }
        let id = counts.next_id;
        counts.next_id += 1;
        counts.in_flight += 1;
        let commands = self.commands.clone();
        job.on_cancel(move || {
            let _ = commands.send(Command::Cancelled(id));
        });
        // Sent under the lock, so the client thread sees tasks in id order.
        let sent = self.commands.send(Command::Publish { id, job, payload });
        drop(counts);
        if let Err(mpsc::error::SendError(Command::Publish { job, .. })) = sent {
            self.resolved(1);
            let e = Error::Broken("the cluster client's thread has ended".into());
            job.fail(e.clone());
            return Err(e);
        }
        Ok(())
    }

    fn encode(&self, job: &Job) -> Result<Vec<u8>, Error> {
        let Some(task_fn) = job.task_fn() else {
            return Err(Error::Serialization(
                "a closure cannot leave this process; submit a plain fn to a cluster executor"
                    .into(),
            ));
        };
        let args = job.encode_args()?;
        let (trampoline, func) = task_fn.to_raw();
        image::check_shippable(trampoline, func)?;
        let task = Task {
            image: self.config.names.image,
            reply_to: &self.config.reply_subject,
            trampoline: image::to_offset(trampoline),
            func: image::to_offset(func),
            max_attempts: self.config.max_attempts,
            lease_ms: self.config.lease.as_millis().min(u128::from(u64::MAX)) as u64,
            args: Bytes(&args),
        };
        let payload = wire::encode_task(&task).map_err(Error::Serialization)?;
        let limit = self.config.max_payload.saturating_sub(HEADER_ROOM);
        if payload.len() > limit {
            return Err(Error::Serialization(format!(
                "the task's arguments take {} bytes, more than one message can carry on this \
                 NATS server ({limit} bytes: its max_payload less headers); pass large data by \
                 reference (a path, a key) or raise max_payload in the server's configuration",
                payload.len()
            )));
        }
        Ok(payload)
    }

    /// `n` tasks left the client: give their slots back.
    fn resolved(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut counts = self.counts();
        counts.in_flight = counts.in_flight.saturating_sub(n);
        drop(counts);
        self.changed.notify_all();
    }

    /// Every pending future was failed with `error`; refuse new work.
    fn break_with(&self, error: Error) {
        let mut counts = self.counts();
        counts.broken = Some(error);
        counts.in_flight = 0;
        drop(counts);
        self.changed.notify_all();
    }

    /// Stops accepting work; with `cancel_futures` cancels what has not started; with `wait`
    /// returns once nothing is in flight (or the executor broke).
    pub(crate) fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.counts().open = false;
        if cancel_futures {
            let _ = self.command(Command::CancelAll);
        }
        if !wait || self.on_client_thread() {
            return;
        }
        let mut counts = self.counts();
        while counts.in_flight > 0 && counts.broken.is_none() {
            counts = self.changed.wait(counts).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// One unresolved task, owned by the client thread.
struct Pending {
    job: Option<Job>,
    /// The stream sequence, once the server confirmed the publish.
    seq: Option<u64>,
    started: bool,
    last_worker: Option<String>,
    /// While started: the worker's own subject and the delivery's ack subject, for
    /// [`Connection::probe`].
    running_on: Option<(String, String)>,
}

/// The answer to a probe of a worker's subject.
struct Probed {
    subject: String,
    /// The server said nobody listens there: the worker's connection is gone.
    gone: bool,
}

/// How often the workers running this client's tasks are probed.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long a probe waits for its answer (a late answer proves nothing either way).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a publishing task reports back.
struct Published {
    id: u64,
    outcome: Result<u64, String>,
}

/// The client thread's state.
struct Connection {
    shared: std::sync::Arc<Shared>,
    client: Client,
    js: jetstream::Context,
    tasks: HashMap<u64, Pending>,
    /// Cancelled before the server confirmed the publish: delete when it does.
    cancelled_unconfirmed: HashSet<u64>,
    /// Cancelled before their `Publish` command arrived (only through the raw `Job` API).
    cancelled_early: HashSet<u64>,
    next_expected: u64,
    published: mpsc::UnboundedSender<Published>,
    disconnected_since: Option<Instant>,
    /// Worker subjects with a probe under way.
    probing: HashSet<String>,
    probed: mpsc::UnboundedSender<Probed>,
}

/// The client thread's body: runs until [`Command::Stop`].
pub(crate) async fn run(
    shared: std::sync::Arc<Shared>,
    client: Client,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut events: mpsc::UnboundedReceiver<Event>,
    mut replies: async_nats::Subscriber,
) {
    // Room for a publish confirmation per task the in-flight bound admits: at async-nats's
    // default (5,000) a long pipeline of submits would stall this loop, replies included,
    // until confirmations came back.
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(shared.config.max_in_flight)
        .build(client.clone());
    let (published_tx, mut published) = mpsc::unbounded_channel();
    let (probed_tx, mut probed) = mpsc::unbounded_channel();
    let mut me = Connection {
        shared,
        client,
        js,
        tasks: HashMap::new(),
        cancelled_unconfirmed: HashSet::new(),
        cancelled_early: HashSet::new(),
        next_expected: 0,
        published: published_tx,
        disconnected_since: None,
        probing: HashSet::new(),
        probed: probed_tx,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe_tick = tokio::time::interval(PROBE_EVERY);
    probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            Some(reply) = replies.next() => me.on_replies(&reply.payload).await,
            Some(done) = published.recv() => me.on_published(done),
            command = commands.recv() => match command {
                Some(Command::Stop) | None => break,
                Some(command) => me.on_command(command).await,
            },
            Some(event) = events.recv() => me.on_event(event),
            _ = tick.tick() => me.check_deadline(),
            Some(answer) = probed.recv() => me.on_probed(answer).await,
            _ = probe_tick.tick() => me.probe(),
        }
    }
    // A flush waits for the server, which may be gone for good: only with a live connection,
    // and bounded, so a client whose server never came back still stops (and its drop returns).
    if me.disconnected_since.is_none() {
        let _ = tokio::time::timeout(me.shared.config.reconnect_deadline, me.client.flush()).await;
    }
}

impl Connection {
    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { id, job, payload } => self.publish(id, job, payload).await,
            Command::Cancelled(id) => self.cancelled(id),
            Command::CancelAll => {
                let ids: Vec<u64> = self
                    .tasks
                    .iter()
                    .filter(|(_, t)| !t.started)
                    .map(|(&id, _)| id)
                    .collect();
                for id in ids {
                    if let Some(job) = self.tasks.get_mut(&id).and_then(|t| t.job.take()) {
                        // Resolves the future as cancelled (its hook's `Cancelled` then finds
                        // nothing to do) and runs its callbacks here, with no lock held.
                        job.cancel();
                    }
                    self.cancelled(id);
                }
            }
            Command::Presence {
                want,
                within,
                answer,
            } => {
                let client = self.client.clone();
                let subject = self.shared.config.names.workers.clone();
                tokio::spawn(async move {
                    let _ = answer.send(presence(&client, subject, want, within).await);
                });
            }
            Command::Stop => {}
        }
    }

    async fn publish(&mut self, id: u64, job: Job, payload: Vec<u8>) {
        self.next_expected = id + 1;
        if self.cancelled_early.remove(&id) {
            drop(job);
            self.shared.resolved(1);
            return;
        }
        if let Some(error) = self.broken() {
            job.fail(error);
            return;
        }
        let mut payload = payload;
        wire::set_task_id(&mut payload, id);
        let payload = Payload::from(payload);
        self.tasks.insert(
            id,
            Pending {
                job: Some(job),
                seq: None,
                started: false,
                last_worker: None,
                running_on: None,
            },
        );
        let js = self.js.clone();
        let subject = self.shared.config.names.tasks.clone();
        let msg_id = format!("{}.{id}", self.shared.config.reply_subject);
        let deadline = self.shared.config.reconnect_deadline;
        let first = js
            .send_publish(subject.clone(), publish_message(&payload, &msg_id))
            .await;
        let report = self.published.clone();
        tokio::spawn(async move {
            let outcome = confirm(js, subject, payload, msg_id, first, deadline).await;
            let _ = report.send(Published { id, outcome });
        });
    }

    fn broken(&self) -> Option<Error> {
        self.shared.counts().broken.clone()
    }

    fn on_published(&mut self, done: Published) {
        log::debug!(
            "primepool client: task {} published: {:?}",
            done.id,
            done.outcome
        );
        match done.outcome {
            Ok(seq) => {
                if let Some(task) = self.tasks.get_mut(&done.id) {
                    task.seq = Some(seq);
                } else if self.cancelled_unconfirmed.remove(&done.id) {
                    self.delete(seq);
                }
            }
            Err(reason) => {
                self.cancelled_unconfirmed.remove(&done.id);
                if let Some(task) = self.tasks.remove(&done.id) {
                    if let Some(job) = task.job {
                        job.fail(Error::Broken(format!(
                            "the NATS server at {} did not take the task: {reason}",
                            self.shared.config.url
                        )));
                    }
                    self.shared.resolved(1);
                }
            }
        }
    }

    fn cancelled(&mut self, id: u64) {
        if id >= self.next_expected {
            self.cancelled_early.insert(id);
            return;
        }
        let Some(task) = self.tasks.get(&id) else {
            return;
        };
        if task.started {
            return;
        }
        let task = self
            .tasks
            .remove(&id)
            .unwrap_or_else(|| unreachable!("just found"));
        match task.seq {
            Some(seq) => self.delete(seq),
            None => {
                self.cancelled_unconfirmed.insert(id);
            }
        }
        // A job still here belongs to a future cancelled by its user: already resolved.
        drop(task.job);
        self.shared.resolved(1);
    }

    /// Removes a cancelled task's message from the stream.
    fn delete(&self, seq: u64) {
        let js = self.js.clone();
        let stream = self.shared.config.names.stream.clone();
        tokio::spawn(async move {
            // Already delivered, acknowledged or gone: nothing to remove, fine.
            if let Ok(stream) = js.get_stream_no_info(stream).await {
                let _ = stream.delete_message(seq).await;
            }
        });
    }

    /// A message on the reply subject: one or more replies, in the order the worker sent them.
    async fn on_replies(&mut self, bytes: &[u8]) {
        match wire::decode_replies(bytes) {
            Ok(replies) => {
                for reply in replies {
                    self.on_reply(reply).await;
                }
            }
            Err(e) => log::warn!("primepool cluster client: ignored {e} on its reply subject"),
        }
    }

    async fn on_reply(&mut self, reply: Reply<'_>) {
        log::debug!("primepool client: {reply:?}");
        match reply {
            Reply::Started {
                id,
                worker,
                ack,
                probe,
            } => {
                let Some(task) = self.tasks.get_mut(&id) else {
                    return;
                };
                task.last_worker = Some(worker.to_string());
                task.running_on = Some((probe.to_string(), ack.to_string()));
                if task.started {
                    return;
                }
                task.started = true;
                let starts = task.job.as_mut().map_or(0, Job::start);
                if starts == 0 {
                    // Cancelled just before it started: it runs, nobody waits for it.
                    self.tasks.remove(&id);
                    self.shared.resolved(1);
                }
            }
            Reply::Done { id, ack, outcome } => {
                self.ack(ack).await;
                if let Some(task) = self.tasks.remove(&id) {
                    if let Some(job) = task.job {
                        job.complete_encoded(outcome.0);
                    }
                    self.shared.resolved(1);
                }
            }
            Reply::Failed {
                id,
                ack: _,
                worker,
                failure,
            } => {
                if let Some(task) = self.tasks.remove(&id) {
                    let error = match failure {
                        Failure::Exhausted { attempts } => Error::AttemptsExhausted {
                            attempts,
                            last_worker: task.last_worker.unwrap_or_else(|| {
                                format!("not known: none reported starting it; {worker} gave it up")
                            }),
                        },
                        Failure::Error(text) => Error::Serialization(text),
                    };
                    if let Some(job) = task.job {
                        job.fail(error);
                    }
                    self.shared.resolved(1);
                }
            }
        }
    }

    /// Acknowledges a delivery: the task leaves the work queue.
    async fn ack(&self, subject: &str) {
        if subject.is_empty() {
            return;
        }
        let _ = self
            .client
            .publish(subject.to_string(), Payload::from_static(b"+ACK"))
            .await;
    }

    /// Asks each worker running an unresolved task of ours whether it is still connected: one
    /// request per worker at a time, whatever the number of tasks it runs.
    fn probe(&mut self) {
        if self.disconnected_since.is_some() {
            return;
        }
        let subjects: HashSet<&String> = self
            .tasks
            .values()
            .filter_map(|t| t.running_on.as_ref().map(|(subject, _)| subject))
            .filter(|subject| !self.probing.contains(*subject))
            .collect();
        for subject in subjects {
            self.probing.insert(subject.clone());
            let client = self.client.clone();
            let report = self.probed.clone();
            let subject = subject.clone();
            tokio::spawn(async move {
                let request = async_nats::Request::new()
                    .payload(Payload::new())
                    .timeout(Some(PROBE_TIMEOUT));
                let answer = client.send_request(subject.clone(), request).await;
                let gone = matches!(
                    &answer,
                    Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders
                );
                let _ = report.send(Probed { subject, gone });
            });
        }
    }

    /// A probe's answer. Only "no responders" is evidence: the server holds no subscription
    /// of that worker, so its connection is gone (a timeout may be a slow worker, and proves
    /// nothing). Its started tasks are then given back at once (`-NAK`: delivered again now)
    /// rather than when their lease runs out.
    async fn on_probed(&mut self, answer: Probed) {
        self.probing.remove(&answer.subject);
        if !answer.gone {
            return;
        }
        let mut given_back = 0;
        for task in self.tasks.values_mut() {
            if task
                .running_on
                .as_ref()
                .is_some_and(|(subject, _)| *subject == answer.subject)
            {
                let (_, ack) = task.running_on.take().unwrap_or_default();
                given_back += 1;
                let _ = self
                    .client
                    .publish(ack, Payload::from_static(b"-NAK"))
                    .await;
            }
        }
        if given_back > 0 {
            log::info!(
                "primepool cluster client: the worker at {} is gone; {given_back} task(s) it                  ran are delivered again",
                answer.subject
            );
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected => self.disconnected_since = None,
            Event::Disconnected => {
                self.disconnected_since.get_or_insert_with(Instant::now);
            }
            _ => {}
        }
    }

    fn check_deadline(&mut self) {
        let Some(since) = self.disconnected_since else {
            return;
        };
        let deadline = self.shared.config.reconnect_deadline;
        if since.elapsed() < deadline || self.broken().is_some() {
            return;
        }
        let error = Error::Broken(format!(
            "lost the connection to the NATS server at {} for more than the reconnect deadline \
             of {deadline:?}; the task may or may not have run",
            self.shared.config.url
        ));
        log::error!("primepool cluster client: {error}");
        self.shared.break_with(error.clone());
        for (_, task) in self.tasks.drain() {
            if let Some(job) = task.job {
                job.fail(error.clone());
            }
        }
    }
}

fn publish_message(payload: &Payload, msg_id: &str) -> PublishMessage {
    PublishMessage::build()
        .payload(payload.clone())
        .message_id(msg_id)
}

/// Waits for the server's confirmation of a publish, publishing again (same message id, so
/// the stream keeps one copy) while the server is away, up to `deadline`.
async fn confirm(
    js: jetstream::Context,
    subject: String,
    payload: Payload,
    msg_id: String,
    first: Result<PublishAckFuture, jetstream::context::PublishError>,
    deadline: Duration,
) -> Result<u64, String> {
    let give_up = Instant::now() + deadline;
    let mut attempt = first;
    let mut pause = Duration::from_millis(50);
    loop {
        let error = match attempt {
            Ok(ack) => match ack.await {
                Ok(ack) => return Ok(ack.sequence),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() + pause > give_up {
            return Err(error);
        }
        log::debug!("primepool cluster client: publishing again after: {error}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
        attempt = js
            .send_publish(subject.clone(), publish_message(&payload, &msg_id))
            .await;
    }
}

/// Asks the workers of this image who is there: answers arriving within `within` (or until
/// `want` distinct workers answered, or 100 ms passed without a new answer once some came).
pub(crate) async fn presence(
    client: &Client,
    subject: String,
    want: Option<usize>,
    within: Duration,
) -> Result<Vec<(String, u32)>, Error> {
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| Error::Broken(format!("cannot ask for workers: {e}")))?;
    client
        .publish_with_reply(subject, inbox, Payload::new())
        .await
        .map_err(|e| Error::Broken(format!("cannot ask for workers: {e}")))?;
    let _ = client.flush().await;
    let end = Instant::now() + within;
    let quiet = Duration::from_millis(100);
    let mut seen: HashMap<String, u32> = HashMap::new();
    loop {
        let wait_until = if seen.is_empty() {
            end
        } else {
            end.min(Instant::now() + quiet)
        };
        match tokio::time::timeout_at(wait_until, answers.next()).await {
            Ok(Some(message)) => {
                if let Ok(p) = wire::decode::<Presence<'_>>(REPLY_TAG, &message.payload) {
                    if p.pulling {
                        seen.insert(p.worker.to_string(), p.slots);
                    }
                }
                if want.is_some_and(|n| seen.len() >= n) {
                    break;
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    let _ = answers.unsubscribe().await;
    Ok(seen.into_iter().collect())
}
