//! Fuzzes the decoder of the messages a pool and its workers exchange (both directions, all
//! kinds): any payload decodes to a message or gives an error, never a panic, and never
//! allocates in proportion to a length the payload claims but does not carry (run with
//! `-malloc_limit_mb` to enforce it).

#![no_main]

use libfuzzer_sys::fuzz_target;
use primepool::process::decode_any_message;

fuzz_target!(|payload: &[u8]| {
    let _ = decode_any_message(payload);
});
