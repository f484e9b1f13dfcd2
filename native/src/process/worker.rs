//! The worker side: what [`run_worker_if_requested`] does in a process started by a pool.
//!
//! Two threads. The *main* thread runs the jobs in order and writes each answer before it
//! starts the next job, so that when a worker dies the pool knows exactly which job it was
//! running: the oldest one not answered. Between jobs it reads the channel itself (awake for
//! a moment, then asleep in `poll`), so a job sent to an idle worker reaches the thread that
//! runs it with at most one wake-up, none when it comes soon after the last answer. The
//! *control* thread reads the channel while a job runs longer than [`WATCH_AFTER`] (and for
//! good once jobs have timeouts, which it enforces): it queues jobs, answers `Terminate` and
//! `Revoke`, and ends the process as soon as the channel reaches end-of-file (the pool closed
//! it, or the pool's process died: that is how workers never outlive their pool, on every
//! Unix, even in the middle of a task). Exactly one of the two reads at a time: whose turn it
//! is lives in the [`Inbox`], under its lock.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use primepool_core::backend::TaskFn;
use primepool_core::Error;

use super::frame::{write_frame, FrameReader, MAX_FRAME_LEN};
use super::image;
use super::protocol::{self, Bytes, FromWorker, ToWorker};
use super::spawn::{WorkerEnv, ENV};
use super::spin::Spin;
use super::sys;
use crate::sync;

/// Exit status of a worker that found it runs a different program image.
const EXIT_REFUSED: i32 = 3;
/// Exit status of a worker whose initializer panicked.
const EXIT_INIT_FAILED: i32 = 4;
/// Exit status of a worker that received bytes that are not the protocol, or lost its channel
/// in an unexpected way.
const EXIT_PROTOCOL: i32 = 5;
/// Exit status of a worker that ended itself to stop a job (`Terminate` or a timeout).
const EXIT_STOPPED: i32 = 6;
/// Exit status of a worker that did not receive its channel: the descriptor named by the
/// worker variable is not an open socket in this process (it did not survive the `exec`).
pub(super) const EXIT_NO_CHANNEL: i32 = 7;
/// Exit status when the worker variable is malformed.
const EXIT_USAGE: i32 = 64;

/// How often the control thread checks the running job's timeout, when jobs have one.
const TICK: Duration = Duration::from_millis(5);
/// After how long a running job has the control thread read the channel while it runs (see
/// [`control_loop`]); until then what arrives waits for the main thread, which reads it as
/// soon as the job is done.
const WATCH_AFTER: Duration = Duration::from_millis(1);

/// Call this first thing in `main`. In a worker process started by a
/// [`ProcessPoolExecutor`](super::ProcessPoolExecutor) it serves the pool and then exits the
/// process, never returning; in any other process it returns at once (it checks one
/// environment variable).
///
/// With the `cluster` feature it also enters cluster worker mode when
/// `PRIMEPOOL_CLUSTER_WORKER=<NATS url>` is set (slots from `PRIMEPOOL_CLUSTER_SLOTS`, default
/// the host's CPUs): the process serves the cluster until SIGTERM or SIGINT, then exits 0 (64
/// for a malformed variable, 69 when it cannot serve, e.g. no server).
///
/// It is the counterpart of Python's `if __name__ == "__main__":` guard under the "spawn" start
/// method: workers are new runs of the same program, and this call is where they part ways
/// with `main`. Anything `main` does before it also happens in every worker.
///
/// ```no_run
/// fn main() {
///     primepool::run_worker_if_requested();
///     // ... the program proper, which may create process pools ...
/// }
/// ```
#[allow(
    clippy::needless_doctest_main,
    reason = "the contract is about the first line of main"
)]
pub fn run_worker_if_requested() {
    // A cluster worker (`PRIMEPOOL_CLUSTER_WORKER`), when the feature is compiled in.
    #[cfg(feature = "cluster")]
    crate::cluster::run_if_requested();
    let Some(value) = std::env::var_os(ENV) else {
        // Not a worker: take the program's identity now, at start-up, before the program can
        // replace its own file on disk (where the identity is the file's).
        let _ = image::identity();
        return;
    };
    // The task's own child processes are not workers. (Called first thing in `main`, before
    // the program starts threads that could read the environment concurrently.)
    std::env::remove_var(ENV);
    let code = match WorkerEnv::parse(&value) {
        Ok(env) => serve(env).unwrap_or_else(|e| {
            // The pool closed the channel before we were up (a quick shutdown): not an error.
            if sys::peer_gone(&e) {
                return 0;
            }
            eprintln!("primepool worker {}: {e}", std::process::id());
            EXIT_PROTOCOL
        }),
        Err(e) => {
            eprintln!("primepool: {e}");
            EXIT_USAGE
        }
    };
    std::process::exit(code)
}

/// Why a pool cannot be built in this process, if it was started as a worker whose `main`
/// did not call [`run_worker_if_requested`] (the worker variable is still set): without the
/// refusal every worker would build a pool of its own, recursively. The pool that started this
/// process is told too (once), through the channel, so that it reports the mistake at once
/// instead of waiting for a greeting that will not come.
pub(super) fn pool_refused_in_worker() -> Option<String> {
    static TOLD: AtomicBool = AtomicBool::new(false);
    let value = std::env::var_os(ENV)?;
    let reason = format!(
        "process {} was started as a worker of a process pool ({ENV} is set) but tried to \
         build a process pool itself: its main did not call \
         primepool::run_worker_if_requested() first. Add `primepool::run_worker_if_requested();` \
         as the first line of main (a test binary: point ProcessPoolBuilder::worker_command at \
         an entry point that calls it)",
        std::process::id()
    );
    if let Ok(env) = WorkerEnv::parse(&value) {
        if !TOLD.swap(true, Ordering::AcqRel) && sys::is_socket(env.fd) {
            let mut frame = Vec::new();
            let refused = FromWorker::Refused {
                reason: reason.clone(),
            };
            if write_frame(&mut frame, &refused, MAX_FRAME_LEN).is_ok() {
                // Best effort: the pool may be gone already.
                let _ = sys::send_all(env.fd, &frame);
            }
        }
    }
    Some(reason)
}

/// A job queued in the worker.
struct Run {
    id: u64,
    /// Sent through a lane: the next job is likely to follow the answer at once.
    lone: bool,
    trampoline: u64,
    func: u64,
    timeout: Option<Duration>,
    args: Vec<u8>,
}

/// The job the main thread is running.
struct Current {
    id: u64,
    started: Instant,
    timeout: Option<Duration>,
}

#[derive(Default)]
struct Inbox {
    queue: VecDeque<Run>,
    current: Option<Current>,
    /// The main thread is asleep waiting for the control thread to queue a job (only then is
    /// a wake-up needed).
    idle: bool,
    /// The control thread reads the channel; otherwise the main thread does, between jobs.
    control_reads: bool,
    /// A job had a timeout: the control thread reads the channel for good, watching the clock.
    timeouts: bool,
    /// The main thread is asleep in `poll` on the channel, so nothing runs.
    main_polling: bool,
    /// The control thread is asleep without a timeout (it must be woken when a job starts).
    control_parked: bool,
}

struct Worker {
    inbox: Mutex<Inbox>,
    job_arrived: Condvar,
    /// Wakes the control thread: a job started while it slept without a timeout, or it must
    /// read the channel now.
    control_wake: Condvar,
    out: Mutex<UnixStream>,
    /// The channel, for reading: by one thread at a time (whose turn it is, see [`Inbox`]).
    channel: UnixStream,
    /// Frames read and not yet taken in.
    reader: Mutex<FrameReader>,
}

impl Worker {
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        sync::lock(&self.inbox)
    }

    /// Sends one message.
    fn send(&self, message: &FromWorker<'_>) -> io::Result<()> {
        self.send_all(std::slice::from_ref(message))
    }

    /// Sends messages with one write.
    fn send_all(&self, messages: &[FromWorker<'_>]) -> io::Result<()> {
        let mut frames = Vec::new();
        for message in messages {
            write_frame(&mut frames, message, MAX_FRAME_LEN).map_err(io::Error::other)?;
        }
        self.write(&frames)
    }

    /// Writes encoded frames to the pool.
    fn write(&self, frames: &[u8]) -> io::Result<()> {
        let mut out = sync::lock(&self.out);
        out.write_all(frames)
    }

    /// Tells the pool that job `id` is being stopped and ends the process at once.
    fn stop(&self, id: u64, timed_out: bool) -> ! {
        let _ = self.send(&FromWorker::Stopped { id, timed_out });
        // SAFETY: `_exit` ends the process without running exit handlers or destructors, which
        // is the point: the job being stopped may hold any lock. It has no preconditions.
        unsafe { libc::_exit(EXIT_STOPPED) }
    }
}

/// Runs the worker: handshake, initializer, then jobs until the channel closes.
fn serve(env: WorkerEnv) -> io::Result<i32> {
    if !sys::watch_parent(env.parent) {
        // The pool's process is already gone: nobody to serve.
        return Ok(0);
    }
    if !sys::is_socket(env.fd) {
        // The pool's process gave it a socket: it did not survive the `exec`. The pool knows
        // this exit status and says so.
        eprintln!(
            "primepool worker {}: descriptor {} named by {ENV} is not an open socket here: \
             the channel did not survive the exec (close-on-exec was not cleared)",
            std::process::id(),
            env.fd
        );
        return Ok(EXIT_NO_CHANNEL);
    }
    // SAFETY: the descriptor is an open socket (checked above) that the pool created for this
    // process and named in the variable just consumed; nothing else in the process knows of
    // it, so taking sole ownership here is sound.
    let stream = unsafe { UnixStream::from_raw_fd(env.fd) };
    // The pool cleared close-on-exec for us; set it again so that programs the tasks start do
    // not hold the channel open.
    sys::set_cloexec(stream.as_fd(), true)?;
    let worker = Arc::new(Worker {
        inbox: Mutex::new(Inbox::default()),
        job_arrived: Condvar::new(),
        control_wake: Condvar::new(),
        out: Mutex::new(stream.try_clone()?),
        channel: stream,
        reader: Mutex::new(FrameReader::new(MAX_FRAME_LEN)),
    });

    let ours = image::identity();
    if env.image != ours {
        let program = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "?".into());
        let reason = format!(
            "worker process {} runs {program} ({ours}), which is not the program image of the \
             pool ({}); calls are shipped as code addresses, so a worker must run the \
             identical executable",
            std::process::id(),
            env.image
        );
        worker.send(&FromWorker::Refused { reason })?;
        return Ok(EXIT_REFUSED);
    }
    let Some(offset) = env.initializer else {
        // Nothing to run first: both greetings in one write.
        worker.send_all(&[FromWorker::Hello, FromWorker::Ready])?;
        return serve_jobs(worker);
    };
    worker.send(&FromWorker::Hello)?;
    // SAFETY: the pool made `offset` with `image::to_offset` from a `fn()` (the builder's
    // `initializer` takes nothing else), and this process runs the identical image (checked
    // just above), so the address is that same function here.
    let init = unsafe { std::mem::transmute::<usize, fn()>(image::from_offset(offset)) };
    if let Err(panic) = primepool_core::backend::catch_panic(init) {
        worker.send(&FromWorker::InitFailed { panic })?;
        return Ok(EXIT_INIT_FAILED);
    }
    worker.send(&FromWorker::Ready)?;
    serve_jobs(worker)
}

/// Starts the control thread, then runs jobs on this one (which reads the channel first: the
/// jobs the pool sent before the worker was up start without waiting for the control thread).
fn serve_jobs(worker: Arc<Worker>) -> io::Result<i32> {
    let control = Arc::clone(&worker);
    std::thread::Builder::new()
        .name("primepool-worker-control".into())
        .stack_size(256 * 1024)
        .spawn(move || control_loop(&control))?;
    run_jobs(&worker)
}

/// The main thread: runs queued jobs in order. It says `Started` before each job and writes
/// each answer before the next job starts (together with that job's `Started`: one write per
/// job while busy), so a crash never loses an answer and the pool knows which job crashed.
fn run_jobs(worker: &Worker) -> io::Result<i32> {
    let mut pending = Vec::new();
    let mut spin = Spin::default();
    let mut lone = false;
    loop {
        let run = next_job(worker, &mut pending, &mut spin, lone)?;
        lone = run.lone;
        let id = run.id;
        write_frame(&mut pending, &FromWorker::Started { id }, MAX_FRAME_LEN)
            .map_err(io::Error::other)?;
        worker.write(&pending)?;
        pending.clear();
        // SAFETY: the pool made both offsets with `image::to_offset` from `TaskFn::to_raw` of a
        // `TaskFn::new`, and this process runs the identical image (checked at start-up), so
        // they rebase to exactly the addresses `to_raw` returned there.
        let call = unsafe {
            TaskFn::from_raw(
                image::from_offset(run.trampoline),
                image::from_offset(run.func),
            )
        };
        let reply = call.invoke(&run.args);
        worker.inbox().current = None;
        let written = match &reply {
            Ok(outcomes) => write_frame(
                &mut pending,
                &FromWorker::Done {
                    id,
                    outcomes: Bytes(outcomes),
                },
                MAX_FRAME_LEN,
            )
            .map_err(|e| format!("sending the result: {e}")),
            // The pool makes it an `Error::Serialization` again: send the text without the
            // prefix, so it reads once.
            Err(Error::Serialization(e)) => Err(e.clone()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = written {
            write_frame(
                &mut pending,
                &FromWorker::Failed { id, error },
                MAX_FRAME_LEN,
            )
            .map_err(io::Error::other)?;
        }
    }
}

/// The main thread's next job, marked as the current one. The last answer (`pending`) goes
/// out first whenever nothing is queued. While the control thread does not read the channel,
/// this thread reads it itself; after a lone job (`lone`) awake for a moment first (`spin`),
/// so that a job sent right after the answer is taken without a wake-up, then asleep in
/// `poll`. (After jobs sent in batches it does not spin: there the CPU is better left to the
/// threads that produce the work.)
fn next_job(
    worker: &Worker,
    pending: &mut Vec<u8>,
    spin: &mut Spin,
    lone: bool,
) -> io::Result<Run> {
    let mut idle_since = None;
    loop {
        let mut inbox = worker.inbox();
        if let Some(run) = inbox.queue.pop_front() {
            inbox.current = Some(Current {
                id: run.id,
                started: Instant::now(),
                timeout: run.timeout,
            });
            drop(inbox);
            if let Some(since) = idle_since.filter(|_| lone) {
                spin.arrived(Instant::now() - since);
            }
            return Ok(run);
        }
        if !pending.is_empty() {
            // Nothing to start: the last answer goes out alone.
            drop(inbox);
            worker.write(pending)?;
            pending.clear();
            continue;
        }
        if inbox.control_reads {
            inbox.idle = true;
            inbox = sync::wait(&worker.job_arrived, inbox);
            inbox.idle = false;
            continue;
        }
        drop(inbox);
        let since = *idle_since.get_or_insert_with(Instant::now);
        let ready = || {
            read_channel(worker);
            let inbox = worker.inbox();
            (!inbox.queue.is_empty() || inbox.control_reads).then_some(())
        };
        if lone && spin.run(since, ready).is_some() {
            continue;
        }
        if !lone {
            // What came while the job ran, before sleeping.
            read_channel(worker);
            let inbox = worker.inbox();
            if !inbox.queue.is_empty() || inbox.control_reads {
                continue;
            }
        }
        // Nothing came soon: sleep until something does. The control thread, which watches
        // the clock for a running job, need not while nothing runs.
        worker.inbox().main_polling = true;
        let polled = sys::poll(&mut [sys::readable(worker.channel.as_raw_fd())], None);
        {
            let mut inbox = worker.inbox();
            inbox.main_polling = false;
            if inbox.control_parked {
                worker.control_wake.notify_one();
            }
        }
        polled.map_err(|e| io::Error::other(format!("waiting for the channel: {e}")))?;
        read_channel(worker);
    }
}

/// The control thread. While the main thread runs short jobs it only watches the clock; once
/// a job has run for [`WATCH_AFTER`] (or jobs have timeouts) it reads the channel for the
/// main thread, so that `Terminate`, `Revoke` and end of file (the pool closed the channel or
/// its process died: the worker then ends at once, even in the middle of a task) are acted on
/// while the job runs; the main thread takes the channel back after the long job.
fn control_loop(worker: &Worker) -> ! {
    loop {
        await_reading(worker);
        read_for_main(worker);
    }
}

/// Sleeps until the control thread must read the channel: a job has run for [`WATCH_AFTER`],
/// or jobs have timeouts. While the main thread sleeps in `poll` (nothing runs) it sleeps
/// without a timeout; the main thread wakes it when it leaves `poll`.
fn await_reading(worker: &Worker) {
    let mut inbox = worker.inbox();
    loop {
        if inbox.control_reads {
            return;
        }
        let running = inbox.current.as_ref().map(|c| c.started.elapsed());
        if running.is_some_and(|t| t >= WATCH_AFTER) {
            inbox.control_reads = true;
            return;
        }
        if inbox.main_polling {
            inbox.control_parked = true;
            inbox = sync::wait(&worker.control_wake, inbox);
            inbox.control_parked = false;
        } else {
            let left = WATCH_AFTER - running.unwrap_or_default();
            inbox = worker
                .control_wake
                .wait_timeout(inbox, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Reads the channel in the control thread's turn: sleeps in `poll` for input, then reads
/// without waiting. It hands the channel back to the main thread once no long job runs (for
/// good only with jobs that have timeouts, whose clock it watches every [`TICK`]).
///
/// (A thread asleep in a blocking `read` of the socket would also be woken, for nothing, each
/// time the pool drains an answer this worker wrote: the kernel's "room to write" wake-up
/// reaches every sleeper on the socket, while `poll` filters it out.)
fn read_for_main(worker: &Worker) {
    loop {
        let ticking = worker.inbox().timeouts;
        if let Err(e) = sys::poll(
            &mut [sys::readable(worker.channel.as_raw_fd())],
            ticking.then_some(TICK),
        ) {
            fail(&format!("waiting for the channel: {e}"));
        }
        read_channel(worker);
        let mut inbox = worker.inbox();
        if inbox.timeouts {
            if let Some(current) = &inbox.current {
                if current
                    .timeout
                    .is_some_and(|t| current.started.elapsed() > t)
                {
                    worker.stop(current.id, true);
                }
            }
            continue;
        }
        let long_job = inbox
            .current
            .as_ref()
            .is_some_and(|c| c.started.elapsed() >= WATCH_AFTER);
        if !long_job {
            inbox.control_reads = false;
            if inbox.idle {
                worker.job_arrived.notify_one();
            }
            return;
        }
    }
}

/// Reads what the channel holds now, without waiting, and acts on it (see [`take_in`]); ends
/// the process at end of file. Only the thread whose turn it is to read calls it.
fn read_channel(worker: &Worker) {
    let mut reader = sync::lock(&worker.reader);
    match read_now(&mut reader, &worker.channel) {
        // The pool closed the channel, or its process is gone: nothing left to serve.
        Ok(true) => std::process::exit(if reader.finish().is_ok() {
            0
        } else {
            EXIT_PROTOCOL
        }),
        Ok(false) => {}
        // The pool closed its end before reading all we sent (at shutdown, a greeting or an
        // answer it no longer needs): an ordinary end too.
        Err(e) if sys::peer_gone(&e) => std::process::exit(0),
        Err(e) => fail(&format!("reading the channel: {e}")),
    }
    if take_in(worker, &mut reader) {
        let mut inbox = worker.inbox();
        if !inbox.timeouts {
            // The clock must be watched from now on: that is the control thread's job.
            inbox.timeouts = true;
            inbox.control_reads = true;
            worker.control_wake.notify_one();
        }
    }
}

/// Reads what the channel holds now, without waiting: `true` at end of file.
fn read_now(reader: &mut FrameReader, stream: &UnixStream) -> io::Result<bool> {
    match reader.fill(&mut sys::NoWait(stream.as_fd())) {
        Ok(n) => Ok(n == 0),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Acts on the complete frames `reader` holds: jobs go to the main thread's queue, `Terminate`
/// and `Revoke` are acted on at once (after queueing the jobs before them). Returns whether
/// any of the jobs has a timeout (the control thread must then watch the clock).
fn take_in(worker: &Worker, reader: &mut FrameReader) -> bool {
    let mut batch = Vec::new();
    let mut timeouts = false;
    loop {
        let range = match reader.next_frame() {
            Ok(Some(range)) => range,
            Ok(None) => break,
            Err(e) => fail(&e.to_string()),
        };
        match protocol::decode::<ToWorker<'_>>(reader.payload(range)) {
            Ok(ToWorker::Run {
                id,
                trampoline,
                func,
                timeout_us,
                lone,
                args,
            }) => {
                timeouts |= timeout_us.is_some();
                batch.push(Run {
                    id,
                    lone,
                    trampoline,
                    func,
                    timeout: timeout_us.map(Duration::from_micros),
                    args: args.0.to_vec(),
                });
            }
            Ok(ToWorker::Terminate { id }) => {
                queue(worker, &mut batch);
                terminate(worker, id);
            }
            Ok(ToWorker::Revoke { id }) => {
                queue(worker, &mut batch);
                revoke(worker, id);
            }
            Err(e) => fail(&e),
        }
    }
    queue(worker, &mut batch);
    timeouts
}

/// Hands the jobs read so far to the main thread.
fn queue(worker: &Worker, batch: &mut Vec<Run>) {
    if batch.is_empty() {
        return;
    }
    let mut inbox = worker.inbox();
    inbox.queue.extend(batch.drain(..));
    if inbox.idle {
        worker.job_arrived.notify_one();
    }
}

/// Stops job `id`: drops it if queued, ends the process if it is running, ignores it if it is
/// already answered.
fn terminate(worker: &Worker, id: u64) {
    let mut inbox = worker.inbox();
    if inbox.current.as_ref().is_some_and(|c| c.id == id) {
        worker.stop(id, false);
    }
    if let Some(at) = inbox.queue.iter().position(|r| r.id == id) {
        inbox.queue.remove(at);
        drop(inbox);
        if worker.send(&FromWorker::Skipped { id }).is_err() {
            fail("could not answer a Terminate");
        }
    }
}

/// Gives job `id` back if it is still queued; a job already started or answered stays.
fn revoke(worker: &Worker, id: u64) {
    let mut inbox = worker.inbox();
    if let Some(at) = inbox.queue.iter().position(|r| r.id == id) {
        inbox.queue.remove(at);
        drop(inbox);
        if worker.send(&FromWorker::Revoked { id }).is_err() {
            fail("could not answer a Revoke");
        }
    }
}

fn fail(what: &str) -> ! {
    eprintln!(
        "primepool worker {}: protocol error: {what}",
        std::process::id()
    );
    std::process::exit(EXIT_PROTOCOL)
}
