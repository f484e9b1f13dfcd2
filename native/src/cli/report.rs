//! The benchmark's results as people read them (a table and a bar chart in the terminal) and
//! as scripts read them (one JSON document whose field names other tools rely on).

use std::fmt::Write as _;

use serde::Serialize;

use super::bench::{BenchConfig, Measured, Mismatch, Stats};

/// The JSON document of `primepool bench --json`. Field names and order are a contract with
/// the web page and other tools: change them only together.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `"seed"`, `"primes"` or `"noop"`.
    pub workload: &'static str,
    /// `"map"` or `"submit"`.
    pub mode: &'static str,
    /// The inputs, end exclusive.
    pub values: Values,
    /// Workers per pool, as asked for.
    pub workers: usize,
    /// Timings per backend.
    pub repeat: usize,
    /// Where it ran.
    pub machine: Machine,
    /// One entry per backend, serial first.
    pub results: Vec<BackendResult>,
    /// True when every backend produced serial's outputs in every repetition.
    pub outputs_agree: bool,
}

/// The input range of a [`Report`].
#[derive(Debug, Serialize)]
pub struct Values {
    /// The first input.
    pub start: u32,
    /// One past the last input.
    pub end: u64,
}

/// The machine of a [`Report`].
#[derive(Debug, Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// The operating system (`linux`, `macos`, `windows`, ...).
    pub os: &'static str,
}

/// One backend's line of a [`Report`].
#[derive(Debug, Serialize)]
pub struct BackendResult {
    /// `"serial"`, `"threads"`, `"rayon"` or `"processes"`.
    pub backend: &'static str,
    /// Workers it used (1 for serial).
    pub workers: usize,
    /// Fastest run, seconds.
    pub min_s: f64,
    /// Median run, seconds.
    pub median_s: f64,
    /// Slowest run, seconds.
    pub max_s: f64,
    /// Serial's median divided by this backend's median.
    pub speedup_vs_serial: f64,
    /// One output per input, in input order.
    pub outputs: Vec<u32>,
}

impl Report {
    /// Assembles the report of a finished run.
    pub fn new(config: &BenchConfig, measured: &[Measured], mismatches: &[Mismatch]) -> Report {
        let serial_median = measured.first().map_or(0.0, |m| Stats::of(&m.times).median);
        let results = measured
            .iter()
            .map(|m| {
                let stats = Stats::of(&m.times);
                BackendResult {
                    backend: m.backend.name(),
                    workers: m.workers,
                    min_s: stats.min,
                    median_s: stats.median,
                    max_s: stats.max,
                    speedup_vs_serial: ratio(serial_median, stats.median),
                    outputs: m.outputs.clone(),
                }
            })
            .collect();
        Report {
            workload: config.workload.name(),
            mode: config.mode.name(),
            values: Values {
                start: config.values.start,
                end: config.values.end,
            },
            workers: config.workers,
            repeat: config.repeat,
            machine: Machine::this(),
            results,
            outputs_agree: mismatches.is_empty(),
        }
    }
}

impl Machine {
    /// The machine this process runs on.
    pub fn this() -> Machine {
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: std::env::consts::OS,
        }
    }
}

/// `a / b`, or 0 when `b` is 0 (a run too fast for the clock), so JSON never holds infinity.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// The human-readable report: a heading, the table, the bar chart and the outputs check.
pub fn render_text(report: &Report, mismatches: &[Mismatch]) -> String {
    let mut out = String::new();
    let n = report.values.end - u64::from(report.values.start);
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
        let efficiency = r.speedup_vs_serial / r.workers.max(1) as f64;
        let speedup = format!("{:.2}x", r.speedup_vs_serial);
        let efficiency = format!("{:.0}%", efficiency * 100.0);
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
            "{:<10} {bar}{:pad$} {:.4} s  {:.2}x",
            r.backend, "", r.median_s, r.speedup_vs_serial
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(medians: &[(&'static str, f64)], repeat: usize) -> Report {
        let serial = medians[0].1;
        Report {
            workload: "seed",
            mode: "map",
            values: Values {
                start: 9900,
                end: 10000,
            },
            workers: 2,
            repeat,
            machine: Machine {
                cpus: 2,
                os: "linux",
            },
            results: medians
                .iter()
                .map(|&(backend, median_s)| BackendResult {
                    backend,
                    workers: if backend == "serial" { 1 } else { 2 },
                    min_s: median_s,
                    median_s,
                    max_s: median_s,
                    speedup_vs_serial: ratio(serial, median_s),
                    outputs: vec![],
                })
                .collect(),
            outputs_agree: true,
        }
    }

    #[test]
    fn the_table_shows_speedup_and_efficiency_per_worker() {
        let table = render_table(&report(&[("serial", 0.2), ("threads", 0.1)], 1));
        let threads = table.lines().find(|l| l.starts_with("threads")).unwrap();
        assert!(threads.contains("2.00x"), "{threads}");
        assert!(threads.contains("100%"), "{threads}");
        assert!(!table.contains("min s"));
        let spread = render_table(&report(&[("serial", 0.2)], 3));
        assert!(spread.contains("min s") && spread.contains("max s"));
    }

    #[test]
    fn bars_are_proportional_to_the_median_time() {
        let bars = render_bars(&report(&[("serial", 0.2), ("threads", 0.1)], 1), 40);
        let count = |name: &str| {
            let line = bars.lines().find(|l| l.starts_with(name)).unwrap();
            line.chars().filter(|&c| c == '█').count()
        };
        assert_eq!(count("serial"), 40);
        assert_eq!(count("threads"), 20);
    }

    #[test]
    fn json_field_names_follow_the_published_schema() {
        let json = serde_json::to_value(report(&[("serial", 0.2)], 1)).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        for key in [
            "workload",
            "mode",
            "values",
            "workers",
            "repeat",
            "machine",
            "results",
            "outputs_agree",
        ] {
            assert!(keys.contains(&key), "missing {key} in {keys:?}");
        }
        assert_eq!(json["values"]["end"], 10000);
        assert_eq!(json["results"][0]["speedup_vs_serial"], 1.0);
    }

    #[test]
    fn a_zero_time_gives_a_zero_ratio_not_infinity() {
        assert_eq!(ratio(1.0, 0.0), 0.0);
    }
}
