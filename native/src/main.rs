//! The `primepool` command: the source document's demos and benchmark, and the web page's
//! static server. See `primepool --help`.

mod cli;

fn main() -> std::process::ExitCode {
    // First: in a worker process started by a process pool this runs the worker and exits.
    primepool::run_worker_if_requested();
    cli::main()
}
