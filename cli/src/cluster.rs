//! The cluster backend of `primepool bench` and the `worker` subcommand's helpers.
//!
//! With `--connect URL` the benchmark uses a server and workers that already run and waits,
//! up to a time-out, until enough workers are connected. Without it [`LocalCluster`] starts a
//! `nats-server -js` on a free 127.0.0.1 port with a scratch store, and worker processes of this
//! very binary (`primepool worker --connect URL --slots 1`, the same program image, which the
//! cluster requires), and ends them all when dropped.

use std::io::Read as _;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use primepool::{ClusterExecutor, Error};

/// Where the server binary is looked for after `PATH` (apt's and the project's install).
const SERVER_DIRS: [&str; 2] = ["/usr/local/bin", "/usr/sbin"];

/// How long a local server may take to accept connections.
const SERVER_START: Duration = Duration::from_secs(20);

/// A server and workers started for one benchmark run; dropping it ends them.
pub struct LocalCluster {
    url: String,
    server: Child,
    workers: Vec<Child>,
    store: PathBuf,
}

impl LocalCluster {
    /// Starts `server` (or the `nats-server` [`find_server`] finds)
    /// and `workers` worker processes of this binary, each with one slot.
    pub fn start(server: Option<&Path>, workers: usize) -> Result<LocalCluster, String> {
        let binary = find_server(server)?;
        let port = free_port()?;
        let store = std::env::temp_dir().join(format!(
            "primepool-bench-nats-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&store)
            .map_err(|e| format!("cannot create the server's store {}: {e}", store.display()))?;
        let child = Command::new(&binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut cluster = LocalCluster {
            url: format!("nats://127.0.0.1:{port}"),
            server: child,
            workers: Vec::new(),
            store,
        };
        cluster.wait_until_listening(&binary, port)?;
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this program's path for its workers: {e}"))?;
        for _ in 0..workers {
            let worker = Command::new(&exe)
                .args(["worker", "--connect", &cluster.url, "--slots", "1"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start a worker ({}): {e}", exe.display()))?;
            cluster.workers.push(worker);
        }
        Ok(cluster)
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn wait_until_listening(&mut self, binary: &Path, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + SERVER_START;
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.server.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.server.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(format!(
                    "{} exited ({status}) before accepting connections: {}",
                    binary.display(),
                    stderr.trim()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not accept connections on port {port} within {} s",
                    binary.display(),
                    SERVER_START.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in self.workers.iter_mut().chain([&mut self.server]) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// The variable that names the server binary when `--nats-server` is not given.
pub const SERVER_ENV: &str = "PRIMEPOOL_NATS_SERVER";

/// The server binary: `explicit` if given, else the one `PRIMEPOOL_NATS_SERVER` names (either
/// must exist), else the first `nats-server` on `PATH`, in `/usr/local/bin` or in `/usr/sbin`.
pub fn find_server(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let named = std::env::var_os(SERVER_ENV).map(PathBuf::from);
    if let Some(path) = explicit.or(named.as_deref()) {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(format!(
                "the server binary {} does not exist",
                path.display()
            ))
        };
    }
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(SERVER_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "no nats-server found on PATH, in /usr/local/bin or in /usr/sbin: install one \
             (`apt-get install nats-server`, or `cargo xtask test` installs it), pass \
             --nats-server PATH, or use --connect URL with a running server"
                .to_owned()
        })
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))
}

/// A client of the cluster at `url`.
pub fn connect(url: &str) -> Result<ClusterExecutor, Error> {
    ClusterExecutor::builder().connect(url).build()
}

/// Waits until `workers` workers serve the cluster at `url`, at most `timeout`.
pub fn wait_for_workers(url: &str, workers: usize, timeout: Duration) -> Result<(), String> {
    let client = connect(url).map_err(|e| format!("cannot connect to {url}: {e}"))?;
    match client.wait_for_workers(workers, timeout) {
        Ok(_) => Ok(()),
        Err(Error::TimedOut { .. }) => {
            let now = client.connected_workers().unwrap_or(0);
            Err(format!(
                "only {now} of the {workers} workers asked for (--workers) are connected to \
                 {url} after {} s; start more with `primepool worker --connect {url}` or ask \
                 for fewer",
                timeout.as_secs_f64()
            ))
        }
        Err(e) => Err(format!("cannot count the workers at {url}: {e}")),
    }
}
