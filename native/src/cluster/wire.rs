//! The messages a cluster client and its workers exchange, postcard-encoded behind a
//! four-byte tag (three letters and a protocol version), so a message from another program or
//! another version is recognised and rejected rather than misread.
//!
//! - A [`Task`] travels on the image's task subject, through the JetStream work queue.
//! - [`Reply`]s travel back on core NATS to the client's own subject, one or more per
//!   message ([`Replies`]: the tag, then each reply's postcard encoding): [`Reply::Started`]
//!   when a worker begins the task, then [`Reply::Done`] with the encoded outcomes or
//!   [`Reply::Failed`]. Both carry the JetStream ack subject of the delivery, which the client
//!   acknowledges once it holds the answer.
//! - A [`Presence`] answers a client's request on the workers' subject.
//! - A request on a worker's own subject (`Names::worker`, named in [`Reply::Started`]) is
//!   answered with an empty message: a client probes the workers running its tasks this way,
//!   and the server's "no responders" status proves the worker's connection gone.

use serde::{Deserialize, Serialize};

use crate::process::protocol::Bytes;

/// The tag of a task message, version 1.
pub(crate) const TASK_TAG: [u8; 4] = *b"PPT\x01";
/// The tag of a reply message (one or more [`Reply`]s) or a [`Presence`], version 2.
pub(crate) const REPLY_TAG: [u8; 4] = *b"PPR\x02";

/// One task: a `submit` call or a `map` chunk. On the wire it follows the tag and the task's
/// number (8 bytes, little-endian), which the client writes in last (see [`set_task_id`]), so
/// the task can be encoded on the caller's thread before the number is known.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Task<'a> {
    /// The full identity hash of the client's image (see [`super::subjects::Names::image`]).
    pub image: u64,
    /// The subject the replies go to.
    pub reply_to: &'a str,
    /// Offset of the `TaskFn` trampoline from the image marker.
    pub trampoline: u64,
    /// Offset of the user's function from the marker.
    pub func: u64,
    /// How many deliveries the task may have before it is given up.
    pub max_attempts: u32,
    /// The client's lease in milliseconds: the worker renews well within it.
    pub lease_ms: u64,
    /// The encoded arguments (`Job::encode_args`).
    #[serde(borrow)]
    pub args: Bytes<'a>,
}

/// Why a worker gave a task back as failed.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The task was delivered more than `max_attempts` times: the earlier holders died.
    Exhausted {
        /// Deliveries so far.
        attempts: u32,
    },
    /// The arguments did not decode, or the result was too large to send back.
    Error(String),
}

/// A worker's message to a client.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum Reply<'a> {
    /// The worker started task `id`; it can no longer be cancelled.
    Started {
        /// The task.
        id: u64,
        /// `host:pid` of the worker.
        worker: &'a str,
        /// The ack subject of the delivery: the client sends `-NAK` there when the worker is
        /// proven gone, so the task is delivered again at once.
        ack: &'a str,
        /// The worker's own subject, which it answers for as long as its connection lives.
        probe: &'a str,
    },
    /// Task `id` finished: its encoded outcomes (`TaskFn::invoke`'s output).
    Done {
        /// The task.
        id: u64,
        /// The ack subject of the delivery.
        ack: &'a str,
        /// The encoded outcomes.
        #[serde(borrow)]
        outcome: Bytes<'a>,
    },
    /// Task `id` cannot be run (and has been removed from the queue).
    Failed {
        /// The task.
        id: u64,
        /// The ack subject of the delivery (already terminated by the worker).
        ack: &'a str,
        /// `host:pid` of the worker.
        worker: &'a str,
        /// Why.
        failure: Failure,
    },
}

/// A worker's answer to a presence request.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Presence<'a> {
    /// `host:pid`.
    pub worker: &'a str,
    /// How many tasks it runs at once.
    pub slots: u32,
    /// Whether it still takes work (false once it is draining for a signal).
    pub pulling: bool,
}

/// A task message with number 0: tag, number, postcard body.
pub(crate) fn encode_task(task: &Task<'_>) -> Result<Vec<u8>, String> {
    let mut out = TASK_TAG.to_vec();
    out.extend_from_slice(&[0; 8]);
    postcard::to_extend(task, out).map_err(|e| e.to_string())
}

/// Writes the task's number into a message made by [`encode_task`].
pub(crate) fn set_task_id(message: &mut [u8], id: u64) {
    message[4..12].copy_from_slice(&id.to_le_bytes());
}

/// Reads a task message: its number and the task.
pub(crate) fn decode_task(bytes: &[u8]) -> Result<(u64, Task<'_>), String> {
    check_tag(TASK_TAG, bytes)?;
    let Some((id, body)) = bytes[4..].split_first_chunk::<8>() else {
        return Err(format!(
            "a truncated primepool task ({} bytes)",
            bytes.len()
        ));
    };
    let task =
        postcard::from_bytes(body).map_err(|e| format!("a malformed primepool message ({e})"))?;
    Ok((u64::from_le_bytes(*id), task))
}

/// One reply's postcard encoding, to go into a [`Replies`] message.
pub(crate) fn encode_reply(reply: &Reply<'_>) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(reply).map_err(|e| e.to_string())
}

/// A reply message being filled: [`REPLY_TAG`], then encoded replies one after another.
#[derive(Debug)]
pub(crate) struct Replies(Vec<u8>);

impl Replies {
    /// A message with no reply yet.
    pub(crate) fn new() -> Replies {
        Replies(REPLY_TAG.to_vec())
    }

    /// Whether a message holding only `reply` fits in `max` bytes.
    pub(crate) fn fits(reply: &[u8], max: usize) -> bool {
        REPLY_TAG.len() + reply.len() <= max
    }

    /// Adds an encoded reply if the message then stays within `max` bytes; false otherwise.
    pub(crate) fn push(&mut self, reply: &[u8], max: usize) -> bool {
        if self.0.len() + reply.len() > max {
            return false;
        }
        self.0.extend_from_slice(reply);
        true
    }

    /// The message's bytes.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Decodes a reply message: every reply in it, in order; the first that does not decode ends
/// it with an error.
pub(crate) fn decode_replies(bytes: &[u8]) -> Result<Vec<Reply<'_>>, String> {
    check_tag(REPLY_TAG, bytes)?;
    let mut rest = &bytes[4..];
    let mut replies = Vec::new();
    while !rest.is_empty() {
        let (reply, after) = postcard::take_from_bytes(rest)
            .map_err(|e| format!("a malformed primepool reply ({e})"))?;
        replies.push(reply);
        rest = after;
    }
    if replies.is_empty() {
        return Err("an empty primepool reply message".into());
    }
    Ok(replies)
}

/// `tag` followed by the postcard encoding of `message`.
pub(crate) fn encode<T: Serialize>(tag: [u8; 4], message: &T) -> Result<Vec<u8>, String> {
    let out = tag.to_vec();
    postcard::to_extend(message, out).map_err(|e| e.to_string())
}

/// Decodes a message that must start with `tag`; anything else is an error saying what it
/// looked like.
pub(crate) fn decode<'a, T: Deserialize<'a>>(tag: [u8; 4], bytes: &'a [u8]) -> Result<T, String> {
    check_tag(tag, bytes)?;
    postcard::from_bytes(&bytes[4..]).map_err(|e| format!("a malformed primepool message ({e})"))
}

/// Checks that `bytes` start with `tag`, saying what they are otherwise.
fn check_tag(tag: [u8; 4], bytes: &[u8]) -> Result<(), String> {
    match bytes.split_at_checked(4) {
        Some((head, _)) if head == tag => Ok(()),
        Some((head, _)) if head[..3] == tag[..3] => Err(format!(
            "a primepool message of protocol version {} (this program speaks {})",
            head[3], tag[3]
        )),
        _ => Err(format!(
            "not a primepool message ({} bytes starting {:02x?})",
            bytes.len(),
            &bytes[..bytes.len().min(8)]
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_and_a_reply_survive_the_trip_and_foreign_bytes_are_named() {
        let task = Task {
            image: 9,
            reply_to: "primepool.x.client.y",
            trampoline: 1,
            func: 2,
            max_attempts: 3,
            lease_ms: 5000,
            args: Bytes(&[1, 2, 3]),
        };
        let mut bytes = encode_task(&task).unwrap();
        set_task_id(&mut bytes, 7);
        assert_eq!(decode_task(&bytes).unwrap(), (7, task));
        let reply = Reply::Done {
            id: 7,
            ack: "$JS.ACK.a",
            outcome: Bytes(&[4]),
        };
        let started = Reply::Started {
            id: 8,
            worker: "h:1",
            ack: "$JS.ACK.b",
            probe: "primepool.x.worker.z",
        };
        let mut message = Replies::new();
        assert!(message.push(&encode_reply(&reply).unwrap(), 1 << 20));
        assert!(message.push(&encode_reply(&started).unwrap(), 1 << 20));
        let full = message.0.len();
        assert!(
            !message.push(&encode_reply(&started).unwrap(), full + 1),
            "a reply that would overflow the message is refused"
        );
        let reply_bytes = message.into_bytes();
        assert_eq!(decode_replies(&reply_bytes).unwrap(), [reply, started]);
        assert!(decode_task(&reply_bytes).is_err(), "a reply is not a task");
        assert!(decode_replies(&REPLY_TAG).is_err(), "no reply at all");
        let mut cut = reply_bytes.clone();
        cut.truncate(cut.len() - 2);
        assert!(decode_replies(&cut).unwrap_err().contains("malformed"));

        let err = decode_task(b"hello world").unwrap_err();
        assert!(err.contains("not a primepool message"), "{err}");
        let err = decode_task(b"PPT\x09rest").unwrap_err();
        assert!(err.contains("version 9"), "{err}");
        let err = decode_task(b"PPT\x01\x01\x02").unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        let err = decode_task(b"PPT\x01\0\0\0\0\0\0\0\0\xff\xff").unwrap_err();
        assert!(err.contains("malformed"), "{err}");
        assert!(decode_task(b"").is_err());
        assert!(decode_replies(&bytes).is_err(), "a task is not a reply");
    }
}
