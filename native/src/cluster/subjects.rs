//! The names on the server: one stream, consumer and set of subjects per program image.
//!
//! Tasks are shipped as code offsets that mean something only in the identical executable, so
//! the queue a client publishes to is named after its build identity (a 64-bit FNV-1a hash of
//! [`image::identity`](crate::process::image::identity), in hex): a worker from a different
//! binary subscribes to a different stream and never receives the work.

use crate::process::image;

/// The server-side names for one program image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    /// The image's short hash, in hex.
    pub hash: String,
    /// The full identity hash, repeated in every task so a worker double-checks it.
    pub image: u64,
    /// The work-queue stream, `PRIMEPOOL_<hash>`.
    pub stream: String,
    /// The durable pull consumer every worker of this image shares.
    pub consumer: &'static str,
    /// The subject tasks are published on, `primepool.<hash>.tasks`.
    pub tasks: String,
    /// Where workers answer presence requests, `primepool.<hash>.workers`.
    pub workers: String,
    /// The prefix of the clients' reply subjects, `primepool.<hash>.client`.
    client_prefix: String,
    /// The prefix of the workers' own subjects, `primepool.<hash>.worker`.
    worker_prefix: String,
}

impl Names {
    /// The names for this process's own image.
    pub fn for_this_image() -> Names {
        Names::for_identity(image::identity())
    }

    /// The names for an image identity string.
    pub fn for_identity(identity: &str) -> Names {
        let image = fnv1a(identity.as_bytes());
        let hash = format!("{image:016x}");
        Names {
            stream: format!("PRIMEPOOL_{hash}"),
            consumer: "workers",
            tasks: format!("primepool.{hash}.tasks"),
            workers: format!("primepool.{hash}.workers"),
            client_prefix: format!("primepool.{hash}.client"),
            worker_prefix: format!("primepool.{hash}.worker"),
            image,
            hash,
        }
    }

    /// The subject one client's replies come back on.
    pub fn client(&self, client_id: &str) -> String {
        format!("{}.{client_id}", self.client_prefix)
    }

    /// The subject one worker answers probes on while its connection lives.
    pub fn worker(&self, worker_id: &str) -> String {
        format!("{}.{worker_id}", self.worker_prefix)
    }
}

/// 64-bit FNV-1a: stable across builds and platforms, which `std`'s hasher is not.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_images_get_different_queues_and_the_same_image_the_same() {
        let a = Names::for_identity("build-id:00ff");
        let b = Names::for_identity("build-id:00fe");
        assert_ne!(a.stream, b.stream);
        assert_ne!(a.tasks, b.tasks);
        assert_eq!(a, Names::for_identity("build-id:00ff"));
        assert_eq!(a.hash.len(), 16);
        assert!(a
            .stream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325, "the FNV offset basis");
        assert_eq!(
            fnv1a(b"a"),
            0xaf63_dc4c_8601_ec8c,
            "the published FNV-1a value"
        );
        assert!(Names::for_this_image().client("x").ends_with(".client.x"));
        assert!(Names::for_this_image().worker("y").ends_with(".worker.y"));
        assert_ne!(
            a.worker("y"),
            a.workers,
            "a worker's own subject is not the roll call"
        );
    }
}
