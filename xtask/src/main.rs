//! Build orchestration for primepool, in Rust so it runs wherever cargo does.
//!
//! `cargo xtask test` is the one command CI runs (`.ci/run`) and a user types: it installs what
//! is missing on a fresh machine, then runs every check. See `cargo xtask help`.

mod bench_report;
mod browser_test;
mod install;
mod package;
mod test;
mod util;
mod web;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command>

commands:
  test          install what is missing, then fmt, clippy, docs, all tests and the wasm builds
  web [--dist DIR]
                build both wasm variants into www/pkg/ (with --dist: a deployable folder)
  serve [--port N]
                build, then serve www/ with `primepool serve` (COOP/COEP, default port 8000)
  bench-report  run the benchmark suite, CPython's concurrent.futures and the page in headless
                Chromium on the same figures, then write docs/benchmarks.md and
                docs/benchmarks.svg ([--quick]: a trial run)
  help          this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test::main(&args[1..]),
        Some("web") => web::main(&args[1..]),
        Some("serve") => web::serve(&args[1..]),
        Some("bench-report") => bench_report::main(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command '{other}'\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
