//! A test crate that forgot `primepool::test_support!()`: making a pool says what to add,
//! at once, instead of starting workers that cannot serve.

use primepool::Error;

#[test]
fn a_pool_without_the_entry_point_is_a_clear_error() {
    match primepool::test_support::pool(1) {
        Err(Error::Broken(reason)) => {
            assert!(reason.contains("primepool::test_support!();"), "{reason}");
        }
        other => panic!("expected Error::Broken, got {other:?}"),
    }
}
