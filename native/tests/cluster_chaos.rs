//! Chaos on the cluster: 5,000 tasks on 3 workers while workers are SIGKILLed and restarted
//! at random (at least 10 kills). Every future must resolve exactly once with the right value,
//! none lost and none failed (`max_attempts` is high), and the tasks run more than once must
//! be only tasks the killed workers held.
//!
//! Executions are counted through a side channel: each worker process appends the id of
//! every task it runs to a log file of its own (one `write` per line, `O_APPEND`), named by the
//! test, so after the run the logs say how often each task ran and where.

mod nats_support;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nats_support::Worker;
use primepool::{ClusterExecutor, ExecutorExt, Future};

const TASKS: u32 = 5_000;
const WORKERS: usize = 3;
const KILLS: usize = 12;
/// The most tasks a one-slot worker holds: its slot and, for tasks quicker than a pull's round
/// trip, up to 64 pulled ahead (`MAX_AHEAD_PER_SLOT` in `native/src/cluster/worker.rs`).
const HELD_BY_ONE_SLOT: usize = 1 + 64;
/// The variable naming a worker's execution log.
const LOG_VAR: &str = "PRIMEPOOL_CHAOS_LOG";

/// Records that this process ran task `i`, works 4 ms, and returns `7 i + 3`.
fn chaos_task(i: u32) -> u64 {
    static LOG: OnceLock<Option<std::fs::File>> = OnceLock::new();
    let log = LOG.get_or_init(|| {
        let path = std::env::var_os(LOG_VAR)?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    if let Some(mut file) = log.as_ref() {
        let _ = file.write_all(format!("{i}\n").as_bytes());
    }
    std::thread::sleep(Duration::from_millis(4));
    7 * u64::from(i) + 3
}

/// One worker of this test binary with one slot, logging its executions to `log`.
fn spawn_worker(url: &str, log: &Path) -> Worker {
    let log = log.to_string_lossy().into_owned();
    nats_support::worker_with(url, 1, &[(LOG_VAR, log.as_str())])
}

/// A small deterministic generator (xorshift), seeded and printed so a run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// How often each task ran, per log file.
fn executions(log: &Path) -> Vec<u32> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().expect("a task id per line"))
        .collect()
}

#[test]
fn five_thousand_tasks_survive_random_worker_kills_each_resolving_once_with_its_value() {
    let server = nats_support::server();
    let url = server.url();
    let dir = std::env::temp_dir().join(format!("primepool-chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut generation = 0;
    let mut next_log = || {
        generation += 1;
        dir.join(format!("worker-{generation}.log"))
    };
    let mut workers: Vec<(Worker, PathBuf)> = (0..WORKERS)
        .map(|_| {
            let log = next_log();
            (spawn_worker(&url, &log), log)
        })
        .collect();
    let client = ClusterExecutor::builder()
        .connect(&url)
        .lease(Duration::from_secs(2))
        .max_attempts(100)
        .build()
        .expect("a client");
    client
        .wait_for_workers(WORKERS, Duration::from_secs(60))
        .expect("the workers connect");

    let futures: Vec<Future<u64>> = (0..TASKS)
        .map(|i| client.submit(chaos_task, i).expect("submit"))
        .collect();
    let resolutions = std::sync::Arc::new(
        (0..TASKS)
            .map(|_| std::sync::atomic::AtomicU32::new(0))
            .collect::<Vec<_>>(),
    );
    for (i, future) in futures.iter().enumerate() {
        let counts = std::sync::Arc::clone(&resolutions);
        future.add_done_callback(move |_| {
            counts[i].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
    }

    let seed = u64::from(std::process::id()) * 0x9E37_79B9 + 1;
    eprintln!("chaos: seed {seed}");
    let mut rng = Rng(seed);
    let mut killed_logs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    while killed_logs.len() < KILLS {
        assert!(Instant::now() < deadline, "the kills took too long");
        std::thread::sleep(Duration::from_millis(100 + rng.below(200)));
        let done = futures.iter().filter(|f| f.done()).count();
        if done == futures.len() {
            break;
        }
        let at = rng.below(WORKERS as u64) as usize;
        let (mut worker, log) = workers.swap_remove(at);
        worker.kill();
        eprintln!(
            "chaos: kill {} ({} of {TASKS} done)",
            killed_logs.len() + 1,
            done
        );
        killed_logs.push(log);
        let log = next_log();
        workers.push((spawn_worker(&url, &log), log));
    }
    assert!(
        killed_logs.len() >= 10,
        "only {} kills happened before the tasks were done: the tasks are too quick",
        killed_logs.len()
    );

    for (i, future) in futures.iter().enumerate() {
        let value = future
            .result(Some(Duration::from_secs(180)))
            .unwrap_or_else(|e| panic!("task {i} failed: {e}"));
        assert_eq!(value, 7 * i as u64 + 3, "the value of task {i}");
    }
    drop(client);
    for (mut worker, _) in workers.drain(..) {
        worker.kill();
    }
    // Done-callbacks run once per resolution: exactly one each.
    for (i, count) in resolutions.iter().enumerate() {
        assert_eq!(
            count.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "task {i}"
        );
    }

    // Each task ran at least once; a task that ran more than once ran, all but once, in a
    // worker that was killed (the runs whose answers died with it).
    let mut runs: HashMap<u32, (usize, usize)> = HashMap::new(); // id -> (all, in killed)
    let mut per_killed = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let log = entry.path();
        let killed = killed_logs.contains(&log);
        let ids = executions(&log);
        if killed {
            per_killed.push((log.clone(), ids.clone()));
        }
        for id in ids {
            let e = runs.entry(id).or_default();
            e.0 += 1;
            e.1 += usize::from(killed);
        }
    }
    let mut duplicates = 0;
    for i in 0..TASKS {
        let (all, in_killed) = runs.get(&i).copied().unwrap_or_default();
        assert!(all >= 1, "task {i} never ran, yet resolved");
        assert!(
            all - 1 <= in_killed,
            "task {i} ran {all} times, only {in_killed} of them in killed workers"
        );
        duplicates += all - 1;
    }
    // A killed worker's runs that had to be run again are tasks it held when it died: at most
    // its slot and what it had pulled ahead.
    for (log, ids) in &per_killed {
        let again = ids.iter().filter(|id| runs[id].0 > 1).count();
        assert!(
            again <= HELD_BY_ONE_SLOT,
            "{} ran {again} tasks that ran again elsewhere; a one-slot worker holds at most {}",
            log.display(),
            HELD_BY_ONE_SLOT
        );
    }
    eprintln!(
        "chaos: {} kills, {duplicates} duplicate runs of {TASKS} tasks",
        killed_logs.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
