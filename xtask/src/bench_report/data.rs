//! The three sources of figures, read back as typed data: `primepool bench --json`, the
//! CPython script's JSON, and criterion's estimates of the `suite` benchmark.

use std::collections::BTreeMap;
use std::path::Path;

use primepool_core::report::{speedup, Report};
use serde::Deserialize;

/// `primepool bench --json`, read with the CLI's published schema (`primepool_core::report`).
pub type CliReport = Report;

/// Serial's fastest run over `backend`'s fastest: on a shared machine the fastest of
/// interleaved rounds is the one least disturbed by other work. Targets are judged on the
/// median ratio (what a user sees); this one is shown beside it.
pub fn best_speedup(report: &CliReport, backend: &str) -> Option<f64> {
    let serial = report.result("serial")?;
    let other = report.result(backend)?;
    speedup(serial.min_s, other.min_s)
}

/// One timed CPython figure (the script also gives the fastest and slowest run).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Timing {
    /// Median of the runs, in seconds.
    pub median_s: f64,
}

/// The output of `bench/cpython_bench.py`.
#[derive(Debug, Clone, Deserialize)]
pub struct Cpython {
    /// `sys.version`, first word.
    pub python: String,
    /// `multiprocessing.get_start_method()`.
    pub start_method: String,
    /// `ProcessPoolExecutor(2)` construction to the first no-op result, `with` block included.
    pub startup_process: Timing,
    /// The same with the "spawn" start method.
    pub startup_process_spawn: Timing,
    /// No-op `submit` then `wait`, per task count, both pools, creation and shutdown included.
    pub submit_noop: Vec<CpythonSubmit>,
    /// `ProcessPoolExecutor(2).map(noop, range(200_000), chunksize=500)`, whole `with` block.
    pub map_noop_200000_chunksize_500: Timing,
    /// One no-op `submit().result()` on a warm process pool.
    pub round_trip_noop_process: Timing,
    /// Two processes ping-ponging 8 bytes over pipes, timed by Python (older scripts: none).
    #[serde(default)]
    pub round_trip_pipe_floor: Option<Timing>,
    /// One 1 MiB `bytes` argument and result on a warm process pool.
    pub round_trip_1mib_process: Timing,
    /// One no-op `submit().result()` on a warm thread pool.
    pub round_trip_noop_thread: Timing,
    /// The seed workload per range.
    pub seed: Vec<CpythonSeed>,
}

/// One task count of [`Cpython::submit_noop`].
#[derive(Debug, Clone, Deserialize)]
pub struct CpythonSubmit {
    /// How many no-op tasks.
    pub tasks: u64,
    /// `ProcessPoolExecutor(2)`.
    pub processes: Timing,
    /// `ThreadPoolExecutor(2)`.
    pub threads: Timing,
}

/// One range of [`Cpython::seed`].
#[derive(Debug, Clone, Deserialize)]
pub struct CpythonSeed {
    /// The first value (each range holds 100).
    pub start: u64,
    /// A list comprehension in the calling process.
    pub serial: Timing,
    /// `ProcessPoolExecutor(2).map`, creation and shutdown included.
    pub processes: Timing,
    /// `ThreadPoolExecutor(2).map` (measured on the first range only).
    pub threads: Option<Timing>,
}

impl Cpython {
    /// The seed figures of the range starting at `start`.
    pub fn seed(&self, start: u64) -> Option<&CpythonSeed> {
        self.seed.iter().find(|s| s.start == start)
    }

    /// The submit figures for `tasks` tasks.
    pub fn submit(&self, tasks: u64) -> Option<&CpythonSubmit> {
        self.submit_noop.iter().find(|s| s.tasks == tasks)
    }
}

/// Criterion's median per benchmark id (`group/function[/parameter]`), in seconds.
#[derive(Debug, Clone, Default)]
pub struct CriterionFigures(pub BTreeMap<String, f64>);

impl CriterionFigures {
    /// Reads every `new/benchmark.json` + `new/estimates.json` pair under `dir` (criterion's
    /// output directory) whose id starts with one of `groups`.
    pub fn read(dir: &Path, groups: &[&str]) -> Result<Self, String> {
        let mut figures = BTreeMap::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(current) = pending.pop() {
            let entries = std::fs::read_dir(&current)
                .map_err(|e| format!("cannot read {}: {e}", current.display()))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if !path.is_dir() {
                    continue;
                }
                if path.file_name().is_some_and(|n| n == "new") {
                    if let Some((id, seconds)) = read_estimate(&path)? {
                        if groups.iter().any(|g| id.starts_with(&format!("{g}/"))) {
                            figures.insert(id, seconds);
                        }
                    }
                } else {
                    pending.push(path);
                }
            }
        }
        Ok(CriterionFigures(figures))
    }

    /// The median time of `id`, in seconds.
    pub fn get(&self, id: &str) -> Option<f64> {
        self.0.get(id).copied()
    }
}

#[derive(Deserialize)]
struct BenchmarkFile {
    full_id: String,
}

#[derive(Deserialize)]
struct EstimatesFile {
    median: Estimate,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

/// The id and median (seconds) of one criterion result directory, if it holds both files.
fn read_estimate(new_dir: &Path) -> Result<Option<(String, f64)>, String> {
    let benchmark = new_dir.join("benchmark.json");
    let estimates = new_dir.join("estimates.json");
    if !benchmark.is_file() || !estimates.is_file() {
        return Ok(None);
    }
    let parse_error = |path: &Path, e: serde_json::Error| format!("{}: {e}", path.display());
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let id: BenchmarkFile =
        serde_json::from_str(&read(&benchmark)?).map_err(|e| parse_error(&benchmark, e))?;
    let median: EstimatesFile =
        serde_json::from_str(&read(&estimates)?).map_err(|e| parse_error(&estimates, e))?;
    Ok(Some((id.full_id, median.median.point_estimate * 1e-9)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criterion_medians_are_read_by_full_id_and_filtered_by_group() {
        let dir = std::env::temp_dir().join(format!("xtask-criterion-{}", std::process::id()));
        let write = |group: &str, function: &str, median_ns: f64| {
            let new = dir.join(group).join(function).join("new");
            std::fs::create_dir_all(&new).unwrap();
            std::fs::write(
                new.join("benchmark.json"),
                format!(r#"{{"full_id":"{group}/{function}","title":"x"}}"#),
            )
            .unwrap();
            std::fs::write(
                new.join("estimates.json"),
                format!(r#"{{"median":{{"point_estimate":{median_ns}}},"mean":{{}}}}"#),
            )
            .unwrap();
        };
        write("noop_round_trip", "threads", 2500.0);
        write("other_group", "threads", 1.0);
        let figures = CriterionFigures::read(&dir, &["noop_round_trip"]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(figures.0.len(), 1);
        let seconds = figures.get("noop_round_trip/threads").unwrap();
        assert!((seconds - 2.5e-6).abs() < 1e-15, "{seconds}");
    }

    #[test]
    fn the_best_speedup_divides_the_fastest_runs() {
        let report: CliReport = serde_json::from_str(
            r#"{"workload":"seed","mode":"map","values":{"start":9900,"end":10000},
                "workers":2,"repeat":3,"machine":{"cpus":2,"os":"linux"},"outputs_agree":true,
                "results":[
                 {"backend":"serial","workers":1,"min_s":0.2,"median_s":0.3,"max_s":0.4,
                  "speedup_vs_serial":1.0,"outputs":[]},
                 {"backend":"threads","workers":2,"min_s":0.1,"median_s":0.2,"max_s":0.3,
                  "speedup_vs_serial":1.5,"outputs":[]}]}"#,
        )
        .unwrap();
        assert_eq!(best_speedup(&report, "threads"), Some(2.0));
        assert_eq!(best_speedup(&report, "rayon"), None);
        assert_eq!(report.values.len(), 100);
    }
}
