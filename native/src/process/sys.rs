//! The few operating-system calls the process pool needs beyond `std`, each behind a safe
//! function: descriptor flags, `poll`, the parent-death signal, and naming how a process ended.

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

/// In a freshly forked child, before `exec`: keeps `fd` open across the `exec` and, on Linux,
/// asks for SIGKILL when the parent thread dies, then closes the race with a parent that died
/// before the request by checking the parent pid. Only async-signal-safe calls (no
/// allocation, no locks); errors carry only an OS error number.
pub(crate) fn prepare_child(fd: RawFd, parent: u32) -> io::Result<()> {
    // SAFETY: `fd` is the child's end of the socket pair, open in this freshly forked process
    // (descriptors are copied by fork); F_GETFD/F_SETFD only change its descriptor flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_PDEATHSIG takes a signal number and changes only this process's own
        // attribute; it is a plain system call, safe between fork and exec.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: getppid has no preconditions and cannot fail.
    if unsafe { libc::getppid() } as u32 != parent {
        // The pool's process is gone. ESRCH, built from a number: nothing may allocate here.
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
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
