//! The one error type every primepool operation returns.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which worker ran (or held) a task: an OS process id natively, a Web Worker index in the
/// browser, or a thread index for thread pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkerId {
    /// An operating-system process id.
    Process(u32),
    /// The index of a Web Worker in its pool.
    WebWorker(u32),
    /// The index of a thread in its pool.
    Thread(u32),
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerId::Process(pid) => write!(f, "process {pid}"),
            WorkerId::WebWorker(i) => write!(f, "web worker {i}"),
            WorkerId::Thread(i) => write!(f, "thread {i}"),
        }
    }
}

/// A panic caught inside a task: what it said and where it happened, and, for executors that
/// run tasks in this process (serial, threads, rayon), the panic's own payload, so a caller can
/// re-raise it with [`std::panic::resume_unwind`] as a `JoinHandle` or rayon allows.
///
/// Across a process or Web Worker boundary only the message and the location travel: there
/// [`into_payload`](TaskPanic::into_payload) gives the message as a `String`.
///
/// ```
/// use primepool_core::{Error, ExecutorExt, SerialExecutor};
///
/// #[derive(Debug, PartialEq)]
/// struct Overdrawn(u32);
///
/// let pool = SerialExecutor::new();
/// let failed = pool.submit(|x: u32| -> u32 { std::panic::panic_any(Overdrawn(x)) }, 7);
/// let Err(Error::Panicked(panic)) = failed.unwrap().join() else { unreachable!() };
/// let payload = panic.into_payload();
/// assert_eq!(payload.downcast_ref::<Overdrawn>(), Some(&Overdrawn(7)));
/// // std::panic::resume_unwind(payload) would re-raise it here.
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPanic {
    /// The panic message (the payload, when it was a string).
    pub message: String,
    /// `file:line:column` of the panic, when the panic hook saw it.
    pub location: Option<String>,
    /// The payload itself, in-process only; shared by the error's clones, taken once.
    #[serde(skip)]
    payload: Payload,
}

/// A panic payload shared by the clones of one error. It takes no part in equality.
#[derive(Clone, Default)]
struct Payload(Option<Arc<Mutex<Option<AnyPayload>>>>);

/// What `catch_unwind` gives and `resume_unwind` takes.
type AnyPayload = Box<dyn Any + Send>;

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

impl PartialEq for Payload {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Payload {}

impl TaskPanic {
    /// A panic with this message and location and no payload (as it arrives from another
    /// process).
    pub fn new(message: impl Into<String>, location: Option<String>) -> Self {
        TaskPanic {
            message: message.into(),
            location,
            payload: Payload::default(),
        }
    }

    /// A panic caught in this process, keeping its payload.
    pub(crate) fn with_payload(
        message: String,
        location: Option<String>,
        payload: Box<dyn Any + Send>,
    ) -> Self {
        TaskPanic {
            message,
            location,
            payload: Payload(Some(Arc::new(Mutex::new(Some(payload))))),
        }
    }

    /// Takes the panic's original payload, if this process caught it and no clone of this
    /// error took it first.
    pub fn take_payload(&self) -> Option<Box<dyn Any + Send>> {
        let slot = self.payload.0.as_ref()?;
        slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The payload to re-raise with [`std::panic::resume_unwind`]: the original one where it
    /// is still here (see [`take_payload`](TaskPanic::take_payload)), else the message as a
    /// `String` (a panic from another process, or a payload already taken).
    pub fn into_payload(self) -> Box<dyn Any + Send> {
        match self.take_payload() {
            Some(payload) => payload,
            None => Box::new(self.message),
        }
    }
}

impl fmt::Display for TaskPanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(at) => write!(f, "'{}' at {at}", self.message),
            None => write!(f, "'{}'", self.message),
        }
    }
}

/// Everything that can go wrong with a task or an executor.
///
/// Errors are `Clone` because a future keeps its outcome and can report it more than once, as
/// `Future.exception()` does in Python.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The future was cancelled before it started running.
    #[error("the task was cancelled before it started")]
    Cancelled,
    /// Waiting took longer than the timeout given. Make one with [`Error::timed_out`].
    #[error("{}", timed_out_text(*after, *unfinished))]
    TimedOut {
        /// The timeout that ran out.
        after: Duration,
        /// Set by [`as_completed`](crate::as_completed): how many of the futures it watched
        /// had not finished, as Python's `"2 (of 4) futures unfinished"` says.
        unfinished: Option<Unfinished>,
    },
    /// The task panicked; the worker that ran it lives on.
    #[error("the task panicked: {0}")]
    Panicked(TaskPanic),
    /// The worker holding the task died (crashed, exited or was killed from outside) before
    /// answering. Other tasks are unaffected; the pool replaces the worker.
    #[error("{worker} died while running the task ({status}); a replacement worker was started")]
    WorkerDied {
        /// The worker that died.
        worker: WorkerId,
        /// How it ended: exit status or signal, as the operating system reported it.
        status: String,
    },
    /// A task shipped to a cluster was handed to workers `attempts` times and never finished:
    /// each time, its worker died or lost its connection before answering (a task's own panic
    /// or error is never retried). It is not tried again.
    #[error(
        "the task was given to workers {attempts} times and never finished (each worker died or \
         lost its connection first; the last one was {last_worker}); it is not tried again"
    )]
    AttemptsExhausted {
        /// How many times the task was handed to a worker.
        attempts: u32,
        /// The last worker known to have started it (`host:pid`), or what is known of it.
        last_worker: String,
    },
    /// The running task was stopped on purpose (`Future::terminate` or a per-task timeout): its
    /// worker was ended and replaced.
    #[error("the task was terminated: {0}")]
    Terminated(String),
    /// `submit` or `map` was called after `shutdown`.
    #[error("cannot schedule new tasks after the executor was shut down")]
    ShutDown,
    /// The executor can no longer run tasks (e.g. a worker initializer failed); the text says why.
    #[error("the executor is broken: {0}")]
    Broken(String),
    /// An argument or a result could not be encoded or decoded for the trip to another worker.
    #[error("serialization failed: {0}")]
    Serialization(String),
    /// A blocking wait was requested where blocking is impossible (the browser's main thread);
    /// await the future instead.
    #[error("cannot block on this thread (the browser's main thread never blocks); await the future instead")]
    WouldBlock,
    /// An argument to the API was out of range (a zero chunk size or worker count, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The result was already moved out of this future by `join` or `.await`.
    #[error("the result was already taken from this future (by join or await)")]
    ResultTaken,
}

/// How many futures were still unfinished when an
/// [`as_completed`](crate::as_completed) timeout ran out, out of how many it watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Unfinished {
    /// Futures not yet yielded.
    pub count: usize,
    /// Distinct futures watched.
    pub of: usize,
}

fn timed_out_text(after: Duration, unfinished: Option<Unfinished>) -> String {
    match unfinished {
        Some(Unfinished { count, of }) => {
            format!("{count} (of {of}) futures unfinished after the timeout of {after:?}")
        }
        None => {
            format!("timed out after {after:?} waiting for the task; it may still finish later")
        }
    }
}

impl Error {
    /// [`Error::TimedOut`] after `after`, for one task.
    ///
    /// ```
    /// use primepool_core::Error;
    /// use std::time::Duration;
    ///
    /// let e = Error::timed_out(Duration::from_secs(1));
    /// assert!(matches!(e, Error::TimedOut { unfinished: None, .. }));
    /// ```
    pub fn timed_out(after: Duration) -> Self {
        Error::TimedOut {
            after,
            unfinished: None,
        }
    }

    /// The payload of a task's panic, to re-raise with [`std::panic::resume_unwind`] (see
    /// [`TaskPanic::into_payload`]); any other error is given back.
    pub fn into_panic(self) -> Result<Box<dyn Any + Send>, Error> {
        match self {
            Error::Panicked(panic) => Ok(panic.into_payload()),
            other => Err(other),
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(what: impl Into<String>) -> Self {
        Error::InvalidArgument(what.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_texts_name_the_cause_and_the_remedy() {
        let died = Error::WorkerDied {
            worker: WorkerId::Process(42),
            status: "killed by signal 9 (SIGKILL)".into(),
        };
        assert_eq!(
            died.to_string(),
            "process 42 died while running the task (killed by signal 9 (SIGKILL)); a replacement worker was started"
        );
        let panicked = Error::Panicked(TaskPanic::new("boom", Some("src/lib.rs:1:2".into())));
        assert_eq!(
            panicked.to_string(),
            "the task panicked: 'boom' at src/lib.rs:1:2"
        );
        assert!(Error::WouldBlock.to_string().contains("await"));
        let unfinished = Error::TimedOut {
            after: Duration::from_millis(10),
            unfinished: Some(Unfinished { count: 2, of: 4 }),
        };
        assert_eq!(
            unfinished.to_string(),
            "2 (of 4) futures unfinished after the timeout of 10ms"
        );
        assert!(Error::ShutDown
            .to_string()
            .contains("after the executor was shut down"));
    }
}
