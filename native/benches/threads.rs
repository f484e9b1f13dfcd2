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
//! Run with `cargo bench -p primepool --bench threads`. Sample counts are small on purpose:
//! the machine is shared, so compare ratios within one run.

use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{criterion_main, BenchmarkId, Criterion};
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

fn seed_workload(c: &mut Criterion) {
    let mut group = c.benchmark_group("seed_9900_9999_2_workers");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("serial", |b| {
        b.iter(|| VALUES.map(seed_count_prime).collect::<Vec<_>>())
    });
    group.bench_function("ThreadPoolExecutor", |b| {
        b.iter(|| map_on(&ThreadPoolExecutor::new(WORKERS).unwrap()))
    });
    group.bench_function("RayonExecutor", |b| {
        b.iter(|| map_on(&RayonExecutor::new(WORKERS).unwrap()))
    });
    group.bench_function("rayon_par_iter", |b| {
        b.iter(|| {
            let pool = rayon_pool(WORKERS);
            pool.install(|| {
                VALUES
                    .into_par_iter()
                    .map(seed_count_prime)
                    .collect::<Vec<_>>()
            })
        })
    });
    group.bench_function("rayon_spawn", |b| {
        b.iter(|| {
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
        })
    });
    group.finish();
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
criterion_main!(group::benches);
