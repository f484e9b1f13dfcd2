//! `cargo xtask bench-report`: runs, in one go, the primepool benchmarks (`primepool bench
//! --json` and the criterion `suite`) and the same measurements of CPython's
//! `concurrent.futures` (`bench/cpython_bench.py`), the web page's benchmark in headless
//! Chromium (`bench_report/browser.rs`), and the cluster figures beside Dask's
//! (`bench_report/cluster.rs`), then writes `docs/benchmarks.md` and its chart, so the published figures are always a real run that anyone can repeat.

mod browser;
mod cluster;
mod data;
mod quiet;
mod render;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{cargo, root, run, target_dir};
use browser::Browser;
use data::{CliReport, Cpython, CriterionFigures};

/// The pool size of every parallel figure: the targets are for 2 workers.
const WORKERS: &str = "2";

/// The seed ranges of "how cost grows with the work", with their repetitions: enough
/// interleaved rounds that the fastest of each backend is a steady figure on a shared machine
/// whose speed drifts by a few per cent from minute to minute (about 4, 8 and 10 s of work).
const SEED_RANGES: [(&str, usize); 3] = [
    ("9900..10000", 15),
    ("19900..20000", 11),
    ("39900..40000", 5),
];

/// The task counts of "how cost grows with the number of tasks" (submit mode).
const SUBMIT_COUNTS: [(u64, usize); 4] = [(100, 9), (1_000, 7), (10_000, 5), (20_000, 5)];

/// The criterion groups of `native/benches/suite.rs` this report reads.
const SUITE_GROUPS: [&str; 8] = [
    "startup_to_first_result",
    "noop_round_trip",
    "floor_round_trip",
    "noop_submit_1000",
    "noop_map_10000",
    "seed_9900_9999",
    "payload_1mib_round_trip",
    "noop_map_200000_with_pool",
];

const USAGE: &str = "usage: cargo xtask bench-report [--quick]
  --quick   fewer repetitions and no slow CPython ranges (a trial run; do not commit it)";

/// Where the machine stood when the report was made.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// Logical CPUs available.
    pub cpus: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// Operating system and kernel.
    pub os: String,
    /// When the run started (UTC).
    pub date: String,
    /// `rustc -V`.
    pub rustc: String,
    /// The 1, 5 and 15 minute load averages before the run.
    pub load_before: String,
    /// The same after it.
    pub load_after: String,
}

/// How busy the machine was around one measurement step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepLoad {
    /// The step, as a command line.
    pub step: String,
    /// Other processes' share of all CPUs (0 to 1) while the step ran.
    pub others: f64,
}

/// The longest the report waits for a quiet moment before a step.
const QUIET_WAIT: Duration = Duration::from_secs(60);

/// Other processes' share of the CPUs above which a step counts as disturbed.
const DISTURBED: f64 = 0.10;

/// Runs `step` after waiting (a while at most) for the machine to be quiet, and records how
/// much CPU other processes used while it ran. A step disturbed by them is run again, up to
/// `attempts` times in all, and the least disturbed attempt is kept.
fn measured<T>(
    loads: &mut Vec<StepLoad>,
    label: &str,
    attempts: usize,
    mut step: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let mut kept: Option<(T, Option<f64>)> = None;
    for attempt in 1..=attempts.max(1) {
        if let Some(share) = quiet::wait_for_quiet(QUIET_WAIT) {
            if share >= DISTURBED {
                eprintln!(
                    "xtask: the machine is still busy ({:.0}% used by others); measuring anyway",
                    share * 100.0
                );
            }
        }
        let before = quiet::Ticks::now();
        let value = step()?;
        let others = before
            .zip(quiet::Ticks::now())
            .map(|(before, after)| before.others_share(after));
        let better = match (&kept, others) {
            (None, _) => true,
            (Some((_, Some(best))), Some(now)) => now < *best,
            _ => false,
        };
        if better {
            kept = Some((value, others));
        }
        match others {
            Some(share) if share >= DISTURBED && attempt < attempts => eprintln!(
                "xtask: other processes took {:.0}% of the CPUs during that step; again",
                share * 100.0
            ),
            _ => break,
        }
    }
    let (value, others) = kept.expect("at least one attempt ran");
    if let Some(others) = others {
        loads.push(StepLoad {
            step: label.to_owned(),
            others,
        });
    }
    Ok(value)
}

/// Every figure of one report.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Where and when.
    pub machine: Machine,
    /// The seed workload, one report per range of [`SEED_RANGES`].
    pub seed: Vec<CliReport>,
    /// No-op `submit` runs, one per count of [`SUBMIT_COUNTS`].
    pub submit: Vec<CliReport>,
    /// One no-op `map` of 200,000 items in the automatic chunks.
    pub map_noop: CliReport,
    /// One no-op `submit` per pool: a pool's whole life to its first result.
    pub startup: CliReport,
    /// The criterion suite's medians.
    pub criterion: CriterionFigures,
    /// CPython's figures, or why there are none.
    pub cpython: Result<Cpython, String>,
    /// The page's benchmark in headless Chromium, or why there is none.
    pub browser: Result<Browser, String>,
    /// How busy the machine was during each step.
    pub loads: Vec<StepLoad>,
    /// True for a `--quick` trial run.
    pub quick: bool,
}

/// Entry point with the arguments after `bench-report`.
pub fn main(args: &[String]) -> Result<(), String> {
    let quick = match args {
        [] => false,
        [flag] if flag == "--quick" => true,
        _ => return Err(format!("unexpected arguments {args:?}\n{USAGE}")),
    };
    let root = root();
    let docs = root.join("docs");
    std::fs::create_dir_all(&docs).map_err(|e| format!("cannot create {}: {e}", docs.display()))?;
    let mut machine = Machine::now();
    eprintln!(
        "xtask: bench-report on {} CPUs, load average {} (quieter is better)",
        machine.cpus, machine.load_before
    );
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "primepool-cli",
        "--bin",
        "primepool",
    ]))?;
    run(cargo().args(["bench", "-p", "primepool", "--bench", "suite", "--no-run"]))?;
    // The page, both wasm variants: without it (no nightly, no Chromium) the report says why.
    let page = browser::build();
    let binary = target_dir().join("release").join("primepool");
    let reps = |k: usize| if quick { k.div_ceil(3) } else { k };

    let mut loads = Vec::new();
    let mut cli = |args: &[&str], repeat: usize, plot: Option<&Path>| {
        let label = format!("primepool bench {}", args.join(" "));
        measured(&mut loads, &label, 3, || {
            cli_bench(&binary, args, reps(repeat), plot)
        })
    };
    let mut seed = Vec::new();
    for (range, repeat) in SEED_RANGES {
        let plot = (range == SEED_RANGES[0].0).then(|| docs.join("benchmarks.svg"));
        let args = ["--workload", "seed", "--mode", "map", "--values", range];
        seed.push(cli(&args, repeat, plot.as_deref())?);
    }
    let startup = cli(
        &["--workload", "noop", "--mode", "submit", "--values", "0..1"],
        15,
        None,
    )?;
    let mut submit = Vec::new();
    for (tasks, repeat) in SUBMIT_COUNTS {
        let range = format!("0..{tasks}");
        let args = ["--workload", "noop", "--mode", "submit", "--values", &range];
        submit.push(cli(&args, repeat, None)?);
    }
    let map_noop = cli(
        &[
            "--workload",
            "noop",
            "--mode",
            "map",
            "--values",
            "0..200000",
        ],
        5,
        None,
    )?;

    let criterion = measured(&mut loads, "cargo bench --bench suite", 1, || {
        run_suite(quick)
    })?;
    let cpython = measured(&mut loads, "python3 bench/cpython_bench.py", 1, || {
        Ok(run_cpython(&root, quick))
    })?;
    if let Err(why) = &cpython {
        eprintln!("xtask: CPython figures skipped: {why}");
    }
    let browser = match page {
        Ok(()) => measured(&mut loads, "node tests-e2e/figures.mjs", 1, || {
            Ok(browser::measure(&target_dir().join("bench-report"), quick))
        })?,
        Err(why) => Err(format!("the page could not be built: {why}")),
    };
    if let Err(why) = &browser {
        eprintln!("xtask: browser figures skipped: {why}");
    }
    let cluster = measured(&mut loads, "cluster: ClusterExecutor and Dask", 1, || {
        Ok(cluster::measure(&root, &target_dir(), quick))
    })?;
    machine.load_after = load_average();

    let figures = Figures {
        machine,
        seed,
        submit,
        map_noop,
        startup,
        criterion,
        cpython,
        browser,
        loads,
        quick,
    };
    let mut markdown = render::markdown(&figures);
    markdown.push_str(&cluster::markdown(&cluster));
    let out = docs.join("benchmarks.md");
    std::fs::write(&out, markdown).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    eprintln!("xtask: wrote {} and docs/benchmarks.svg", out.display());
    for target in render::targets(&figures)
        .into_iter()
        .chain(cluster::targets(&cluster))
    {
        eprintln!(
            "  {:<4} {}: {}",
            target.verdict(),
            target.name,
            target.measured
        );
    }
    Ok(())
}

/// Runs `primepool bench --json` on every backend with 2 workers, and reads its report.
/// stderr is captured, so no progress bar (and no progress callback) costs the timing.
fn cli_bench(
    binary: &Path,
    args: &[&str],
    repeat: usize,
    plot: Option<&Path>,
) -> Result<CliReport, String> {
    let mut cmd = Command::new(binary);
    cmd.args(["bench", "--json", "--workers", WORKERS])
        .args(["--backends", "serial,threads,rayon,processes"])
        .args(["--repeat", &repeat.to_string()])
        .args(args);
    if let Some(path) = plot {
        cmd.arg("--plot").arg(path);
    }
    eprintln!("$ primepool bench {} --repeat {repeat}", args.join(" "));
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(format!(
            "primepool bench {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let report: CliReport = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("primepool bench printed unreadable JSON: {e}"))?;
    if !report.outputs_agree {
        return Err(format!(
            "primepool bench {}: the backends returned different outputs",
            args.join(" ")
        ));
    }
    Ok(report)
}

/// Runs the criterion suite from scratch and reads its medians.
fn run_suite(quick: bool) -> Result<CriterionFigures, String> {
    let out = target_dir().join("criterion");
    for group in SUITE_GROUPS {
        // Stale results of an earlier run must not stand in for a benchmark that failed.
        let _ = std::fs::remove_dir_all(out.join(group));
    }
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "primepool", "--bench", "suite", "--"]);
    if quick {
        cmd.args(["--warm-up-time", "0.1", "--measurement-time", "0.3"]);
    }
    run(&mut cmd)?;
    let figures = CriterionFigures::read(&out, &SUITE_GROUPS)?;
    if figures.0.is_empty() {
        return Err(format!("the suite left no estimates in {}", out.display()));
    }
    Ok(figures)
}

/// Runs the CPython script with `python3`; an error says why there are no CPython figures.
fn run_cpython(root: &Path, quick: bool) -> Result<Cpython, String> {
    let script = root.join("bench").join("cpython_bench.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if quick {
        cmd.args(["--quick", "--skip-large"]);
    }
    eprintln!("$ python3 {}", script.display());
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("python3 is not installed".to_owned())
        }
        Err(e) => return Err(format!("cannot run python3: {e}")),
    };
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{} printed unreadable JSON: {e}", script.display()))
}

impl Machine {
    /// The machine as it is now (the load is read again at the end).
    fn now() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let distro = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|s| s.trim_matches('"').to_owned());
        let kernel = command_line("uname", &["-sr"]);
        let os = match (distro, kernel) {
            (Some(d), Some(k)) => format!("{d} ({k})"),
            (Some(d), None) => d,
            (None, Some(k)) => k,
            (None, None) => std::env::consts::OS.to_owned(),
        };
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            os,
            date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
                .unwrap_or_else(|| "unknown date".to_owned()),
            rustc: command_line("rustc", &["-V"]).unwrap_or_else(|| "rustc".to_owned()),
            load_before: load_average(),
            load_after: String::new(),
        }
    }
}

/// The first line a command prints, if it runs.
fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = crate::util::output(Command::new(program).args(args))?;
    out.lines()
        .next()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|| "unknown".to_owned())
}
