//! The source document's second program: the pool used in a scope, Python's
//! `with ProcessPoolExecutor(2) as executor:`. Leaving the block waits for the submitted
//! tasks (it is `shutdown(wait = true)`), so `all tasks complete` is printed after both tasks
//! ran. The document calls this the preferred form: the pool's processes are released at a
//! well-defined point.
//!
//! Run with `cargo run --example context_manager`.

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

    {
        let executor = ProcessPoolExecutor::new(2)?;
        let _task1 = executor.submit(task, ())?;
        let _task2 = executor.submit(task, ())?;
    } // `executor` is dropped here: the end of the `with` block.
    println!("all tasks complete");
    Ok(())
}
