//! `primepool demo`: the source document's first two programs. A process pool of two runs two
//! tasks that each print the id of the process running them; because each task sleeps a second,
//! they land on different workers. Then the same in the scoped form (Python's `with` block),
//! whose end waits for the work.

use std::time::Duration;

use primepool::{Error, ExecutorExt, Future};

use super::args::Backend;
use super::backend::make_executor;

/// The task: runs inside a worker process, so the id it prints (and returns) is the worker's.
pub fn task(_: ()) -> u32 {
    let pid = std::process::id();
    println!("executing our task on process {pid}");
    std::thread::sleep(Duration::from_secs(1));
    pid
}

/// Runs both forms and prints where each task ran.
pub fn run() -> Result<(), Error> {
    println!(
        "the parent (this command) is process {}",
        std::process::id()
    );

    println!("\n== constructor: a pool of 2 worker processes, two tasks submitted ==");
    constructor_form()?;

    println!("\n== scoped form: leaving the block waits for the tasks ==");
    let pids = {
        let executor = make_executor(Backend::Processes, 2, None)?;
        let first = executor.submit(task, ())?;
        let second = executor.submit(task, ())?;
        [first, second]
        // `executor` is dropped here: `shutdown(wait = true)`, as leaving Python's `with`.
    };
    report(pids)?;
    println!("all tasks complete");
    Ok(())
}

/// The first program: no explicit shutdown. As Python waits for the pool's tasks at exit, the
/// pool waits for them when it goes out of scope at the end of this function.
fn constructor_form() -> Result<(), Error> {
    let executor = make_executor(Backend::Processes, 2, None)?;
    let first = executor.submit(task, ())?;
    let second = executor.submit(task, ())?;
    report([first, second])
}

/// Prints which processes ran the tasks, next to the parent's id for contrast.
fn report(futures: [Future<u32>; 2]) -> Result<(), Error> {
    let [a, b] = futures;
    let (a, b) = (a.join()?, b.join()?);
    println!(
        "the tasks ran in processes {a} and {b}; this is process {}",
        std::process::id()
    );
    Ok(())
}
