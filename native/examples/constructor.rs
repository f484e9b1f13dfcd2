//! The source document's first program: a pool of two worker processes made with its
//! constructor, and two submitted tasks that each print the id of the process running them.
//! Because each task sleeps for a second, the second task cannot wait for the first worker, so
//! two different process ids appear.
//!
//! Run with `cargo run --example constructor`.

use std::time::Duration;

use primepool::{Error, ExecutorExt, ProcessPoolExecutor};

/// Runs in a worker process: the id it prints is the worker's, not this program's.
fn task(_: ()) {
    println!("executing our task on process {}", std::process::id());
    std::thread::sleep(Duration::from_secs(1));
}

fn main() -> Result<(), Error> {
    // Worker processes re-run this executable; in them this call runs the worker and exits.
    primepool::run_worker_if_requested();

    let executor = ProcessPoolExecutor::new(2)?;
    let _task1 = executor.submit(task, ())?;
    let _task2 = executor.submit(task, ())?;
    // Like the Python program, there is no explicit shutdown: Python waits for the pool's
    // tasks when the interpreter exits; here `executor` is dropped at the end of `main`, and
    // dropping a pool waits for its tasks.
    Ok(())
}
