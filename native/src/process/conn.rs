//! The I/O thread's own side of a worker: its process, its channel and the bytes in transit.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use super::frame::FrameReader;
use super::spawn::Process;

/// The I/O thread's own side of a worker: its process and channel.
pub(super) struct Conn {
    pub(super) child: Process,
    /// `None` once the channel is closed (by us, or end-of-file from the worker).
    pub(super) stream: Option<UnixStream>,
    pub(super) reader: FrameReader,
    pub(super) outbox: Vec<u8>,
    pub(super) written: usize,
    /// Since when the pool has been waiting for the process to exit.
    pub(super) closed_at: Option<Instant>,
}

impl Conn {
    pub(super) fn pending(&self) -> usize {
        self.outbox.len() - self.written
    }

    pub(super) fn close(&mut self, now: Instant) {
        self.stream = None;
        self.closed_at.get_or_insert(now);
    }

    pub(super) fn kill(&mut self, now: Instant) {
        let _ = self.child.kill();
        self.close(now);
    }

    /// Writes as much of the outbox as the channel takes now.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        let Some(stream) = &mut self.stream else {
            self.outbox.clear();
            self.written = 0;
            return Ok(());
        };
        while self.written < self.outbox.len() {
            match stream.write(&self.outbox[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.outbox.len() {
            self.outbox.clear();
            self.written = 0;
        } else if self.written > (1 << 20) {
            self.outbox.drain(..self.written);
            self.written = 0;
        }
        Ok(())
    }
}

/// The error a channel gives once the worker's end is closed (its process ended).
pub(super) fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}
