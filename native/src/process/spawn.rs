//! Starting a worker process: Python's "spawn" start method, for a compiled program.
//!
//! The worker is a fresh run of the pool's own executable (`/proc/self/exe` on Linux, which
//! still names the running image after the file on disk was rebuilt or deleted; the path
//! from `current_exe` elsewhere), or of the command the builder named. It learns that it is a
//! worker, and where its channel is, from one environment variable, [`ENV`]; the program's
//! first call, `run_worker_if_requested`, sees it and runs the worker loop instead of `main`.
//!
//! The channel is one end of a Unix socket pair, passed as an inherited descriptor that is
//! neither stdin, stdout nor stderr, so a task's own prints reach the terminal as in Python.
//! Both ends are created close-on-exec; only the intended child clears the flag on its end,
//! between fork and exec, so no other program started meanwhile inherits it (which would hide
//! the end-of-file a worker relies on to notice that its pool is gone).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::image;
use super::sys;

/// The environment variable that makes a process a worker (see [`WorkerEnv`]).
pub(crate) const ENV: &str = "PRIMEPOOL_WORKER";

/// What a worker is told through [`ENV`]: `1;<fd>;<parent pid>;<initializer offset or ->;<image
/// identity>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkerEnv {
    /// The worker's end of the channel.
    pub fd: RawFd,
    /// The pool's process id.
    pub parent: u32,
    /// The initializer, as an offset from the image marker.
    pub initializer: Option<u64>,
    /// The pool's program image identity, which the worker must share.
    pub image: String,
}

impl WorkerEnv {
    /// The variable's value.
    pub fn encode(&self) -> String {
        let init = self
            .initializer
            .map_or_else(|| "-".to_owned(), |i| i.to_string());
        format!("1;{};{};{init};{}", self.fd, self.parent, self.image)
    }

    /// Reads the variable's value; anything malformed is an error naming the variable.
    pub fn parse(value: &OsStr) -> Result<Self, String> {
        let bad = || {
            format!("{ENV} is malformed ({value:?}); it is set by primepool's process pool for its workers only")
        };
        let text = value.to_str().ok_or_else(bad)?;
        let mut parts = text.splitn(5, ';');
        let mut next = || parts.next().ok_or_else(bad);
        if next()? != "1" {
            return Err(bad());
        }
        let fd: RawFd = next()?.parse().map_err(|_| bad())?;
        let parent: u32 = next()?.parse().map_err(|_| bad())?;
        let initializer = match next()? {
            "-" => None,
            n => Some(n.parse().map_err(|_| bad())?),
        };
        let image = next()?.to_owned();
        if fd <= 2 || image.is_empty() {
            return Err(bad());
        }
        Ok(WorkerEnv {
            fd,
            parent,
            initializer,
            image,
        })
    }
}

/// How to start a worker process.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerCommand {
    /// The executable; `None`: this program.
    pub program: Option<PathBuf>,
    /// Arguments after the program name.
    pub args: Vec<OsString>,
    /// Extra environment variables.
    pub env: Vec<(OsString, OsString)>,
}

/// The executable that runs this very image.
fn this_program() -> io::Result<PathBuf> {
    if cfg!(target_os = "linux") {
        Ok(PathBuf::from("/proc/self/exe"))
    } else {
        std::env::current_exe()
    }
}

/// Starts one worker; returns the child and the pool's (non-blocking) end of its channel.
pub(crate) fn spawn(
    command: &WorkerCommand,
    initializer: Option<u64>,
) -> io::Result<(Child, UnixStream)> {
    let (ours, theirs) = UnixStream::pair()?;
    let fd = theirs.as_raw_fd();
    let parent = std::process::id();
    let env = WorkerEnv {
        fd,
        parent,
        initializer,
        image: image::identity().to_owned(),
    };
    let program = match &command.program {
        Some(p) => p.clone(),
        None => this_program()?,
    };
    let mut cmd = Command::new(&program);
    if command.program.is_none() {
        if let Some(arg0) = std::env::args_os().next() {
            cmd.arg0(arg0);
        }
    }
    cmd.args(&command.args)
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .env(ENV, env.encode())
        .stdin(Stdio::null());
    // SAFETY: the hook runs in the forked child before exec and calls only
    // `sys::prepare_child`, which makes async-signal-safe system calls (fcntl, prctl,
    // getppid) on values captured by copy; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || sys::prepare_child(fd, parent));
    }
    let child = cmd.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("could not start worker process {}: {e}", program.display()),
        )
    })?;
    drop(theirs);
    ours.set_nonblocking(true)?;
    Ok((child, ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_variable_round_trips_and_rejects_garbage() {
        let env = WorkerEnv {
            fd: 7,
            parent: 42,
            initializer: Some(123),
            image: "file:unknown (a;b)".into(),
        };
        assert_eq!(WorkerEnv::parse(OsStr::new(&env.encode())), Ok(env));
        for bad in [
            "",
            "1;2;3;-;x",
            "2;7;1;-;x",
            "1;x;1;-;x",
            "1;7;1;-;",
            "1;7;1;q;x",
        ] {
            let err = WorkerEnv::parse(OsStr::new(bad)).unwrap_err();
            assert!(err.contains(ENV), "{err}");
        }
    }
}
