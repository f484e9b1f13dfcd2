//! [`ClusterBuilder`]: the options of a [`ClusterExecutor`], in the style of the other pools'
//! builders.

use std::path::PathBuf;
use std::time::Duration;

use primepool_core::Error;

use super::connection::Access;
use super::ClusterExecutor;

/// The default lease: how long a worker may go silent before its tasks are given to others.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);
/// The default number of deliveries a task may have.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// The default bound on tasks in flight (submitted and not yet resolved).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 65_536;
/// The default time the client keeps trying to reach a lost server before failing its futures.
pub const DEFAULT_RECONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// Options for a [`ClusterExecutor`]; made by [`ClusterExecutor::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use primepool::{ClusterExecutor, ExecutorExt};
///
/// let pool = ClusterExecutor::builder()
///     .connect("nats://127.0.0.1:4222")
///     .lease(Duration::from_secs(2))
///     .max_attempts(3)
///     .build()
///     .unwrap();
/// pool.wait_for_workers(1, Duration::from_secs(30)).unwrap();
/// let square = pool.submit(primepool::workload::noop, 7).unwrap();
/// assert_eq!(square.result(None), Ok(7));
/// ```
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    pub(crate) url: Option<String>,
    pub(crate) lease: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) max_in_flight: usize,
    pub(crate) reconnect_deadline: Duration,
    pub(crate) max_workers: Option<usize>,
    pub(crate) access: Access,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            url: None,
            lease: DEFAULT_LEASE,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            reconnect_deadline: DEFAULT_RECONNECT_DEADLINE,
            max_workers: None,
            access: Access::default(),
        }
    }
}

impl ClusterBuilder {
    /// The NATS server (with JetStream enabled) to use: `nats://host:4222`, `tls://host:4222`,
    /// `host:4222`, or several such addresses separated by commas (the servers of one NATS
    /// cluster). Required.
    pub fn connect(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// How long a worker holds a task without news before the server gives it to another
    /// worker (JetStream's `AckWait`; default 5 s). A running task is renewed several times per
    /// lease, so it may run for hours; a worker that dies or loses its connection gives its
    /// tasks back after at most one lease. The lease belongs to the image's queue, which all
    /// clients of one program share: the last client to connect sets it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How many times a task may be handed to a worker (default 5). A task whose workers kept
    /// dying fails after that with [`Error::AttemptsExhausted`]. A task's own panic is never
    /// retried.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The most tasks (calls of `submit`, chunks of `map`) in flight at once, submitted and not
    /// yet resolved (default 65,536). When it is reached, `submit` (and `map`, for its
    /// remaining chunks) blocks until earlier tasks finish.
    pub fn max_in_flight(mut self, tasks: usize) -> Self {
        self.max_in_flight = tasks;
        self
    }

    /// How long the client tries to reach a server it lost before it fails every pending
    /// future with [`Error::Broken`] and refuses new work (default 30 s). Work submitted before
    /// a server restart is kept when the server comes back in time (file storage).
    pub fn reconnect_deadline(mut self, deadline: Duration) -> Self {
        self.reconnect_deadline = deadline;
        self
    }

    /// What [`Executor::max_workers`](primepool_core::Executor::max_workers) reports, which
    /// sizes `map`'s automatic chunks. By default, the slots of the matching workers connected
    /// when the executor is built (at least 1).
    pub fn max_workers(mut self, workers: usize) -> Self {
        self.max_workers = Some(workers);
        self
    }

    /// A NATS credentials file (`.creds`: a user JWT and its NKey seed).
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.access.credentials_file = Some(path.into());
        self
    }

    /// A token for token authentication.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.access.token = Some(token.into());
        self
    }

    /// A user name and password.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.access.user_and_password = Some((user.into(), password.into()));
        self
    }

    /// A PEM file of root certificates to trust for the server's TLS certificate (may be given
    /// more than once).
    pub fn tls_root_certificates(mut self, path: impl Into<PathBuf>) -> Self {
        self.access.tls_roots.push(path.into());
        self
    }

    /// A PEM client certificate and its key, for servers that verify clients.
    pub fn tls_client_certificate(
        mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.access.client_certificate = Some((certificate.into(), key.into()));
        self
    }

    /// Refuses to talk to the server without TLS.
    pub fn require_tls(mut self, required: bool) -> Self {
        self.access.require_tls = required;
        self
    }

    /// Connects, makes sure the image's stream and consumer exist, and returns the executor.
    /// A malformed address or a zero option is [`Error::InvalidArgument`]; a server that cannot
    /// be reached, refuses the credentials or has no JetStream is [`Error::Broken`] with the
    /// reason. It does not wait for workers: see [`ClusterExecutor::wait_for_workers`].
    pub fn build(self) -> Result<ClusterExecutor, Error> {
        if self.lease < Duration::from_millis(100) {
            return Err(Error::invalid("the lease must be at least 100 ms"));
        }
        if self.max_attempts == 0 {
            return Err(Error::invalid("max_attempts must be at least 1"));
        }
        if self.max_in_flight == 0 {
            return Err(Error::invalid("max_in_flight must be at least 1"));
        }
        if self.reconnect_deadline.is_zero() {
            return Err(Error::invalid("the reconnect deadline must be positive"));
        }
        if self.max_workers == Some(0) {
            return Err(Error::invalid("max_workers must be at least 1"));
        }
        ClusterExecutor::start(self)
    }
}
