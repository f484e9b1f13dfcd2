//! The `primepool` command: the source document's demos and benchmark, and the web page's
//! static server. See `primepool --help`.
//!
//! Exit statuses: 0 success, 1 a failure while running (a task or a backend failed), 2 a usage
//! error (clap's convention), 3 backends disagreed on the outputs, 130 interrupted by Ctrl-C.

mod args;
mod backend;
mod bench;
mod cluster;
mod count;
mod demo;
mod interrupt;
mod plot;
mod report;
mod serve;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use primepool::workload::Workload;

use args::{Backend, Mode, ValueRange, WorkloadArg};
use bench::{BenchConfig, BenchError};
use interrupt::{Interrupt, EXIT_INTERRUPTED};

/// Exit status when a backend or a task failed.
const EXIT_FAILED: u8 = 1;
/// Exit status when backends returned different outputs.
const EXIT_OUTPUTS_DISAGREE: u8 = 3;

/// Python's concurrent.futures for Rust: the source document's demos and benchmark.
#[derive(Debug, Parser)]
#[command(name = "primepool", version, propagate_version = true)]
struct Cli {
    /// More diagnostics on stderr (-v: info, -vv: debug, -vvv: trace); RUST_LOG also works.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compare serial, thread, rayon, process pools and the cluster on a CPU-bound workload.
    Bench(BenchArgs),
    /// Print one workload value.
    Count(CountArgs),
    /// Show tasks running in two worker processes, then the scoped form.
    Demo,
    /// Serve the web page with the headers it needs (COOP/COEP), on 127.0.0.1.
    Serve(ServeArgs),
    /// Run tasks for `ClusterExecutor` clients of this same program, through a NATS JetStream
    /// server; SIGTERM or Ctrl-C: stop pulling, finish the tasks held, exit 0.
    Worker(WorkerArgs),
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// The inputs: START..END (END excluded) or START..=END.
    #[arg(long, value_name = "RANGE", default_value = "9900..10000")]
    values: ValueRange,

    /// The function mapped over the inputs.
    #[arg(long, value_enum, default_value = "seed")]
    workload: WorkloadArg,

    /// How the inputs reach the pool.
    #[arg(long, value_enum, default_value = "map")]
    mode: Mode,

    /// Comma-separated backends (serial, threads, rayon, processes, cluster); serial always
    /// runs first as the baseline.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "LIST",
        default_value = "serial,threads,rayon,processes"
    )]
    backends: Vec<Backend>,

    /// Workers per pool. For the cluster with --connect: wait until this many are connected.
    #[arg(long, value_name = "N", default_value = "4", value_parser = args::parse_workers)]
    workers: usize,

    /// The cluster backend's NATS server (nats://HOST:PORT), with workers already running
    /// (`primepool worker --connect URL`). Without it the cluster backend starts a local
    /// `nats-server -js` and --workers worker processes, and stops them afterwards.
    #[arg(long, value_name = "URL")]
    connect: Option<String>,

    /// With --connect: how long to wait for --workers workers to be connected.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = args::parse_positive)]
    wait_workers: usize,

    /// The nats-server binary the local cluster runs [default: $PRIMEPOOL_NATS_SERVER, else
    /// the first on PATH, in /usr/local/bin or in /usr/sbin].
    #[arg(long, value_name = "PATH")]
    nats_server: Option<PathBuf>,

    /// Timings per backend (the table shows min, median and max); runs are interleaved.
    #[arg(long, value_name = "K", default_value = "3", value_parser = args::parse_positive)]
    repeat: usize,

    /// Inputs per map job (one message each for processes) [default: automatic].
    #[arg(long, value_name = "N", value_parser = args::parse_positive)]
    chunksize: Option<usize>,

    /// Print one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,

    /// Also write the comparison as an SVG chart.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct WorkerArgs {
    /// The NATS server (nats://HOST:PORT) the clients submit to.
    #[arg(long, value_name = "URL")]
    connect: String,

    /// Tasks run at once [default: the host's CPUs].
    #[arg(long, value_name = "N", value_parser = args::parse_workers)]
    slots: Option<usize>,
}

#[derive(Debug, Args)]
struct CountArgs {
    /// The input (0..=4294967295).
    #[arg(value_parser = args::parse_count_input, allow_negative_numbers = true)]
    n: u32,

    /// The function to apply.
    #[arg(long, value_enum, default_value = "seed")]
    workload: WorkloadArg,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The port on 127.0.0.1 (0: any free port; the URL printed says which).
    #[arg(long, default_value = "8000")]
    port: u16,

    /// The folder to serve [default: the repository's www/].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Parses the command line and runs it; returns the process's exit status.
fn main() -> ExitCode {
    // First: in a worker process started by a process pool this runs the worker and exits.
    primepool::run_worker_if_requested();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
        Command::Bench(args) => bench_command(args),
        Command::Count(args) => {
            println!("{}", count::run(args.workload.into(), args.n));
            ExitCode::SUCCESS
        }
        Command::Demo => match demo::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("the demo failed: {e}"), EXIT_FAILED),
        },
        Command::Serve(args) => serve_command(args),
        Command::Worker(args) => worker_command(&args),
    }
}

fn worker_command(args: &WorkerArgs) -> ExitCode {
    let slots = args
        .slots
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    match primepool::cluster::run_worker(&args.connect, slots) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(
            &format!("the worker for {} failed: {e}", args.connect),
            EXIT_FAILED,
        ),
    }
}

/// Where the cluster backend's server is: the one given with `--connect` (after its workers
/// are counted), or a local one started for this run (kept alive by the returned guard).
fn cluster_for_bench(args: &BenchArgs) -> Result<(String, Option<cluster::LocalCluster>), String> {
    let wait = std::time::Duration::from_secs(args.wait_workers as u64);
    match &args.connect {
        Some(url) => {
            cluster::wait_for_workers(url, args.workers, wait)?;
            Ok((url.clone(), None))
        }
        None => {
            let local = cluster::LocalCluster::start(args.nats_server.as_deref(), args.workers)?;
            let url = local.url().to_owned();
            cluster::wait_for_workers(&url, args.workers, wait.max(LOCAL_WORKERS_START))?;
            Ok((url, Some(local)))
        }
    }
}

/// How long locally started workers may take to connect.
const LOCAL_WORKERS_START: std::time::Duration = std::time::Duration::from_secs(60);

/// Logs to stderr at the level `-v` asks for; `RUST_LOG` refines or overrides it.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("RUST_LOG")
        .format_timestamp_millis()
        .init();
}

fn fail(message: &str, status: u8) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(status)
}

fn bench_command(args: BenchArgs) -> ExitCode {
    let backends = BenchConfig::normalise_backends(&args.backends);
    let (cluster_url, _local_cluster) = if backends.contains(&args::Backend::Cluster) {
        match cluster_for_bench(&args) {
            Ok((url, local)) => (Some(url), local),
            Err(e) => return fail(&format!("the cluster backend: {e}"), EXIT_FAILED),
        }
    } else {
        (None, None)
    };
    let config = BenchConfig {
        workload: Workload::from(args.workload),
        mode: args.mode,
        values: args.values,
        backends,
        workers: args.workers,
        repeat: args.repeat,
        chunksize: args.chunksize,
        cluster_url,
    };
    let interrupt = match Interrupt::install() {
        Ok(interrupt) => interrupt,
        Err(e) => return fail(&e, EXIT_FAILED),
    };
    let progress = progress_bar(config.total_tasks());
    interrupt.watch_progress(&progress);
    let outcome = bench::run(&config, &progress, &interrupt);
    progress.finish_and_clear();
    let measured = match outcome {
        Ok(measured) => measured,
        Err(BenchError::Interrupted) => {
            eprintln!("interrupted");
            return ExitCode::from(EXIT_INTERRUPTED);
        }
        Err(BenchError::Failed { backend, error }) => {
            return fail(
                &format!("the {backend} backend failed: {error}"),
                EXIT_FAILED,
            )
        }
    };
    let mismatches = bench::check_outputs(&config.values, &measured);
    let report = report::build(&config, &measured, &mismatches);
    let mut stdout = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_string_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|json| writeln!(stdout, "{json}"))
    } else {
        write!(stdout, "{}", report::render_text(&report, &mismatches))
    };
    if let Err(e) = written.and_then(|()| stdout.flush()) {
        return fail(&format!("cannot write the report: {e}"), EXIT_FAILED);
    }
    if let Some(path) = &args.plot {
        if let Err(e) = plot::write_svg(&report, path) {
            return fail(&e, EXIT_FAILED);
        }
        log::info!("wrote the chart to {}", path.display());
    }
    if mismatches.is_empty() {
        ExitCode::SUCCESS
    } else {
        for mismatch in &mismatches {
            eprintln!(
                "error: outputs disagree: {}",
                report::describe_mismatch(mismatch)
            );
        }
        ExitCode::from(EXIT_OUTPUTS_DISAGREE)
    }
}

/// A progress bar with an ETA on stderr; indicatif draws nothing when stderr is not a
/// terminal, so scripts and logs stay clean.
fn progress_bar(total: u64) -> ProgressBar {
    let progress = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg:>10} [{bar:32.cyan/blue}] {pos}/{len} tasks, {elapsed} elapsed, ETA {eta}",
    )
    .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        progress.set_style(style);
    }
    progress
}

fn serve_command(args: ServeArgs) -> ExitCode {
    let dir = args.dir.unwrap_or_else(serve::default_dir);
    let server = match serve::StaticServer::bind(args.port, &dir) {
        Ok(server) => server,
        Err(e) => return fail(&e, EXIT_FAILED),
    };
    let stop = server.stopper();
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&interrupted);
    if let Err(e) = ctrlc::set_handler(move || {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        stop();
    }) {
        return fail(
            &format!("cannot install the Ctrl-C handler: {e}"),
            EXIT_FAILED,
        );
    }
    println!("{}", server.url());
    let _ = std::io::stdout().flush();
    eprintln!("serving {} (Ctrl-C to stop)", dir.display());
    server.serve();
    if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        ExitCode::from(EXIT_INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    }
}
