//! An example of a user's crate: a small library built on primepool, whose tests run its
//! functions in worker processes with nothing but `primepool::test_support!()`.
//!
//! ```
//! use primepool::ThreadPoolExecutor;
//!
//! let pool = ThreadPoolExecutor::new(2).unwrap();
//! assert_eq!(user_crate::longest_collatz(&pool, 1..10).unwrap(), (9, 19));
//! ```

use primepool::{Error, Executor, ExecutorExt};

/// The number of Collatz steps from `n` down to 1 (0 for `n <= 1`).
pub fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n > 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

/// The input of `range` with the most Collatz steps (the first of equals), and its step
/// count, computed on `pool`. An empty range is [`Error::InvalidArgument`].
pub fn longest_collatz(
    pool: &dyn Executor,
    range: std::ops::Range<u64>,
) -> Result<(u64, u32), Error> {
    let start = range.start;
    let mut best: Option<(u64, u32)> = None;
    for (i, steps) in pool.map(collatz_steps, range)?.enumerate() {
        let steps = steps?;
        if best.is_none_or(|(_, most)| steps > most) {
            best = Some((start + i as u64, steps));
        }
    }
    best.ok_or_else(|| Error::invalid("an empty range has no longest Collatz sequence"))
}

#[cfg(test)]
mod tests {
    // A library's unit tests are a test binary too: the macro goes in its test module.
    primepool::test_support!();

    use super::*;

    #[test]
    fn unit_tests_run_the_library_in_worker_processes() {
        let pool = primepool::test_support::pool(2).expect("a process pool");
        assert_eq!(longest_collatz(&pool, 1..1000), Ok((871, 178)));
    }

    #[test]
    fn an_empty_range_is_an_error() {
        let pool = primepool::test_support::pool(1).expect("a process pool");
        assert!(matches!(
            longest_collatz(&pool, 5..5),
            Err(Error::InvalidArgument(_))
        ));
    }
}
