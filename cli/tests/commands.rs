//! `count`, `demo` and the help texts, run as a user runs them.

use assert_cmd::Command;
use predicates::prelude::*;

fn primepool() -> Command {
    let mut cmd = Command::cargo_bin("primepool").unwrap();
    cmd.timeout(std::time::Duration::from_secs(120));
    cmd
}

#[test]
fn count_prints_the_seed_functions_value() {
    // 9991 = 97 * 103, so the seed function gives 9991 - 97 * 97 + 1.
    primepool()
        .args(["count", "9991"])
        .assert()
        .success()
        .stdout("583\n");
    primepool()
        .args(["count", "9973"])
        .assert()
        .success()
        .stdout("0\n");
}

#[test]
fn count_prints_pi_of_n_for_the_primes_workload() {
    primepool()
        .args(["count", "100", "--workload", "primes"])
        .assert()
        .success()
        .stdout("25\n");
    primepool()
        .args(["count", "77", "--workload", "noop"])
        .assert()
        .success()
        .stdout("77\n");
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        &["--help"][..],
        &["bench", "--help"],
        &["count", "--help"],
        &["demo", "--help"],
        &["serve", "--help"],
    ] {
        primepool()
            .args(sub)
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage: primepool"));
    }
}

/// Pulls the pid out of each `executing our task on process <pid>` line.
fn worker_pids(stdout: &str) -> Vec<u32> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("executing our task on process "))
        .map(|pid| pid.trim().parse().unwrap())
        .collect()
}

#[test]
fn demo_runs_each_pair_of_tasks_in_two_worker_processes_other_than_the_parent() {
    let output = primepool().arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parent: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("the parent (this command) is process "))
        .expect("the parent's pid is printed")
        .trim()
        .parse()
        .unwrap();
    let pids = worker_pids(&stdout);
    assert_eq!(pids.len(), 4, "two tasks per form: {stdout}");
    for pair in pids.chunks(2) {
        assert_ne!(pair[0], pair[1], "two distinct workers: {stdout}");
        assert!(
            !pair.contains(&parent),
            "workers are not the parent: {stdout}"
        );
    }
    assert_eq!(stdout.lines().last(), Some("all tasks complete"));
}
