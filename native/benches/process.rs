//! Process pool benchmarks, pool creation and shutdown included in every figure:
//!
//! - `startup`: `ProcessPoolExecutor::new(2)` to the first no-op result;
//! - `submit_noop_20000`: 20,000 no-op `submit`s, then waiting for all;
//! - `map_noop_200000_auto`: one `map` of 200,000 no-ops at the automatic chunk size;
//! - `seed_9900_9999`: the seed workload on 2 workers, and serially for the ratio.
//!
//! `bench/cpython_bench.py` (run by `cargo xtask bench-report`) measures the same with CPython's
//! `ProcessPoolExecutor(2)`. The benchmark binary is its own worker: its `main` calls
//! `run_worker_if_requested` first.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use primepool::workload::{noop, seed_count_prime};
use primepool::{ExecutorExt, ProcessPoolExecutor};

fn pool() -> ProcessPoolExecutor {
    ProcessPoolExecutor::new(2).expect("a process pool")
}

fn startup(c: &mut Criterion) {
    c.bench_function("process/startup_to_first_result_2_workers", |b| {
        b.iter(|| {
            let pool = pool();
            let r = pool.submit(noop, 7).unwrap().join().unwrap();
            drop(pool);
            black_box(r)
        })
    });
}

fn submit_noop(c: &mut Criterion) {
    const TASKS: u32 = 20_000;
    let mut group = c.benchmark_group("process");
    group.throughput(Throughput::Elements(u64::from(TASKS)));
    group.bench_function("submit_noop_20000", |b| {
        b.iter(|| {
            let pool = pool();
            let futures: Vec<_> = (0..TASKS).map(|i| pool.submit(noop, i).unwrap()).collect();
            let sum: u64 = futures
                .into_iter()
                .map(|f| u64::from(f.join().unwrap()))
                .sum();
            drop(pool);
            black_box(sum)
        })
    });
    group.finish();
}

fn map_noop(c: &mut Criterion) {
    const ITEMS: u32 = 200_000;
    let mut group = c.benchmark_group("process");
    group.throughput(Throughput::Elements(u64::from(ITEMS)));
    group.bench_function("map_noop_200000_auto", |b| {
        b.iter(|| {
            let pool = pool();
            let sum: u64 = pool
                .map(noop, 0..ITEMS)
                .unwrap()
                .map(|r| u64::from(r.unwrap()))
                .sum();
            drop(pool);
            black_box(sum)
        })
    });
    group.finish();
}

fn seed(c: &mut Criterion) {
    let mut group = c.benchmark_group("seed_9900_9999");
    group.bench_function("serial", |b| {
        b.iter(|| (9900..=9999u32).map(seed_count_prime).sum::<u32>())
    });
    group.bench_function("process_2_workers", |b| {
        b.iter_batched(
            || (),
            |()| {
                let pool = pool();
                let sum: u32 = pool
                    .map(seed_count_prime, 9900..=9999u32)
                    .unwrap()
                    .map(|r| r.unwrap())
                    .sum();
                drop(pool);
                sum
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn main() {
    primepool::run_worker_if_requested();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    startup(&mut c);
    submit_noop(&mut c);
    map_noop(&mut c);
    seed(&mut c);
    c.final_summary();
}
