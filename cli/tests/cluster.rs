//! `primepool worker` and `primepool bench --backends cluster` against a real `nats-server`:
//! the local cluster the bench starts itself, `--connect` to a server with workers already
//! running, and bad input (a malformed URL, a refused connection, no server binary), each a
//! clear error with a non-zero exit, never a panic or a hang.

mod support;

use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use primepool::test_support::nats::NatsServer;
use serde_json::Value;

use support::{backend_names, bench_json, outputs, primepool, reference_seed_outputs};

/// A `primepool worker --connect URL --slots 1` process.
fn worker(url: &str) -> Child {
    StdCommand::cargo_bin("primepool")
        .unwrap()
        .args(["worker", "--connect", url, "--slots", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// `child`'s exit status if it ends within `limit`.
fn exit_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Checks a successful `bench --json` run: serial then cluster, outputs equal to CPython's.
fn check_cluster_report(json: &Value) {
    assert_eq!(json["outputs_agree"], true);
    let results = json["results"].as_array().unwrap();
    let names = backend_names(json);
    assert_eq!(names, ["serial", "cluster"]);
    assert_eq!(outputs(&results[1]), reference_seed_outputs()[80..]);
}

/// Runs `primepool ARGS`, expects a failure within the command's time-out, and returns stderr.
fn clear_failure(args: &[&str]) -> String {
    let started = Instant::now();
    let output = primepool().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success() && output.status.code().is_some(),
        "{args:?} should fail with a status: {:?} {stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(stderr.contains("error:"), "{args:?}: {stderr}");
    eprintln!(
        "{args:?} failed after {:?}: {}",
        started.elapsed(),
        stderr.trim()
    );
    stderr
}

#[test]
fn bench_starts_a_local_server_and_workers_and_matches_serial() {
    check_cluster_report(&bench_json(&[
        "--backends",
        "cluster",
        "--workers",
        "2",
        "--values",
        "9980..10000",
        "--repeat",
        "2",
    ]));
}

#[test]
fn bench_connects_to_running_workers_and_they_stop_cleanly_on_sigterm() {
    let server = NatsServer::start().expect("a local nats-server");
    let url = server.url();
    let mut workers = [worker(&url), worker(&url)];
    check_cluster_report(&bench_json(&[
        "--backends",
        "cluster",
        "--workers",
        "2",
        "--connect",
        &url,
        "--values",
        "9980..10000",
        "--repeat",
        "2",
    ]));
    for child in &mut workers {
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0);
    }
    for child in &mut workers {
        let status =
            exit_within(child, Duration::from_secs(60)).expect("the worker exits after SIGTERM");
        assert!(
            status.success(),
            "a worker stopped by SIGTERM exits 0: {status:?}"
        );
    }
}

#[test]
fn bench_with_too_few_workers_connected_says_so_after_its_wait() {
    let server = NatsServer::start().expect("a local nats-server");
    let url = server.url();
    let stderr = clear_failure(&[
        "bench",
        "--backends",
        "cluster",
        "--connect",
        &url,
        "--workers",
        "1",
        "--wait-workers",
        "2",
        "--values",
        "0..10",
    ]);
    assert!(stderr.contains("only 0 of the 1 workers"), "{stderr}");
}

#[test]
fn a_malformed_url_is_a_clear_error() {
    clear_failure(&["worker", "--connect", "not a url at all"]);
    clear_failure(&[
        "bench",
        "--backends",
        "cluster",
        "--connect",
        "nats://:x:y:z",
    ]);
}

#[test]
fn a_refused_connection_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    clear_failure(&["worker", "--connect", &url]);
    let stderr = clear_failure(&["bench", "--backends", "cluster", "--connect", &url]);
    assert!(stderr.contains(&url), "{stderr}");
}

#[test]
fn a_missing_server_binary_is_a_clear_error() {
    let stderr = clear_failure(&[
        "bench",
        "--backends",
        "cluster",
        "--nats-server",
        "/nonexistent/nats-server",
    ]);
    assert!(
        stderr.contains("/nonexistent/nats-server does not exist"),
        "{stderr}"
    );
}

#[test]
fn help_shows_the_worker_and_the_cluster_backend() {
    let top = primepool().arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&top.stdout).contains("worker"));
    let bench = primepool().args(["bench", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&bench.stdout);
    for word in ["cluster", "--connect", "--wait-workers", "--nats-server"] {
        assert!(text.contains(word), "bench --help lacks {word}: {text}");
    }
    let worker = primepool().args(["worker", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&worker.stdout);
    assert!(
        text.contains("--connect") && text.contains("--slots"),
        "{text}"
    );
}
