//! Ctrl-C during `primepool bench`: the command stops with status 130 by its own clean-up
//! (not by the handler's 2 s fallback exit) and leaves no worker process behind.
//!
//! No timing is asserted: "promptly" is judged by which path ended the command. The handler
//! stops the work and gives the benchmark thread a grace period to return through its
//! ordinary clean-up; only if that does not happen does the handler exit by itself, saying
//! so on stderr. A stop that takes the fallback fails here, however long the machine took.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The pids of the processes whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // The command name (field 2) may hold spaces: read after its ')'.
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split(' ').nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// A process that exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat[stat.rfind(')').unwrap_or(0) + 2..].chars().next();
            state != Some('Z')
        })
        .unwrap_or(false)
}

fn sigint(pid: u32) {
    // SAFETY: kill(2) only sends a signal; `pid` is our own child, which has not been reaped
    // yet (we wait for it below), so the id cannot have been reused by another process.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "kill failed");
}

/// True once `condition` holds, checked for up to a minute (for a loaded machine).
fn eventually(condition: impl Fn() -> bool) -> bool {
    let give_up = Instant::now() + Duration::from_secs(60);
    while Instant::now() < give_up {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// Starts a long benchmark of `backend`, waits until serial is done and `backend` has been
/// running for a moment, presses Ctrl-C, and checks the exit status, that the benchmark
/// stopped through its own clean-up rather than the handler's fallback exit, and that the
/// command's children (the pool's worker processes, if it has any) are gone.
fn interrupt_while_running(backend: &str, has_worker_processes: bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_primepool"))
        .args(["-v", "bench", "--repeat", "1", "--workers", "2"])
        .args(["--values", "40000..40300", "--backends", backend])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the bench ended before serial finished"
        );
        if line.contains("serial run 1/1") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let workers = children_of(pid);
    assert_eq!(
        !workers.is_empty(),
        has_worker_processes,
        "{backend}: worker processes {workers:?}"
    );
    sigint(pid);
    // The rest of stderr, read to its end (the command's exit closes it).
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit status after Ctrl-C");
    assert!(
        rest.contains("interrupted: stopping the benchmark"),
        "the handler never ran:\n{rest}"
    );
    assert!(
        !rest.contains("did not stop within"),
        "{backend}: the benchmark did not stop by itself; the handler's fallback exit ended \
         it:\n{rest}"
    );
    assert!(
        eventually(|| workers.iter().all(|&p| !alive(p))),
        "worker processes still running: {:?}",
        workers.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
    );
}

#[test]
fn ctrl_c_stops_a_thread_pool_benchmark_with_status_130() {
    interrupt_while_running("threads", false);
}

#[test]
fn ctrl_c_stops_a_process_pool_benchmark_and_ends_its_workers() {
    interrupt_while_running("processes", true);
}
