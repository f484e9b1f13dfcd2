//! The cluster executor when things go wrong: workers killed mid-task, attempts exhausted,
//! no workers, workers of another build, bad addresses.

mod nats_support;

use std::time::{Duration, Instant};

use nats_support::{Cluster, NatsServer, Scratch, Worker, STARTUP};
use primepool::{ClusterExecutor, Error, Executor, ExecutorExt};

const WAIT: Option<Duration> = Some(Duration::from_secs(60));

fn sleepy_whoami(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

fn exits(_: ()) -> u32 {
    std::process::exit(3)
}

fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

#[test]
fn a_worker_killed_mid_task_has_its_task_run_by_another() {
    let mut cluster = Cluster::start(1, 1);
    let pool = cluster
        .builder()
        .lease(Duration::from_secs(1))
        .max_workers(1)
        .build()
        .unwrap();
    pool.wait_for_workers(1, STARTUP).unwrap();
    let future = pool.submit(sleepy_whoami, 1500).unwrap();
    assert!(
        eventually(STARTUP, || future.running()),
        "the task never started"
    );
    let first = cluster.workers[0].pid();
    let second = Worker::spawn(&cluster.server.url(), 1);
    cluster.workers[0].kill();
    let pid = future.result(WAIT).expect("the task ran again elsewhere");
    assert_eq!(pid, second.pid(), "not the killed worker {first}");
}

#[test]
fn a_task_whose_workers_keep_dying_fails_after_max_attempts_naming_them() {
    let cluster = Cluster::start(3, 1);
    let pool = cluster
        .builder()
        .lease(Duration::from_millis(500))
        .max_attempts(2)
        .max_workers(3)
        .build()
        .unwrap();
    pool.wait_for_workers(3, STARTUP).unwrap();
    let err = pool.submit(exits, ()).unwrap().result(WAIT).unwrap_err();
    match &err {
        Error::AttemptsExhausted {
            attempts,
            last_worker,
        } => {
            assert_eq!(*attempts, 2, "{err}");
            assert!(last_worker.contains(':'), "host:pid, got {last_worker}");
        }
        other => panic!("expected AttemptsExhausted, got {other:?}"),
    }
    assert!(err.to_string().contains("2 times"), "{err}");
}

#[test]
fn without_workers_a_timeout_is_timed_out_and_nothing_hangs() {
    let server = NatsServer::start();
    let pool = ClusterExecutor::builder()
        .connect(server.url())
        .build()
        .unwrap();
    assert_eq!(pool.max_workers(), 1, "none connected: one");
    assert_eq!(pool.connected_workers(), Ok(0));
    let future = pool.submit(sleepy_whoami, 1).unwrap();
    assert!(matches!(
        future.result(Some(Duration::from_millis(300))),
        Err(Error::TimedOut { .. })
    ));
    assert!(matches!(
        pool.wait_for_workers(1, Duration::from_millis(300)),
        Err(Error::TimedOut { .. })
    ));
    // Cancelled before any worker came, it never runs; dropping the pool does not wait.
    assert!(future.cancel());
    let late = Worker::spawn(&server.url(), 1);
    pool.wait_for_workers(1, STARTUP).unwrap();
    assert_eq!(
        pool.submit(sleepy_whoami, 1).unwrap().result(WAIT),
        Ok(late.pid())
    );
}

#[test]
fn a_worker_of_a_different_build_receives_nothing() {
    let server = NatsServer::start();
    let scratch = Scratch::new("foreign");
    let program = nats_support::foreign_build(scratch.path());
    let _foreign = Worker::spawn_program(&program, &server.url(), 1, &[], None);
    let pool = ClusterExecutor::builder()
        .connect(server.url())
        .max_workers(1)
        .build()
        .unwrap();
    let future = pool.submit(sleepy_whoami, 1).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(!future.running() && !future.done(), "{:?}", future.state());
    assert_eq!(
        pool.connected_workers(),
        Ok(0),
        "the foreign worker does not count"
    );
    let ours = Worker::spawn(&server.url(), 1);
    assert_eq!(future.result(WAIT), Ok(ours.pid()));
}

#[test]
fn bad_addresses_and_options_are_clear_errors_not_hangs() {
    for url in ["http://127.0.0.1:4222", "nats://exa mple:1", ""] {
        let err = ClusterExecutor::builder().connect(url).build().unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{url}: {err:?}");
    }
    let err = ClusterExecutor::builder().build().unwrap_err();
    assert!(err.to_string().contains(".connect("), "{err}");
    let refused = format!("nats://127.0.0.1:{}", nats_support::free_port());
    match ClusterExecutor::builder().connect(&refused).build() {
        Err(Error::Broken(why)) => assert!(why.contains("cannot connect"), "{why}"),
        other => panic!("expected a connection error, got {other:?}"),
    }
    let b = || ClusterExecutor::builder().connect(&refused);
    for result in [
        b().max_attempts(0).build(),
        b().max_in_flight(0).build(),
        b().lease(Duration::ZERO).build(),
        b().max_workers(0).build(),
    ] {
        assert!(
            matches!(result, Err(Error::InvalidArgument(_))),
            "{result:?}"
        );
    }
}
