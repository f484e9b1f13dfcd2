//! `cargo xtask test`: every check CI runs, after installing what is missing.

use crate::install;
use crate::util::{cargo, run};

/// Runs fmt, clippy, the docs, all tests, the cross-platform and packaging checks, the wasm
/// builds, and the browser test.
pub fn run_all() -> Result<(), String> {
    install::rustup_target(None, "wasm32-unknown-unknown")?;
    // The cluster tests start their own `nats-server -js`.
    install::nats_server()?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo()
        .args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    run(cargo().args(["test", "--workspace"]))?;
    // The library on other platforms, and what crates.io would receive.
    crate::package::check_lean()?;
    crate::package::check_platforms()?;
    crate::package::check_packages()?;
    run(cargo().args([
        "build",
        "-p",
        "primepool-core",
        "--target",
        "wasm32-unknown-unknown",
    ]))?;
    // The browser target: the web crate's lints for wasm, both wasm builds, the browser test.
    run(cargo().args([
        "clippy",
        "-p",
        "primepool-web",
        "--target",
        "wasm32-unknown-unknown",
        "--",
        "-D",
        "warnings",
    ]))?;
    crate::web::build()?;
    crate::browser_test::run()?;
    eprintln!("xtask: all checks passed");
    Ok(())
}

/// Entry point with the command-line arguments after `test`.
pub fn main(args: &[String]) -> Result<(), String> {
    if let Some(unknown) = args.first() {
        return Err(format!(
            "`cargo xtask test` takes no arguments (got '{unknown}')"
        ));
    }
    run_all()
}
