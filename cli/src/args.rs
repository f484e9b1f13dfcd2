//! The argument types of the command line and their parsers.
//!
//! Every parser returns a message that names the problem, so clap can print one line and exit
//! with status 2 instead of the program panicking or running something absurd.

use std::fmt;
use std::str::FromStr;

use clap::ValueEnum;
use primepool::workload::Workload;

/// The most values one benchmark run may cover: each input holds a future until its result is
/// read, so an unbounded range would exhaust memory instead of failing with a message.
pub const MAX_VALUES: u64 = 1_000_000;

/// A range of workload inputs, `A..B` (end exclusive, like Rust ranges) or `A..=B`.
///
/// Stored half-open with a 64-bit end, so `A..=4294967295` is representable and the JSON's
/// `"end"` is always exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueRange {
    /// The first value.
    pub start: u32,
    /// One past the last value.
    pub end: u64,
}

impl ValueRange {
    /// How many values the range holds (at least 1, at most [`MAX_VALUES`]).
    pub fn len(&self) -> usize {
        // The parser caps the length at MAX_VALUES, which fits in usize.
        (self.end - u64::from(self.start)) as usize
    }

    /// The values, in order.
    pub fn values(&self) -> impl Iterator<Item = u32> {
        // `end - 1` is the last value, which the parser checked fits in u32.
        self.start..=(self.end - 1) as u32
    }
}

impl fmt::Display for ValueRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

impl FromStr for ValueRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (start_text, end_text, inclusive) = if let Some((a, b)) = text.split_once("..=") {
            (a, b, true)
        } else if let Some((a, b)) = text.split_once("..") {
            (a, b, false)
        } else {
            return Err(format!(
                "'{text}' is not a range: write START..END (end excluded) or START..=END"
            ));
        };
        let start = parse_u32(start_text.trim(), "range start")?;
        let last_or_end = parse_u32(end_text.trim(), "range end")?;
        let end = u64::from(last_or_end) + u64::from(inclusive);
        if end <= u64::from(start) {
            return Err(format!(
                "the range {text} is empty: its end must be greater than its start"
            ));
        }
        let len = end - u64::from(start);
        if len > MAX_VALUES {
            return Err(format!(
                "the range {text} holds {len} values; one run takes at most {MAX_VALUES}"
            ));
        }
        Ok(ValueRange { start, end })
    }
}

/// Parses a workload input: a non-negative integer that fits in 32 bits.
pub fn parse_u32(text: &str, what: &str) -> Result<u32, String> {
    if text.is_empty() {
        return Err(format!("the {what} is missing"));
    }
    if text.starts_with('-') && text[1..].chars().all(|c| c.is_ascii_digit()) && text.len() > 1 {
        return Err(format!(
            "the {what} {text} is negative; inputs are 0..=4294967295"
        ));
    }
    if !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("the {what} '{text}' is not a whole number"));
    }
    text.parse::<u32>()
        .map_err(|_| format!("the {what} {text} is too large; inputs are 0..=4294967295"))
}

/// Parses the argument of `count`.
pub fn parse_count_input(text: &str) -> Result<u32, String> {
    parse_u32(text, "input")
}

/// Parses a count that must be at least 1 (workers, repeats, chunk size).
pub fn parse_positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) if text.starts_with('-') => Err(format!("{text} is negative; must be at least 1")),
        Err(_) if text.chars().all(|c| c.is_ascii_digit()) && !text.is_empty() => {
            Err(format!("{text} is too large"))
        }
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

/// Parses a worker count: at least 1, and at most 1024 (more would only start idle threads or
/// processes by the thousand).
pub fn parse_workers(text: &str) -> Result<usize, String> {
    let n = parse_positive(text)?;
    if n > 1024 {
        return Err(format!("{n} workers is too many; at most 1024"));
    }
    Ok(n)
}

/// The backends the benchmark can compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum)]
pub enum Backend {
    /// Every task inline in the calling thread (the baseline).
    Serial,
    /// `ThreadPoolExecutor`: OS threads.
    Threads,
    /// `RayonExecutor`: a rayon work-stealing pool.
    Rayon,
    /// `ProcessPoolExecutor`: worker processes.
    Processes,
    /// `ClusterExecutor`: workers connected through a NATS JetStream server (`--connect`, or
    /// a local server and `--workers` worker processes started for the run).
    Cluster,
}

impl Backend {
    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Serial => "serial",
            Backend::Threads => "threads",
            Backend::Rayon => "rayon",
            Backend::Processes => "processes",
            Backend::Cluster => "cluster",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The workload, as a command-line choice (core's [`Workload`] has no clap dependency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadArg {
    /// The source document's `count_prime`, quirk included.
    Seed,
    /// The correct prime counter, pi(n).
    Primes,
    /// Returns its input: measures the executor's own overhead.
    Noop,
}

impl From<WorkloadArg> for Workload {
    fn from(arg: WorkloadArg) -> Self {
        match arg {
            WorkloadArg::Seed => Workload::Seed,
            WorkloadArg::Primes => Workload::Primes,
            WorkloadArg::Noop => Workload::Noop,
        }
    }
}

/// How the benchmark hands the values to a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One `map` call over all values (chunked: the document's form).
    Map,
    /// One `submit` per value, then wait for every future.
    Submit,
}

impl Mode {
    /// The name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Map => "map",
            Mode::Submit => "submit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_open_and_inclusive_ranges_parse_to_the_same_values() {
        let a: ValueRange = "9900..10000".parse().unwrap();
        let b: ValueRange = "9900..=9999".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 100);
        assert_eq!(a.values().next(), Some(9900));
        assert_eq!(a.values().last(), Some(9999));
    }

    #[test]
    fn an_inclusive_range_may_end_at_the_largest_u32() {
        let r: ValueRange = "4294967290..=4294967295".parse().unwrap();
        assert_eq!(r.end, 4_294_967_296);
        assert_eq!(r.values().count(), 6);
        assert_eq!(r.to_string(), "4294967290..4294967296");
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        let err = |s: &str| s.parse::<ValueRange>().unwrap_err();
        assert!(err("10..5").contains("empty"));
        assert!(err("5..5").contains("empty"));
        assert!(err("5..=4").contains("empty"));
        assert!(err("a..5").contains("not a whole number"));
        assert!(err("-3..5").contains("negative"));
        assert!(err("0..4294967296").contains("too large"));
        assert!(err("100").contains("not a range"));
        assert!(err("..5").contains("missing"));
        assert!(err("0..2000000").contains("at most"));
    }

    #[test]
    fn counts_must_be_positive_whole_numbers() {
        assert_eq!(parse_positive("3"), Ok(3));
        assert!(parse_positive("0").unwrap_err().contains("at least 1"));
        assert!(parse_positive("-1").unwrap_err().contains("negative"));
        assert!(parse_positive("x")
            .unwrap_err()
            .contains("not a whole number"));
        assert!(parse_positive("99999999999999999999999")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_workers("5000").unwrap_err().contains("at most 1024"));
    }

    #[test]
    fn count_inputs_reject_negatives_and_overflow() {
        assert_eq!(parse_count_input("9999"), Ok(9999));
        assert!(parse_count_input("-5").unwrap_err().contains("negative"));
        assert!(parse_count_input("4294967296")
            .unwrap_err()
            .contains("too large"));
    }
}
