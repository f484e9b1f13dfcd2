//! Property tests of the process pool's wire decoding: whatever bytes arrive on a worker
//! channel (random, truncated, with huge length prefixes, of the wrong message kind), the
//! decoders return frames or clean errors, never panic, and allocate within a fixed bound.

use std::io::{self, Read};

use primepool::process::{decode_any_message, FrameError, FrameReader};
use proptest::prelude::*;

/// The cap used here: small, so that random prefixes often exceed it.
const MAX: usize = 4096;
/// The reader's starting buffer (it never needs more than twice what arrived, or this).
const FLOOR: usize = 64 * 1024;

/// Hands out `data` in pieces of the given sizes, like a socket.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self
            .sizes
            .get(self.next)
            .copied()
            .unwrap_or(usize::MAX)
            .max(1);
        self.next += 1;
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Reads `data` to the end: the frames, and the error that stopped the reading, if any.
fn read_frames(data: &[u8], sizes: Vec<usize>) -> (Vec<Vec<u8>>, Option<FrameError>, usize) {
    let mut src = Pieces {
        data,
        sizes,
        next: 0,
    };
    let mut reader = FrameReader::new(MAX);
    let mut frames = Vec::new();
    let mut peak = reader.capacity();
    loop {
        loop {
            match reader.next_frame() {
                Ok(Some(range)) => frames.push(reader.payload(range).to_vec()),
                Ok(None) => break,
                Err(e) => return (frames, Some(e), peak),
            }
        }
        match reader.fill(&mut src) {
            Ok(0) => return (frames, reader.finish().err(), peak),
            Ok(_) => peak = peak.max(reader.capacity()),
            Err(e) => {
                let e = e.into_inner().expect("a framing error");
                return (frames, Some(*e.downcast::<FrameError>().unwrap()), peak);
            }
        }
    }
}

fn encode(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_give_frames_or_a_clean_error_within_the_allocation_bound(
        data in prop::collection::vec(any::<u8>(), 0..20_000),
        sizes in prop::collection::vec(1usize..5000, 0..50),
    ) {
        let (frames, _error, peak) = read_frames(&data, sizes);
        prop_assert!(frames.iter().all(|f| f.len() <= MAX));
        prop_assert!(peak <= FLOOR.max(2 * data.len()), "peak {peak} for {} bytes", data.len());
    }

    #[test]
    fn valid_frames_come_back_intact_whatever_the_read_sizes(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..MAX), 0..12),
        sizes in prop::collection::vec(1usize..3000, 0..40),
    ) {
        let (frames, error, _) = read_frames(&encode(&payloads), sizes);
        prop_assert_eq!(error, None);
        prop_assert_eq!(frames, payloads);
    }

    #[test]
    fn a_cut_stream_is_reported_truncated_and_keeps_the_complete_frames(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..500), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let data = encode(&payloads);
        let at = cut.index(data.len());
        let (frames, error, _) = read_frames(&data[..at], vec![]);
        prop_assert!(frames.len() < payloads.len());
        prop_assert_eq!(&frames[..], &payloads[..frames.len()]);
        let boundary = encode(&frames).len() == at;
        prop_assert!(
            matches!(error, Some(FrameError::Truncated { .. })) || (boundary && error.is_none()),
            "{:?}",
            error
        );
    }

    #[test]
    fn a_huge_length_prefix_is_refused_without_allocating_for_it(
        len in (MAX as u32 + 1)..=u32::MAX,
        tail in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        let mut data = len.to_le_bytes().to_vec();
        data.extend_from_slice(&tail);
        let (frames, error, peak) = read_frames(&data, vec![]);
        prop_assert!(frames.is_empty());
        prop_assert_eq!(error, Some(FrameError::TooLarge { len: len as usize, max: MAX }));
        prop_assert_eq!(peak, FLOOR);
    }

    #[test]
    fn any_payload_decodes_to_a_message_or_an_error_without_panicking(
        payload in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let _ = decode_any_message(&payload);
    }

    #[test]
    fn an_answer_whose_blob_claims_more_bytes_than_it_has_is_an_error(
        id in 0u8..0x80,
        body in prop::collection::vec(any::<u8>(), 0..100),
        excess in 1usize..20,
    ) {
        // `Done` (kind 5), a one-byte varint id, a one-byte varint length, the bytes.
        let claimed = body.len() + excess;
        prop_assume!(claimed < 0x80);
        let mut payload = vec![5, id, claimed as u8];
        payload.extend_from_slice(&body);
        prop_assert!(decode_any_message(&payload).is_err());
        // The same with the right length decodes.
        payload[2] = body.len() as u8;
        prop_assert!(decode_any_message(&payload).is_ok());
    }
}
