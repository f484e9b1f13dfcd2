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
//! Prints one JSON document on stdout (progress on stderr), with what the submit and seed
//! phases cost per task (`cost`: CPU time of the server, the client process and the workers
//! from `/proc/<pid>/task/*/schedstat`, and the server's messages in and out from its `/varz`). Run with
//! `cargo bench -p primepool --features cluster --bench cluster [-- --quick]`. This binary is
//! its own cluster worker: `main` calls `run_worker_if_requested` before anything else, and
//! the workers are started with `PRIMEPOOL_CLUSTER_WORKER` set.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use primepool::test_support::nats::{NatsServer, Worker};
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
    let exe = std::env::current_exe().expect("the bench's path");
    Worker::spawn_command(std::process::Command::new(exe), url, 1).expect("a worker")
}

/// CPU seconds a process's threads have run, from `/proc/<pid>/task/*/schedstat` (in
/// nanoseconds, unlike `stat`'s clock ticks, which are too coarse for a 60 ms round); 0 when
/// unknown. Threads that ended are not counted.
fn cpu_s(pid: &str) -> f64 {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = threads
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

/// What one phase of the bench cost: CPU seconds of the server, this client process and the
/// workers, and the messages the server took in and sent out.
#[derive(Clone, Copy, Default)]
struct Usage {
    server_s: f64,
    client_s: f64,
    workers_s: f64,
    msgs_in: u64,
    msgs_out: u64,
}

impl Usage {
    fn now(server: &NatsServer, workers: &[Worker]) -> Usage {
        let (msgs_in, msgs_out) = server.messages().unwrap_or_default();
        Usage {
            server_s: cpu_s(&server.pid().to_string()),
            client_s: cpu_s("self"),
            workers_s: workers.iter().map(|w| cpu_s(&w.pid().to_string())).sum(),
            msgs_in,
            msgs_out,
        }
    }

    /// The cost from `self` to `later`, per task of `tasks`, as JSON.
    fn per_task(&self, later: &Usage, tasks: f64) -> String {
        format!(
            r#"{{"tasks": {tasks}, "server_cpu_us": {:.2}, "client_cpu_us": {:.2}, "workers_cpu_us": {:.2}, "server_msgs_in": {:.2}, "server_msgs_out": {:.2}}}"#,
            (later.server_s - self.server_s) / tasks * 1e6,
            (later.client_s - self.client_s) / tasks * 1e6,
            (later.workers_s - self.workers_s) / tasks * 1e6,
            (later.msgs_in - self.msgs_in) as f64 / tasks,
            (later.msgs_out - self.msgs_out) as f64 / tasks,
        )
    }
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
    let server = NatsServer::start().expect("a local nats-server");
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
    let rounds = if quick { 2 } else { 5 };
    let before = Usage::now(&server, &workers);
    let submits: Vec<f64> = (0..rounds).map(|_| submit_noop(&client, tasks)).collect();
    let submit_cost = before.per_task(&Usage::now(&server, &workers), f64::from(tasks * rounds));

    eprintln!("cluster: lone round trips");
    let lone = round_trips(&client, if quick { 100 } else { 1_000 });

    eprintln!("cluster: seed workload over 9900..=9999, interleaved with serial");
    let serial = SerialExecutor::new();
    let (mut serial_times, mut cluster_times) = (Vec::new(), Vec::new());
    let mut equal = true;
    let mut seed_spent = Usage::default();
    for _ in 0..if quick { 3 } else { 15 } {
        let (t, expected) = seed_map(&serial);
        serial_times.push(t);
        let before = Usage::now(&server, &workers);
        let (t, got) = seed_map(&client);
        let after = Usage::now(&server, &workers);
        seed_spent.server_s += after.server_s - before.server_s;
        seed_spent.client_s += after.client_s - before.client_s;
        seed_spent.workers_s += after.workers_s - before.workers_s;
        seed_spent.msgs_in += after.msgs_in - before.msgs_in;
        seed_spent.msgs_out += after.msgs_out - before.msgs_out;
        cluster_times.push(t);
        equal &= got == expected;
    }
    // Per seed value (100 per round).
    let seed_cost = Usage::default().per_task(
        &seed_spent,
        (SEED_VALUES.len() * cluster_times.len()) as f64,
    );
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
 "kill_recovery": {},
 "cost": {{"submit_noop": {submit_cost}, "seed_cluster_per_value": {seed_cost}}}}}"#,
        server.version().unwrap_or_default(),
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
