//! The benchmark's results as people read them (a table and a bar chart in the terminal) and
//! as scripts read them (one JSON document whose field names other tools rely on).

use std::fmt::Write as _;
use std::time::Duration;

use primepool_core::report::{speedup, BackendResult, Machine, Stats, Values};

use super::bench::{BenchConfig, Measured, Mismatch};

/// The JSON document of `primepool bench --json`: [`primepool_core::report::Report`] with nothing
/// added. Its field names and order are a contract with the web page and other tools, defined
/// once in `primepool_core::report`.
pub type Report = primepool_core::report::Report;

/// Assembles the report of a finished run.
pub fn build(config: &BenchConfig, measured: &[Measured], mismatches: &[Mismatch]) -> Report {
    let stats = |m: &Measured| {
        let seconds: Vec<f64> = m.times.iter().map(Duration::as_secs_f64).collect();
        Stats::of(&seconds)
    };
    let serial_median = measured.first().map_or(0.0, |m| stats(m).median);
    let results = measured
        .iter()
        .map(|m| {
            let stats = stats(m);
            BackendResult {
                backend: m.backend.name().to_owned(),
                workers: m.workers,
                min_s: stats.min,
                median_s: stats.median,
                max_s: stats.max,
                // The CLI always runs serial first, so there is always a figure; a time too
                // short for the clock gives 0, as it always has in this document.
                speedup_vs_serial: Some(speedup(serial_median, stats.median).unwrap_or(0.0)),
                outputs: m.outputs.clone(),
                extra: (),
            }
        })
        .collect();
    Report {
        workload: config.workload.name().to_owned(),
        mode: config.mode.name().to_owned(),
        values: Values {
            start: config.values.start,
            end: config.values.end,
        },
        workers: config.workers,
        repeat: config.repeat,
        machine: this_machine(),
        results,
        outputs_agree: mismatches.is_empty(),
    }
}

/// The machine this process runs on.
pub fn this_machine() -> Machine {
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        os: std::env::consts::OS.to_owned(),
        extra: (),
    }
}

/// The human-readable report: a heading, the table, the bar chart and the outputs check.
pub fn render_text(report: &Report, mismatches: &[Mismatch]) -> String {
    let mut out = String::new();
    let n = report.values.len();
    let _ = writeln!(
        out,
        "{} workload over {}..{} ({n} values), {} mode, {} workers, {} run(s) each; {} CPUs, {}",
        report.workload,
        report.values.start,
        report.values.end,
        report.mode,
        report.workers,
        report.repeat,
        report.machine.cpus,
        report.machine.os,
    );
    let _ = writeln!(
        out,
        "each time covers pool creation, all the work and shutdown\n"
    );
    out.push_str(&render_table(report));
    out.push('\n');
    out.push_str(&render_bars(report, 40));
    out.push('\n');
    if mismatches.is_empty() {
        let _ = writeln!(
            out,
            "outputs agree: every backend returned the same {n} values"
        );
    } else {
        for mismatch in mismatches {
            let _ = writeln!(out, "OUTPUTS DISAGREE: {}", describe_mismatch(mismatch));
        }
    }
    out
}

/// One line saying how a backend's outputs differ from serial's.
pub fn describe_mismatch(m: &Mismatch) -> String {
    match (m.value, m.expected, m.got, m.run) {
        (_, _, _, Some(run)) => format!(
            "{}'s outputs in run {run} differ from its own first run",
            m.backend
        ),
        (Some(value), Some(expected), Some(got), None) => format!(
            "{} returned {got} for input {value}, serial returned {expected}",
            m.backend
        ),
        _ => format!(
            "{} returned a different number of outputs than serial",
            m.backend
        ),
    }
}

/// The results table: backend, workers, seconds, speedup and parallel efficiency.
pub fn render_table(report: &Report) -> String {
    let with_spread = report.repeat > 1;
    let mut out = String::new();
    if with_spread {
        let _ = writeln!(
            out,
            "{:<10} {:>7} {:>9} {:>9} {:>9} {:>8} {:>10}",
            "backend", "workers", "min s", "median s", "max s", "speedup", "efficiency"
        );
    } else {
        let _ = writeln!(
            out,
            "{:<10} {:>7} {:>9} {:>8} {:>10}",
            "backend", "workers", "seconds", "speedup", "efficiency"
        );
    }
    for r in &report.results {
        let speedup = times(r.speedup_vs_serial);
        let efficiency = r
            .efficiency()
            .map_or_else(|| "-".to_owned(), |e| format!("{:.0}%", e * 100.0));
        if with_spread {
            let _ = writeln!(
                out,
                "{:<10} {:>7} {:>9.4} {:>9.4} {:>9.4} {:>8} {:>10}",
                r.backend, r.workers, r.min_s, r.median_s, r.max_s, speedup, efficiency
            );
        } else {
            let _ = writeln!(
                out,
                "{:<10} {:>7} {:>9.4} {:>8} {:>10}",
                r.backend, r.workers, r.median_s, speedup, efficiency
            );
        }
    }
    out
}

/// A horizontal bar per backend, its length proportional to the median time (shorter is
/// faster), drawn with eighth-block characters for sub-character precision.
pub fn render_bars(report: &Report, width: usize) -> String {
    const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let longest = report
        .results
        .iter()
        .map(|r| r.median_s)
        .fold(0.0_f64, f64::max);
    let mut out = String::new();
    for r in &report.results {
        let eighths = if longest > 0.0 {
            ((r.median_s / longest) * (width * 8) as f64).round() as usize
        } else {
            0
        };
        let mut bar: String = "█".repeat(eighths / 8);
        if eighths % 8 > 0 {
            bar.push(EIGHTHS[eighths % 8]);
        }
        let pad = width.saturating_sub(bar.chars().count());
        let _ = writeln!(
            out,
            "{:<10} {bar}{:pad$} {:.4} s  {}",
            r.backend,
            "",
            r.median_s,
            times(r.speedup_vs_serial)
        );
    }
    out
}

/// A speed-up as `2.00x`, or `-` where there is none.
pub fn times(speedup: Option<f64>) -> String {
    speedup.map_or_else(|| "-".to_owned(), |x| format!("{x:.2}x"))
}

#[cfg(test)]
mod tests {
    use super::super::args::{Backend, Mode};
    use super::super::backend::effective_workers;
    use super::*;
    use primepool::workload::Workload;

    /// The report of serial and, optionally, threads, each timed once at the given seconds.
    fn report(medians: &[(Backend, f64)], repeat: usize) -> Report {
        let measured: Vec<Measured> = medians
            .iter()
            .map(|&(backend, seconds)| measured(backend, effective_workers(backend, 2), seconds))
            .collect();
        build(&BenchConfig { repeat, ..config() }, &measured, &[])
    }

    #[test]
    fn the_table_shows_speedup_and_efficiency_per_worker() {
        let table = render_table(&report(
            &[(Backend::Serial, 0.2), (Backend::Threads, 0.1)],
            1,
        ));
        let threads = table.lines().find(|l| l.starts_with("threads")).unwrap();
        assert!(threads.contains("2.00x"), "{threads}");
        assert!(threads.contains("100%"), "{threads}");
        assert!(!table.contains("min s"));
        let spread = render_table(&report(&[(Backend::Serial, 0.2)], 3));
        assert!(spread.contains("min s") && spread.contains("max s"));
    }

    #[test]
    fn bars_are_proportional_to_the_median_time() {
        let bars = render_bars(
            &report(&[(Backend::Serial, 0.2), (Backend::Threads, 0.1)], 1),
            40,
        );
        let count = |name: &str| {
            let line = bars.lines().find(|l| l.starts_with(name)).unwrap();
            line.chars().filter(|&c| c == '█').count()
        };
        assert_eq!(count("serial"), 40);
        assert_eq!(count("threads"), 20);
    }

    fn measured(backend: Backend, workers: usize, seconds: f64) -> Measured {
        Measured {
            backend,
            workers,
            times: vec![Duration::from_secs_f64(seconds)],
            outputs: vec![9_991],
            inconsistent_run: None,
        }
    }

    fn config() -> BenchConfig {
        BenchConfig {
            workload: Workload::Seed,
            mode: Mode::Map,
            values: "9999..10000".parse().unwrap(),
            backends: vec![Backend::Serial, Backend::Threads],
            workers: 2,
            repeat: 1,
            chunksize: None,
            cluster_url: None,
        }
    }

    #[test]
    fn json_field_names_and_order_follow_the_published_schema() {
        let mut report = report(&[(Backend::Serial, 0.5), (Backend::Threads, 0.25)], 1);
        report.machine = Machine {
            cpus: 2,
            os: "linux".into(),
            extra: (),
        };
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            concat!(
                r#"{"workload":"seed","mode":"map","values":{"start":9999,"end":10000},"#,
                r#""workers":2,"repeat":1,"machine":{"cpus":2,"os":"linux"},"results":["#,
                r#"{"backend":"serial","workers":1,"min_s":0.5,"median_s":0.5,"max_s":0.5,"#,
                r#""speedup_vs_serial":1.0,"outputs":[9991]},"#,
                r#"{"backend":"threads","workers":2,"min_s":0.25,"median_s":0.25,"max_s":0.25,"#,
                r#""speedup_vs_serial":2.0,"outputs":[9991]}],"outputs_agree":true}"#
            )
        );
    }

    #[test]
    fn a_zero_time_gives_a_zero_ratio_not_infinity() {
        let report = report(&[(Backend::Serial, 0.0), (Backend::Threads, 0.0)], 1);
        let json = serde_json::to_value(&report).unwrap();
        for result in json["results"].as_array().unwrap() {
            assert_eq!(result["speedup_vs_serial"], 0.0, "{result}");
        }
    }
}
