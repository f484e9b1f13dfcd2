//! Turning timed runs into the benchmark report, with the field names of `primepool bench
//! --json` so that browser and native results can be read by the same tools.

use primepool_core::report::{self, speedup, Stats, Values};
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

/// What the page adds to [`report::Machine`]'s `cpus` and `os` (`os` is always `"browser"`
/// here, `cpus` is `navigator.hardwareConcurrency`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrowserMachine {
    /// `navigator.userAgent`.
    pub user_agent: String,
    /// Whether the page was cross-origin isolated (needed for rayon).
    pub cross_origin_isolated: bool,
}

/// What the page knows about the machine it runs on.
pub type Machine = report::Machine<BrowserMachine>;

/// What the page adds to each [`report::BackendResult`]: the cold run and per-task timing (the
/// shared `min_s`, `median_s`, `max_s` and `speedup_vs_serial` are of the warm runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrowserResult {
    /// Speed-up per worker.
    pub efficiency: Option<f64>,
    /// The cold run (start-up included), seconds.
    pub cold_s: f64,
    /// Serial's warm median over this cold run: what a visitor who starts a pool for one job
    /// gets.
    pub cold_speedup_vs_serial: Option<f64>,
    /// Pool start alone, where timed apart.
    pub startup_s: Option<f64>,
    /// Per-task timing and worker of the last warm run.
    pub tasks: Vec<TaskRecord>,
    /// Per-task timing and worker of the cold run.
    pub cold_tasks: Vec<TaskRecord>,
}

/// One backend's line in the report.
pub type BackendResult = report::BackendResult<BrowserResult>;

/// The benchmark's result: `primepool bench --json`'s fields, plus cold figures and per-task
/// detail.
pub type BenchReport = report::Report<BrowserMachine, BrowserResult>;

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
        .map(|r| Stats::of(&r.warm_s).median);
    let outputs_agree = runs.windows(2).all(|w| w[0].outputs == w[1].outputs);
    let results = runs
        .into_iter()
        .map(|run| {
            let warm = Stats::of(&run.warm_s);
            let mut result = BackendResult {
                backend: run.backend.name().to_owned(),
                workers: run.workers as usize,
                min_s: warm.min,
                median_s: warm.median,
                max_s: warm.max,
                speedup_vs_serial: serial.and_then(|s| speedup(s, warm.median)),
                outputs: run.outputs,
                extra: BrowserResult {
                    efficiency: None,
                    cold_s: run.cold_s,
                    cold_speedup_vs_serial: serial.and_then(|s| speedup(s, run.cold_s)),
                    startup_s: run.startup_s,
                    tasks: run.tasks,
                    cold_tasks: run.cold_tasks,
                },
            };
            result.extra.efficiency = result.efficiency();
            result
        })
        .collect();
    BenchReport {
        workload: plan.workload.name().to_owned(),
        mode: "map".to_owned(),
        values: Values {
            start: plan.start,
            end: plan.end,
        },
        workers: plan.workers as usize,
        repeat: plan.repeat as usize,
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
        assert!((w.extra.efficiency.unwrap() - 1.2).abs() < 1e-9);
        assert!((w.extra.cold_speedup_vs_serial.unwrap() - 1.2).abs() < 1e-9);
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
        assert_eq!(json["results"][0]["backend"], "serial");
        // Every result has the CLI's fields first, in the CLI's order, then the browser's.
        let text = serde_json::to_string(&report.results[0]).unwrap();
        let order = [
            "backend",
            "workers",
            "min_s",
            "median_s",
            "max_s",
            "speedup_vs_serial",
            "outputs",
            "efficiency",
            "cold_s",
            "cold_speedup_vs_serial",
            "startup_s",
            "tasks",
            "cold_tasks",
        ];
        let at: Vec<usize> = order
            .iter()
            .map(|key| text.find(&format!("\"{key}\":")).expect(key))
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn the_machine_reads_the_pages_object_and_defaults_what_is_missing() {
        let machine: Machine = serde_json::from_str(
            r#"{"os":"browser","cpus":8,"user_agent":"UA","cross_origin_isolated":true}"#,
        )
        .unwrap();
        assert_eq!((machine.cpus, machine.os.as_str()), (8, "browser"));
        assert_eq!(
            machine.extra,
            BrowserMachine {
                user_agent: "UA".into(),
                cross_origin_isolated: true
            }
        );
        let json = serde_json::to_string(&machine).unwrap();
        assert_eq!(
            json,
            r#"{"cpus":8,"os":"browser","user_agent":"UA","cross_origin_isolated":true}"#
        );
        let empty: Machine = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, Machine::default());
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
