//! The messages a pool and its workers exchange, one per frame, postcard-encoded.
//!
//! The conversation: the worker checks that it runs the pool's own program image and says
//! [`FromWorker::Hello`] (or [`FromWorker::Refused`]), runs the initializer and says
//! [`FromWorker::Ready`] (or [`FromWorker::InitFailed`]); then the pool keeps several
//! [`ToWorker::Run`] in flight and the worker takes them in order, saying
//! [`FromWorker::Started`] before running each and [`FromWorker::Done`] or
//! [`FromWorker::Failed`] after. [`ToWorker::Terminate`] asks for a job to be
//! stopped: the worker drops it if it has not started ([`FromWorker::Skipped`]) or says
//! [`FromWorker::Stopped`] and ends itself if it is running it. [`ToWorker::Revoke`] takes
//! back a job that has not started ([`FromWorker::Revoked`]) so an idle worker can run it. The pool ends a worker by
//! closing the channel.
//!
//! Argument and result blobs travel as borrowed bytes, so decoding a batch copies nothing.

use std::fmt;

use primepool_core::TaskPanic;
use serde::de::{Error as _, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An encoded blob inside a message, written as postcard bytes (length + raw bytes) and read
/// back without copying.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bytes<'a>(pub &'a [u8]);

impl fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Borrowed;
        impl<'de> Visitor<'de> for Borrowed {
            type Value = Bytes<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("borrowed bytes")
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(
                self,
                v: &'de [u8],
            ) -> Result<Self::Value, E> {
                Ok(Bytes(v))
            }
            fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
                Err(E::custom("expected bytes borrowed from the frame"))
            }
        }
        deserializer
            .deserialize_bytes(Borrowed)
            .map_err(D::Error::custom)
    }
}

/// A message from the pool to a worker.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum ToWorker<'a> {
    /// Run `args` through the function at these offsets from the image marker.
    Run {
        /// The pool's number for the job; the answer repeats it.
        id: u64,
        /// Offset of the `TaskFn` trampoline from [`super::image::marker`].
        trampoline: u64,
        /// Offset of the user's function from the marker.
        func: u64,
        /// How long the worker may spend on the whole job, in microseconds.
        timeout_us: Option<u64>,
        /// A lone job (sent through a lane): the next one is likely to follow its answer at
        /// once, so the worker waits for it awake for a moment (see `process::spin`).
        lone: bool,
        /// The encoded arguments (`Job::encode_args`).
        #[serde(borrow)]
        args: Bytes<'a>,
    },
    /// Stop job `id`: drop it if it has not started, end the worker if it is running.
    Terminate {
        /// The job.
        id: u64,
    },
    /// Give job `id` back if it has not started (another worker is idle); else ignore this.
    Revoke {
        /// The job.
        id: u64,
    },
}

/// A message from a worker to the pool.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum FromWorker<'a> {
    /// The worker runs the pool's own program image; it will run the initializer next.
    Hello,
    /// The worker runs a different program image and will not run anything.
    Refused {
        /// What differs.
        reason: String,
    },
    /// The initializer (if any) ran; the worker takes jobs.
    Ready,
    /// The initializer panicked; the worker exits.
    InitFailed {
        /// The panic.
        panic: TaskPanic,
    },
    /// The worker starts job `id` now (sent before the job runs, so that if the worker dies the
    /// pool knows which job it was running).
    Started {
        /// The job.
        id: u64,
    },
    /// Job `id` ran; `outcomes` is `TaskFn::invoke`'s encoded reply.
    Done {
        /// The job.
        id: u64,
        /// One encoded outcome per call.
        #[serde(borrow)]
        outcomes: Bytes<'a>,
    },
    /// Job `id` could not run (its arguments did not decode, its results were too large...).
    Failed {
        /// The job.
        id: u64,
        /// Why.
        error: String,
    },
    /// Job `id` was dropped before it started, as asked by `Terminate`.
    Skipped {
        /// The job.
        id: u64,
    },
    /// Job `id` was given back, unstarted, as asked by `Revoke`.
    Revoked {
        /// The job.
        id: u64,
    },
    /// The worker is ending itself to stop the running job `id`.
    Stopped {
        /// The job.
        id: u64,
        /// True when the job's own timeout ran out, false when `Terminate` asked.
        timed_out: bool,
    },
}

/// Decodes one message from a frame's payload; bad bytes are an error, never a panic.
pub(crate) fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(payload).map_err(|e| format!("undecodable message: {e}"))
}

/// Decodes `payload` as a message in either direction, discarding it: the entry point for
/// fuzzing and property tests of the message decoder (no input may panic it).
#[doc(hidden)]
pub fn decode_any_message(payload: &[u8]) -> Result<(), String> {
    let to = decode::<ToWorker<'_>>(payload).map(drop);
    let from = decode::<FromWorker<'_>>(payload).map(drop);
    to.or(from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::frame::{write_frame, MAX_FRAME_LEN};

    fn round_trip<'a, T: Serialize + Deserialize<'a> + PartialEq + fmt::Debug>(
        message: &T,
        buf: &'a mut Vec<u8>,
    ) {
        write_frame(buf, message, MAX_FRAME_LEN).unwrap();
        let back: T = decode(&buf[4..]).unwrap();
        assert_eq!(&back, message);
    }

    #[test]
    fn every_message_survives_encoding_and_borrows_its_blob() {
        let args = [1u8, 2, 3, 255];
        round_trip(
            &ToWorker::Run {
                id: 7,
                trampoline: u64::MAX,
                func: 12,
                timeout_us: Some(5),
                lone: true,
                args: Bytes(&args),
            },
            &mut Vec::new(),
        );
        round_trip(&ToWorker::Terminate { id: 1 }, &mut Vec::new());
        round_trip(
            &FromWorker::Done {
                id: 3,
                outcomes: Bytes(&args),
            },
            &mut Vec::new(),
        );
        round_trip(
            &FromWorker::InitFailed {
                panic: TaskPanic::new("no", None),
            },
            &mut Vec::new(),
        );
        round_trip(
            &FromWorker::Stopped {
                id: 9,
                timed_out: true,
            },
            &mut Vec::new(),
        );
    }

    #[test]
    fn a_wrong_message_kind_or_truncated_message_is_a_decoding_error() {
        assert!(decode::<FromWorker<'_>>(&[200]).is_err(), "unknown variant");
        assert!(decode::<FromWorker<'_>>(&[]).is_err(), "empty");
        // `Done` whose blob claims more bytes than the frame holds.
        assert!(decode::<FromWorker<'_>>(&[5, 1, 50, 1, 2]).is_err());
    }
}
