//! The benchmark report: the JSON document of `primepool bench --json`, written by the CLI and
//! by the web page, and read back by `cargo xtask bench-report`.
//!
//! Its field names and their order are a published contract, so they are defined here once.
//! A producer that knows more than the CLI adds it through the type parameters: the fields of
//! `M` follow the machine's, the fields of `R` follow each result's (both are
//! `#[serde(flatten)]`ed, so the extra fields sit in the same JSON object, after the shared
//! ones). The CLI uses `()` for both, which adds nothing.
//!
//! ```
//! use primepool_core::report::{BackendResult, Machine, Report, Values};
//!
//! let report: Report = Report {
//!     workload: "seed".into(),
//!     mode: "map".into(),
//!     values: Values { start: 9900, end: 10000 },
//!     workers: 2,
//!     repeat: 1,
//!     machine: Machine { cpus: 2, os: "linux".into(), extra: () },
//!     results: vec![BackendResult {
//!         backend: "serial".into(),
//!         workers: 1,
//!         min_s: 0.2,
//!         median_s: 0.2,
//!         max_s: 0.2,
//!         speedup_vs_serial: Some(1.0),
//!         outputs: vec![],
//!         extra: (),
//!     }],
//!     outputs_agree: true,
//! };
//! assert_eq!(report.values.len(), 100);
//! assert_eq!(report.result("serial").and_then(BackendResult::efficiency), Some(1.0));
//! ```

use serde::{Deserialize, Serialize};

/// The whole benchmark report. `M` adds fields to [`Machine`], `R` to every [`BackendResult`];
/// `()` adds none (the CLI's document).
///
/// Counts are `usize`: the CLI counts in `usize` (`--repeat`, `available_parallelism`), the
/// browser's `u32` counts widen to it losslessly on every target, and JSON has one number type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report<M = (), R = ()> {
    /// The function mapped over the values: `"seed"`, `"primes"` or `"noop"`.
    pub workload: String,
    /// How tasks were handed over: `"map"` or `"submit"`.
    pub mode: String,
    /// The inputs, end exclusive.
    pub values: Values,
    /// Workers per pool, as asked for.
    pub workers: usize,
    /// Timed runs per backend.
    pub repeat: usize,
    /// Where it ran.
    pub machine: Machine<M>,
    /// One entry per backend, in the order they ran (serial first in the CLI).
    pub results: Vec<BackendResult<R>>,
    /// True when every backend produced the same outputs as every other.
    pub outputs_agree: bool,
}

impl<M, R> Report<M, R> {
    /// The entry of `backend` (by its name in the report), if it ran.
    pub fn result(&self, backend: &str) -> Option<&BackendResult<R>> {
        self.results.iter().find(|r| r.backend == backend)
    }
}

/// The input range of a [`Report`]: `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Values {
    /// The first input.
    pub start: u32,
    /// One past the last input (`u64`, so that a range can end at `u32::MAX` inclusive).
    pub end: u64,
}

impl Values {
    /// How many inputs.
    pub fn len(self) -> u64 {
        self.end.saturating_sub(u64::from(self.start))
    }

    /// True when the range holds no input.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// The machine of a [`Report`]; `X`'s fields follow `cpus` and `os` in the same object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine<X = ()> {
    /// Logical CPUs available (the browser's `navigator.hardwareConcurrency`).
    #[serde(default)]
    pub cpus: usize,
    /// The operating system (`linux`, `macos`, `windows`, ...), or `"browser"`.
    #[serde(default)]
    pub os: String,
    /// What a producer adds (the browser: user agent, cross-origin isolation).
    #[serde(flatten)]
    pub extra: X,
}

/// One backend's entry of a [`Report`]; `X`'s fields follow `outputs` in the same object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendResult<X = ()> {
    /// The backend's name: `"serial"`, `"threads"`, `"rayon"`, `"processes"` (CLI) or
    /// `"workers"` (browser). A string, not an enum: each producer has its own set of
    /// backends, and a reader must not fail on a name it does not know.
    pub backend: String,
    /// Workers it used (1 for serial).
    pub workers: usize,
    /// The fastest timed run, seconds.
    pub min_s: f64,
    /// The median timed run, seconds.
    pub median_s: f64,
    /// The slowest timed run, seconds.
    pub max_s: f64,
    /// Serial's median over this median; `null` when there is no serial run to compare with
    /// (the browser can skip serial; the CLI always runs it).
    pub speedup_vs_serial: Option<f64>,
    /// One output per input, in input order.
    pub outputs: Vec<u32>,
    /// What a producer adds (the browser: cold runs and per-task timing).
    #[serde(flatten)]
    pub extra: X,
}

impl<X> BackendResult<X> {
    /// Parallel efficiency: the speed-up per worker (1.0 is perfect scaling).
    pub fn efficiency(&self) -> Option<f64> {
        self.speedup_vs_serial
            .map(|speedup| speedup / self.workers.max(1) as f64)
    }
}

/// The fastest, median and slowest of a set of timings, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// The fastest.
    pub min: f64,
    /// The median: the middle value, or the mean of the middle two for an even count.
    pub median: f64,
    /// The slowest.
    pub max: f64,
}

impl Stats {
    /// The statistics of `seconds`, in any order; all zero for none.
    pub fn of(seconds: &[f64]) -> Stats {
        let mut sorted = seconds.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => 0.0,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Stats {
            min: sorted.first().copied().unwrap_or(0.0),
            median,
            max: sorted.last().copied().unwrap_or(0.0),
        }
    }
}

/// How many times faster than `baseline_s` a run of `time_s` is: `baseline_s / time_s`, or
/// `None` when either is not positive (a run too fast for the clock, or no baseline), so that a
/// report never holds infinity or a meaningless zero.
pub fn speedup(baseline_s: f64, time_s: f64) -> Option<f64> {
    (baseline_s > 0.0 && time_s > 0.0).then(|| baseline_s / time_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result<X>(backend: &str, speedup_vs_serial: Option<f64>, extra: X) -> BackendResult<X> {
        BackendResult {
            backend: backend.into(),
            workers: 2,
            min_s: 0.1,
            median_s: 0.2,
            max_s: 0.3,
            speedup_vs_serial,
            outputs: vec![7, 8],
            extra,
        }
    }

    fn report<M, R>(machine: M, extra: R) -> Report<M, R> {
        Report {
            workload: "seed".into(),
            mode: "map".into(),
            values: Values {
                start: 9900,
                end: 10000,
            },
            workers: 2,
            repeat: 3,
            machine: Machine {
                cpus: 4,
                os: "linux".into(),
                extra: machine,
            },
            results: vec![result("threads", Some(1.5), extra)],
            outputs_agree: true,
        }
    }

    #[test]
    fn the_cli_document_has_the_published_field_names_in_order() {
        let json = serde_json::to_string(&report((), ())).unwrap();
        assert_eq!(
            json,
            r#"{"workload":"seed","mode":"map","values":{"start":9900,"end":10000},"workers":2,"repeat":3,"machine":{"cpus":4,"os":"linux"},"results":[{"backend":"threads","workers":2,"min_s":0.1,"median_s":0.2,"max_s":0.3,"speedup_vs_serial":1.5,"outputs":[7,8]}],"outputs_agree":true}"#
        );
    }

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    struct More {
        note: String,
        cold_s: Option<f64>,
    }

    #[test]
    fn extra_fields_follow_the_shared_ones_and_read_back() {
        let more = More {
            note: "x".into(),
            cold_s: None,
        };
        let original = report(more.clone(), more);
        let json = serde_json::to_string(&original).unwrap();
        assert!(
            json.contains(r#""machine":{"cpus":4,"os":"linux","note":"x","cold_s":null}"#),
            "{json}"
        );
        assert!(
            json.contains(r#""outputs":[7,8],"note":"x","cold_s":null}"#),
            "{json}"
        );
        let back: Report<More, More> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, original);
        // A reader that wants only the shared fields ignores the extra ones.
        let plain: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(plain.results[0].outputs, [7, 8]);
        assert_eq!(plain.machine.os, "linux");
    }

    #[test]
    fn stats_take_the_middle_value_or_the_mean_of_the_middle_two() {
        let odd = Stats::of(&[3.0, 1.0, 2.0]);
        assert_eq!((odd.min, odd.median, odd.max), (1.0, 2.0, 3.0));
        let even = Stats::of(&[4.0, 1.0, 2.0, 3.0]);
        assert_eq!((even.min, even.median, even.max), (1.0, 2.5, 4.0));
        assert_eq!(
            Stats::of(&[]),
            Stats {
                min: 0.0,
                median: 0.0,
                max: 0.0
            }
        );
    }

    #[test]
    fn a_speedup_needs_two_positive_times_and_efficiency_divides_it_by_the_workers() {
        assert_eq!(speedup(0.75, 0.25), Some(3.0));
        assert_eq!(speedup(1.0, 0.0), None);
        assert_eq!(speedup(0.0, 1.0), None);
        assert_eq!(result("rayon", Some(3.0), ()).efficiency(), Some(1.5));
        assert_eq!(result("rayon", None, ()).efficiency(), None);
    }

    #[test]
    fn values_count_their_inputs_and_results_are_found_by_name() {
        let r = report((), ());
        assert_eq!(r.values.len(), 100);
        assert!(!r.values.is_empty());
        assert!(Values { start: 5, end: 5 }.is_empty());
        assert_eq!(r.result("threads").map(|r| r.workers), Some(2));
        assert!(r.result("processes").is_none());
    }
}
