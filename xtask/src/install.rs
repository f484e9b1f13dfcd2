//! Installing what the checks need on a fresh machine: rustup targets and components, Debian
//! packages (when running as root; otherwise the command to run is printed), npm packages.

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
