//! [`ClusterExecutor`]: the executor API over many machines, with NATS JetStream as the queue
//! (feature `cluster`).
//!
//! Workers are the program itself, as with the process pool, started on any host that can
//! reach the NATS server: either through [`run_worker_if_requested`](crate::run_worker_if_requested)
//! with the environment variable `PRIMEPOOL_CLUSTER_WORKER=nats://host:4222` (and optionally
//! `PRIMEPOOL_CLUSTER_SLOTS=N`, default the host's CPUs), or by calling [`run_worker`], or
//! with `primepool worker --connect URL` for the `primepool` command itself. A task crosses as
//! code offsets from a marker function, so a worker must run the identical executable: the
//! queue is named after the program's build identity, and a worker of another build never
//! sees the work.
//!
//! ```no_run
//! use std::time::Duration;
//! use primepool::{ClusterExecutor, ExecutorExt};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() {
//!     primepool::run_worker_if_requested(); // a worker serves the cluster here and exits
//!     let pool = ClusterExecutor::builder()
//!         .connect("nats://127.0.0.1:4222")
//!         .build()
//!         .unwrap();
//!     // Without workers, a result waits until one comes: say how long to wait for them.
//!     pool.wait_for_workers(1, Duration::from_secs(60)).unwrap();
//!     let squares: Vec<u64> = pool.map(square, 0..100).unwrap().map(Result::unwrap).collect();
//!     assert_eq!(squares[9], 81);
//! }
//! ```
//!
//! Semantics (see `docs/cluster.md` for the whole story):
//! - a task runs **at least once**; its future resolves **exactly once** (replies are matched
//!   to tasks by number, later duplicates are dropped);
//! - a worker holds a task under a lease ([`ClusterBuilder::lease`]) that it renews while the
//!   task runs; a worker that dies or loses its connection gives its tasks back when the lease
//!   expires, and another worker runs them (a started task at once, when the client's probe
//!   of its worker hears that the worker's connection is gone); after [`ClusterBuilder::max_attempts`] deliveries
//!   the future fails with [`Error::AttemptsExhausted`]; a task's own panic is not retried;
//! - cancel works until a worker says it started the task (Python's rule): the task's message
//!   is deleted from the stream; `shutdown(cancel_futures = true)` does that for every task
//!   not started;
//! - a lost server is reconnected to; past [`ClusterBuilder::reconnect_deadline`] every
//!   pending future fails with [`Error::Broken`] and the executor refuses new work;
//! - a task's message (arguments) and its reply (result) must each fit in one NATS message
//!   (the server's `max_payload`, 1 MiB by default): larger ones fail with
//!   [`Error::Serialization`] saying so.
//!
//! How it works, module by module: `subjects` (the names on the server for this image),
//! `wire` (the messages), `connection` (connecting, the stream and consumer), `client` (the
//! executor's background thread), `worker` (the worker loop), `builder` (the options).

mod builder;
mod client;
mod connection;
mod subjects;
mod wire;
mod worker;

use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use primepool_core::backend::Job;
use primepool_core::{Error, Executor};
use tokio::sync::{mpsc, oneshot};

pub use builder::{
    ClusterBuilder, DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_RECONNECT_DEADLINE,
};
pub use worker::{run_worker, SLOTS_ENV, WORKER_ENV};

pub(crate) use worker::run_if_requested;

use client::{Command, Config, Shared};
use subjects::Names;

/// How long one presence round waits for the first answer.
const PRESENCE_ROUND: Duration = Duration::from_millis(500);

/// An executor whose workers are processes on other machines (or this one), reached through a
/// NATS JetStream server: the same API as every other backend.
///
/// See the [module documentation](self). Dropping it is `shutdown(wait = true)`: it waits for
/// every task it submitted. **Without any worker connected, a result waits until one comes**
/// (a `result(None)` then waits for ever, as a task of a busy thread pool would): use
/// [`wait_for_workers`](Self::wait_for_workers) before submitting, or a timeout on `result`,
/// which gives [`Error::TimedOut`].
pub struct ClusterExecutor {
    shared: Arc<Shared>,
    max_workers: usize,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for ClusterExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterExecutor")
            .field("url", &self.shared.config.url)
            .field("stream", &self.shared.config.names.stream)
            .field("max_workers", &self.max_workers)
            .finish()
    }
}

impl ClusterExecutor {
    /// The options: [`ClusterBuilder::connect`] is required.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The subject this program image's tasks are published on (`primepool.<hash>.tasks`, in
    /// the stream `PRIMEPOOL_<hash>`), for looking at the queue with NATS's own tools.
    pub fn task_subject(&self) -> &str {
        &self.shared.config.names.tasks
    }

    /// How many workers of this program image are connected and taking work now. It asks them
    /// and collects the answers, which takes from about 100 ms (answers come, then a pause)
    /// to half a second (nobody answers).
    pub fn connected_workers(&self) -> Result<usize, Error> {
        Ok(self.presence(None, PRESENCE_ROUND)?.len())
    }

    /// Waits until at least `n` matching workers are connected and returns how many are, or
    /// [`Error::TimedOut`] when `timeout` passes first.
    pub fn wait_for_workers(&self, n: usize, timeout: Duration) -> Result<usize, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let round = left.min(PRESENCE_ROUND).max(Duration::from_millis(1));
            let seen = self.presence(Some(n), round)?.len();
            if seen >= n {
                return Ok(seen);
            }
            if Instant::now() >= deadline {
                return Err(Error::timed_out(timeout));
            }
            std::thread::sleep(Duration::from_millis(20).min(left));
        }
    }

    /// The workers answering a presence request within `within`: `(host:pid, slots)`.
    fn presence(&self, want: Option<usize>, within: Duration) -> Result<Vec<(String, u32)>, Error> {
        if self.shared.on_client_thread() {
            return Err(Error::Broken(
                "cannot ask for workers from a done-callback of the same executor".into(),
            ));
        }
        let (answer, answered) = oneshot::channel();
        self.shared.command(Command::Presence {
            want,
            within,
            answer,
        })?;
        answered
            .blocking_recv()
            .map_err(|_| Error::Broken("the cluster client's thread has ended".into()))?
    }

    fn start(options: ClusterBuilder) -> Result<ClusterExecutor, Error> {
        let Some(url) = options.url.clone() else {
            return Err(Error::invalid(
                "no NATS server given: call .connect(\"nats://host:4222\") on the builder",
            ));
        };
        connection::parse_servers(&url)?;
        let max_workers = options.max_workers;
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (ready, ready_rx) = std::sync::mpsc::channel::<Result<Arc<Shared>, Error>>();
        let thread = std::thread::Builder::new()
            .name("primepool-cluster".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(Error::Broken(format!(
                            "cannot start the cluster client's runtime: {e}"
                        ))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match setup(&url, &options, commands).await {
                        Ok((shared, client, events, replies)) => {
                            let _ = ready.send(Ok(shared.clone()));
                            client::run(shared, client, commands_rx, events, replies).await;
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| Error::Broken(format!("cannot start the cluster client's thread: {e}")))?;
        let shared = match ready_rx.recv() {
            Ok(Ok(shared)) => shared,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(Error::Broken(
                    "the cluster client's thread ended while connecting".into(),
                ));
            }
        };
        let mut executor = ClusterExecutor {
            shared,
            max_workers: 1,
            thread: Some(thread),
        };
        executor.max_workers = match max_workers {
            Some(n) => n,
            None => executor
                .presence(None, PRESENCE_ROUND)?
                .iter()
                .map(|(_, slots)| *slots as usize)
                .sum::<usize>()
                .max(1),
        };
        Ok(executor)
    }
}

/// Connects and subscribes, on the client thread.
async fn setup(
    url: &str,
    options: &ClusterBuilder,
    commands: mpsc::UnboundedSender<Command>,
) -> Result<
    (
        Arc<Shared>,
        async_nats::Client,
        mpsc::UnboundedReceiver<async_nats::Event>,
        async_nats::Subscriber,
    ),
    Error,
> {
    let names = Names::for_this_image();
    let (events, events_rx) = mpsc::unbounded_channel();
    let name = format!("primepool client {}", connection::whoami());
    let client = connection::connect(url, &options.access, &name, Some(events)).await?;
    let js = async_nats::jetstream::new(client.clone());
    connection::ensure_queue(&js, &names, Some(options.lease)).await?;
    let inbox = client.new_inbox();
    let client_id = inbox.rsplit('.').next().unwrap_or(&inbox).to_string();
    let reply_subject = names.client(&client_id);
    let replies = client
        .subscribe(reply_subject.clone())
        .await
        .map_err(|e| Error::Broken(format!("cannot subscribe to {reply_subject}: {e}")))?;
    client
        .flush()
        .await
        .map_err(|e| Error::Broken(format!("the NATS server at {url} went away: {e}")))?;
    let config = Config {
        url: url.to_string(),
        names,
        reply_subject,
        lease: options.lease,
        max_attempts: options.max_attempts,
        max_in_flight: options.max_in_flight,
        reconnect_deadline: options.reconnect_deadline,
        max_payload: client.server_info().max_payload,
    };
    let shared = Arc::new(Shared::new(config, commands));
    *shared.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current().id());
    Ok((shared, client, events_rx, replies))
}

impl Executor for ClusterExecutor {
    fn name(&self) -> &'static str {
        "cluster"
    }

    fn max_workers(&self) -> usize {
        self.max_workers
    }

    fn execute(&self, job: Job) -> Result<(), Error> {
        self.shared.submit(job)
    }

    fn execute_batch(&self, jobs: Vec<Job>) -> Result<(), Error> {
        let mut jobs = jobs.into_iter();
        while let Some(job) = jobs.next() {
            if let Err(e) = self.shared.submit(job) {
                jobs.for_each(|job| job.fail(e.clone()));
                return Err(e);
            }
        }
        Ok(())
    }

    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.shared.shutdown(wait, cancel_futures);
    }

    /// Factoring chunks twice the local pools' size at first (no chunk over a quarter of a
    /// worker's share, where they take an eighth): every cluster task costs about half a
    /// millisecond of CPU between the server, the client and the worker, and a round trip
    /// before the worker has its next one, so fewer tasks pay (14 for 100 inputs on 2 slots
    /// instead of 20); the schedule still ends on single inputs, so workers finish together.
    fn auto_chunks(&self, items: usize) -> Vec<usize> {
        primepool_core::backend::factoring_chunks_capped(items, self.max_workers, 4)
    }
}

impl Drop for ClusterExecutor {
    fn drop(&mut self) {
        self.shared.shutdown(true, false);
        let _ = self.shared.command(Command::Stop);
        if let Some(thread) = self.thread.take() {
            // Dropped from one of its own done-callbacks: it ends on its own after this.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}
