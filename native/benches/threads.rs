//! Thread-pool benchmarks, with rayon's own primitives measured in the same run as the yardstick.
//!
//! - `seed_9900_9999_2_workers`: the source document's timing (pool creation, the whole map and
//!   shutdown inside each iteration) for serial code, both executors, and rayon's `par_iter` and
//!   `spawn` on a 2-thread pool.
//! - `noop_round_trip`: one no-op `submit` then `result` at a time: the latency a single task
//!   pays.
//! - `noop_batch_per_task`: 1 000 no-op submissions, then their results: the per-task cost
//!   under load (reported per task).
//!
//! - `seed_ratio` (printed last, not a criterion group): the seed step again, the contenders
//!   interleaved round by round, best round of each: on a shared machine the best round is the
//!   one least disturbed by other processes, so its ratios to serial are the stable figure.
//!
//! Run with `cargo bench -p primepool --bench threads`. Sample counts are small on purpose:
//! the machine is shared, so compare ratios within one run.

use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use primepool::workload::{noop, seed_count_prime};
use primepool::{Executor, ExecutorExt, RayonExecutor, ThreadPoolExecutor};
use rayon::prelude::*;

const VALUES: std::ops::RangeInclusive<u32> = 9900..=9999;
const WORKERS: usize = 2;
const BATCH: u32 = 1_000;

fn rayon_pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn map_on(pool: &dyn Executor) -> Vec<u32> {
    pool.map(seed_count_prime, VALUES)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn serial() -> Vec<u32> {
    VALUES.map(seed_count_prime).collect()
}

fn thread_pool() -> Vec<u32> {
    map_on(&ThreadPoolExecutor::new(WORKERS).unwrap())
}

fn rayon_executor() -> Vec<u32> {
    map_on(&RayonExecutor::new(WORKERS).unwrap())
}

fn rayon_par_iter() -> Vec<u32> {
    let pool = rayon_pool(WORKERS);
    pool.install(|| {
        VALUES
            .into_par_iter()
            .map(seed_count_prime)
            .collect::<Vec<_>>()
    })
}

fn rayon_spawn() -> Vec<u32> {
    let pool = rayon_pool(WORKERS);
    let (sender, receiver) = mpsc::channel();
    for (i, n) in VALUES.enumerate() {
        let sender = sender.clone();
        pool.spawn(move || sender.send((i, seed_count_prime(n))).unwrap());
    }
    drop(sender);
    let mut out = vec![0; VALUES.count()];
    for (i, count) in receiver {
        out[i] = count;
    }
    out
}

/// One way to run the seed step: pool creation, all the work and shutdown in each call.
type Contender = (&'static str, fn() -> Vec<u32>);

/// Serial first: the others' ratios are taken against it.
const SEED_CONTENDERS: [Contender; 5] = [
    ("serial", serial),
    ("ThreadPoolExecutor", thread_pool),
    ("RayonExecutor", rayon_executor),
    ("rayon_par_iter", rayon_par_iter),
    ("rayon_spawn", rayon_spawn),
];

fn seed_workload(c: &mut Criterion) {
    let mut group = c.benchmark_group("seed_9900_9999_2_workers");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, run) in SEED_CONTENDERS {
        group.bench_function(name, |b| b.iter(run));
    }
    group.finish();
}

/// Interleaved rounds of the seed step; prints each contender's best round and its speed-up
/// over serial's best round.
fn seed_ratio(rounds: usize) {
    let expected = serial();
    let mut best = [Duration::MAX; SEED_CONTENDERS.len()];
    for _ in 0..rounds {
        for ((name, run), best) in SEED_CONTENDERS.iter().zip(&mut best) {
            let start = Instant::now();
            let out = black_box(run());
            *best = (*best).min(start.elapsed());
            assert_eq!(out, expected, "{name} computed different counts");
        }
    }
    println!("seed_ratio: best of {rounds} interleaved rounds, {WORKERS} workers, 9900..=9999");
    for ((name, _), time) in SEED_CONTENDERS.iter().zip(best) {
        let ratio = best[0].as_secs_f64() / time.as_secs_f64();
        println!(
            "seed_ratio/{name:<20} {:>8.1} ms   {ratio:.2}x serial",
            time.as_secs_f64() * 1e3
        );
    }
}

fn noop_round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("noop_round_trip");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let executors: Vec<Box<dyn Executor>> = vec![
        Box::new(ThreadPoolExecutor::new(WORKERS).unwrap()),
        Box::new(RayonExecutor::new(WORKERS).unwrap()),
    ];
    for pool in &executors {
        group.bench_function(BenchmarkId::new("submit_result", pool.name()), |b| {
            b.iter(|| {
                pool.submit(noop, black_box(1))
                    .unwrap()
                    .result(None)
                    .unwrap()
            })
        });
    }
    let pool = rayon_pool(WORKERS);
    group.bench_function("rayon_spawn_channel", |b| {
        b.iter(|| {
            let (sender, receiver) = mpsc::channel();
            pool.spawn(move || sender.send(noop(black_box(1))).unwrap());
            receiver.recv().unwrap()
        })
    });
    group.finish();
}

fn noop_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("noop_batch_per_task");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let executors: Vec<Box<dyn Executor>> = vec![
        Box::new(ThreadPoolExecutor::new(WORKERS).unwrap()),
        Box::new(RayonExecutor::new(WORKERS).unwrap()),
    ];
    // `iter_custom` divides by the iteration count: each iteration is one task of a batch.
    for pool in &executors {
        group.bench_function(BenchmarkId::new("submit_result", pool.name()), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let n = left.min(u64::from(BATCH));
                    let futures: Vec<_> = (0..n).map(|_| pool.submit(noop, 1).unwrap()).collect();
                    for f in futures {
                        f.result(None).unwrap();
                    }
                    left -= n;
                }
                start.elapsed()
            })
        });
    }
    let pool = rayon_pool(WORKERS);
    group.bench_function("rayon_spawn_channel", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut left = iters;
            while left > 0 {
                let n = left.min(u64::from(BATCH));
                let receivers: Vec<_> = (0..n)
                    .map(|_| {
                        let (sender, receiver) = mpsc::channel();
                        pool.spawn(move || sender.send(noop(1)).unwrap());
                        receiver
                    })
                    .collect();
                for r in receivers {
                    r.recv().unwrap();
                }
                left -= n;
            }
            start.elapsed()
        })
    });
    group.finish();
}

mod group {
    #![allow(missing_docs, reason = "criterion_group! makes an undocumented pub fn")]
    criterion::criterion_group!(
        benches,
        super::seed_workload,
        super::noop_round_trip,
        super::noop_batch
    );
}

/// `criterion_main!`, plus the interleaved ratio check when no filter excludes it.
fn main() {
    group::benches();
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_none_or(|f| "seed_ratio".contains(f.as_str())) {
        seed_ratio(7);
    }
    Criterion::default().configure_from_args().final_summary();
}
