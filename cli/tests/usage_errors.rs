//! Bad input gets a one-line error naming the problem and exit status 2, never a panic or a
//! hang.

use assert_cmd::Command;

/// Runs `primepool ARGS`, expects status 2 and an `error:` first line containing `expected`.
fn usage_error(args: &[&str], expected: &str) {
    let output = Command::cargo_bin("primepool")
        .unwrap()
        .args(args)
        .timeout(std::time::Duration::from_secs(30))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error:"), "{args:?}: {stderr}");
    assert!(
        first.contains(expected),
        "{args:?}: expected '{expected}' in the first line: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
}

#[test]
fn a_reversed_range_is_refused() {
    usage_error(&["bench", "--values", "10..5"], "is empty");
}

#[test]
fn an_empty_range_is_refused() {
    usage_error(&["bench", "--values", "7..7"], "is empty");
    usage_error(&["bench", "--values", "7..=6"], "is empty");
}

#[test]
fn zero_workers_are_refused() {
    usage_error(&["bench", "--workers", "0"], "must be at least 1");
}

#[test]
fn zero_repeats_are_refused() {
    usage_error(&["bench", "--repeat", "0"], "must be at least 1");
}

#[test]
fn a_zero_chunksize_is_refused() {
    usage_error(&["bench", "--chunksize", "0"], "must be at least 1");
}

#[test]
fn non_numbers_are_refused() {
    usage_error(&["bench", "--values", "a..b"], "not a whole number");
    usage_error(&["bench", "--workers", "four"], "not a whole number");
    usage_error(&["count", "ten"], "not a whole number");
}

#[test]
fn values_beyond_u32_are_refused() {
    usage_error(&["bench", "--values", "0..4294967296"], "too large");
    usage_error(&["count", "4294967296"], "too large");
}

#[test]
fn an_unknown_backend_is_refused() {
    usage_error(&["bench", "--backends", "serial,gpu"], "'gpu'");
}

#[test]
fn an_unknown_workload_or_mode_is_refused() {
    usage_error(&["bench", "--workload", "fast"], "'fast'");
    usage_error(&["bench", "--mode", "scatter"], "'scatter'");
}

#[test]
fn a_negative_count_is_refused() {
    usage_error(&["count", "-5"], "negative");
}

#[test]
fn an_absurdly_large_range_is_refused_before_any_work() {
    usage_error(&["bench", "--values", "0..=4294967295"], "at most");
}

#[test]
fn a_missing_subcommand_is_a_usage_error() {
    let output = Command::cargo_bin("primepool").unwrap().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}
