//! The cluster executor when things go wrong: workers killed mid-task, attempts exhausted,
//! no workers, workers of another build, bad addresses.

mod nats_support;

use std::time::{Duration, Instant};

use nats_support::{server, worker, Cluster, Scratch, STARTUP};
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
    let pool = cluster.executor_from(
        cluster
            .builder()
            .lease(Duration::from_secs(1))
            .max_workers(1),
    );
    let future = pool.submit(sleepy_whoami, 1500).unwrap();
    assert!(
        eventually(STARTUP, || future.running()),
        "the task never started"
    );
    let first = cluster.workers[0].pid();
    let second = worker(&cluster.server.url(), 1);
    cluster.workers[0].kill();
    let pid = future.result(WAIT).expect("the task ran again elsewhere");
    assert_eq!(pid, second.pid(), "not the killed worker {first}");
}

#[test]
fn a_task_whose_workers_keep_dying_fails_after_max_attempts_naming_them() {
    let cluster = Cluster::start(3, 1);
    let pool = cluster.executor_from(
        cluster
            .builder()
            .lease(Duration::from_millis(500))
            .max_attempts(2)
            .max_workers(3),
    );
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
    let server = server();
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
    let late = worker(&server.url(), 1);
    pool.wait_for_workers(1, STARTUP).unwrap();
    assert_eq!(
        pool.submit(sleepy_whoami, 1).unwrap().result(WAIT),
        Ok(late.pid())
    );
}

#[test]
fn a_worker_of_a_different_build_receives_nothing() {
    let server = server();
    let scratch = Scratch::new("foreign");
    let program = nats_support::foreign_build(scratch.path());
    let _foreign = nats_support::worker_program(&program, &server.url(), 1, None);
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
    let ours = worker(&server.url(), 1);
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
    let refused = format!(
        "nats://127.0.0.1:{}",
        primepool::test_support::nats::free_port().unwrap()
    );
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

/// Writes this worker's pid into `dir` (so the test knows whom to kill), sleeps `ms`, and
/// returns `2 n`.
fn marked_sleep((dir, ms, n): (String, u64, u32)) -> u32 {
    let _ = std::fs::write(
        std::path::Path::new(&dir).join(std::process::id().to_string()),
        b"",
    );
    std::thread::sleep(Duration::from_millis(ms));
    2 * n
}

/// The pid a [`marked_sleep`] task wrote into `dir`, once it has.
fn marked_pid(dir: &std::path::Path) -> Option<u32> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find_map(|e| e.file_name().to_str()?.parse().ok())
}

#[test]
fn a_killed_workers_task_comes_back_long_before_its_lease_runs_out() {
    // A 30 s lease: waiting for it would take 30 s or more. The client probes the worker
    // running the task, hears "no responders" once it is gone, and gives the task back.
    let mut cluster = Cluster::start(2, 1);
    let pool = cluster.executor_from(
        cluster
            .builder()
            .lease(Duration::from_secs(30))
            .max_workers(2),
    );
    let scratch = Scratch::new("probe");
    let dir = scratch.path().to_string_lossy().into_owned();
    let future = pool.submit(marked_sleep, (dir, 2_000, 21)).unwrap();
    let mut victim = None;
    assert!(
        eventually(STARTUP, || {
            victim = marked_pid(scratch.path());
            victim.is_some() && future.running()
        }),
        "the task never started"
    );
    let victim = victim.unwrap();
    let at = cluster
        .workers
        .iter()
        .position(|w| w.pid() == victim)
        .expect("the task runs on one of the test's workers");
    let killed = Instant::now();
    cluster.workers[at].kill();
    let value = future.result(WAIT).expect("the task ran again elsewhere");
    let took = killed.elapsed();
    assert_eq!(value, 42);
    assert!(
        took < Duration::from_secs(15),
        "resolved {took:?} after the kill: the 30 s lease was waited out"
    );
}

#[test]
fn a_sigterm_drains_the_worker_its_running_task_resolves_and_it_pulls_nothing_more() {
    let mut cluster = Cluster::start(1, 1);
    let pool = cluster.executor(1);
    let scratch = Scratch::new("drain");
    let dir = scratch.path().to_string_lossy().into_owned();
    let first = pool.submit(marked_sleep, (dir, 1_500, 5)).unwrap();
    assert!(
        eventually(STARTUP, || marked_pid(scratch.path()).is_some()),
        "the task never started"
    );
    let draining = cluster.workers[0].pid();
    cluster.workers[0].signal(libc::SIGTERM).unwrap();
    // Submitted after the signal: the draining worker must leave it to others.
    let second = pool.submit(sleepy_whoami, 1).unwrap();
    assert_eq!(first.result(WAIT), Ok(10), "the running task finished");
    let status = cluster.workers[0]
        .wait_exit(STARTUP)
        .expect("the drained worker exits");
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(!second.done(), "nobody else could have run it yet");
    let next = worker(&cluster.server.url(), 1);
    assert_eq!(
        second.result(WAIT),
        Ok(next.pid()),
        "the task submitted during the drain ran on the next worker, not on {draining}"
    );
}

/// Publishes `payload` on `subject` with the plain NATS text protocol (what a foreign program
/// would do), and waits for the server's PONG so the message is surely in.
fn publish_raw(port: u16, subject: &str, payload: &[u8]) {
    use std::io::{Read as _, Write as _};
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut message = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nPUB {subject} {}\r\n",
        payload.len()
    )
    .into_bytes();
    message.extend_from_slice(payload);
    message.extend_from_slice(b"\r\nPING\r\n");
    socket.write_all(&message).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("PONG") {
        let n = socket.read(&mut buf).expect("the server answers PING");
        assert!(
            n > 0,
            "the server closed: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        !String::from_utf8_lossy(&seen).contains("-ERR"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
}

#[test]
fn garbage_and_a_wrong_version_on_the_task_subject_are_rejected_and_the_worker_serves_on() {
    let server = server();
    let pool = ClusterExecutor::builder()
        .connect(server.url())
        .max_workers(1)
        .build()
        .unwrap();
    // The stream exists now (the client made it): these land in the queue before any task.
    let subject = pool.task_subject().to_string();
    publish_raw(server.port(), &subject, b"\x00\xffnot a task at all");
    publish_raw(
        server.port(),
        &subject,
        b"PPT\x09\0\0\0\0\0\0\0\0from the future",
    );
    let scratch = Scratch::new("garbage");
    let stderr = scratch.path().join("worker.stderr");
    let exe = std::env::current_exe().unwrap();
    let mut worker = nats_support::worker_program(&exe, &server.url(), 1, Some(&stderr));
    assert_eq!(
        pool.submit(sleepy_whoami, 1).unwrap().result(WAIT),
        Ok(worker.pid()),
        "a real task after the garbage runs"
    );
    let text = || nats_support::read_lossy(&stderr);
    assert!(
        eventually(STARTUP, || text().matches("rejected a message").count()
            == 2),
        "two rejections on the worker's stderr: {}",
        text()
    );
    assert!(text().contains("not a primepool message"), "{}", text());
    assert!(text().contains("protocol version 9"), "{}", text());
    assert!(!text().contains("panicked"), "{}", text());
    assert!(worker.alive(), "the worker still serves");
    assert_eq!(
        pool.submit(sleepy_whoami, 1).unwrap().result(WAIT),
        Ok(worker.pid())
    );
}
