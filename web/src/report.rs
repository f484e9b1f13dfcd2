//! Turning timed runs into the benchmark report, with the field names of `primepool bench
//! --json` so that browser and native results can be read by the same tools.

use serde::{Deserialize, Serialize};

use crate::options::{Backend, Plan};
use crate::task::TaskRecord;

/// Everything one backend's runs produced, before comparison with the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendRun {
    /// Which backend ran.
    pub backend: Backend,
    /// Its workers (1 for serial).
    pub workers: u32,
    /// The first run, start-up included: pool creation, worker start, module instantiation
    /// and the JIT's first pass (the source document's definition).
    pub cold_s: f64,
    /// Starting the pool alone, where it can be timed apart (rayon's `initThreadPool`).
    pub startup_s: Option<f64>,
    /// The warm runs: the same executor again, already started.
    pub warm_s: Vec<f64>,
    /// The outputs, in input order (from the cold run; warm runs must agree).
    pub outputs: Vec<u32>,
    /// Per-task timing of the cold run, in ms from its start.
    pub cold_tasks: Vec<TaskRecord>,
    /// Per-task timing of the last warm run, in ms from its start.
    pub tasks: Vec<TaskRecord>,
}

/// The range that was mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Values {
    /// First value.
    pub start: u32,
    /// One past the last value.
    pub end: u64,
}

/// What the page knows about the machine it runs on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Machine {
    /// Always `"browser"` here (the CLI reports the OS).
    pub os: String,
    /// `navigator.hardwareConcurrency`.
    pub cpus: u32,
    /// `navigator.userAgent`.
    pub user_agent: String,
    /// Whether the page was cross-origin isolated (needed for rayon).
    pub cross_origin_isolated: bool,
}

/// One backend's line in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendResult {
    /// Backend name.
    pub backend: Backend,
    /// Its workers.
    pub workers: u32,
    /// Fastest warm run, seconds.
    pub min_s: f64,
    /// Median warm run, seconds.
    pub median_s: f64,
    /// Slowest warm run, seconds.
    pub max_s: f64,
    /// Serial's median over this median (warm); `None` when serial did not run.
    pub speedup_vs_serial: Option<f64>,
    /// Speed-up per worker.
    pub efficiency: Option<f64>,
    /// The cold run (start-up included), seconds.
    pub cold_s: f64,
    /// Serial's warm median over this cold run: what a visitor who starts a pool for one job
    /// gets.
    pub cold_speedup_vs_serial: Option<f64>,
    /// Pool start alone, where timed apart.
    pub startup_s: Option<f64>,
    /// Outputs in input order.
    pub outputs: Vec<u32>,
    /// Per-task timing and worker of the last warm run.
    pub tasks: Vec<TaskRecord>,
    /// Per-task timing and worker of the cold run.
    pub cold_tasks: Vec<TaskRecord>,
}

/// The benchmark's result: `primepool bench --json`'s fields, plus per-task detail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Workload name.
    pub workload: String,
    /// How tasks were handed over: `map`, as in the source document.
    pub mode: String,
    /// The range.
    pub values: Values,
    /// Workers asked for.
    pub workers: u32,
    /// Warm runs per backend.
    pub repeat: u32,
    /// The machine.
    pub machine: Machine,
    /// One entry per backend, in the order run.
    pub results: Vec<BackendResult>,
    /// True when every backend produced the same outputs.
    pub outputs_agree: bool,
}

/// The median of `samples` (mean of the middle two for an even count); 0 for none.
pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Rebases task times on `origin_ms` (the run's start), so a timeline starts at zero.
pub fn rebase(tasks: &mut [TaskRecord], origin_ms: f64) {
    for t in tasks {
        t.start_ms -= origin_ms;
        t.end_ms -= origin_ms;
    }
}

/// Compares the backends' runs and builds the report.
pub fn summarize(plan: &Plan, runs: Vec<BackendRun>, machine: Machine) -> BenchReport {
    let serial = runs
        .iter()
        .find(|r| r.backend == Backend::Serial)
        .map(|r| median(&r.warm_s))
        .filter(|m| *m > 0.0);
    let outputs_agree = runs.windows(2).all(|w| w[0].outputs == w[1].outputs);
    let results = runs
        .into_iter()
        .map(|run| {
            let median_s = median(&run.warm_s);
            let speedup = serial.filter(|_| median_s > 0.0).map(|s| s / median_s);
            BackendResult {
                backend: run.backend,
                workers: run.workers,
                min_s: run.warm_s.iter().copied().fold(f64::INFINITY, f64::min),
                median_s,
                max_s: run.warm_s.iter().copied().fold(0.0, f64::max),
                speedup_vs_serial: speedup,
                efficiency: speedup.map(|s| s / f64::from(run.workers.max(1))),
                cold_s: run.cold_s,
                cold_speedup_vs_serial: serial.filter(|_| run.cold_s > 0.0).map(|s| s / run.cold_s),
                startup_s: run.startup_s,
                outputs: run.outputs,
                tasks: run.tasks,
                cold_tasks: run.cold_tasks,
            }
        })
        .collect();
    BenchReport {
        workload: plan.workload.name().to_owned(),
        mode: "map".to_owned(),
        values: Values {
            start: plan.start,
            end: plan.end,
        },
        workers: plan.workers,
        repeat: plan.repeat,
        machine,
        results,
        outputs_agree,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{validate, RawOptions};

    fn run(backend: Backend, workers: u32, warm_s: Vec<f64>, outputs: Vec<u32>) -> BackendRun {
        BackendRun {
            backend,
            workers,
            cold_s: warm_s[0] * 2.0,
            startup_s: None,
            warm_s,
            outputs,
            cold_tasks: vec![],
            tasks: vec![],
        }
    }

    fn plan() -> Plan {
        validate(&RawOptions {
            start: Some(1.0),
            end: Some(4.0),
            ..RawOptions::default()
        })
        .unwrap()
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn speedups_and_efficiency_are_relative_to_the_serial_warm_median() {
        let report = summarize(
            &plan(),
            vec![
                run(Backend::Serial, 1, vec![0.12, 0.1, 0.2], vec![0, 0, 0]),
                run(Backend::Workers, 2, vec![0.05, 0.06, 0.04], vec![0, 0, 0]),
            ],
            Machine::default(),
        );
        let w = &report.results[1];
        assert_eq!((w.min_s, w.median_s, w.max_s), (0.04, 0.05, 0.06));
        assert!((w.speedup_vs_serial.unwrap() - 2.4).abs() < 1e-9);
        assert!((w.efficiency.unwrap() - 1.2).abs() < 1e-9);
        assert!((w.cold_speedup_vs_serial.unwrap() - 1.2).abs() < 1e-9);
        assert_eq!(report.results[0].speedup_vs_serial, Some(1.0));
        assert!(report.outputs_agree);
        assert_eq!(
            (report.workload.as_str(), report.mode.as_str()),
            ("seed", "map")
        );
    }

    #[test]
    fn different_outputs_are_reported_and_no_serial_means_no_speedup() {
        let report = summarize(
            &plan(),
            vec![
                run(Backend::Workers, 2, vec![0.05], vec![1, 2, 3]),
                run(Backend::Rayon, 2, vec![0.05], vec![1, 2, 4]),
            ],
            Machine::default(),
        );
        assert!(!report.outputs_agree);
        assert_eq!(report.results[0].speedup_vs_serial, None);
    }

    #[test]
    fn the_report_uses_the_cli_field_names() {
        let report = summarize(
            &plan(),
            vec![run(Backend::Serial, 1, vec![0.1], vec![0, 0, 0])],
            Machine::default(),
        );
        let json = serde_json::to_value(&report).unwrap();
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
            assert!(json.get(key).is_some(), "{key}");
        }
        assert_eq!(json["values"]["start"], 1);
        let result = &json["results"][0];
        for key in [
            "backend",
            "workers",
            "min_s",
            "median_s",
            "max_s",
            "speedup_vs_serial",
            "outputs",
        ] {
            assert!(result.get(key).is_some(), "{key}");
        }
        assert_eq!(result["backend"], "serial");
    }

    #[test]
    fn rebasing_puts_task_times_on_the_runs_clock() {
        let mut tasks = [TaskRecord {
            value: 1,
            output: 0,
            worker: 0,
            start_ms: 1005.0,
            end_ms: 1007.5,
        }];
        rebase(&mut tasks, 1000.0);
        assert_eq!((tasks[0].start_ms, tasks[0].end_ms), (5.0, 7.5));
    }
}
