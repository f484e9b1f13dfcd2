//! The worker side: what [`run_worker_if_requested`] does in a process started by a pool.
//!
//! Two threads. The *control* thread reads the channel: it queues jobs, answers `Terminate`,
//! enforces per-job timeouts, and ends the process as soon as the channel reaches end-of-file
//! (the pool closed it, or the pool's process died: that is how workers never outlive their
//! pool, on every Unix, even in the middle of a task). The *main* thread runs the jobs in
//! order and writes each answer before it starts the next job, so that when a worker dies the
//! pool knows exactly which job it was running: the oldest one not answered.

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
    /// The main thread is asleep waiting for a job (only then is a wake-up needed).
    idle: bool,
}

struct Worker {
    inbox: Mutex<Inbox>,
    job_arrived: Condvar,
    out: Mutex<UnixStream>,
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
        out: Mutex::new(stream.try_clone()?),
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
        return serve_jobs(worker, stream);
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
    serve_jobs(worker, stream)
}

/// Starts the control thread, then runs jobs on this one.
///
/// The pool sends work to a worker before it is up, so the first jobs are usually waiting in
/// the channel by now: this thread takes them in first (one read that does not wait), so the
/// first job starts without waiting for the control thread to start and hand it over.
fn serve_jobs(worker: Arc<Worker>, stream: UnixStream) -> io::Result<i32> {
    let mut reader = FrameReader::new(MAX_FRAME_LEN);
    // End of file is seen again by the control thread, which ends the process.
    read_now(&mut reader, &stream)?;
    let timeouts = take_in(&worker, &mut reader);
    let control = Arc::clone(&worker);
    std::thread::Builder::new()
        .name("primepool-worker-control".into())
        .stack_size(256 * 1024)
        .spawn(move || control_loop(&control, stream, reader, timeouts))?;
    run_jobs(&worker)
}

/// The main thread: runs queued jobs in order. It says `Started` before each job and writes
/// each answer before the next job starts (together with that job's `Started`: one write per
/// job while busy), so a crash never loses an answer and the pool knows which job crashed.
fn run_jobs(worker: &Worker) -> io::Result<i32> {
    let mut pending = Vec::new();
    loop {
        let run = {
            let mut inbox = worker.inbox();
            loop {
                if let Some(run) = inbox.queue.pop_front() {
                    inbox.current = Some(Current {
                        id: run.id,
                        started: Instant::now(),
                        timeout: run.timeout,
                    });
                    break run;
                }
                if !pending.is_empty() {
                    // Nothing to start: the last answer goes out alone.
                    drop(inbox);
                    worker.write(&pending)?;
                    pending.clear();
                    inbox = worker.inbox();
                    continue;
                }
                inbox.idle = true;
                inbox = sync::wait(&worker.job_arrived, inbox);
                inbox.idle = false;
            }
        };
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

/// The control thread: reads the channel until it closes, then ends the process. `reader`
/// holds what was read before it started; `timeouts` says whether those jobs have timeouts.
///
/// It sleeps in `poll` for input, then reads without waiting. (A thread asleep in a blocking
/// `read` of the socket would also be woken, for nothing, each time the pool drains an answer
/// this worker wrote: the kernel's "room to write" wake-up reaches every sleeper on the
/// socket, while `poll` filters it out. That was one wasted wake-up per job.)
fn control_loop(worker: &Worker, stream: UnixStream, mut reader: FrameReader, timeouts: bool) -> ! {
    let mut ticking = timeouts;
    loop {
        if let Err(e) = sys::poll(
            &mut [sys::readable(stream.as_raw_fd())],
            ticking.then_some(TICK),
        ) {
            fail(&format!("waiting for the channel: {e}"));
        }
        match read_now(&mut reader, &stream) {
            // The pool closed the channel, or its process is gone: nothing left to serve.
            Ok(true) => std::process::exit(if reader.finish().is_ok() {
                0
            } else {
                EXIT_PROTOCOL
            }),
            Ok(false) => {}
            // The pool closed its end before reading all we sent (at shutdown, a greeting or
            // an answer it no longer needs): an ordinary end too.
            Err(e) if sys::peer_gone(&e) => std::process::exit(0),
            Err(e) => fail(&format!("reading the channel: {e}")),
        }
        ticking |= take_in(worker, &mut reader);
        if ticking {
            let inbox = worker.inbox();
            if let Some(current) = &inbox.current {
                if current
                    .timeout
                    .is_some_and(|t| current.started.elapsed() > t)
                {
                    worker.stop(current.id, true);
                }
            }
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
                args,
            }) => {
                timeouts |= timeout_us.is_some();
                batch.push(Run {
                    id,
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
