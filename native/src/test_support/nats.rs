//! A scratch NATS server and cluster workers for testing code that uses
//! [`ClusterExecutor`](crate::ClusterExecutor) (feature `cluster`, Unix).
//!
//! [`NatsServer::start`] runs `nats-server -js` on a free 127.0.0.1 port with a scratch store
//! (the binary named by `PRIMEPOOL_NATS_SERVER`, else the first `nats-server` on `PATH`, in
//! `/usr/local/bin` or in `/usr/sbin`), waits until it is ready, can be stopped and started
//! again on the same port and store, and is killed (its store removed) on drop.
//! [`Worker::spawn`] starts this very test binary as a cluster worker through the entry point
//! that [`test_support!`](crate::test_support!) adds, so the worker runs the same program image
//! as the test; [`Worker::spawn_command`] starts any command (a program of your own whose
//! `main` calls `run_worker_if_requested`, a copy of the binary) the same way. Both kinds of
//! child get the parent-death signal on Linux, so they never outlive a test binary that is
//! killed.
//!
//! ```no_run
//! // tests/cluster.rs of your crate (with primepool's `cluster` feature)
//! primepool::test_support!();
//!
//! use primepool::test_support::nats::{NatsServer, Worker};
//! use primepool::{ClusterExecutor, ExecutorExt};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! #[test]
//! fn squares_on_a_cluster() {
//!     let server = NatsServer::start().unwrap();
//!     let _worker = Worker::spawn(&server.url(), 2).unwrap();
//!     let pool = ClusterExecutor::builder().connect(server.url()).build().unwrap();
//!     pool.wait_for_workers(1, std::time::Duration::from_secs(60)).unwrap();
//!     let future = pool.submit(square, 7).unwrap();
//!     assert_eq!(future.result(None), Ok(49));
//! }
//! ```

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::cluster::{SLOTS_ENV, WORKER_ENV};
use crate::Error;

/// The variable that names the `nats-server` binary to run (else it is looked for on `PATH`,
/// in `/usr/local/bin` and in `/usr/sbin`).
pub const SERVER_ENV: &str = "PRIMEPOOL_NATS_SERVER";

/// How long a server may take to come up on a loaded machine.
pub const STARTUP: Duration = Duration::from_secs(60);

/// The `nats-server` binary to run, or [`Error::Broken`] saying there is none.
pub fn server_binary() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os(SERVER_ENV) {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/bin".into(), "/usr/sbin".into()])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            Error::Broken(format!(
                "no nats-server on PATH, in /usr/local/bin or /usr/sbin (install it, e.g. \
                 `apt-get install nats-server`, or set {SERVER_ENV})"
            ))
        })
}

/// A port of 127.0.0.1 nobody listens on now.
pub fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Broken(format!("cannot find a free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Broken(format!("cannot find a free port: {e}")))
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

/// A `nats-server -js` on 127.0.0.1 with a scratch store, killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    /// The HTTP monitoring port (`/varz`).
    monitor: u16,
    store: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl NatsServer {
    /// Starts a server on a free port with an empty store and waits (up to [`STARTUP`]) until
    /// it is ready. No server binary, or one that exits or does not come up, is
    /// [`Error::Broken`] saying so (with the server's log).
    pub fn start() -> Result<NatsServer, Error> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let binary = server_binary()?;
        let store = std::env::temp_dir().join(format!(
            "primepool-nats-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&store);
        std::fs::create_dir_all(&store).map_err(|e| {
            Error::Broken(format!("cannot make a store at {}: {e}", store.display()))
        })?;
        let mut server = NatsServer {
            binary,
            port: free_port()?,
            monitor: free_port()?,
            store,
            child: None,
            starts: 0,
        };
        server.restart()?;
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server process's id (0 while stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The directory holding its store and logs (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.store
    }

    /// The server's version line (`nats-server: v2.9.10`).
    pub fn version(&self) -> Result<String, Error> {
        let out = Command::new(&self.binary)
            .arg("--version")
            .output()
            .map_err(|e| Error::Broken(format!("cannot run {}: {e}", self.binary.display())))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The messages the server took in and sent out since it started, from its monitoring
    /// endpoint (`/varz`: `in_msgs`, `out_msgs`).
    pub fn messages(&self) -> Result<(u64, u64), Error> {
        let broken = |e: &dyn std::fmt::Display| {
            Error::Broken(format!("cannot read the server's /varz: {e}"))
        };
        let mut socket = TcpStream::connect(("127.0.0.1", self.monitor)).map_err(|e| broken(&e))?;
        socket
            .set_read_timeout(Some(STARTUP))
            .map_err(|e| broken(&e))?;
        socket
            .write_all(b"GET /varz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .map_err(|e| broken(&e))?;
        let mut text = String::new();
        socket.read_to_string(&mut text).map_err(|e| broken(&e))?;
        let field = |name: &str| -> Result<u64, Error> {
            let key = format!("\"{name}\":");
            let at = text
                .find(&key)
                .ok_or_else(|| broken(&format!("no {name}")))?;
            text[at + key.len()..]
                .trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| broken(&format!("{name} is not a number")))
        };
        Ok((field("in_msgs")?, field("out_msgs")?))
    }

    /// Kills the server (SIGKILL: no goodbye to clients) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port and store and waits until it is ready.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop();
        self.starts += 1;
        let log = self.store.join(format!("server-{}.log", self.starts));
        let mut command = Command::new(&self.binary);
        command
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-m")
            .arg(self.monitor.to_string())
            .arg("-sd")
            .arg(self.store.join("store"))
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| Error::Broken(format!("cannot start {}: {e}", self.binary.display())))?;
        self.child = Some(child);
        let start = Instant::now();
        loop {
            let ready = std::fs::read_to_string(&log)
                .map(|text| text.contains("Server is ready"))
                .unwrap_or(false);
            if ready && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(Error::Broken(format!(
                    "nats-server exited with {status} before it was ready:\n{text}"
                )));
            }
            if start.elapsed() > STARTUP {
                self.stop();
                return Err(Error::Broken(format!(
                    "nats-server was not ready within {STARTUP:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A cluster worker process, killed on drop.
#[derive(Debug)]
pub struct Worker {
    child: Option<Child>,
}

impl Worker {
    /// Starts this test binary as a worker with `slots` slots serving the server at `url`,
    /// through the entry point of [`test_support!`](crate::test_support!) (which must be in the
    /// test crate: without it this is [`Error::Broken`] saying so).
    pub fn spawn(url: &str, slots: usize) -> Result<Worker, Error> {
        let (program, args) = super::worker_command()?;
        let mut command = Command::new(program);
        command.args(args);
        Worker::spawn_command(command, url, slots)
    }

    /// Starts `command` as a worker with `slots` slots serving the server at `url`: it gets
    /// `PRIMEPOOL_CLUSTER_WORKER` and `PRIMEPOOL_CLUSTER_SLOTS`, no standard input and the
    /// parent-death signal; its program must call `run_worker_if_requested` first thing (a
    /// copy of this test binary with the arguments of [`worker_command`](super::worker_command),
    /// a `harness = false` bench, a program of your own). Other environment, arguments and
    /// output are the caller's to set on `command`.
    pub fn spawn_command(mut command: Command, url: &str, slots: usize) -> Result<Worker, Error> {
        if slots == 0 {
            return Err(Error::invalid("a worker needs at least one slot"));
        }
        command
            .env(WORKER_ENV, url)
            .env(SLOTS_ENV, slots.to_string())
            .stdin(Stdio::null());
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| Error::Broken(format!("cannot start a cluster worker: {e}")))?;
        Ok(Worker { child: Some(child) })
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Its process id (0 once reaped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the worker; [`Error::Broken`] if it is
    /// already reaped or the signal cannot be sent.
    pub fn signal(&self, signal: i32) -> Result<(), Error> {
        let Some(child) = &self.child else {
            return Err(Error::Broken("the worker has already been reaped".into()));
        };
        let pid = libc::pid_t::try_from(child.id())
            .map_err(|_| Error::Broken("the worker's pid does not fit a pid_t".into()))?;
        // SAFETY: kill has no memory-safety preconditions; the child is ours and not reaped
        // yet (we hold its `Child`), so its pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc == 0 {
            Ok(())
        } else {
            Err(Error::Broken(format!(
                "kill({pid}, {signal}) failed: {}",
                std::io::Error::last_os_error()
            )))
        }
    }

    /// SIGKILLs the worker and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `limit` for the worker to exit: its exit status, or `None` if it still
    /// runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Some(status);
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}
