//! Several hosts, really: the NATS server, two workers and the client each in a network
//! namespace of its own, with its own address on a bridge (`ip netns`, veth pairs), so every
//! byte between them crosses a network stack as it would between machines. Checks the results
//! and that each worker host ran work (each task says which namespace ran it). Needs root and
//! `ip`; where namespaces cannot be made the test says why and passes without running.
//! The namespaces are deleted even when the test fails (a guard with `Drop`).

mod nats_support;

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use primepool::{ClusterExecutor, ExecutorExt};

/// The environment variable naming a worker's host in this test.
const HOST_VAR: &str = "PRIMEPOOL_TEST_HOST";
/// The variable giving the client process the server's URL.
const URL_VAR: &str = "PRIMEPOOL_TEST_URL";
/// How many tasks the client maps.
const TASKS: u32 = 120;

/// The task: `(3 n + 1, the host that ran it, its network namespace)`. It sleeps a little so
/// that neither worker can take everything before the other is up.
fn where_am_i(n: u32) -> (u32, String, String) {
    std::thread::sleep(Duration::from_millis(10));
    let host = std::env::var(HOST_VAR).unwrap_or_else(|_| "unknown".to_owned());
    let ns = std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    (3 * n + 1, host, ns)
}

/// The client process's entry (started inside its own namespace): maps [`where_am_i`] over
/// `0..TASKS` and prints one line per result, `n value host namespace`.
#[test]
#[ignore = "the entry point of the client process, started inside a network namespace"]
fn host_client_entry() {
    let Ok(url) = std::env::var(URL_VAR) else {
        return;
    };
    // The server in its namespace may still be starting: try for a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let client = loop {
        match ClusterExecutor::builder().connect(&url).build() {
            Ok(client) => break client,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("client: {e}; again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("cannot connect to {url}: {e}"),
        }
    };
    client
        .wait_for_workers(2, Duration::from_secs(90))
        .expect("both workers connect across the bridge");
    let results = client
        .map_with(
            where_am_i,
            0..TASKS,
            primepool::MapOptions::default().chunksize(1),
        )
        .expect("map");
    for (n, outcome) in (0..TASKS).zip(results) {
        let (value, host, ns) = outcome.expect("a result");
        println!("result {n} {value} {host} {ns}");
    }
    let own = std::fs::read_link("/proc/self/ns/net").expect("own namespace");
    println!("client-ns {}", own.to_string_lossy());
}

/// Namespaces and processes made by the test; dropping it ends the processes and deletes the
/// namespaces (which deletes their veth ends and the bridge).
struct Hosts {
    names: Vec<String>,
    children: Vec<Child>,
    store: std::path::PathBuf,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in self.names.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

impl Hosts {
    /// Runs `ip ARGS`; an error says which command failed and why.
    fn ip(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run ip: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`ip {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Adds namespace `name` (remembered for the clean-up).
    fn add(&mut self, name: &str) -> Result<(), String> {
        self.ip(&["netns", "add", name])?;
        self.names.push(name.to_owned());
        self.ip(&["-n", name, "link", "set", "lo", "up"])
    }

    /// Connects namespace `name` to the bridge in `switch` with address `addr`/24.
    fn wire(&self, switch: &str, name: &str, tag: &str, addr: &str) -> Result<(), String> {
        let (inner, outer) = (format!("{tag}i"), format!("{tag}o"));
        self.ip(&[
            "-n", switch, "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns",
            name,
        ])?;
        self.ip(&["-n", switch, "link", "set", &outer, "master", "br0", "up"])?;
        self.ip(&[
            "-n",
            name,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &inner,
        ])?;
        self.ip(&["-n", name, "link", "set", &inner, "up"])
    }
}

/// Where `ip netns` cannot work, why (the test then passes without running).
fn why_not_namespaces() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root".to_owned());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("the `ip` command (iproute2) is not installed".to_owned()),
    }
}

/// A command that runs `program` inside namespace `ns`.
fn in_namespace(ns: &str, program: &std::path::Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// The output of `child`, killing it if it has not ended within `limit` (so a hung client fails
/// the test instead of hanging it).
fn output_within(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(limit).is_err() {
            // SAFETY: kill(2) on our own child's pid; it is reaped only by `wait_with_output`
            // below, which has not returned, so the pid is still that child's.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    });
    let output = child.wait_with_output().expect("the client's output");
    let _ = done.send(());
    let _ = watchdog.join();
    output
}

#[test]
fn the_server_two_workers_and_the_client_on_four_hosts_all_take_part() {
    if let Some(why) = why_not_namespaces() {
        eprintln!("SKIPPED: network namespaces cannot be made here: {why}");
        return;
    }
    let tag = format!("pp{}", std::process::id() % 100_000);
    let mut hosts = Hosts {
        names: Vec::new(),
        children: Vec::new(),
        store: std::env::temp_dir().join(format!("{tag}-hosts-store")),
    };
    let switch = format!("{tag}-sw");
    let made = hosts.add(&switch).and_then(|()| {
        hosts.ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        hosts.ip(&["-n", &switch, "link", "set", "br0", "up"])
    });
    if let Err(why) = made {
        eprintln!("SKIPPED: network namespaces cannot be made here: {why}");
        return;
    }
    let roles = [
        ("srv", "10.231.0.1"),
        ("wa", "10.231.0.2"),
        ("wb", "10.231.0.3"),
        ("cli", "10.231.0.4"),
    ];
    for (i, (role, addr)) in roles.iter().enumerate() {
        let ns = format!("{tag}-{role}");
        hosts.add(&ns).expect("a namespace");
        hosts
            .wire(&switch, &ns, &format!("{tag}v{i}"), addr)
            .expect("a veth pair to the bridge");
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let (_, worker_args) = primepool::test_support::worker_command().expect("the entry point");
    let server_binary =
        primepool::test_support::nats::server_binary().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(&hosts.store).expect("a scratch store");
    let server = in_namespace(&format!("{tag}-srv"), &server_binary)
        .args(["-js", "-a", "10.231.0.1", "-p", "4222", "-sd"])
        .arg(&hosts.store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server inside its namespace");
    hosts.children.push(server);
    let url = "nats://10.231.0.1:4222";
    for host in ["wa", "wb"] {
        let worker = in_namespace(&format!("{tag}-{host}"), &exe)
            .args(&worker_args)
            .env("PRIMEPOOL_CLUSTER_WORKER", url)
            .env("PRIMEPOOL_CLUSTER_SLOTS", "1")
            .env(HOST_VAR, host)
            .stdout(Stdio::null())
            .spawn()
            .expect("a worker inside its namespace");
        hosts.children.push(worker);
    }
    let client = in_namespace(&format!("{tag}-cli"), &exe)
        .args([
            "host_client_entry",
            "--exact",
            "--ignored",
            "--nocapture",
            "-q",
        ])
        .env(URL_VAR, url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the client inside its namespace");
    let Output {
        status,
        stdout,
        stderr,
    } = output_within(client, Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&stdout);
    assert!(
        status.success(),
        "the client failed: {}\n{stdout}",
        String::from_utf8_lossy(&stderr)
    );
    let results: Vec<(u32, u32, String, String)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("result "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].to_owned(),
                f[3].to_owned(),
            )
        })
        .collect();
    assert_eq!(results.len(), TASKS as usize, "{stdout}");
    for (n, value, _, _) in &results {
        assert_eq!(*value, 3 * n + 1, "the result of {n}");
    }
    let client_ns = stdout
        .lines()
        .find_map(|l| l.strip_prefix("client-ns "))
        .expect("the client names its namespace");
    let own_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    for host in ["wa", "wb"] {
        let ran: Vec<_> = results.iter().filter(|r| r.2 == host).collect();
        assert!(!ran.is_empty(), "host {host} ran no task:\n{stdout}");
        let ns = &ran[0].3;
        assert!(ran.iter().all(|r| &r.3 == ns), "one namespace per host");
        assert_ne!(ns, client_ns, "{host} is not the client's host");
        assert_ne!(
            ns.as_str(),
            own_ns.to_string_lossy(),
            "{host} is not the test's host"
        );
    }
    let (a, b) = (
        results.iter().find(|r| r.2 == "wa").unwrap(),
        results.iter().find(|r| r.2 == "wb").unwrap(),
    );
    assert_ne!(a.3, b.3, "the two workers are on different hosts");
    eprintln!(
        "hosts: wa ran {}, wb ran {} of {TASKS}",
        results.iter().filter(|r| r.2 == "wa").count(),
        results.iter().filter(|r| r.2 == "wb").count()
    );
}
