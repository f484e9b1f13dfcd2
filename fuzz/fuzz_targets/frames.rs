//! Fuzzes the process pool's frame reader, as a worker channel would feed it: the first byte
//! picks how many bytes each read hands over, the rest is the stream. Every frame cut out must
//! respect the cap, every message in it must decode or fail cleanly, and the reader's buffer
//! must stay within twice what arrived (or its small starting size), whatever lengths the
//! stream announces.

#![no_main]

use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use primepool::process::{decode_any_message, FrameError, FrameReader};

/// A small cap, so that random length prefixes often exceed it.
const MAX: usize = 4096;
/// The reader's starting buffer.
const FLOOR: usize = 64 * 1024;

/// Hands out the stream `step` bytes at a time, like a socket.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&step, data)) = input.split_first() else {
        return;
    };
    let mut src = Trickle {
        data,
        step: usize::from(step).max(1) * 37,
    };
    let mut reader = FrameReader::new(MAX);
    loop {
        loop {
            match reader.next_frame() {
                Ok(Some(range)) => {
                    let payload = reader.payload(range);
                    assert!(payload.len() <= MAX);
                    let _ = decode_any_message(payload);
                }
                Ok(None) => break,
                Err(FrameError::TooLarge { len, max }) => {
                    assert!(len > max);
                    return;
                }
                Err(e) => panic!("next_frame may only refuse oversized frames, got {e}"),
            }
        }
        match reader.fill(&mut src) {
            Ok(0) => {
                let _ = reader.finish();
                return;
            }
            Ok(_) => assert!(
                reader.capacity() <= FLOOR.max(2 * data.len()),
                "buffer of {} bytes for {} received",
                reader.capacity(),
                data.len()
            ),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                return;
            }
        }
    }
});
