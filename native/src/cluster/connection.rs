//! Connecting to the NATS server and setting up the image's queue: shared by the client and
//! the worker.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use primepool_core::Error;

use super::subjects::Names;

/// Credentials and TLS settings, passed through to `async-nats`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Access {
    pub credentials_file: Option<PathBuf>,
    pub token: Option<String>,
    pub user_and_password: Option<(String, String)>,
    pub tls_roots: Vec<PathBuf>,
    pub client_certificate: Option<(PathBuf, PathBuf)>,
    pub require_tls: bool,
}

/// How many unacknowledged tasks the server hands out at most, over all workers: the
/// server-side back-pressure (JetStream's `MaxAckPending`).
const MAX_ACK_PENDING: i64 = 20_000;

/// Parses one server address or several separated by commas; a malformed one is
/// [`Error::InvalidArgument`] naming it.
pub(crate) fn parse_servers(url: &str) -> Result<Vec<ServerAddr>, Error> {
    let servers: Vec<ServerAddr> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ServerAddr>()
                .map_err(|e| Error::invalid(format!("malformed NATS server address {s:?}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    if servers.is_empty() {
        return Err(Error::invalid(format!(
            "no NATS server address in {url:?} (expected e.g. nats://127.0.0.1:4222)"
        )));
    }
    Ok(servers)
}

/// Connects with `access`, naming the connection `name`; connection events go to `events`.
/// The first connection must succeed (an unreachable server is an error, not a wait); after
/// that the client reconnects by itself, for ever.
pub(crate) async fn connect(
    url: &str,
    access: &Access,
    name: &str,
    events: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
) -> Result<Client, Error> {
    let servers = parse_servers(url)?;
    let mut options = ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            // Quick at first (a restarting server is back within a second), then every 500 ms.
            Duration::from_millis((50 * attempts as u64).min(500))
        });
    if let Some(path) = &access.credentials_file {
        options = options.credentials_file(path).await.map_err(|e| {
            Error::invalid(format!(
                "cannot read NATS credentials {}: {e}",
                path.display()
            ))
        })?;
    }
    if let Some(token) = &access.token {
        options = options.token(token.clone());
    }
    if let Some((user, password)) = &access.user_and_password {
        options = options.user_and_password(user.clone(), password.clone());
    }
    for root in &access.tls_roots {
        options = options.add_root_certificates(root.clone());
    }
    if let Some((cert, key)) = &access.client_certificate {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    options = options.require_tls(access.require_tls);
    if let Some(events) = events {
        options = options.event_callback(move |event| {
            let events = events.clone();
            async move {
                let _ = events.send(event);
            }
        });
    }
    options
        .connect(servers)
        .await
        .map_err(|e| Error::Broken(format!("cannot connect to the NATS server at {url}: {e}")))
}

/// Makes sure the image's work-queue stream and the workers' durable pull consumer exist, with
/// `lease` as the consumer's `AckWait` when given (a client sets it; a worker takes what is
/// there). Returns the consumer.
pub(crate) async fn ensure_queue(
    js: &jetstream::Context,
    names: &Names,
    lease: Option<Duration>,
) -> Result<consumer::PullConsumer, Error> {
    let no_jetstream = |e: &dyn std::fmt::Display| {
        Error::Broken(format!(
            "cannot set up the task stream {} on the NATS server ({e}); is JetStream enabled \
             (nats-server -js)?",
            names.stream
        ))
    };
    let config = stream::Config {
        name: names.stream.clone(),
        subjects: vec![names.tasks.clone()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        description: Some("primepool tasks for one program image".into()),
        ..Default::default()
    };
    if lease.is_none() {
        return worker_queue(js, names).await;
    }
    // Clients of one image may set the queue up at once: a create that loses that race
    // ("already in use", "subjects overlap") finds the winner's stream next time.
    let mut attempts = 0;
    let _stream = loop {
        attempts += 1;
        match js.get_stream(&names.stream).await {
            Ok(stream) => break stream,
            Err(e) if attempts > 3 => return Err(no_jetstream(&e)),
            Err(_) => {}
        }
        match js.create_stream(config.clone()).await {
            Ok(stream) => break stream,
            Err(e) if attempts > 3 => return Err(no_jetstream(&e)),
            Err(e) => log::debug!("primepool: creating {} raced: {e}", names.stream),
        }
    };
    let wanted = consumer::pull::Config {
        durable_name: Some(names.consumer.to_string()),
        description: Some("primepool workers".into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: lease.unwrap_or(super::builder::DEFAULT_LEASE),
        // Unlimited: each task carries its own attempt limit, enforced by the worker that
        // receives it one time too many (so the client hears about it).
        max_deliver: -1,
        max_ack_pending: MAX_ACK_PENDING,
        ..Default::default()
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        // Create the consumer, or bring the lease of an existing one to ours (a create without
        // the 2.10 `action` field creates or updates, on 2.9 and later).
        let made = js
            .create_consumer_on_stream(wanted.clone(), names.stream.as_str())
            .await
            .map_err(|e| no_jetstream(&e));
        match made {
            Ok(consumer) => return Ok(consumer),
            Err(e) if attempts > 3 => return Err(e),
            Err(e) => {
                log::debug!("primepool: setting up the consumer raced: {e}");
                tokio::time::sleep(Duration::from_millis(20 * attempts)).await;
            }
        }
    }
}

/// A worker's view of the queue: it waits until a client has made the stream and the consumer
/// (only clients make them: a 2.9 server that gets a stream created twice at once can leave the
/// consumer deaf to pull requests).
async fn worker_queue(
    js: &jetstream::Context,
    names: &Names,
) -> Result<consumer::PullConsumer, Error> {
    let mut said = false;
    loop {
        if let Ok(stream) = js.get_stream(&names.stream).await {
            if let Ok(consumer) = stream.get_consumer(names.consumer).await {
                return Ok(consumer);
            }
        }
        if !said {
            said = true;
            log::info!(
                "primepool worker: waiting for a client of this program to create {}",
                names.stream
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// This process as a worker or client is known to others: `host:pid`.
pub(crate) fn whoami() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for writes of its length, which is what is passed;
    // gethostname NUL-terminates within it on success (truncated names are cut below anyway).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown-host".into()
    };
    format!("{host}:{}", std::process::id())
}
