//! The worker side: [`run_worker`] pulls this image's tasks from the server and runs them on
//! `slots` threads.
//!
//! One async loop (on a tokio runtime of its own thread) holds the connection: it pulls only
//! as many tasks as keep the slots busy (none ahead while tasks are slow, up to 64 per slot
//! ahead while they take less than a pull's round trip), renews the lease of every task it
//! holds several times per lease, says `Started` when a slot takes a task (while tasks take
//! under 0.2 ms on average, a slot is handed up to 8 at once, each started when handed) and
//! `Done` with the
//! outcome when it finishes, and answers presence requests and probes of its own subject
//! (which tell a client its connection is alive). Messages that are not this
//! image's tasks are rejected (`Term`) with a line on standard error, never run.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use async_nats::Client;
use bytes::Bytes as Payload;
use futures_util::StreamExt;
use primepool_core::backend::TaskFn;
use primepool_core::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::connection::{self, Access};
use super::subjects::Names;
use super::wire::{self, Failure, Presence, Reply, REPLY_TAG};
use crate::process::image;
use crate::process::protocol::Bytes;

/// The environment variable that makes [`run_worker_if_requested`](crate::run_worker_if_requested)
/// serve a cluster: the NATS server's address.
pub const WORKER_ENV: &str = "PRIMEPOOL_CLUSTER_WORKER";
/// The environment variable giving the worker's slots (tasks at once); default: the host's CPUs.
pub const SLOTS_ENV: &str = "PRIMEPOOL_CLUSTER_SLOTS";

/// About what one pull request costs in time: tasks quicker than this are pulled ahead.
const PULL_ROUND_TRIP: Duration = Duration::from_millis(2);
/// The most tasks pulled ahead per slot, for the quickest tasks.
const MAX_AHEAD_PER_SLOT: usize = 64;
/// How long a pull request waits on the server for tasks.
const PULL_EXPIRES: Duration = Duration::from_secs(1);
/// Tasks quicker than this on average are handed to a slot several at a time.
const QUICK_TASK: Duration = Duration::from_micros(200);
/// The most calls queued to one slot at once, for the quickest tasks.
const MAX_QUEUED_PER_SLOT: usize = 8;
/// How often held tasks are looked at for renewal.
const TICK: Duration = Duration::from_millis(50);

/// Exit status of a worker whose environment is malformed.
const EXIT_USAGE: i32 = 64;
/// Exit status of a worker that could not serve (no server, no JetStream, ...).
const EXIT_FAILED: i32 = 69;

/// Serves the cluster at `url` with `slots` tasks at once, blocking: pulls this program
/// image's tasks, runs them, sends their outcomes back. On SIGTERM or SIGINT it stops
/// pulling, finishes the tasks it holds and returns `Ok(())`. A server that cannot be reached
/// at first is an error; one lost later is reconnected to for ever.
pub fn run_worker(url: &str, slots: usize) -> Result<(), Error> {
    run_worker_with(url, slots, Access::default())
}

pub(crate) fn run_worker_with(url: &str, slots: usize, access: Access) -> Result<(), Error> {
    if slots == 0 {
        return Err(Error::invalid("a worker needs at least one slot"));
    }
    connection::parse_servers(url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Broken(format!("cannot start the worker's runtime: {e}")))?;
    runtime.block_on(serve(url, slots, access))
}

/// Enters worker mode when [`WORKER_ENV`] is set, then exits the process (0 after a signal).
pub(crate) fn run_if_requested() {
    let Some(url) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    // Programs the tasks start are not workers. (Called first thing in `main`.)
    std::env::remove_var(WORKER_ENV);
    let code = match settings(url, std::env::var_os(SLOTS_ENV)) {
        Ok((url, slots)) => match run_worker(&url, slots) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("primepool cluster worker {}: {e}", connection::whoami());
                EXIT_FAILED
            }
        },
        Err(e) => {
            eprintln!("primepool: {e}");
            EXIT_USAGE
        }
    };
    std::process::exit(code)
}

/// The worker's address and slots from the environment's values.
fn settings(url: OsString, slots: Option<OsString>) -> Result<(String, usize), String> {
    let url = url
        .into_string()
        .map_err(|u| format!("{WORKER_ENV}={u:?} is not valid UTF-8"))?;
    let slots = match slots {
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(value) => value
            .to_str()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{SLOTS_ENV}={value:?} is not a positive whole number"))?,
    };
    Ok((url, slots))
}

/// A task received and not yet answered.
struct Held {
    id: u64,
    ack: String,
    reply_to: String,
    /// Renewal interval: a quarter of the lease.
    renew_every: Duration,
    renewed: Instant,
    /// The call, until a slot takes it.
    call: Option<Call>,
}

/// What a slot runs.
struct Call {
    key: u64,
    trampoline: u64,
    func: u64,
    args: Payload,
}

/// A slot's answer.
struct Finished {
    key: u64,
    outcome: Result<Vec<u8>, Error>,
    took: Duration,
}

struct Worker {
    client: Client,
    names: Names,
    me: String,
    /// This worker's own subject, answered while its connection lives (see `Reply::Started`).
    probe: String,
    slots: usize,
    max_payload: usize,
    server_lease: Duration,
    held: HashMap<u64, Held>,
    waiting: VecDeque<u64>,
    /// Calls handed to the slots and not finished yet.
    running: usize,
    next_key: u64,
    /// The moving average of task durations, once one finished.
    average: Option<Duration>,
    calls: crossbeam_channel::Sender<Call>,
    /// Replies not sent yet: one message per client subject, each a [`wire::Replies`] that
    /// grows until it would not fit in one message. Sent before the loop waits again, so a
    /// `Done` and the next task's `Started` (or Dones that finish together) share a message.
    outbox: Vec<(String, wire::Replies)>,
}

async fn serve(url: &str, slots: usize, access: Access) -> Result<(), Error> {
    let me = connection::whoami();
    let names = Names::for_this_image();
    let client = connection::connect(url, &access, &format!("primepool worker {me}"), None).await?;
    let js = jetstream::new(client.clone());
    let consumer = connection::ensure_queue(&js, &names, None).await?;
    let server_lease = consumer.cached_info().config.ack_wait;
    let mut presence = client
        .subscribe(names.workers.clone())
        .await
        .map_err(|e| Error::Broken(format!("cannot subscribe to {}: {e}", names.workers)))?;
    // Subscribed before the first pull, so the server knows the subject before any client
    // hears this worker's name: "no responders" on it then means this connection is gone.
    let inbox = client.new_inbox();
    let probe_subject = names.worker(inbox.rsplit('.').next().unwrap_or(&inbox));
    let mut probes = client
        .subscribe(probe_subject.clone())
        .await
        .map_err(|e| Error::Broken(format!("cannot subscribe to {probe_subject}: {e}")))?;
    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = signal(tokio::signal::unix::SignalKind::interrupt())?;

    let (calls, calls_rx) = crossbeam_channel::unbounded::<Call>();
    let (finished_tx, mut finished) = mpsc::unbounded_channel::<Finished>();
    let threads: Vec<_> = (0..slots)
        .map(|slot| {
            let calls = calls_rx.clone();
            let finished = finished_tx.clone();
            std::thread::Builder::new()
                .name(format!("primepool-slot-{slot}"))
                .spawn(move || run_slot(calls, finished))
                .map_err(|e| Error::Broken(format!("cannot start a worker thread: {e}")))
        })
        .collect::<Result<_, _>>()?;
    drop(finished_tx);

    let mut worker = Worker {
        max_payload: client.server_info().max_payload,
        client,
        names,
        me,
        probe: probe_subject,
        slots,
        server_lease,
        held: HashMap::new(),
        waiting: VecDeque::new(),
        running: 0,
        next_key: 0,
        average: None,
        calls,
        outbox: Vec::new(),
    };
    let mut pulling = true;
    let mut batch: Option<jetstream::consumer::pull::Batch> = None;
    let mut pulled_at = Instant::now();
    let mut consumer = consumer;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Replies first, then the next pull: both leave in one write, one wake-up of the
        // server instead of two.
        worker.flush_replies().await;
        if pulling && batch.is_none() {
            let room = worker.wanted().saturating_sub(worker.held.len());
            if room > 0 {
                log::debug!("primepool worker {}: pulling {room}", worker.me);
                pulled_at = Instant::now();
                batch = worker.pull(&consumer, room).await;
            }
        }
        if !pulling && batch.is_none() && worker.held.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            Some(done) = finished.recv() => {
                worker.finished(done).await;
                // Whatever else finished meanwhile goes in the same reply message.
                while let Ok(done) = finished.try_recv() {
                    worker.finished(done).await;
                }
            }
            next = next_message(&mut batch) => match next {
                Some(Ok(message)) => worker.received(message.message).await,
                Some(Err(e)) => {
                    log::debug!("primepool worker: pull ended: {e}");
                    batch = None;
                    // A server-side refusal (e.g. leadership change): do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                None => {
                    log::debug!("primepool worker {}: pull ended", worker.me);
                    batch = None;
                    if pulled_at.elapsed() > PULL_EXPIRES * 2 {
                        let info = consumer.info().await.map(|i| format!("{i:?}"));
                        log::debug!("primepool worker {}: no answer; consumer {info:?}", worker.me);
                    }
                }
            },
            Some(request) = presence.next() => worker.present(request, pulling).await,
            Some(request) = probes.next() => worker.answer_probe(request).await,
            _ = tick.tick() => worker.renew().await,
            _ = terminate.recv() => pulling = false,
            _ = interrupt.recv() => pulling = false,
        }
    }
    worker.flush_replies().await;
    let _ = worker.client.flush().await;
    drop(worker);
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, Error> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| Error::Broken(format!("cannot listen for signals: {e}")))
}

/// The next message of the pull in progress; pending for ever when there is none.
async fn next_message(
    batch: &mut Option<jetstream::consumer::pull::Batch>,
) -> Option<Result<jetstream::Message, async_nats::Error>> {
    match batch {
        Some(batch) => batch.next().await,
        None => std::future::pending().await,
    }
}

/// A slot: runs calls until the channel closes.
fn run_slot(calls: crossbeam_channel::Receiver<Call>, finished: mpsc::UnboundedSender<Finished>) {
    for call in calls {
        let started = std::time::Instant::now();
        // SAFETY: the task came with this image's identity hash (checked in `received`), so
        // its offsets were made by `image::to_offset` from a `TaskFn` of this very executable,
        // and `from_offset` turns them back into the same two addresses here.
        let task_fn = unsafe {
            TaskFn::from_raw(
                image::from_offset(call.trampoline),
                image::from_offset(call.func),
            )
        };
        let outcome = task_fn.invoke(&call.args);
        let done = Finished {
            key: call.key,
            outcome,
            took: started.elapsed(),
        };
        if finished.send(done).is_err() {
            return;
        }
    }
}

impl Worker {
    /// How many tasks to hold: the slots, plus some ahead while tasks are quicker than a pull.
    fn wanted(&self) -> usize {
        let ahead_per_slot = match self.average {
            None => 0,
            Some(average) if average >= PULL_ROUND_TRIP => 0,
            Some(average) => {
                let ratio = PULL_ROUND_TRIP.as_nanos() / average.as_nanos().max(1);
                (ratio as usize).clamp(1, MAX_AHEAD_PER_SLOT)
            }
        };
        self.slots * (1 + ahead_per_slot)
    }

    async fn pull(
        &self,
        consumer: &PullConsumer,
        room: usize,
    ) -> Option<jetstream::consumer::pull::Batch> {
        match consumer
            .batch()
            .max_messages(room)
            .expires(PULL_EXPIRES)
            .messages()
            .await
        {
            Ok(batch) => Some(batch),
            Err(e) => {
                log::debug!("primepool worker: cannot pull: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                None
            }
        }
    }

    /// A message from the work queue.
    async fn received(&mut self, message: async_nats::Message) {
        let Some(ack) = message.reply.as_ref().map(|s| s.to_string()) else {
            return;
        };
        let delivered = delivery_count(&ack);
        let (id, task) = match wire::decode_task(&message.payload) {
            Ok(decoded) => decoded,
            Err(e) => return self.reject(&ack, &e).await,
        };
        if task.image != self.names.image {
            let e = format!(
                "a task of another program image ({:016x}, this worker runs {:016x})",
                task.image, self.names.image
            );
            return self.reject(&ack, &e).await;
        }
        if delivered > u64::from(task.max_attempts) {
            self.terminate(&ack).await;
            let failure = Failure::Exhausted {
                attempts: u32::try_from(delivered - 1).unwrap_or(u32::MAX),
            };
            let failed = wire::encode_reply(&Reply::Failed {
                id,
                ack: &ack,
                worker: &self.me,
                failure,
            });
            self.queue(task.reply_to, failed);
            return;
        }
        log::debug!(
            "primepool worker {}: received task {id} (delivery {delivered})",
            self.me
        );
        let lease = Duration::from_millis(task.lease_ms.max(100)).min(self.server_lease);
        let key = self.next_key;
        self.next_key += 1;
        let call = Call {
            key,
            trampoline: task.trampoline,
            func: task.func,
            args: Payload::copy_from_slice(task.args.0),
        };
        let reply_to = task.reply_to.to_string();
        self.held.insert(
            key,
            Held {
                id,
                ack,
                reply_to,
                renew_every: (lease / 4).max(Duration::from_millis(25)),
                renewed: Instant::now(),
                call: Some(call),
            },
        );
        self.waiting.push_back(key);
        self.dispatch();
    }

    /// How many calls the slots may have at once: one each, or up to [`MAX_QUEUED_PER_SLOT`]
    /// each while tasks take less than [`QUICK_TASK`], so a slot thread goes from one quick
    /// task to the next without waiting for this loop (and their `Done`s come back together).
    fn capacity(&self) -> usize {
        let per_slot = match self.average {
            Some(average) if average < QUICK_TASK => {
                let ratio = QUICK_TASK.as_nanos() / average.as_nanos().max(1);
                (ratio as usize).clamp(1, MAX_QUEUED_PER_SLOT)
            }
            _ => 1,
        };
        self.slots * per_slot
    }

    /// Gives waiting tasks to the slots while they have room, saying `Started` for each.
    fn dispatch(&mut self) {
        while self.running < self.capacity() {
            let Some(key) = self.waiting.pop_front() else {
                return;
            };
            let Some(held) = self.held.get_mut(&key) else {
                continue;
            };
            let Some(call) = held.call.take() else {
                continue;
            };
            let started = wire::encode_reply(&Reply::Started {
                id: held.id,
                worker: &self.me,
                ack: &held.ack,
                probe: &self.probe,
            });
            let reply_to = held.reply_to.clone();
            self.running += 1;
            if self.calls.send(call).is_err() {
                return;
            }
            self.queue(&reply_to, started);
        }
    }

    async fn finished(&mut self, done: Finished) {
        self.running = self.running.saturating_sub(1);
        self.average = Some(match self.average {
            None => done.took,
            Some(average) => (average * 7 + done.took) / 8,
        });
        if let Some(held) = self.held.remove(&done.key) {
            log::debug!("primepool worker {}: finished task {}", self.me, held.id);
            let message = match &done.outcome {
                Ok(outcome) => wire::encode_reply(&Reply::Done {
                    id: held.id,
                    ack: &held.ack,
                    outcome: Bytes(outcome),
                })
                .map_err(|e| format!("the result could not be encoded: {e}"))
                .and_then(|bytes| {
                    if wire::Replies::fits(&bytes, self.max_payload) {
                        Ok(bytes)
                    } else {
                        Err(format!(
                            "the task's result takes {} bytes, more than one message can \
                             carry on this NATS server (max_payload {} bytes); return large \
                             data by reference (a path, a key)",
                            bytes.len(),
                            self.max_payload
                        ))
                    }
                }),
                Err(e) => Err(e.to_string()),
            };
            match message {
                Ok(bytes) => self.queue(&held.reply_to, Ok(bytes)),
                Err(reason) => {
                    self.terminate(&held.ack).await;
                    let failed = wire::encode_reply(&Reply::Failed {
                        id: held.id,
                        ack: &held.ack,
                        worker: &self.me,
                        failure: Failure::Error(reason),
                    });
                    self.queue(&held.reply_to, failed);
                }
            }
        }
        self.dispatch();
    }

    /// Extends the lease of every held task due for it.
    async fn renew(&mut self) {
        let now = Instant::now();
        for held in self.held.values_mut() {
            if now.duration_since(held.renewed) >= held.renew_every {
                held.renewed = now;
                let _ = self
                    .client
                    .publish(held.ack.clone(), Payload::from_static(b"+WPI"))
                    .await;
            }
        }
    }

    async fn present(&self, request: async_nats::Message, pulling: bool) {
        let Some(reply) = request.reply else {
            return;
        };
        let presence = Presence {
            worker: &self.me,
            slots: u32::try_from(self.slots).unwrap_or(u32::MAX),
            pulling,
        };
        if let Ok(bytes) = wire::encode(REPLY_TAG, &presence) {
            let _ = self.client.publish(reply, Payload::from(bytes)).await;
        }
    }

    /// A client asks whether this worker is still connected: yes (an empty answer).
    async fn answer_probe(&self, request: async_nats::Message) {
        if let Some(reply) = request.reply {
            let _ = self.client.publish(reply, Payload::new()).await;
        }
    }

    /// Refuses a message that is not one of this image's tasks.
    async fn reject(&self, ack: &str, reason: &str) {
        eprintln!(
            "primepool cluster worker {}: rejected a message on {}: {reason}",
            self.me, self.names.tasks
        );
        self.terminate(ack).await;
    }

    /// Takes a delivery out of the queue for good (`Term`).
    async fn terminate(&self, ack: &str) {
        let _ = self
            .client
            .publish(ack.to_string(), Payload::from_static(b"+TERM"))
            .await;
    }

    /// Queues an encoded reply for `subject` (sent by [`flush_replies`](Self::flush_replies)),
    /// in the open message for that subject when it still fits there.
    fn queue(&mut self, subject: &str, reply: Result<Vec<u8>, String>) {
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => {
                return eprintln!(
                    "primepool cluster worker {}: cannot encode a reply: {e}",
                    self.me
                )
            }
        };
        let max = self.max_payload;
        if let Some((_, open)) = self.outbox.iter_mut().rev().find(|(to, _)| to == subject) {
            if open.push(&reply, max) {
                return;
            }
        }
        let mut message = wire::Replies::new();
        message.push(&reply, usize::MAX);
        self.outbox.push((subject.to_string(), message));
    }

    /// Sends the queued replies, one message per client subject (or more when they would not
    /// fit in one).
    async fn flush_replies(&mut self) {
        for (subject, message) in std::mem::take(&mut self.outbox) {
            if let Err(e) = self
                .client
                .publish(subject.clone(), Payload::from(message.into_bytes()))
                .await
            {
                log::debug!("primepool worker: cannot send to {subject}: {e}");
            }
        }
    }
}

/// The delivery count in a JetStream ack subject:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`,
/// possibly with a domain and account hash after `$JS.ACK` (2.9+ servers may send either).
fn delivery_count(ack: &str) -> u64 {
    let tokens: Vec<&str> = ack.split('.').collect();
    let delivered = match tokens.len() {
        9 => tokens.get(4),
        n if n >= 12 => tokens.get(6),
        _ => None,
    };
    delivered.and_then(|t| t.parse().ok()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivery_count_is_read_from_both_forms_of_ack_subject() {
        assert_eq!(delivery_count("$JS.ACK.S.workers.3.10.9.1700000000.0"), 3);
        assert_eq!(
            delivery_count("$JS.ACK.domain.hash.S.workers.4.10.9.1700000000.0.tok"),
            4
        );
        assert_eq!(delivery_count("garbage"), 1);
    }

    #[test]
    fn the_environment_names_the_server_and_the_slots() {
        assert_eq!(
            settings("nats://h:1".into(), Some("3".into())),
            Ok(("nats://h:1".to_string(), 3))
        );
        assert!(settings("nats://h:1".into(), None).unwrap().1 >= 1);
        for bad in ["0", "-1", "many", ""] {
            let err = settings("nats://h:1".into(), Some(bad.into())).unwrap_err();
            assert!(err.contains(SLOTS_ENV), "{err}");
        }
    }
}
