//! Many outstanding futures: 100,000 tasks submitted to a process pool and held, uncollected,
//! under an open-file limit of 20,000, then collected in submission order and, in a second
//! round, in reverse order.
//!
//! The Rust peer `procspawn` opens descriptors per pending task (it fails with EMFILE at about
//! 6,600) and deadlocks when handles are joined out of order. Asserted here: no error of any
//! kind; the descriptors of this process stay few (independent of the task count); resident
//! memory grows by less than [`RSS_BOUND`] (documented in `docs/reliability.md`); every result
//! is right; both orders finish within [`BOUND`]; no child process is left.
//!
//! One `#[test]` in this file: the limit is set on the whole test process.

mod support;

use std::time::{Duration, Instant};

use primepool::{ExecutorExt, Future};

const TASKS: u64 = 100_000;
const NOFILE: libc::rlim_t = 20_000;
/// Resident-memory growth allowed while 100,000 futures with 100-byte results are held:
/// about 1.3 KiB per task, all bookkeeping included.
const RSS_BOUND: u64 = 128 * 1024 * 1024;
/// At most this many descriptors open at any time (the harness, the pool's sockets).
const FD_BOUND: usize = 64;
const BOUND: Duration = Duration::from_secs(120);

/// A 100-byte result that depends on every bit of the input.
fn payload(x: u64) -> Vec<u8> {
    (0..100u64)
        .map(|i| (x.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8)
        .collect()
}

/// Holds a worker for `ms` so the tasks behind it stay queued while they are submitted.
fn hold(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Lowers this process's soft open-file limit to `limit` (never raises it).
fn limit_open_files(limit: libc::rlim_t) -> libc::rlim_t {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusively borrowed `rl`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
    rl.rlim_cur = rl.rlim_cur.min(limit);
    // SAFETY: setrlimit reads one valid rlimit; lowering a soft limit is always permitted.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) }, 0);
    rl.rlim_cur
}

struct Round {
    pending_after_submit: usize,
    peak_fds: usize,
    rss_growth_kib: u64,
    elapsed: Duration,
}

/// Submits every task, holds the futures, then collects them in `order`.
fn round(pool: &primepool::ProcessPoolExecutor, reverse: bool) -> Round {
    let started = Instant::now();
    let rss_before = status_kib("VmRSS");
    // Keep both workers busy so the submitted tasks pile up in the pool.
    let holds: Vec<_> = (0..2)
        .map(|_| pool.submit(hold, 300).expect("submit"))
        .collect();
    let mut peak_fds = open_fds();
    let mut futures: Vec<Future<Vec<u8>>> = Vec::with_capacity(TASKS as usize);
    for x in 0..TASKS {
        futures.push(pool.submit(payload, x).unwrap_or_else(|e| {
            panic!("submit {x} with {} outstanding failed: {e}", futures.len())
        }));
        if x % 10_000 == 0 {
            peak_fds = peak_fds.max(open_fds());
        }
    }
    let pending_after_submit = futures.iter().filter(|f| !f.done()).count();
    peak_fds = peak_fds.max(open_fds());
    let mut rss_peak = status_kib("VmRSS");

    let check = |x: u64, f: Future<Vec<u8>>| {
        let left = BOUND.saturating_sub(started.elapsed());
        match f.result(Some(left)) {
            Ok(bytes) => assert_eq!(bytes, payload(x), "task {x}"),
            Err(e) => panic!("task {x} (reverse: {reverse}): {e}"),
        }
    };
    if reverse {
        for (x, f) in futures.into_iter().enumerate().rev() {
            check(x as u64, f);
            if x % 10_000 == 0 {
                rss_peak = rss_peak.max(status_kib("VmRSS"));
                peak_fds = peak_fds.max(open_fds());
            }
        }
    } else {
        for (x, f) in futures.into_iter().enumerate() {
            check(x as u64, f);
            if x % 10_000 == 0 {
                rss_peak = rss_peak.max(status_kib("VmRSS"));
                peak_fds = peak_fds.max(open_fds());
            }
        }
    }
    for h in holds {
        assert_eq!(h.result(Some(BOUND)), Ok(300));
    }
    Round {
        pending_after_submit,
        peak_fds,
        rss_growth_kib: rss_peak.saturating_sub(rss_before),
        elapsed: started.elapsed(),
    }
}

#[test]
fn a_hundred_thousand_outstanding_futures_fit_in_a_20000_file_limit_and_join_in_any_order() {
    let limit = limit_open_files(NOFILE);
    assert!(limit <= NOFILE);
    let pool = support::pool(2);
    for reverse in [false, true] {
        let r = round(&pool, reverse);
        let order = if reverse { "reverse" } else { "forward" };
        eprintln!(
            "outstanding ({order}): {TASKS} tasks, {} still pending after submitting, peak {} fds \
             (limit {limit}), RSS +{} MiB, {:?}",
            r.pending_after_submit,
            r.peak_fds,
            r.rss_growth_kib / 1024,
            r.elapsed
        );
        assert!(
            r.pending_after_submit as u64 >= TASKS / 2,
            "only {} tasks were outstanding at once: the test is void",
            r.pending_after_submit
        );
        assert!(r.peak_fds <= FD_BOUND, "{} descriptors open", r.peak_fds);
        assert!(
            r.rss_growth_kib * 1024 < RSS_BOUND,
            "resident memory grew by {} KiB",
            r.rss_growth_kib
        );
        assert!(r.elapsed < BOUND, "{order} took {:?}", r.elapsed);
    }
    eprintln!("outstanding: peak RSS {} MiB", status_kib("VmHWM") / 1024);
    drop(pool);
    let left = support::children();
    assert!(left.is_empty(), "children left: {left:?}");
}
