//! The broker killed and restarted (file storage): nothing submitted before is lost, whether
//! it waited in the stream with no worker up or was being worked on when the server died; and
//! a client whose server stays away past its reconnect deadline fails its futures with a clear
//! error instead of hanging.

mod nats_support;

use std::time::{Duration, Instant};

use nats_support::{worker, Worker};
use primepool::{ClusterExecutor, Error, ExecutorExt, Future};

/// Works 10 ms and returns `5 n + 2`.
fn steady(n: u32) -> u64 {
    std::thread::sleep(Duration::from_millis(10));
    5 * u64::from(n) + 2
}

/// Two one-slot workers of this test binary serving `url`.
fn workers(url: &str) -> [Worker; 2] {
    [worker(url, 1), worker(url, 1)]
}

fn client(url: &str, deadline: Duration) -> ClusterExecutor {
    ClusterExecutor::builder()
        .connect(url)
        .reconnect_deadline(deadline)
        .max_attempts(20)
        .build()
        .expect("a client")
}

fn check_all(futures: &[Future<u64>], first: u32) {
    for (k, future) in futures.iter().enumerate() {
        let n = first + k as u32;
        let value = future
            .result(Some(Duration::from_secs(120)))
            .unwrap_or_else(|e| panic!("task {n} was lost across the restart: {e}"));
        assert_eq!(value, 5 * u64::from(n) + 2, "the value of task {n}");
    }
}

#[test]
fn tasks_queued_with_no_worker_survive_a_killed_and_restarted_broker() {
    let mut server = nats_support::server();
    let url = server.url();
    let client = client(&url, Duration::from_secs(60));
    let futures: Vec<Future<u64>> = (0..200)
        .map(|n| client.submit(steady, n).expect("submit"))
        .collect();
    // Let the publishes reach the stream's file store (a client must also re-publish any
    // the server did not confirm, so this only makes the test about the store).
    std::thread::sleep(Duration::from_secs(1));
    server.stop();
    std::thread::sleep(Duration::from_secs(1));
    server.restart().expect("the server starts again");
    let _workers = workers(&url);
    check_all(&futures, 0);
}

#[test]
fn tasks_running_when_the_broker_is_killed_all_complete_after_its_restart() {
    let mut server = nats_support::server();
    let url = server.url();
    let client = client(&url, Duration::from_secs(60));
    let _workers = workers(&url);
    client
        .wait_for_workers(2, Duration::from_secs(60))
        .expect("the workers connect");
    let futures: Vec<Future<u64>> = (0..400)
        .map(|n| client.submit(steady, n).expect("submit"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while futures.iter().filter(|f| f.done()).count() < 40 {
        assert!(Instant::now() < deadline, "the work never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    let done_before = futures.iter().filter(|f| f.done()).count();
    server.stop();
    std::thread::sleep(Duration::from_secs(1));
    server.restart().expect("the server starts again");
    eprintln!("broker: killed with {done_before} of 400 done; restarted");
    check_all(&futures, 0);
}

#[test]
fn a_client_whose_broker_stays_away_past_its_deadline_fails_its_futures_clearly() {
    drop(broken_client_checks());
}

#[test]
fn dropping_a_client_after_its_deadline_returns() {
    let client = broken_client_checks();
    let (done, dropped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(client);
        let _ = done.send(());
    });
    assert!(
        dropped.recv_timeout(Duration::from_secs(60)).is_ok(),
        "dropping the client hung"
    );
}

/// A client whose server was killed: its futures and a later submit fail clearly.
fn broken_client_checks() -> ClusterExecutor {
    let mut server = nats_support::server();
    let url = server.url();
    let client = client(&url, Duration::from_secs(2));
    let futures: Vec<Future<u64>> = (0..20)
        .map(|n| client.submit(steady, n).expect("submit"))
        .collect();
    server.stop();
    let killed = Instant::now();
    for future in &futures {
        match future.result(Some(Duration::from_secs(60))) {
            Err(Error::TimedOut { .. }) => panic!("the future hung past its reconnect deadline"),
            Err(e) => {
                let message = e.to_string();
                assert!(!message.is_empty());
            }
            Ok(v) => panic!("a task with no server and no worker returned {v}"),
        }
    }
    let waited = killed.elapsed();
    assert!(
        waited < Duration::from_secs(50),
        "the futures failed only after {waited:?}"
    );
    let message = futures[0]
        .result(Some(Duration::ZERO))
        .unwrap_err()
        .to_string();
    eprintln!("broker: futures failed after {waited:?}: {message}");
    // A submit after the deadline fails too (now or through its future), never hangs.
    match client.submit(steady, 99) {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(future) => assert!(!matches!(
            future.result(Some(Duration::from_secs(60))),
            Err(Error::TimedOut { .. }) | Ok(_)
        )),
    }
    client
}
