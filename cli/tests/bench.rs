//! `primepool bench`: the JSON contract, the outputs check against CPython, the text report and
//! the SVG chart.

mod support;

use support::{backend_names, bench_json, outputs, primepool, reference_seed_outputs};

#[test]
fn json_follows_the_schema_and_seed_outputs_equal_cpythons() {
    let json = bench_json(&["--backends", "serial", "--repeat", "2", "--workers", "2"]);
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 8, "{keys:?}");
    assert_eq!(json["workload"], "seed");
    assert_eq!(json["mode"], "map");
    assert_eq!(json["values"]["start"], 9900);
    assert_eq!(json["values"]["end"], 10000);
    assert_eq!(json["workers"], 2);
    assert_eq!(json["repeat"], 2);
    assert!(json["machine"]["cpus"].as_u64().unwrap() >= 1);
    assert_eq!(json["machine"]["os"], std::env::consts::OS);
    assert_eq!(json["outputs_agree"], true);
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    let serial = &results[0];
    assert_eq!(serial["backend"], "serial");
    assert_eq!(serial["workers"], 1);
    let (min, median, max) = (
        serial["min_s"].as_f64().unwrap(),
        serial["median_s"].as_f64().unwrap(),
        serial["max_s"].as_f64().unwrap(),
    );
    assert!(0.0 < min && min <= median && median <= max, "{serial}");
    assert_eq!(serial["speedup_vs_serial"], 1.0);
    assert_eq!(outputs(serial), reference_seed_outputs());
}

#[test]
fn every_backend_returns_cpythons_outputs_in_both_modes() {
    for mode in ["map", "submit"] {
        let json = bench_json(&[
            "--backends",
            "processes,rayon,threads",
            "--workers",
            "2",
            "--repeat",
            "1",
            "--mode",
            mode,
        ]);
        assert_eq!(json["outputs_agree"], true);
        let results = json["results"].as_array().unwrap();
        let names = backend_names(&json);
        assert_eq!(
            names,
            ["serial", "processes", "rayon", "threads"],
            "serial first"
        );
        for result in results {
            assert_eq!(
                outputs(result),
                reference_seed_outputs(),
                "{mode}: {}",
                result["backend"]
            );
            let expected_workers = if result["backend"] == "serial" { 1 } else { 2 };
            assert_eq!(result["workers"], expected_workers);
            assert!(result["speedup_vs_serial"].as_f64().unwrap() > 0.0);
        }
    }
}

#[test]
fn serial_runs_first_even_when_not_listed_and_submit_mode_agrees() {
    let json = bench_json(&[
        "--backends",
        "serial",
        "--values",
        "0..=300",
        "--workload",
        "primes",
        "--mode",
        "submit",
        "--repeat",
        "1",
    ]);
    assert_eq!(json["mode"], "submit");
    assert_eq!(json["workload"], "primes");
    assert_eq!(json["values"]["end"], 301);
    let result = &json["results"][0];
    assert_eq!(result["backend"], "serial");
    let pi = outputs(result);
    assert_eq!(pi.len(), 301);
    assert_eq!((pi[10], pi[100], pi[300]), (4, 25, 62));
}

#[test]
fn the_noop_workload_returns_its_inputs() {
    let json = bench_json(&[
        "--backends",
        "serial",
        "--workload",
        "noop",
        "--values",
        "5..=9",
    ]);
    assert_eq!(outputs(&json["results"][0]), [5, 6, 7, 8, 9]);
}

#[test]
fn the_text_report_has_a_table_a_bar_chart_and_the_outputs_check() {
    let output = primepool()
        .args([
            "bench",
            "--backends",
            "serial",
            "--repeat",
            "3",
            "--values",
            "9990..10000",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("median s") && stdout.contains("efficiency"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1.00x") && stdout.contains("100%"),
        "{stdout}"
    );
    assert!(stdout.contains('█'), "bar chart: {stdout}");
    assert!(stdout.contains("outputs agree"), "{stdout}");
    // stderr is not a terminal here: no progress bar drawn.
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn plot_writes_an_svg_chart() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("bench.svg");
    primepool()
        .args([
            "bench",
            "--backends",
            "serial",
            "--repeat",
            "2",
            "--values",
            "9990..10000",
        ])
        .arg("--plot")
        .arg(&svg)
        .assert()
        .success();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(200)]);
    assert!(text.contains("serial") && text.contains("1.00x"));
}

#[test]
fn plot_to_an_unwritable_path_is_an_error_not_a_panic() {
    let output = primepool()
        .args([
            "bench",
            "--backends",
            "serial",
            "--repeat",
            "1",
            "--values",
            "1..3",
        ])
        .args(["--plot", "/nonexistent-dir/x.svg"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot write the chart"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
