//! Length-prefixed frames: how messages are cut out of the byte stream between a pool and its
//! workers.
//!
//! A frame is a 4-byte little-endian payload length followed by the payload. The stream is
//! trusted no more than a file from the network: a length is checked against a hard cap
//! *before* anything is allocated for it, and the buffer only grows as bytes actually arrive
//! (at most doubling, never past the frame being assembled). So a corrupt or hostile stream can
//! cost a clean [`FrameError`], never a panic, an allocation out of proportion to what was
//! received, or a wait for bytes that will not come (end of stream inside a frame is
//! [`FrameError::Truncated`]).

use std::fmt;
use std::io::{self, Read};
use std::ops::Range;

use serde::Serialize;

/// Bytes of the length prefix.
pub(crate) const HEADER_LEN: usize = 4;

/// The largest payload a frame may carry (256 MiB). A job whose arguments or results encode to
/// more fails with a serialization error instead of being sent.
pub const MAX_FRAME_LEN: usize = 256 * 1024 * 1024;

/// The buffer a reader starts with, and shrinks back to after a large frame.
const MIN_BUFFER: usize = 64 * 1024;

/// A reader holding more than this while empty gives the memory back.
const SHRINK_ABOVE: usize = 4 * 1024 * 1024;

/// Why a byte stream is not a valid sequence of frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A length prefix announced more than the cap allows.
    TooLarge {
        /// The announced payload length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes of the unfinished frame that did arrive.
        buffered: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => write!(
                f,
                "a frame announced {len} bytes, more than the {max}-byte limit (corrupt stream?)"
            ),
            FrameError::Truncated { buffered } => write!(
                f,
                "the stream ended inside a frame ({buffered} bytes of it had arrived)"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<FrameError> for io::Error {
    fn from(e: FrameError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Cuts frames out of a byte stream read in pieces (blocking or non-blocking).
///
/// Use: [`fill`](FrameReader::fill) once, then take every complete frame with
/// [`next_frame`](FrameReader::next_frame) until it returns `None`, then fill again. The ranges
/// returned index [`payload`](FrameReader::payload) and stay valid until the next `fill`, so a
/// whole batch can be decoded without copying.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
}

impl FrameReader {
    /// A reader accepting payloads of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameReader {
            buf: vec![0; MIN_BUFFER],
            start: 0,
            end: 0,
            max,
        }
    }

    /// The payload length announced by the frame at the front, if its header has arrived.
    fn announced(&self) -> Option<usize> {
        if self.end - self.start < HEADER_LEN {
            return None;
        }
        let header = self.buf.get(self.start..self.start + HEADER_LEN)?;
        let mut bytes = [0u8; HEADER_LEN];
        bytes.copy_from_slice(header);
        Some(u32::from_le_bytes(bytes) as usize)
    }

    /// The next complete frame's payload, as a range for [`payload`](FrameReader::payload);
    /// `None` when the buffer holds no complete frame.
    pub fn next_frame(&mut self) -> Result<Option<Range<usize>>, FrameError> {
        let Some(len) = self.announced() else {
            return Ok(None);
        };
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        let begin = self.start + HEADER_LEN;
        if self.end - begin < len {
            return Ok(None);
        }
        self.start = begin + len;
        Ok(Some(begin..begin + len))
    }

    /// The bytes of a range returned by [`next_frame`](FrameReader::next_frame) since the last
    /// [`fill`](FrameReader::fill).
    pub fn payload(&self, range: Range<usize>) -> &[u8] {
        self.buf.get(range).unwrap_or_default()
    }

    /// Where `part`, a slice of a payload handed out since the last
    /// [`fill`](FrameReader::fill) (or of a message decoded from one, borrowing it), lies in
    /// the buffer: a range for [`payload`](FrameReader::payload).
    pub(crate) fn range_of(&self, part: &[u8]) -> Range<usize> {
        let start = (part.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize);
        debug_assert!(
            start.checked_add(part.len()) <= Some(self.end),
            "not from this buffer"
        );
        start..start.saturating_add(part.len())
    }

    /// Reads once from `src` into free space and returns the byte count (`0`: end of stream).
    /// Fails with `InvalidData` if the frame being assembled is over the cap. Invalidates the
    /// ranges returned so far.
    pub fn fill(&mut self, src: &mut impl Read) -> io::Result<usize> {
        self.make_room()?;
        let n = src.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Checks that the stream may end here: `Err(Truncated)` if a frame was cut.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.end - self.start {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }

    /// True when [`next_frame`](FrameReader::next_frame) has something to say without another
    /// read: a complete frame, or a header over the cap.
    pub fn has_frame(&self) -> bool {
        self.announced()
            .is_some_and(|len| len > self.max || self.end - self.start - HEADER_LEN >= len)
    }

    /// The bytes allocated for the buffer (for tests of the allocation bound).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    fn make_room(&mut self) -> Result<(), FrameError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > SHRINK_ABOVE {
                self.buf = vec![0; MIN_BUFFER];
            }
        }
        if self.end < self.buf.len() {
            return Ok(());
        }
        // Full: move the unfinished frame to the front.
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            return Ok(());
        }
        // Still full, so the unfinished frame is as large as the buffer: grow, at most doubling
        // (the allocation stays within twice what has arrived) and never past the frame.
        let want = match self.announced() {
            Some(len) if len > self.max => return Err(FrameError::TooLarge { len, max: self.max }),
            Some(len) => HEADER_LEN + len,
            None => HEADER_LEN,
        };
        let grown = (self.buf.len() * 2).min(want).max(self.buf.len() + 1);
        self.buf.resize(grown, 0);
        Ok(())
    }
}

/// A postcard output that appends to a `Vec` the caller keeps (postcard's own `to_extend`
/// takes the vector by value and loses it on error).
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends `message`, postcard-encoded, to `out` as one frame. On error (encoding failed, or
/// the payload is over `max`) `out` is left as it was.
pub fn write_frame<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    message: &T,
    max: usize,
) -> Result<(), String> {
    let at = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    if let Err(e) = postcard::serialize_with_flavor(message, AppendTo(out)) {
        out.truncate(at);
        return Err(e.to_string());
    }
    let len = out.len() - at - HEADER_LEN;
    match u32::try_from(len) {
        Ok(len32) if len <= max => {
            out[at..at + HEADER_LEN].copy_from_slice(&len32.to_le_bytes());
            Ok(())
        }
        _ => {
            out.truncate(at);
            Err(format!(
                "the message encodes to {len} bytes, more than the {max}-byte frame limit"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that hands out its bytes a few at a time, like a socket.
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

    /// Reads every frame of `data`, fed `step` bytes at a time.
    fn read_all(data: &[u8], step: usize, max: usize) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut src = Trickle { data, step };
        let mut reader = FrameReader::new(max);
        let mut frames = Vec::new();
        loop {
            while let Some(r) = reader.next_frame()? {
                frames.push(reader.payload(r).to_vec());
            }
            let n = reader.fill(&mut src).map_err(|e| {
                let inner = e.into_inner().expect("only framing errors");
                *inner.downcast::<FrameError>().expect("a FrameError")
            })?;
            if n == 0 {
                reader.finish()?;
                return Ok(frames);
            }
        }
    }

    fn frames_of(messages: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            write_frame(&mut out, m, MAX_FRAME_LEN).unwrap();
        }
        out
    }

    #[test]
    fn frames_written_in_one_buffer_are_read_back_in_order_whatever_the_read_sizes() {
        let data = frames_of(&["one", "", "three"]);
        for step in [1, 3, 7, 4096] {
            let frames = read_all(&data, step, MAX_FRAME_LEN).unwrap();
            let decoded: Vec<String> = frames
                .iter()
                .map(|f| postcard::from_bytes(f).unwrap())
                .collect();
            assert_eq!(decoded, ["one", "", "three"], "step {step}");
        }
    }

    #[test]
    fn a_frame_larger_than_the_initial_buffer_is_assembled() {
        let big = "x".repeat(3 * MIN_BUFFER + 5);
        let data = frames_of(&[&big, "after"]);
        let frames = read_all(&data, 10_000, MAX_FRAME_LEN).unwrap();
        assert_eq!(postcard::from_bytes::<String>(&frames[0]).unwrap(), big);
        assert_eq!(postcard::from_bytes::<&str>(&frames[1]).unwrap(), "after");
    }

    #[test]
    fn an_oversized_length_is_refused_before_anything_is_allocated() {
        let mut data = u32::MAX.to_le_bytes().to_vec();
        data.extend_from_slice(&[1, 2, 3]);
        let err = read_all(&data, 100, 1000).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                len: u32::MAX as usize,
                max: 1000
            }
        );
    }

    #[test]
    fn a_stream_cut_inside_a_frame_is_reported_as_truncated() {
        let data = frames_of(&["complete", "cut short"]);
        let err = read_all(&data[..data.len() - 2], 5, MAX_FRAME_LEN).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { .. }), "{err:?}");
        assert!(
            read_all(&data[..2], 5, MAX_FRAME_LEN).is_err(),
            "a cut header"
        );
    }

    #[test]
    fn a_large_announced_length_grows_the_buffer_only_as_bytes_arrive() {
        // Announces 200 MiB, sends 100 KiB: the buffer must stay near what arrived.
        let mut data = (200u32 << 20).to_le_bytes().to_vec();
        data.resize(100 * 1024, 7);
        let mut src = Trickle {
            data: &data,
            step: 1 << 20,
        };
        let mut reader = FrameReader::new(MAX_FRAME_LEN);
        while reader.fill(&mut src).unwrap() > 0 {
            assert!(reader.next_frame().unwrap().is_none());
        }
        assert!(reader.capacity() <= 2 * data.len(), "{}", reader.capacity());
    }

    #[test]
    fn a_message_over_the_cap_is_not_written_and_the_buffer_is_unchanged() {
        let mut out = vec![9u8];
        let err = write_frame(&mut out, "a long message", 4).unwrap_err();
        assert!(err.contains("frame limit"), "{err}");
        assert_eq!(out, [9]);
    }
}
