//! The allocation bound of the process pool's message decoder, measured with a counting
//! allocator: whatever a payload claims (a string or blob length of up to 2^64, in any message
//! kind, either direction), decoding it allocates no single block larger than the payload
//! itself, plus a small constant. `process_frames.rs` checks the frame reader's buffer the
//! same way; this checks what happens inside a frame.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use primepool::process::decode_any_message;
use proptest::prelude::*;

/// Records the largest block this thread asked for.
struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds as it does for `System`; `note` only writes a thread-local
// `Cell` (const-initialised, no destructor, so it never allocates or re-enters).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every block comes from above).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded unchanged; `ptr` came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Slack for fixed-size bookkeeping (error texts, a message's own fields).
const SLACK: usize = 256;

/// The largest single allocation made while decoding `payload`.
fn largest_block_decoding(payload: &[u8]) -> usize {
    LARGEST.with(|l| l.set(0));
    let _ = decode_any_message(payload);
    LARGEST.with(|l| l.get())
}

/// A postcard varint.
fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_payloads_allocate_no_more_than_they_carry(
        payload in prop::collection::vec(any::<u8>(), 0..2000),
    ) {
        let largest = largest_block_decoding(&payload);
        prop_assert!(largest <= payload.len() + SLACK, "{largest} for {} bytes", payload.len());
    }

    #[test]
    fn a_claimed_length_beyond_the_payload_allocates_nothing_for_it(
        kind in 0u8..12,
        fields in prop::collection::vec(0u64..300, 0..4),
        claimed in (1u64 << 20)..u64::MAX,
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        // A message kind, a few small numeric fields, then a huge string/blob length (the
        // shape of Run's args, Refused's reason, Done's outcomes, Failed's error...).
        let mut payload = vec![kind];
        for f in &fields {
            payload.extend(varint(*f));
        }
        payload.extend(varint(claimed));
        payload.extend(&tail);
        let largest = largest_block_decoding(&payload);
        prop_assert!(largest <= payload.len() + SLACK, "{largest} for {} bytes", payload.len());
    }
}
