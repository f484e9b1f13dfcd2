//! The source document's third program: the CPU-bound `count_prime` mapped over
//! 9900..=9999 three ways, each timed around the whole step (pool creation and shutdown
//! included): a plain loop (the "normal case"), `ThreadPoolExecutor(4).map`, and
//! `ProcessPoolExecutor(4).map`.
//!
//! In Python only the process pool was faster, because the GIL lets one thread run Python at
//! a time; Rust threads run in parallel, so both pools gain here. `primepool bench` is the
//! full comparison (rayon too, repetitions, outputs check).
//!
//! Run with `cargo run --release --example performance`.

use std::time::Instant;

use primepool::workload::seed_count_prime;
use primepool::{Error, ExecutorExt, ProcessPoolExecutor, ThreadPoolExecutor};

fn main() -> Result<(), Error> {
    // Worker processes re-run this executable; in them this call runs the worker and exits.
    primepool::run_worker_if_requested();

    let values: Vec<u32> = (9900..10000).collect();

    let start = Instant::now();
    let results: Vec<u32> = values
        .iter()
        .map(|&value| seed_count_prime(value))
        .collect();
    println!("{results:?}");
    println!("normal case: delay={}", start.elapsed().as_secs_f64());

    let start = Instant::now();
    {
        let executor = ThreadPoolExecutor::new(4)?;
        let results = executor.map(seed_count_prime, values.iter().copied())?;
        println!("{:?}", results.collect::<Result<Vec<u32>, Error>>()?);
    }
    println!(
        "ThreadPoolExecutor case: delay={}",
        start.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    {
        let executor = ProcessPoolExecutor::new(4)?;
        let results = executor.map(seed_count_prime, values.iter().copied())?;
        println!("{:?}", results.collect::<Result<Vec<u32>, Error>>()?);
    }
    println!(
        "ProcessPoolExecutor case: delay={}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
