//! What the command's tests share: running `primepool`, its `bench --json` document, and the
//! reference outputs of the seed workload. A test file uses it with `mod support;`.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the support"
)]

use assert_cmd::Command;
use serde_json::Value;

/// The `primepool` binary of this package, with a time-out so no test can hang.
pub fn primepool() -> Command {
    let mut cmd = Command::cargo_bin("primepool").unwrap();
    cmd.timeout(std::time::Duration::from_secs(300));
    cmd
}

/// Runs `primepool bench --json ARGS` and parses stdout, which must hold only the document.
pub fn bench_json(args: &[&str]) -> Value {
    let output = primepool()
        .args(["bench", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
}

/// The source's function on 9900..=9999, computed inline by the library's seed function, which
/// primepool-core's tests check against CPython's outputs (`core/tests/seed_9900_9999.txt`:
/// a packaged crate cannot read another crate's files, so this one does not include it).
pub fn reference_seed_outputs() -> Vec<u64> {
    let outputs: Vec<u64> = (9900..=9999)
        .map(|n| u64::from(primepool::workload::seed_count_prime(n)))
        .collect();
    // A few of CPython's outputs, from that file, to show the function is the right one.
    assert_eq!(outputs[..4], [9897, 0, 9899, 9895]);
    assert_eq!(outputs[91], 583);
    outputs
}

/// One backend's outputs in a `bench --json` document.
pub fn outputs(result: &Value) -> Vec<u64> {
    result["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// The backends of a `bench --json` document, in the order it ran them.
pub fn backend_names(json: &Value) -> Vec<&str> {
    json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["backend"].as_str().unwrap())
        .collect()
}
