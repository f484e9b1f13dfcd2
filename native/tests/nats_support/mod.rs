//! A real NATS server and cluster workers for the cluster tests.
//!
//! [`NatsServer::start`] runs `nats-server -js` on a free 127.0.0.1 port with a scratch store
//! (the binary named by `PRIMEPOOL_NATS_SERVER`, else the first `nats-server` on `PATH`, in
//! `/usr/local/bin` or in `/usr/sbin`), waits until it is ready, can be stopped and started
//! again on the same port and store, and is killed on drop. [`Worker::spawn`] starts this
//! very test binary as a cluster worker: the harness runs only the ignored test
//! [`cluster_worker_entry`], whose body is `primepool::run_worker_if_requested()`, with
//! `PRIMEPOOL_CLUSTER_WORKER` set, so the worker runs the same program image as the test.
//! Both kinds of child get the parent-death signal, so they never outlive a test binary that
//! is killed.
//!
//! A test file uses this with `mod nats_support;`.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the support"
)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use primepool::backend::Job;
use primepool::{ClusterExecutor, Error, Executor};

/// The harness arguments that run only [`cluster_worker_entry`].
pub const WORKER_ARGS: [&str; 6] = [
    "nats_support::cluster_worker_entry",
    "--exact",
    "--ignored",
    "--nocapture",
    "--test-threads=1",
    "-q",
];

/// How long a server or a worker may take to come up on a loaded machine.
pub const STARTUP: Duration = Duration::from_secs(60);

/// The entry point of cluster worker processes: run by [`Worker::spawn`], not by `cargo test`.
#[test]
#[ignore = "the entry point of cluster worker processes, started by the cluster tests"]
fn cluster_worker_entry() {
    init_log();
    primepool::run_worker_if_requested();
}

/// With `PRIMEPOOL_TEST_LOG` set, the library's log lines go to standard error (in the test
/// process and in its workers), for investigating a failure.
pub fn init_log() {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            eprintln!(
                "[{} {:?}] {}",
                record.level(),
                std::time::SystemTime::now(),
                record.args()
            );
        }
        fn flush(&self) {}
    }
    if std::env::var_os("PRIMEPOOL_TEST_LOG").is_some() && log::set_logger(&Stderr).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}

/// The `nats-server` binary to run, or why there is none.
pub fn server_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PRIMEPOOL_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/bin".into(), "/usr/sbin".into()])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "no nats-server on PATH, in /usr/local/bin or /usr/sbin (cargo xtask test installs \
             it; or set PRIMEPOOL_NATS_SERVER)"
                .to_string()
        })
}

/// Makes `command`'s child get SIGKILL when the thread that starts it ends (on Linux).
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl, which
    // is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A scratch directory, removed on drop.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// A new empty directory under the system's temporary directory.
    pub fn new(what: &str) -> Scratch {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "primepool-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Scratch(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `nats-server -js` of this test, on 127.0.0.1.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    /// The HTTP monitoring port (`/varz`).
    monitor: u16,
    store: Scratch,
    child: Option<Child>,
    starts: u32,
}

impl NatsServer {
    /// Starts a server on a free port with an empty store and waits until it is ready.
    pub fn start() -> NatsServer {
        let binary = server_binary().unwrap_or_else(|e| panic!("{e}"));
        let port = free_port();
        let mut server = NatsServer {
            binary,
            port,
            monitor: free_port(),
            store: Scratch::new("nats"),
            child: None,
            starts: 0,
        };
        server.restart();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server process's id (0 while stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The messages the server took in and sent out since it started, from its monitoring
    /// endpoint (`/varz`: `in_msgs`, `out_msgs`), or why they cannot be read.
    pub fn messages(&self) -> Result<(u64, u64), String> {
        use std::io::Write as _;
        let mut socket = TcpStream::connect(("127.0.0.1", self.monitor))
            .map_err(|e| format!("cannot reach the monitoring port: {e}"))?;
        socket
            .write_all(b"GET /varz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        socket
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        let field = |name: &str| -> Result<u64, String> {
            let key = format!("\"{name}\":");
            let at = text
                .find(&key)
                .ok_or_else(|| format!("no {name} in /varz"))?;
            text[at + key.len()..]
                .trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("{name} in /varz is not a number"))
        };
        Ok((field("in_msgs")?, field("out_msgs")?))
    }

    /// The server's version line (`nats-server: v2.9.10`).
    pub fn version(&self) -> String {
        let out = Command::new(&self.binary)
            .arg("--version")
            .output()
            .expect("nats-server --version");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Kills the server (SIGKILL: no goodbye to clients) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port and store and waits until it is ready.
    pub fn restart(&mut self) {
        self.stop();
        self.starts += 1;
        let log = self
            .store
            .path()
            .join(format!("server-{}.log", self.starts));
        let mut command = Command::new(&self.binary);
        command
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-m")
            .arg(self.monitor.to_string())
            .arg("-sd")
            .arg(self.store.path().join("store"))
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut command);
        let child = command.spawn().expect("starting nats-server");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            let ready = std::fs::read_to_string(&log)
                .map(|text| text.contains("Server is ready"))
                .unwrap_or(false);
            if ready && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("nats-server exited with {status} before it was ready:\n{text}");
            }
            assert!(
                start.elapsed() < STARTUP,
                "nats-server was not ready within {STARTUP:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// A cluster worker process running this test binary, killed on drop.
#[derive(Debug)]
pub struct Worker {
    child: Option<Child>,
}

impl Worker {
    /// Starts a worker with `slots` slots serving the server at `url`.
    pub fn spawn(url: &str, slots: usize) -> Worker {
        Worker::spawn_with(url, slots, &[])
    }

    /// [`spawn`](Self::spawn) with extra environment.
    pub fn spawn_with(url: &str, slots: usize, env: &[(&str, &str)]) -> Worker {
        let exe = std::env::current_exe().expect("the test binary's path");
        Worker::spawn_program(&exe, url, slots, env, None)
    }

    /// A worker running `program` (a copy of this test binary), its standard error going to
    /// `stderr` when given.
    pub fn spawn_program(
        program: &Path,
        url: &str,
        slots: usize,
        env: &[(&str, &str)],
        stderr: Option<&Path>,
    ) -> Worker {
        let mut command = Command::new(program);
        if let Some(path) = stderr {
            command.stderr(std::fs::File::create(path).expect("a file for the worker's stderr"));
        }
        command
            .args(WORKER_ARGS)
            .env("PRIMEPOOL_CLUSTER_WORKER", url)
            .env("PRIMEPOOL_CLUSTER_SLOTS", slots.to_string())
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        die_with_parent(&mut command);
        Worker {
            child: Some(command.spawn().expect("starting a cluster worker")),
        }
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `signal` to the worker.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions; the child is ours and not reaped
        // yet, so its pid cannot have been reused.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// SIGKILLs the worker and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `limit` for the worker to exit; its exit code, or `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server and workers of this test binary; workers are killed first on drop.
#[derive(Debug)]
pub struct Cluster {
    pub workers: Vec<Worker>,
    pub server: NatsServer,
}

impl Cluster {
    /// A server and `workers` workers with `slots` slots each.
    pub fn start(workers: usize, slots: usize) -> Cluster {
        init_log();
        let server = NatsServer::start();
        let workers = (0..workers)
            .map(|_| Worker::spawn(&server.url(), slots))
            .collect();
        Cluster { workers, server }
    }

    /// A builder connected to this cluster's server.
    pub fn builder(&self) -> primepool::cluster::ClusterBuilder {
        ClusterExecutor::builder().connect(self.server.url())
    }

    /// An executor whose workers are all connected.
    pub fn executor(&self, max_workers: usize) -> ClusterExecutor {
        let pool = self
            .builder()
            .max_workers(max_workers)
            .build()
            .expect("a cluster executor");
        let n = self.workers.len();
        pool.wait_for_workers(n, STARTUP)
            .unwrap_or_else(|e| panic!("{n} workers did not connect: {e}"));
        pool
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            worker.kill();
        }
    }
}

/// A cluster executor that owns its server and workers, for factories returning
/// `Box<dyn Executor>` (the conformance suite): the executor is dropped (waiting for its
/// tasks) before the cluster.
pub struct WithCluster {
    pub pool: ClusterExecutor,
    pub cluster: Cluster,
}

impl WithCluster {
    /// A server, `workers` single-slot workers and an executor reporting `workers`.
    pub fn start(workers: usize) -> WithCluster {
        let cluster = Cluster::start(workers, 1);
        let pool = cluster.executor(workers);
        WithCluster { pool, cluster }
    }
}

impl Executor for WithCluster {
    fn name(&self) -> &'static str {
        self.pool.name()
    }
    fn max_workers(&self) -> usize {
        self.pool.max_workers()
    }
    fn execute(&self, job: Job) -> Result<(), Error> {
        self.pool.execute(job)
    }
    fn execute_batch(&self, jobs: Vec<Job>) -> Result<(), Error> {
        self.pool.execute_batch(jobs)
    }
    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.pool.shutdown(wait, cancel_futures)
    }
    fn auto_chunks(&self, items: usize) -> Vec<usize> {
        self.pool.auto_chunks(items)
    }
}

/// A copy of this test binary that is a *different program image*: the same code, but its
/// GNU build-id changed (or, without one, another file, which is what the identity then
/// names). Its workers serve another queue.
pub fn foreign_build(dir: &Path) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut bytes = std::fs::read(&exe).expect("reading the test binary");
    // An ELF note: name size 4, descriptor size n, type 3 (NT_GNU_BUILD_ID), "GNU\0", id.
    let header = |n: u32| {
        let mut h = Vec::new();
        h.extend_from_slice(&4u32.to_ne_bytes());
        h.extend_from_slice(&n.to_ne_bytes());
        h.extend_from_slice(&3u32.to_ne_bytes());
        h.extend_from_slice(b"GNU\0");
        h
    };
    for n in [20u32, 16, 32, 8] {
        let needle = header(n);
        if let Some(at) = bytes
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
        {
            let id = at + needle.len();
            bytes[id] ^= 0xff;
            break;
        }
    }
    let copy = dir.join("foreign-build");
    std::fs::write(&copy, &bytes).expect("writing the foreign build");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    copy
}

/// Reads a file to a string, empty if it cannot be read.
pub fn read_lossy(path: &Path) -> String {
    let mut text = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}
