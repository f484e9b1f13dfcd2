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
//! Both ends are created close-on-exec; only the intended child clears the flag on its end, as
//! `posix_spawn` starts it, so no other program started meanwhile inherits it (which would hide
//! the end-of-file a worker relies on to notice that its pool is gone).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

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

/// `program` as a path to execute: as given if it names a directory, else found in `PATH`.
fn resolve(program: &Path) -> io::Result<PathBuf> {
    if program.components().count() > 1 {
        return Ok(program.to_owned());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not found in PATH"))
}

fn c_string(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{s:?} contains a NUL byte"),
        )
    })
}

/// A worker process started by [`spawn`], known by its pid until it is reaped.
///
/// (Not `std::process::Child`: `std` waits for the child's `exec` to finish before returning,
/// which takes milliseconds, during which the pool could not start the next worker.)
#[derive(Debug)]
pub(crate) struct Process {
    pid: libc::pid_t,
    status: Option<ExitStatus>,
    /// Readable once the process has ended (see [`sys::exit_watch`]); closed when it is
    /// reaped.
    exit_watch: Option<OwnedFd>,
}

impl Process {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// A descriptor that becomes readable when the process ends, while it is not reaped, where
    /// the system offers one.
    pub fn exit_fd(&self) -> Option<RawFd> {
        self.exit_watch.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The exit status, if the process has ended (reaping it).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.wait_with(libc::WNOHANG)
    }

    /// Waits for the process to end (reaping it).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.wait_with(0)? {
                return Ok(status);
            }
        }
    }

    fn wait_with(&mut self, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let mut raw = 0;
        // SAFETY: waitpid writes the status into the integer it is given; `pid` is a child of
        // this process that we have not reaped yet.
        let r = unsafe { libc::waitpid(self.pid, &mut raw, flags) };
        if r == self.pid {
            let status = ExitStatus::from_raw(raw);
            self.status = Some(status);
            self.exit_watch = None;
            return Ok(Some(status));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => Ok(None),
            // Reaped by someone else (SIGCHLD ignored, or a stray wait): it is gone, how is
            // not known.
            Some(libc::ECHILD) => {
                let status = ExitStatus::from_raw(0);
                self.status = Some(status);
                self.exit_watch = None;
                Ok(Some(status))
            }
            _ => Err(e),
        }
    }

    /// Sends SIGKILL, unless the process was already reaped. Where the system has pidfds
    /// (Linux 5.3 and later) the signal goes through the one this process holds, so it can
    /// only ever reach this process, even if someone else reaped it (`SIGCHLD` ignored, a
    /// `waitpid(-1)` elsewhere in the program) and its pid was reused. Elsewhere it goes by
    /// pid, after checking that the child is still ours to wait for.
    pub fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        if let Some(pidfd) = &self.exit_watch {
            return match sys::pidfd_kill(pidfd.as_fd()) {
                // It has ended already (it may be reaped by someone else): nothing to stop.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
                other => other,
            };
        }
        // Reaped behind our back? Then its pid may belong to another process now.
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        // SAFETY: kill has no memory-safety preconditions. The pid is our child and was not
        // reaped a moment ago (checked above).
        if unsafe { libc::kill(self.pid, libc::SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Process {
    /// A process dropped before it was reaped (set-up failed after the spawn, or the pool's
    /// I/O thread is unwinding) is killed and reaped: never a zombie, never a stray worker.
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.kill();
            let _ = self.wait();
        }
    }
}

/// A [`WorkerCommand`] made ready to run, once per pool: the program found and checked, the
/// arguments converted. Doing this when the pool is built reports a missing or
/// non-executable program to the caller at once, and keeps it off the path of every spawn.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    path: CString,
    argv: Vec<CString>,
    env: Vec<(OsString, OsString)>,
    /// How the program is named in errors.
    shown: String,
}

impl WorkerCommand {
    /// Finds the program (this executable by default) and checks that it can be executed.
    pub fn prepare(&self) -> io::Result<Launch> {
        let (program, arg0) = match &self.program {
            Some(p) => (resolve(p), p.as_os_str().to_owned()),
            None => (
                this_program(),
                std::env::args_os()
                    .next()
                    .unwrap_or_else(|| "primepool-worker".into()),
            ),
        };
        let shown = arg0.to_string_lossy().into_owned();
        let cannot = |e| cannot_start(&shown, e);
        let path = c_string(program.map_err(cannot)?.as_os_str())?;
        // SAFETY: `path` is a NUL-terminated string; access only reads it.
        if unsafe { libc::access(path.as_ptr(), libc::X_OK) } != 0 {
            return Err(cannot(io::Error::last_os_error()));
        }
        let mut argv = vec![c_string(&arg0)?];
        for arg in &self.args {
            argv.push(c_string(arg)?);
        }
        Ok(Launch {
            path,
            argv,
            env: self.env.clone(),
            shown,
        })
    }
}

/// `e`, saying which worker program could not be started.
fn cannot_start(shown: &str, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("could not start worker process {shown}: {e}"),
    )
}

/// Starts one worker; returns the process and the pool's (non-blocking) end of its channel.
///
/// The child is started with `posix_spawn` (see [`sys::spawn_program`]): it shares this
/// process's memory until its `exec`, instead of a `fork`ed copy whose pages this process would
/// then fault on, one by one, the next time it writes them (a `map` of many small tasks right
/// after other work ran 12-16 ms instead of 8). The call returns once the new program is being
/// loaded, so workers boot in parallel; a program that cannot be executed is an error here.
pub(crate) fn spawn(
    launch: &Launch,
    initializer: Option<u64>,
) -> io::Result<(Process, UnixStream)> {
    let cannot = |e| cannot_start(&launch.shown, e);
    let (ours, theirs) = UnixStream::pair()?;
    let fd = theirs.as_raw_fd();
    let parent = std::process::id();
    let worker_env = WorkerEnv {
        fd,
        parent,
        initializer,
        image: image::identity().to_owned(),
    };
    // The environment as it is now (a replacement worker sees the program's changes), with
    // the pool's own variables.
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k != ENV && !launch.env.iter().any(|(o, _)| o == k))
        .collect();
    env.extend(launch.env.iter().cloned());
    env.push((ENV.into(), worker_env.encode().into()));
    let envp = env
        .iter()
        .map(|(k, v)| {
            let mut pair = k.clone();
            pair.push("=");
            pair.push(v);
            c_string(&pair)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let argv_ptrs: Vec<*const libc::c_char> = launch
        .argv
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_ptrs: Vec<*const libc::c_char> = envp
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let null = std::fs::File::open("/dev/null")?;
    let null_fd = null.as_raw_fd();

    let pid =
        sys::spawn_program(&launch.path, &argv_ptrs, &envp_ptrs, fd, null_fd).map_err(cannot)?;
    // Owned from here on: if anything below fails, dropping it kills and reaps the child.
    let process = Process {
        pid,
        status: None,
        exit_watch: sys::exit_watch(pid),
    };
    drop(theirs);
    drop(null);
    ours.set_nonblocking(true)?;
    Ok((process, ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that sleeps, started as the pool starts workers.
    fn sleeper() -> Process {
        let command = WorkerCommand {
            program: Some("sleep".into()),
            args: vec!["30".into()],
            env: Vec::new(),
        };
        spawn(&command.prepare().unwrap(), None).unwrap().0
    }

    fn state_of(pid: u32) -> Option<char> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        text[text.rfind(')')? + 1..].trim_start().chars().next()
    }

    #[test]
    fn a_process_dropped_unreaped_is_killed_and_reaped() {
        let process = sleeper();
        let pid = process.id();
        assert_eq!(state_of(pid).map(|s| s != 'Z'), Some(true), "it runs");
        drop(process);
        assert_eq!(state_of(pid), None, "neither running nor a zombie");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn kill_after_someone_else_reaped_the_child_signals_nothing_by_pid() {
        let mut process = sleeper();
        assert!(process.exit_fd().is_some(), "this kernel has pidfds");
        let pid = process.pid;
        // Someone else in the program kills and reaps it (a `waitpid(-1)` elsewhere).
        // SAFETY: plain system calls on our own child; the status is written to a local.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            let mut raw = 0;
            assert_eq!(libc::waitpid(pid, &mut raw, 0), pid);
        }
        // Its pid is free for reuse now. A kill must go through the pidfd: it reaches nothing
        // (a dead process) and is no error; a kill by pid would hit whatever got the pid.
        assert!(process.kill().is_ok());
        assert!(
            process.try_wait().unwrap().is_some(),
            "gone, as far as it can tell"
        );
    }

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
