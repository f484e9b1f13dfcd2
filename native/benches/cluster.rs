//! The cluster figures of `cargo xtask bench-report` (issue 12): `ClusterExecutor` with 2
//! local worker processes (one slot each) and a local `nats-server -js`, on loopback, with
//! creation excluded (the client is connected and both workers are up before any clock
//! starts), the same four figures `bench/dask_bench.py` takes of Dask:
//!
//! - 20,000 no-op `submit`s, then waiting for all (the time per task; `--quick`: 2,000);
//! - one no-op `submit().result()` at a time (median of many);
//! - `map` of the seed workload over 9900..=9999, rounds interleaved with `SerialExecutor`,
//!   outputs checked equal to serial's;
//! - a worker SIGKILLed while it runs a 1 s task, with a 2 s lease: the time from the kill
//!   until that future resolved with the right value (the killed worker is replaced after).
//!
//! Prints one JSON document on stdout (progress on stderr). Run with
//! `cargo bench -p primepool --features cluster --bench cluster [-- --quick]`. This binary is
//! its own cluster worker: `main` calls `run_worker_if_requested` before anything else, and
//! the workers are started with `PRIMEPOOL_CLUSTER_WORKER` set.

#[path = "../tests/nats_support/mod.rs"]
mod nats_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nats_support::Worker;
use primepool::workload::{noop, seed_count_prime};
use primepool::{ClusterExecutor, Executor, ExecutorExt, SerialExecutor};
use primepool_core::report::Stats;

const WORKERS: usize = 2;
const LEASE: Duration = Duration::from_secs(2);
const SEED_VALUES: std::ops::Range<u32> = 9900..10000;

/// Writes this worker's pid into `dir` (so the bench knows whom to kill), sleeps 1 s, and
/// returns `2 n`.
fn slow_double((dir, n): (String, u32)) -> u32 {
    let _ = std::fs::write(Path::new(&dir).join(std::process::id().to_string()), b"");
    std::thread::sleep(Duration::from_secs(1));
    2 * n
}

/// One worker process of this binary with one slot (its `main` enters the worker at once).
fn spawn_worker(url: &str) -> Worker {
    Worker::spawn(url, 1)
}

fn summary(times: &[f64]) -> String {
    let stats = Stats::of(times);
    format!(
        r#"{{"median_s": {:e}, "min_s": {:e}, "max_s": {:e}, "runs": {}}}"#,
        stats.median,
        stats.min,
        stats.max,
        times.len()
    )
}

fn submit_noop(client: &ClusterExecutor, tasks: u32) -> f64 {
    let start = Instant::now();
    let futures: Vec<_> = (0..tasks)
        .map(|i| client.submit(noop, i).expect("submit"))
        .collect();
    let sum: u64 = futures
        .iter()
        .map(|f| u64::from(f.result(None).expect("a no-op result")))
        .sum();
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(sum, u64::from(tasks) * u64::from(tasks - 1) / 2);
    elapsed
}

fn round_trips(client: &ClusterExecutor, runs: u32) -> Vec<f64> {
    let _ = client.submit(noop, 0).expect("submit").result(None);
    (0..runs)
        .map(|i| {
            let start = Instant::now();
            let got = client.submit(noop, i).expect("submit").result(None);
            let elapsed = start.elapsed().as_secs_f64();
            assert_eq!(got.expect("a no-op result"), i);
            elapsed
        })
        .collect()
}

fn seed_map(executor: &dyn Executor) -> (f64, Vec<u32>) {
    let start = Instant::now();
    let outputs: Vec<u32> = executor
        .map(seed_count_prime, SEED_VALUES)
        .expect("map")
        .collect::<Result<_, _>>()
        .expect("seed outputs");
    (start.elapsed().as_secs_f64(), outputs)
}

/// Kills the worker that runs a 1 s task and times its future from the kill to the result.
fn kill_recovery(client: &ClusterExecutor, workers: &mut Vec<Worker>, url: &str, run: u32) -> f64 {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("primepool-kill-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    let arg = (dir.to_string_lossy().into_owned(), 21 + run);
    let future = client.submit(slow_double, arg).expect("submit");
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim: u32 = loop {
        let started = std::fs::read_dir(&dir)
            .expect("the scratch folder")
            .flatten()
            .find_map(|e| e.file_name().to_str()?.parse().ok());
        if let Some(pid) = started {
            break pid;
        }
        assert!(Instant::now() < deadline, "the 1 s task never started");
        std::thread::sleep(Duration::from_millis(2));
    };
    let killed = Instant::now();
    let at = workers
        .iter()
        .position(|w| w.pid() == victim)
        .expect("the task ran on one of this bench's workers");
    let mut worker = workers.swap_remove(at);
    worker.kill();
    let value = future
        .result(Some(Duration::from_secs(120)))
        .expect("the task re-run elsewhere");
    let elapsed = killed.elapsed().as_secs_f64();
    assert_eq!(value, 2 * (21 + run), "the re-run returned the right value");
    let _ = std::fs::remove_dir_all(&dir);
    workers.push(spawn_worker(url));
    client
        .wait_for_workers(WORKERS, Duration::from_secs(60))
        .expect("the replaced worker connects");
    elapsed
}

fn main() {
    // The workers this bench starts are this binary with PRIMEPOOL_CLUSTER_WORKER set.
    primepool::run_worker_if_requested();
    let quick = std::env::args().any(|a| a == "--quick");
    let server = nats_support::NatsServer::start();
    let url = server.url();
    let mut workers: Vec<Worker> = (0..WORKERS).map(|_| spawn_worker(&url)).collect();
    let client = ClusterExecutor::builder()
        .connect(&url)
        .lease(LEASE)
        .build()
        .expect("a client of the local server");
    client
        .wait_for_workers(WORKERS, Duration::from_secs(60))
        .expect("both workers connect");

    let tasks = if quick { 2_000 } else { 20_000 };
    eprintln!("cluster: {tasks} no-op submits");
    submit_noop(&client, tasks.min(1_000)); // warm
    let submits: Vec<f64> = (0..if quick { 2 } else { 5 })
        .map(|_| submit_noop(&client, tasks))
        .collect();

    eprintln!("cluster: lone round trips");
    let lone = round_trips(&client, if quick { 100 } else { 1_000 });

    eprintln!("cluster: seed workload over 9900..=9999, interleaved with serial");
    let serial = SerialExecutor::new();
    let (mut serial_times, mut cluster_times) = (Vec::new(), Vec::new());
    let mut equal = true;
    for _ in 0..if quick { 3 } else { 15 } {
        let (t, expected) = seed_map(&serial);
        serial_times.push(t);
        let (t, got) = seed_map(&client);
        cluster_times.push(t);
        equal &= got == expected;
    }
    assert!(equal, "the cluster's seed outputs differ from serial's");

    eprintln!("cluster: a worker SIGKILLed during a 1 s task");
    let kills: Vec<f64> = (0..if quick { 1 } else { 3 })
        .map(|run| kill_recovery(&client, &mut workers, &url, run))
        .collect();

    drop(client);
    drop(workers);
    println!(
        r#"{{"server": {:?}, "workers": {WORKERS}, "lease_s": {},
 "submit_noop": {{"tasks": {tasks}, {}}},
 "round_trip_noop": {},
 "seed_serial": {},
 "seed_cluster": {},
 "seed_outputs_equal": {equal},
 "kill_recovery": {}}}"#,
        server.version(),
        LEASE.as_secs_f64(),
        summary(&submits)
            .trim_start_matches('{')
            .trim_end_matches('}'),
        summary(&lone),
        summary(&serial_times),
        summary(&cluster_times),
        summary(&kills),
    );
}
