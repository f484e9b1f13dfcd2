//! The benchmark suite of issue 7: every backend on the same figures, with rayon's own
//! primitives measured in the same run as the reference.
//!
//! Per backend (serial, threads, rayon, processes), 2 workers:
//!
//! - `startup_to_first_result/<backend>`: constructor to the first no-op result (shutdown is
//!   not timed: `bench --values 0..1` times the whole life of a pool);
//! - `noop_round_trip/<backend>`: one `submit` then `result` on a warm pool: the latency a lone
//!   task pays;
//! - `noop_submit_1000/<backend>`: 1,000 no-op `submit`s, then every result: the per-task cost
//!   with many tasks in flight (criterion reports elements per second);
//! - `noop_map_10000/<backend>/chunksize_1` and `/auto`: one `map` of 10,000 no-ops on a warm
//!   pool, one task per job and in the automatic chunks;
//! - `seed_9900_9999/<backend>`: the source document's timing: pool creation, the whole map of
//!   the seed workload and shutdown;
//! - `payload_1mib_round_trip/<backend>`: 1 MiB of bytes (`serde_bytes::ByteBuf`, the
//!   counterpart of Python's `bytes`) to a worker and back; `processes_vec_u8` sends a plain
//!   `Vec<u8>`, which serde encodes one element at a time;
//! - `noop_map_200000_with_pool/processes/*`: a whole process pool's life (creation, 200,000
//!   no-ops, shutdown), as `map` in the automatic chunks and, for comparison, as one
//!   `submit` per chunk carrying a `Vec` of inputs, by hand: the same messages and one future
//!   per chunk either way, so the difference is what `map` itself adds.
//!
//! - `floor_round_trip/*`: what the machine itself charges for a round trip, measured in the
//!   same run so that every latency figure stands beside its floor: two processes of this
//!   binary ping-ponging 8 bytes over a pair of pipes (`pipe/*`) and over a Unix socket pair
//!   (`socketpair/*`, the process pool's channel), `unpinned` (the scheduler places both) and
//!   `pinned` to different CPUs (`sched_setaffinity`); over pipes whose readers wait awake
//!   for up to 50 us before they sleep, as the process pool's threads do (`pipe_spinning/*`:
//!   the floor of a round trip that crosses no wake-up); and two threads of one process
//!   ping-ponging over blocking channels (`thread_channel`), the floor a thread pool's lone
//!   task would pay if its workers slept in the kernel.
//!
//! `rayon/...` entries are rayon itself on a 2-thread pool: `spawn` round trip and batch,
//! `par_iter` over the no-ops and over the seed workload, pool build to first result.
//!
//! Run with `cargo bench -p primepool --bench suite` (about a minute); `cargo xtask
//! bench-report` runs it and reads criterion's estimates. The machine is shared and small, so
//! samples are few and short: compare ratios within one run. This binary is its own process
//! pool worker: `main` calls `run_worker_if_requested` before anything else.

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use primepool::workload::{noop, seed_count_prime};
use primepool::{
    Error, Executor, ExecutorExt, MapOptions, ProcessPoolExecutor, RayonExecutor, SerialExecutor,
    ThreadPoolExecutor,
};
use rayon::prelude::*;
use serde_bytes::ByteBuf;

const WORKERS: usize = 2;
const SEED_VALUES: std::ops::RangeInclusive<u32> = 9900..=9999;
const SUBMIT_TASKS: u32 = 1_000;
const MAP_ITEMS: u32 = 10_000;
const MIB: usize = 1 << 20;

/// The backends, in the order every group lists them.
const BACKENDS: [&str; 4] = ["serial", "threads", "rayon", "processes"];

/// A fresh pool of `backend` with [`WORKERS`] workers.
fn pool(backend: &str) -> Box<dyn Executor> {
    let built: Result<Box<dyn Executor>, Error> = match backend {
        "serial" => Ok(Box::new(SerialExecutor::new())),
        "threads" => ThreadPoolExecutor::new(WORKERS).map(|p| Box::new(p) as _),
        "rayon" => RayonExecutor::new(WORKERS).map(|p| Box::new(p) as _),
        "processes" => ProcessPoolExecutor::new(WORKERS).map(|p| Box::new(p) as _),
        other => unreachable!("no backend named {other}"),
    };
    built.unwrap_or_else(|e| panic!("cannot build the {backend} pool: {e}"))
}

/// A pool whose workers have all started and run a task, so a figure measures steady work.
fn warm_pool(backend: &str) -> Box<dyn Executor> {
    let pool = pool(backend);
    let futures: Vec<_> = (0..WORKERS as u32 * 4)
        .map(|i| pool.submit(noop, i).unwrap())
        .collect();
    for future in futures {
        future.join().unwrap();
    }
    pool
}

fn rayon_pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(WORKERS)
        .build()
        .expect("a rayon pool")
}

/// Returns its argument: the 1 MiB payload goes to a worker and comes back unchanged.
fn echo_bytes(bytes: ByteBuf) -> ByteBuf {
    bytes
}

/// The same with a plain `Vec<u8>`, which serde encodes as a sequence, one byte at a time.
fn echo_vec(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

/// A chunk of no-ops in one call: the inputs come back unchanged.
fn noop_chunk(values: Vec<u32>) -> Vec<u32> {
    values
}

fn short_group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    group
}

fn startup(c: &mut Criterion) {
    let mut group = short_group(c, "startup_to_first_result");
    group.sampling_mode(SamplingMode::Flat);
    for backend in BACKENDS {
        // Only construction and the first result are timed; the shutdown (drop) is not.
        group.bench_function(backend, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let pool = pool(backend);
                    black_box(pool.submit(noop, 7).unwrap().join().unwrap());
                    total += start.elapsed();
                    drop(pool);
                }
                total
            })
        });
    }
    group.bench_function("rayon_build_spawn", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let pool = rayon_pool();
                let (sender, receiver) = mpsc::channel();
                pool.spawn(move || sender.send(noop(7)).unwrap());
                black_box(receiver.recv().unwrap());
                total += start.elapsed();
                drop(pool);
            }
            total
        })
    });
    group.finish();
}

fn round_trip(c: &mut Criterion) {
    let mut group = short_group(c, "noop_round_trip");
    for backend in BACKENDS {
        let pool = warm_pool(backend);
        group.bench_function(backend, |b| {
            b.iter(|| pool.submit(noop, black_box(1)).unwrap().join().unwrap())
        });
    }
    let pool = rayon_pool();
    group.bench_function("rayon_spawn", |b| {
        b.iter(|| {
            let (sender, receiver) = mpsc::channel();
            pool.spawn(move || sender.send(noop(black_box(1))).unwrap());
            receiver.recv().unwrap()
        })
    });
    group.finish();
}

fn submit_batch(c: &mut Criterion) {
    let mut group = short_group(c, "noop_submit_1000");
    group.throughput(Throughput::Elements(u64::from(SUBMIT_TASKS)));
    for backend in BACKENDS {
        let pool = warm_pool(backend);
        group.bench_function(backend, |b| {
            b.iter(|| {
                let futures: Vec<_> = (0..SUBMIT_TASKS)
                    .map(|i| pool.submit(noop, i).unwrap())
                    .collect();
                futures
                    .into_iter()
                    .map(|f| u64::from(f.join().unwrap()))
                    .sum::<u64>()
            })
        });
    }
    let pool = rayon_pool();
    group.bench_function("rayon_spawn", |b| {
        b.iter(|| {
            let receivers: Vec<_> = (0..SUBMIT_TASKS)
                .map(|i| {
                    let (sender, receiver) = mpsc::channel();
                    pool.spawn(move || sender.send(noop(i)).unwrap());
                    receiver
                })
                .collect();
            receivers
                .into_iter()
                .map(|r| u64::from(r.recv().unwrap()))
                .sum::<u64>()
        })
    });
    group.finish();
}

fn map_throughput(c: &mut Criterion) {
    let mut group = short_group(c, "noop_map_10000");
    group.throughput(Throughput::Elements(u64::from(MAP_ITEMS)));
    for backend in BACKENDS {
        let pool = warm_pool(backend);
        for (label, chunksize) in [("chunksize_1", Some(1)), ("auto", None)] {
            let options = MapOptions::new().chunksize(chunksize);
            group.bench_function(BenchmarkId::new(backend, label), |b| {
                b.iter(|| {
                    pool.map_with(noop, 0..MAP_ITEMS, options)
                        .unwrap()
                        .map(|r| u64::from(r.unwrap()))
                        .sum::<u64>()
                })
            });
        }
    }
    let pool = rayon_pool();
    group.bench_function("rayon_par_iter", |b| {
        b.iter(|| {
            pool.install(|| {
                (0..MAP_ITEMS)
                    .into_par_iter()
                    .map(noop)
                    .collect::<Vec<u32>>()
            })
        })
    });
    group.finish();
}

fn seed(c: &mut Criterion) {
    let mut group = short_group(c, "seed_9900_9999");
    group.sampling_mode(SamplingMode::Flat);
    // Computed on first use, so a filter that skips this group does not pay for it.
    let expected = std::sync::OnceLock::new();
    let expected =
        || expected.get_or_init(|| SEED_VALUES.map(seed_count_prime).collect::<Vec<_>>());
    for backend in BACKENDS {
        group.bench_function(backend, |b| {
            b.iter(|| {
                let pool = pool(backend);
                let counts: Vec<u32> = pool
                    .map(seed_count_prime, SEED_VALUES)
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                drop(pool);
                assert_eq!(&counts, expected(), "{backend} computed different counts");
                counts
            })
        });
    }
    group.bench_function("rayon_par_iter", |b| {
        b.iter(|| {
            rayon_pool().install(|| {
                SEED_VALUES
                    .into_par_iter()
                    .map(seed_count_prime)
                    .collect::<Vec<_>>()
            })
        })
    });
    group.bench_function("rayon_spawn", |b| {
        b.iter(|| {
            let pool = rayon_pool();
            let (sender, receiver) = mpsc::channel();
            for (i, n) in SEED_VALUES.enumerate() {
                let sender = sender.clone();
                pool.spawn(move || sender.send((i, seed_count_prime(n))).unwrap());
            }
            drop(sender);
            let mut counts = vec![0; SEED_VALUES.count()];
            for (i, count) in receiver {
                counts[i] = count;
            }
            counts
        })
    });
    group.finish();
}

fn payload(c: &mut Criterion) {
    let mut group = short_group(c, "payload_1mib_round_trip");
    // Both directions: the argument out and the result back.
    group.throughput(Throughput::Bytes(2 * MIB as u64));
    let payload: Vec<u8> = (0..MIB).map(|i| i as u8).collect();
    for backend in ["threads", "processes"] {
        let pool = warm_pool(backend);
        group.bench_function(backend, |b| {
            b.iter_batched(
                || ByteBuf::from(payload.clone()),
                |bytes| {
                    let back = pool.submit(echo_bytes, bytes).unwrap().join().unwrap();
                    assert_eq!(back.len(), MIB);
                    back
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    let pool = warm_pool("processes");
    group.bench_function("processes_vec_u8", |b| {
        b.iter_batched(
            || payload.clone(),
            |bytes| {
                let back = pool.submit(echo_vec, bytes).unwrap().join().unwrap();
                assert_eq!(back.len(), MIB);
                back
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn map_with_pool(c: &mut Criterion) {
    const ITEMS: u32 = 200_000;
    let mut group = short_group(c, "noop_map_200000_with_pool");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(u64::from(ITEMS)));
    group.bench_function("processes/auto", |b| {
        b.iter(|| {
            let pool = pool("processes");
            let sum = pool
                .map(noop, 0..ITEMS)
                .unwrap()
                .map(|r| u64::from(r.unwrap()))
                .sum::<u64>();
            drop(pool);
            sum
        })
    });
    group.bench_function("processes/vec_per_chunk", |b| {
        b.iter(|| {
            let pool = pool("processes");
            let mut start = 0;
            let futures: Vec<_> = pool
                .auto_chunks(ITEMS as usize)
                .into_iter()
                .map(|size| {
                    let end = start + size as u32;
                    let chunk = (start..end).collect();
                    start = end;
                    pool.submit(noop_chunk, chunk).unwrap()
                })
                .collect();
            let sum = futures
                .into_iter()
                .flat_map(|f| f.join().unwrap())
                .map(u64::from)
                .sum::<u64>();
            drop(pool);
            sum
        })
    });
    group.finish();
}

/// The variable that turns this binary into the far end of a ping-pong floor.
const ECHO_ENV: &str = "PRIMEPOOL_SUITE_ECHO";

/// In the far end of a floor (started by [`Echo::start`]): sends every 8 bytes that arrive on
/// stdin back on stdout, unbuffered, until end of file, then exits. With the variable set to
/// `spin` it waits for each message as a [`read_spinning`] end does.
fn echo_if_requested() {
    let Some(mode) = std::env::var_os(ECHO_ENV) else {
        return;
    };
    let raw = |fd: std::io::Result<OwnedFd>| File::from(fd.expect("a standard descriptor"));
    let mut input = raw(std::io::stdin().as_fd().try_clone_to_owned());
    let mut output = raw(std::io::stdout().as_fd().try_clone_to_owned());
    let spinning = mode == "spin";
    if spinning {
        set_nonblocking(&input);
    }
    let mut message = [0u8; 8];
    loop {
        let read = if spinning {
            read_spinning(&mut input, &mut message)
        } else {
            input.read_exact(&mut message)
        };
        if read.is_err() || output.write_all(&message).is_err() {
            break;
        }
    }
    std::process::exit(0)
}

/// How long a spinning floor's ends wait awake before they sleep: the process pool's bound.
const SPIN_LIMIT: Duration = primepool::backend::SpinBudget::LIMIT;

/// Makes reads of `file` return `WouldBlock` instead of waiting.
fn set_nonblocking(file: &File) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is open for the borrow of `file`; F_GETFL/F_SETFL only read and set its
    // status flags.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    assert!(ok, "cannot make a floor's pipe non-blocking");
}

/// Fills `buf` from the non-blocking `file` the way the process pool's threads wait: reads
/// that do not wait, yielding between them, for up to [`SPIN_LIMIT`], then `poll`.
fn read_spinning(file: &mut File, buf: &mut [u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let start = Instant::now();
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if start.elapsed() < SPIN_LIMIT {
                    std::hint::spin_loop();
                    std::thread::yield_now();
                } else {
                    let mut fd = libc::pollfd {
                        fd: file.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: `fd` is one valid, exclusively borrowed `pollfd`.
                    unsafe { libc::poll(&mut fd, 1, -1) };
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Which kernel object a floor's two processes talk over.
#[derive(Clone, Copy)]
enum Channel {
    /// Two pipes, one per direction.
    Pipe,
    /// Two pipes whose readers wait awake for a moment before they sleep ([`read_spinning`]),
    /// as the process pool's threads do: the floor of a round trip without wake-ups.
    SpinningPipe,
    /// One Unix stream socket pair, the process pool's channel.
    SocketPair,
}

/// This binary started again as an echo process, with the two ends this side talks through.
struct Echo {
    child: Child,
    to: File,
    from: File,
    spinning: bool,
}

impl Echo {
    fn start(channel: Channel) -> Echo {
        let mut command = Command::new(std::env::current_exe().expect("the bench's own path"));
        let spinning = matches!(channel, Channel::SpinningPipe);
        command
            .env(ECHO_ENV, if spinning { "spin" } else { "1" })
            .stderr(Stdio::inherit());
        match channel {
            Channel::Pipe | Channel::SpinningPipe => {
                let mut child = command
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("starting the echo process");
                let to = File::from(OwnedFd::from(child.stdin.take().expect("piped stdin")));
                let from = File::from(OwnedFd::from(child.stdout.take().expect("piped stdout")));
                if spinning {
                    set_nonblocking(&from);
                }
                Echo {
                    child,
                    to,
                    from,
                    spinning,
                }
            }
            Channel::SocketPair => {
                let (ours, theirs) = UnixStream::pair().expect("a socket pair");
                let theirs = OwnedFd::from(theirs);
                let child = command
                    .stdin(Stdio::from(theirs.try_clone().expect("dup")))
                    .stdout(Stdio::from(theirs))
                    .spawn()
                    .expect("starting the echo process");
                let ours = OwnedFd::from(ours);
                let to = File::from(ours.try_clone().expect("dup"));
                Echo {
                    child,
                    to,
                    from: File::from(ours),
                    spinning,
                }
            }
        }
    }

    /// One 8-byte message there and back.
    fn round_trip(&mut self, message: &mut [u8; 8]) {
        self.to
            .write_all(message)
            .expect("writing to the echo process");
        if self.spinning {
            read_spinning(&mut self.from, message)
        } else {
            self.from.read_exact(message)
        }
        .expect("reading from the echo process");
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pid`'s (0: the calling thread's) allowed CPUs, or `None` where that cannot be read.
fn affinity(pid: libc::pid_t) -> Option<libc::cpu_set_t> {
    // SAFETY: `cpu_set_t` is a plain bit array for which all zeros is a valid (empty) value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed.
    let rc = unsafe { libc::sched_getaffinity(pid, std::mem::size_of_val(&set), &mut set) };
    (rc == 0).then_some(set)
}

/// Restricts `pid` (0: the calling thread) to `set`; false if the system refused.
fn set_affinity(pid: libc::pid_t, set: &libc::cpu_set_t) -> bool {
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed; the call only reads it.
    unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(set), set) == 0 }
}

/// The set holding only `cpu`.
fn only(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: all zeros is the empty set (see `affinity`).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid `cpu_set_t`; `CPU_SET` ignores a `cpu` beyond its capacity.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

/// Two CPUs this thread may run on, if it may run on two.
fn two_cpus() -> Option<(usize, usize)> {
    let set = affinity(0)?;
    let size = 8 * std::mem::size_of_val(&set);
    // SAFETY: `set` is a valid `cpu_set_t` and every index is below its capacity.
    let mut allowed = (0..size).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) });
    Some((allowed.next()?, allowed.next()?))
}

fn floors(c: &mut Criterion) {
    let mut group = short_group(c, "floor_round_trip");
    let cpus = two_cpus();
    for (name, channel) in [
        ("pipe", Channel::Pipe),
        ("socketpair", Channel::SocketPair),
        ("pipe_spinning", Channel::SpinningPipe),
    ] {
        let mut echo = Echo::start(channel);
        let mut message = *b"primepoo";
        group.bench_function(BenchmarkId::new(name, "unpinned"), |b| {
            b.iter(|| echo.round_trip(&mut message))
        });
        let Some((here, there)) = cpus else { continue };
        let before = affinity(0).expect("read just above");
        let pid = libc::pid_t::try_from(echo.child.id()).expect("a pid fits pid_t");
        if set_affinity(0, &only(here)) && set_affinity(pid, &only(there)) {
            group.bench_function(BenchmarkId::new(name, "pinned"), |b| {
                b.iter(|| echo.round_trip(&mut message))
            });
        }
        // The rest of the suite runs where it ran before.
        set_affinity(0, &before);
    }
    let (to_echo, echo_in) = mpsc::channel::<u64>();
    let (echo_out, from_echo) = mpsc::channel::<u64>();
    let echo = std::thread::spawn(move || {
        for message in echo_in {
            if echo_out.send(message).is_err() {
                break;
            }
        }
    });
    group.bench_function(BenchmarkId::new("thread_channel", "unpinned"), |b| {
        b.iter(|| {
            to_echo.send(black_box(1)).unwrap();
            from_echo.recv().unwrap()
        })
    });
    drop(to_echo);
    echo.join().unwrap();
    group.finish();
}

mod group {
    #![allow(missing_docs, reason = "criterion_group! makes an undocumented pub fn")]
    criterion::criterion_group!(
        benches,
        super::startup,
        super::round_trip,
        super::floors,
        super::submit_batch,
        super::map_throughput,
        super::seed,
        super::payload,
        super::map_with_pool
    );
}

fn main() {
    // A process pool started by this benchmark re-runs this binary as its worker.
    primepool::run_worker_if_requested();
    // A floor's far end (see `floors`) is this binary too.
    echo_if_requested();
    group::benches();
    Criterion::default().configure_from_args().final_summary();
}
