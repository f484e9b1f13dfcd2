//! What a visitor asked for, checked before any work starts.
//!
//! The page sends whatever is in its input boxes; everything is validated here, in Rust, so the
//! same rules hold for the page and for any other caller of the JS API, and bad input becomes a
//! sentence a person can act on instead of a frozen tab.

use std::fmt;

use primepool_core::workload::Workload;
use serde::{Deserialize, Serialize};

/// The most values one run may have: beyond this, results and the timeline get unwieldy.
pub const MAX_VALUES: u64 = 50_000;
/// The most workers (Web Workers or rayon threads) a run may ask for.
pub const MAX_WORKERS: u32 = 64;
/// The most timed repetitions per backend.
pub const MAX_REPEAT: u32 = 10;
/// The longest serial run accepted, estimated, in seconds: the serial backend shares the page's
/// thread with the UI, and a visitor should not wait minutes.
pub const MAX_SERIAL_SECONDS: f64 = 60.0;
/// The longest single task accepted, estimated, in seconds: Stop must be able to end a serial
/// run between two tasks, well within a second.
pub const MAX_TASK_SECONDS: f64 = 0.5;
/// The longest a Web Worker message's chunk should compute, estimated, in seconds: a worker
/// ended while it computes is only stopped by Chromium two seconds later, but one that is
/// between messages stops at once, so short chunks make Stop prompt.
pub const MAX_CHUNK_SECONDS: f64 = 0.1;
/// Trial divisions per second that the estimates assume (measured: wasm in Chromium does
/// about 5.5e8 on the seed workload; a slower machine only takes longer than estimated).
const DIVISIONS_PER_SECOND: f64 = 5.0e8;

/// A backend the page can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// [`primepool_core::SerialExecutor`] on the page's thread: the baseline.
    Serial,
    /// [`crate::WorkerPoolExecutor`]: Web Workers, the browser's process pool.
    Workers,
    /// The rayon thread pool (wasm-bindgen-rayon): needs a cross-origin isolated page.
    Rayon,
}

impl Backend {
    /// Every backend, in display order.
    pub const ALL: [Backend; 3] = [Backend::Serial, Backend::Workers, Backend::Rayon];

    /// The name used in options and reports (the CLI's names).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Serial => "serial",
            Backend::Workers => "workers",
            Backend::Rayon => "rayon",
        }
    }

    /// Parses a backend name.
    pub fn parse(name: &str) -> Result<Backend, OptionsError> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| {
                OptionsError(format!(
                    "Unknown backend \"{name}\" (choose serial, workers or rayon)."
                ))
            })
    }
}

/// The options as they arrive from JavaScript: numbers may be missing, fractional or negative.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RawOptions {
    /// First value (inclusive).
    pub start: Option<f64>,
    /// End of the range (exclusive), as in `start..end`.
    pub end: Option<f64>,
    /// `seed`, `primes` or `noop`; default `seed`.
    pub workload: Option<String>,
    /// Workers for the pools; default 2.
    pub workers: Option<f64>,
    /// Timed runs per backend; default 3.
    pub repeat: Option<f64>,
    /// Backends to run; default all three.
    pub backends: Option<Vec<String>>,
    /// Values per message for the Web Worker pool; default balanced (about four per worker).
    pub chunksize: Option<f64>,
}

/// Checked options: what a run will actually do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// First value.
    pub start: u32,
    /// One past the last value (`u64` so that the range can end at `u32::MAX`).
    pub end: u64,
    /// The function mapped over the values.
    pub workload: Workload,
    /// Workers for the pools.
    pub workers: u32,
    /// Timed warm runs per backend (after one cold run).
    pub repeat: u32,
    /// Backends to run, in order.
    pub backends: Vec<Backend>,
    /// Values per Web Worker message; `None`: balanced.
    pub chunksize: Option<u32>,
    /// Estimated serial seconds for one run.
    pub estimated_serial_s: f64,
}

impl Plan {
    /// The values, as the `(workload, value)` inputs of [`crate::task::measured`].
    pub fn inputs(&self) -> impl Iterator<Item = (Workload, u32)> + '_ {
        (u64::from(self.start)..self.end).map(|v| (self.workload, v as u32))
    }

    /// How many values.
    pub fn len(&self) -> usize {
        (self.end - u64::from(self.start)) as usize
    }

    /// Values per Web Worker message: the chunk size asked for, else about four chunks per
    /// worker (few messages: start-up and messaging decide this backend's speed), but no chunk
    /// longer than [`MAX_CHUNK_SECONDS`] (so Stop is prompt).
    pub fn pool_chunksize(&self) -> usize {
        if let Some(c) = self.chunksize {
            return c as usize;
        }
        let balanced =
            primepool_core::backend::balanced_chunksize(self.len(), self.workers as usize);
        let per_value = divisions(self.workload, self.end - 1) / DIVISIONS_PER_SECOND;
        let cap = (MAX_CHUNK_SECONDS / per_value).floor().max(1.0);
        balanced.min(cap as usize)
    }

    /// True if there are no values (never, once validated).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why options were refused: one sentence for the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsError(pub String);

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OptionsError {}

fn refuse<T>(message: impl Into<String>) -> Result<T, OptionsError> {
    Err(OptionsError(message.into()))
}

fn whole(name: &str, value: f64, min: f64, max: f64) -> Result<u64, OptionsError> {
    if !value.is_finite() || value.fract() != 0.0 {
        return refuse(format!("{name} must be a whole number (got {value})."));
    }
    if value < min {
        return refuse(if min == 0.0 {
            format!("{name} cannot be negative (got {value}).")
        } else {
            format!("{name} must be at least {min} (got {value}).")
        });
    }
    if value > max {
        return refuse(format!("{name} must be at most {max} (got {value})."));
    }
    Ok(value as u64)
}

/// Estimated trial divisions of one call of `workload` on `n`.
pub fn divisions(workload: Workload, n: u64) -> f64 {
    let n = n as f64;
    match workload {
        // Every i in 2..=n tests every d in 2..=isqrt(i): about (2/3) n^1.5 - n.
        Workload::Seed => (2.0 / 3.0 * n.powf(1.5) - n).max(1.0),
        // Only primes test all the way to the square root; there are about n / ln n of them.
        Workload::Primes => 2.0 / 3.0 * n.powf(1.5) / n.ln().max(1.0),
        Workload::Noop => 1.0,
    }
}

/// Checks `raw` and returns what the run will do, or the sentence explaining what to fix.
pub fn validate(raw: &RawOptions) -> Result<Plan, OptionsError> {
    let (Some(start), Some(end)) = (raw.start, raw.end) else {
        return refuse("Enter a start and an end value.");
    };
    let start = whole("Start", start, 0.0, f64::from(u32::MAX))?;
    let end = whole("End", end, 0.0, f64::from(u32::MAX) + 1.0)?;
    if end < start {
        return refuse(format!(
            "The range is reversed: end ({end}) is below start ({start}). The range is start..end, end excluded."
        ));
    }
    if end == start {
        return refuse(format!(
            "The range {start}..{end} is empty: end is excluded, so make it larger than start."
        ));
    }
    let count = end - start;
    if count > MAX_VALUES {
        return refuse(format!(
            "{count} values is too many for one run (at most {MAX_VALUES}); narrow the range."
        ));
    }
    let workload = match raw.workload.as_deref() {
        None | Some("") => Workload::Seed,
        Some(name) => name
            .parse::<Workload>()
            .map_err(|e| OptionsError(format!("{e}.")))?,
    };
    let workers = whole(
        "Workers",
        raw.workers.unwrap_or(2.0),
        1.0,
        f64::from(MAX_WORKERS),
    )? as u32;
    let repeat = whole(
        "Repeat",
        raw.repeat.unwrap_or(3.0),
        1.0,
        f64::from(MAX_REPEAT),
    )? as u32;
    let chunksize = raw
        .chunksize
        .map(|c| whole("Chunk size", c, 1.0, MAX_VALUES as f64).map(|c| c as u32))
        .transpose()?;
    let backends = match &raw.backends {
        None => Backend::ALL.to_vec(),
        Some(names) => {
            let mut backends = Vec::new();
            for name in names {
                let b = Backend::parse(name)?;
                if !backends.contains(&b) {
                    backends.push(b);
                }
            }
            backends
        }
    };
    if backends.is_empty() {
        return refuse("Choose at least one backend.");
    }
    let largest_task = divisions(workload, end - 1) / DIVISIONS_PER_SECOND;
    if largest_task > MAX_TASK_SECONDS {
        return refuse(format!(
            "Values up to {} are too large for {workload}: one task would take about {largest_task:.1} s (at most {MAX_TASK_SECONDS} s each); lower the end.",
            end - 1
        ));
    }
    let estimated_serial_s = estimate(workload, start, end);
    if estimated_serial_s > MAX_SERIAL_SECONDS {
        return refuse(format!(
            "That is about {estimated_serial_s:.0} s of work per serial run (at most {MAX_SERIAL_SECONDS:.0} s); narrow the range."
        ));
    }
    Ok(Plan {
        start: start as u32,
        end,
        workload,
        workers,
        repeat,
        backends,
        chunksize,
        estimated_serial_s,
    })
}

fn estimate(workload: Workload, start: u64, end: u64) -> f64 {
    (start..end).map(|n| divisions(workload, n)).sum::<f64>() / DIVISIONS_PER_SECOND
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: f64, end: f64) -> RawOptions {
        RawOptions {
            start: Some(start),
            end: Some(end),
            ..RawOptions::default()
        }
    }

    fn refused(raw: RawOptions) -> String {
        validate(&raw).unwrap_err().0
    }

    #[test]
    fn the_source_documents_range_is_accepted_with_defaults() {
        let plan = validate(&range(9900.0, 10_000.0)).unwrap();
        assert_eq!((plan.start, plan.end, plan.len()), (9900, 10_000, 100));
        assert_eq!(plan.workload, Workload::Seed);
        assert_eq!((plan.workers, plan.repeat), (2, 3));
        assert_eq!(plan.backends, Backend::ALL);
        assert_eq!(plan.inputs().last(), Some((Workload::Seed, 9999)));
        assert!(plan.estimated_serial_s > 0.05 && plan.estimated_serial_s < 0.5);
    }

    #[test]
    fn bad_ranges_get_a_sentence_naming_the_problem() {
        assert!(refused(RawOptions::default()).contains("Enter a start"));
        assert!(refused(range(-5.0, 10.0)).contains("cannot be negative"));
        assert!(refused(range(10.0, 5.0)).contains("reversed"));
        assert!(refused(range(7.0, 7.0)).contains("empty"));
        assert!(refused(range(1.5, 7.0)).contains("whole number"));
        assert!(refused(range(f64::NAN, 7.0)).contains("whole number"));
        assert!(refused(range(0.0, 1e12)).contains("at most"));
    }

    #[test]
    fn absurdly_large_work_is_refused_before_it_starts() {
        assert!(refused(range(0.0, 1_000_000.0)).contains("too many"));
        assert!(refused(range(4_000_000.0, 4_000_001.0)).contains("too large"));
        assert!(refused(range(100_000.0, 120_000.0)).contains("of work per serial run"));
        let noop = RawOptions {
            workload: Some("noop".into()),
            ..range(4_000_000_000.0, 4_000_040_000.0)
        };
        assert!(validate(&noop).is_ok(), "noop costs nothing per value");
    }

    #[test]
    fn worker_counts_backends_and_workloads_are_checked() {
        let mut raw = range(1.0, 10.0);
        raw.workers = Some(0.0);
        assert!(refused(raw.clone()).contains("Workers must be at least 1"));
        raw.workers = Some(4.0);
        raw.backends = Some(vec![]);
        assert!(refused(raw.clone()).contains("at least one backend"));
        raw.backends = Some(vec!["gpu".into()]);
        assert!(refused(raw.clone()).contains("Unknown backend"));
        raw.backends = Some(vec!["workers".into(), "serial".into(), "workers".into()]);
        raw.workload = Some("fast".into());
        assert!(refused(raw.clone()).contains("unknown workload"));
        raw.workload = Some("primes".into());
        let plan = validate(&raw).unwrap();
        assert_eq!(plan.backends, [Backend::Workers, Backend::Serial]);
        assert_eq!((plan.workers, plan.workload), (4, Workload::Primes));
    }

    #[test]
    fn chunks_are_balanced_for_short_runs_and_capped_for_long_ones() {
        let short = validate(&range(9900.0, 10_000.0)).unwrap();
        assert_eq!(short.pool_chunksize(), 13, "about four chunks per worker");
        let long = validate(&range(9000.0, 20_000.0)).unwrap();
        let chunk = long.pool_chunksize();
        assert!((10..=60).contains(&chunk), "{chunk}");
        let asked = RawOptions {
            chunksize: Some(500.0),
            ..range(9000.0, 20_000.0)
        };
        assert_eq!(validate(&asked).unwrap().pool_chunksize(), 500);
    }

    #[test]
    fn the_cost_model_tracks_the_seed_functions_real_division_count() {
        let n: u64 = 10_000;
        let exact: u64 = (2..=n).map(|i| (i as f64).sqrt() as u64 - 1).sum();
        let model = divisions(Workload::Seed, n);
        assert!(
            (model / exact as f64 - 1.0).abs() < 0.01,
            "{model} vs {exact}"
        );
    }
}
