//! The few operating-system calls the process pool needs beyond `std`, each behind a safe
//! function: descriptor flags, `poll`, the parent-death signal, and naming how a process ended.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

/// Sets or clears close-on-exec on `fd`.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: `fd` is a borrowed, open descriptor; F_GETFD and F_SETFD only read and write
    // its descriptor flags.
    unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFD);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if on {
            flags | libc::FD_CLOEXEC
        } else {
            flags & !libc::FD_CLOEXEC
        };
        if libc::fcntl(raw, libc::F_SETFD, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Starts `path` with `argv` and `envp` (null-terminated arrays of pointers to NUL-terminated
/// strings) by `posix_spawn`, and returns its pid. In the child, `keep` stays open across the
/// `exec` (a `dup2` of a descriptor onto itself clears its close-on-exec flag, as POSIX
/// specifies and glibc and musl do, so no other program started meanwhile inherits it),
/// `stdin` becomes its standard input, and what the parent's runtime changed is reset: the
/// signal mask is emptied and SIGPIPE is back to its default action.
///
/// On Linux, glibc and musl run the child on its own stack in this process's memory until its
/// `exec` (`CLONE_VM | CLONE_VFORK`): no page tables are copied, and this process's pages are
/// not made copy-on-write, as a `fork` would.
pub(crate) fn spawn_program(
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    keep: RawFd,
    stdin: RawFd,
) -> io::Result<libc::pid_t> {
    let ok = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    };
    assert!(
        argv.last().is_some_and(|p| p.is_null()) && envp.last().is_some_and(|p| p.is_null()),
        "argv and envp must end with a null pointer"
    );
    // SAFETY: the file actions and attributes are initialised before use and destroyed
    // exactly once below; every other argument is a plain value, a signal set we initialised,
    // or one of the caller's arrays, which end with a null pointer (checked above) and point to
    // NUL-terminated strings alive for this call. posix_spawn only reads them.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        ok(libc::posix_spawn_file_actions_init(&mut actions))?;
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        if let Err(e) = ok(libc::posix_spawnattr_init(&mut attr)) {
            libc::posix_spawn_file_actions_destroy(&mut actions);
            return Err(e);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        let flags = (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short;
        let mut pid: libc::pid_t = 0;
        let result = ok(libc::posix_spawn_file_actions_adddup2(
            &mut actions,
            keep,
            keep,
        ))
        .and_then(|()| {
            ok(libc::posix_spawn_file_actions_adddup2(
                &mut actions,
                stdin,
                0,
            ))
        })
        .and_then(|()| ok(libc::posix_spawnattr_setsigmask(&mut attr, &none)))
        .and_then(|()| ok(libc::posix_spawnattr_setsigdefault(&mut attr, &pipe)))
        .and_then(|()| ok(libc::posix_spawnattr_setflags(&mut attr, flags)))
        .and_then(|()| {
            ok(libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                &actions,
                &attr,
                argv.as_ptr().cast(),
                envp.as_ptr().cast(),
            ))
        });
        libc::posix_spawnattr_destroy(&mut attr);
        libc::posix_spawn_file_actions_destroy(&mut actions);
        result.map(|()| pid)
    }
}

/// In a worker, first thing: on Linux, asks for SIGKILL when the thread that started it (the
/// pool's I/O thread) ends, then checks that the pool's process `parent` is still its parent,
/// closing the race with a pool that died before the request. `false`: the pool is gone.
/// (Were the request refused, end-of-file on the channel would still end the worker.)
pub(crate) fn watch_parent(parent: u32) -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and changes only this process's own
    // attribute.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() as u32 == parent }
}

/// True if `fd` is an open socket (a worker checks the descriptor it was told about before
/// taking ownership of it).
pub(crate) fn is_socket(fd: RawFd) -> bool {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` into the buffer it is given, which is large enough; on
    // failure we do not read it.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat returned 0, so it initialised the whole struct.
    let stat = unsafe { stat.assume_init() };
    stat.st_mode & libc::S_IFMT == libc::S_IFSOCK
}

/// The error a channel gives once the other end is closed: its process ended, or it closed
/// its end with bytes of ours unread (a connection reset). Either is an ordinary end.
pub(crate) fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// Writes all of `bytes` to the socket `fd` (blocking), without raising SIGPIPE if the other
/// end is closed.
pub(crate) fn send_all(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid buffer of `bytes.len()` bytes for the call; `send` on a
        // descriptor that is not an open socket fails with an error and touches no memory.
        let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = bytes.get(n as usize..).unwrap_or_default();
    }
    Ok(())
}

/// A descriptor that becomes readable when child process `pid` ends, so the pool can sleep in
/// `poll` until then instead of checking on a timer: a pidfd (Linux 5.3 and later, always
/// close-on-exec). `None` on other systems or older kernels; callers then poll `waitpid`.
pub(crate) fn exit_watch(pid: libc::pid_t) -> Option<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and a flags word and returns a new descriptor or -1;
        // it touches no memory of ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if let Ok(fd) = RawFd::try_from(fd) {
            if fd >= 0 {
                // SAFETY: the kernel just created this descriptor for us; nothing else owns it.
                return Some(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = pid;
    None
}

/// Sends SIGKILL to the process a pidfd (from [`exit_watch`]) refers to: never to another
/// process that reuses its pid.
#[cfg(target_os = "linux")]
pub(crate) fn pidfd_kill(pidfd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: pidfd_send_signal takes a descriptor, a signal number, a null `siginfo` (allowed:
    // the kernel fills in a default) and flags; it touches no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere there are no pidfds ([`exit_watch`] gives none), so this is never called.
#[cfg(not(target_os = "linux"))]
pub(crate) fn pidfd_kill(_pidfd: BorrowedFd<'_>) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// A `poll` entry waiting for `fd` to be readable (input, end of file, or a pidfd's exit).
pub(crate) fn readable(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Reads from a socket without waiting, whatever its blocking mode: `WouldBlock` when nothing
/// is there (`recv` with `MSG_DONTWAIT`, so other users of the socket are not affected).
pub(crate) struct NoWait<'a>(pub BorrowedFd<'a>);

impl io::Read for NoWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a valid, exclusively borrowed buffer of `buf.len()` bytes, and the
        // descriptor is open for the borrow's lifetime.
        let n = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// Waits until one of `fds` is ready or `timeout` passes (`None`: forever). Returns the number
/// of ready descriptors; an interrupted wait counts as zero.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = match timeout {
        None => -1,
        // Round up so that a wait for 0.3 ms does not spin at zero.
        Some(t) => i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
    };
    // SAFETY: `fds` is a valid, exclusively borrowed slice of `pollfd` of the given length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(err)
        };
    }
    Ok(n as usize)
}

/// The conventional name of a signal, for error messages.
pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return None,
    })
}

/// How a process ended, in words: `exit status 3`, `killed by signal 9 (SIGKILL)`,
/// `killed by signal 6 (SIGABRT), core dumped`.
pub(crate) fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    match status.signal() {
        Some(signal) => {
            let name = signal_name(signal)
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            let core = if status.core_dumped() {
                ", core dumped"
            } else {
                ""
            };
            format!("killed by signal {signal}{name}{core}")
        }
        None => format!("{status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_described_with_signal_names() {
        assert_eq!(describe(ExitStatus::from_raw(3 << 8)), "exit status 3");
        assert_eq!(
            describe(ExitStatus::from_raw(libc::SIGKILL)),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            describe(ExitStatus::from_raw(libc::SIGABRT | 0x80)),
            "killed by signal 6 (SIGABRT), core dumped"
        );
    }
}
