//! The `primepool` command: the source document's demos and benchmark.

fn main() {
    primepool::run_worker_if_requested();
    println!("primepool: the command line arrives with issue 5");
}
