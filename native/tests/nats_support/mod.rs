//! What the cluster tests share beyond `primepool::test_support::nats` (the scratch
//! `nats-server` and the worker processes, which any user's tests can have too): a server with
//! workers ([`Cluster`]), an executor that owns them ([`WithCluster`], for the conformance
//! suite), a copy of the test binary that is another program image ([`foreign_build`]),
//! scratch directories, and the library's log on standard error with `PRIMEPOOL_TEST_LOG`.
//!
//! A test file uses this with `mod nats_support;`; the workers' entry point is the one
//! `primepool::test_support!` adds, here.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the support"
)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use primepool::backend::Job;
use primepool::{ClusterExecutor, Error, Executor};

pub use primepool::test_support::nats::{NatsServer, Worker, STARTUP};

primepool::test_support!();

/// With `PRIMEPOOL_TEST_LOG` set, the library's log lines go to standard error, for
/// investigating a failure.
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

/// A scratch server (the test fails, saying why, when there is none).
pub fn server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| panic!("{e}"))
}

/// A worker of this test binary with `slots` slots serving `url`.
pub fn worker(url: &str, slots: usize) -> Worker {
    Worker::spawn(url, slots).unwrap_or_else(|e| panic!("{e}"))
}

/// [`worker`] with extra environment.
pub fn worker_with(url: &str, slots: usize, env: &[(&str, &str)]) -> Worker {
    let (program, args) = primepool::test_support::worker_command().expect("the entry point");
    let mut command = Command::new(program);
    command.args(args).envs(env.iter().copied());
    Worker::spawn_command(command, url, slots).unwrap_or_else(|e| panic!("{e}"))
}

/// A worker running `program` (a copy of this test binary), its standard error going to
/// `stderr` when given.
pub fn worker_program(program: &Path, url: &str, slots: usize, stderr: Option<&Path>) -> Worker {
    let (_, args) = primepool::test_support::worker_command().expect("the entry point");
    let mut command = Command::new(program);
    command.args(args);
    if let Some(path) = stderr {
        command.stderr(std::fs::File::create(path).expect("a file for the worker's stderr"));
    }
    Worker::spawn_command(command, url, slots).unwrap_or_else(|e| panic!("{e}"))
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
        let server = server();
        let workers = (0..workers).map(|_| worker(&server.url(), slots)).collect();
        Cluster { workers, server }
    }

    /// A builder connected to this cluster's server.
    pub fn builder(&self) -> primepool::cluster::ClusterBuilder {
        ClusterExecutor::builder().connect(self.server.url())
    }

    /// An executor whose workers are all connected.
    pub fn executor(&self, max_workers: usize) -> ClusterExecutor {
        self.executor_from(self.builder().max_workers(max_workers))
    }

    /// The executor `builder` (made from [`Cluster::builder`]) builds, once all this cluster's
    /// workers are connected.
    pub fn executor_from(&self, builder: primepool::cluster::ClusterBuilder) -> ClusterExecutor {
        let pool = builder.build().expect("a cluster executor");
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
