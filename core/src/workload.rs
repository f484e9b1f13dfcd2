//! The CPU-bound functions the benchmark maps over.
//!
//! Every workload is a plain `fn(u32) -> u32`, so any executor can ship it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The source document's `count_prime(n)`, ported bit for bit, quirk included.
///
/// The Python original counts the `i` in `2..=n` for which some `d` in `2..=isqrt(i)` divides
/// **`n`** (the outer argument, not `i`). So it does not count primes: for a prime `n` it
/// returns 0, and for a composite `n` with smallest prime factor `p` it returns `n - p*p + 1`.
/// Its cost is the intended one: for each `i` it tests every `d` up to `isqrt(i)` with no early
/// exit (the Python builds the whole list), about `(2/3) * n^1.5` divisions. It is the
/// benchmark's CPU-burn yardstick, kept in plain scalar code; [`count_primes`] is the fix.
///
/// ```
/// use primepool_core::workload::seed_count_prime;
/// assert_eq!(seed_count_prime(9_973), 0); // 9973 is prime
/// assert_eq!(seed_count_prime(9_999), 9_991); // 9999 = 3 * 3333: 9999 - 9 + 1
/// ```
pub fn seed_count_prime(n: u32) -> u32 {
    let mut count = 0;
    // `isqrt(i)`, kept up to date as `i` counts up (it grows by at most one per step) rather
    // than computed afresh for every `i`: the same bound, without a square root per `i`.
    let mut root = 1u32;
    for i in 2..=n {
        if (u64::from(root) + 1).pow(2) <= u64::from(i) {
            root += 1;
        }
        let mut divisors = 0u32;
        // The same divisors as `2..=isqrt(i)`, written half-open (`root + 1` cannot overflow:
        // it is at most 65536): an inclusive range's extra end check keeps the compiler from
        // unrolling this loop, which made the whole function ~9% slower.
        for d in 2..root + 1 {
            divisors += u32::from(n % d == 0);
        }
        count += u32::from(divisors > 0);
    }
    count
}

/// The number of primes `<= n` (pi(n)), by trial division up to the square root.
///
/// ```
/// use primepool_core::workload::count_primes;
/// assert_eq!(count_primes(10), 4);
/// assert_eq!(count_primes(1), 0);
/// ```
pub fn count_primes(n: u32) -> u32 {
    (2..=n).map(|i| u32::from(is_prime(i))).sum()
}

fn is_prime(x: u32) -> bool {
    (2..=x.isqrt()).all(|d| x % d != 0)
}

/// Returns its input: a task with no work, for measuring an executor's own overhead.
pub fn noop(n: u32) -> u32 {
    n
}

/// A named workload, as chosen on the command line or the web page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// [`seed_count_prime`]: the source document's function.
    Seed,
    /// [`count_primes`]: the correct prime counter.
    Primes,
    /// [`noop`]: no work at all.
    Noop,
}

impl Workload {
    /// Every workload, in display order.
    pub const ALL: [Workload; 3] = [Workload::Seed, Workload::Primes, Workload::Noop];

    /// The function to map.
    pub fn function(self) -> fn(u32) -> u32 {
        match self {
            Workload::Seed => seed_count_prime,
            Workload::Primes => count_primes,
            Workload::Noop => noop,
        }
    }

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Seed => "seed",
            Workload::Primes => "primes",
            Workload::Noop => "noop",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| format!("unknown workload '{s}' (expected seed, primes or noop)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The source's Python function on 9900..=9999, as printed by CPython 3.11 running a port
    /// of the original program (`python3 core/tests/seed_reference.py`).
    const PYTHON_9900_TO_9999: &str = include_str!("../tests/seed_9900_9999.txt");

    #[test]
    fn seed_count_prime_matches_cpython_on_9900_to_9999() {
        let expected: Vec<u32> = PYTHON_9900_TO_9999
            .trim()
            .trim_matches(['[', ']'])
            .split(',')
            .map(|s| s.trim().parse().unwrap())
            .collect();
        let ours: Vec<u32> = (9900..=9999).map(seed_count_prime).collect();
        assert_eq!(ours, expected);
    }

    #[test]
    fn seed_count_prime_follows_the_quirks_closed_form_on_small_inputs() {
        for n in 0..=2000u32 {
            let smallest_factor = (2..=n.isqrt()).find(|d| n % d == 0);
            let expected = smallest_factor.map_or(0, |p| n - p * p + 1);
            assert_eq!(seed_count_prime(n), expected, "n = {n}");
        }
    }

    #[test]
    fn count_primes_matches_a_sieve_up_to_20000() {
        const N: usize = 20_000;
        let mut composite = vec![false; N + 1];
        let mut pi = vec![0u32; N + 1];
        for i in 2..=N {
            if !composite[i] {
                let mut j = i * i;
                while j <= N {
                    composite[j] = true;
                    j += i;
                }
            }
            pi[i] = pi[i - 1] + u32::from(!composite[i]);
        }
        for (n, expected) in pi.iter().enumerate() {
            assert_eq!(count_primes(n as u32), *expected, "n = {n}");
        }
    }

    #[test]
    fn edge_inputs_do_not_overflow() {
        assert_eq!(seed_count_prime(0), 0);
        assert_eq!(seed_count_prime(1), 0);
        assert_eq!(seed_count_prime(2), 0);
        assert_eq!(count_primes(0), 0);
        assert_eq!(count_primes(2), 1);
        // The largest u32 is composite (3 * 5 * 17 * 257 * 65537); isqrt keeps d * d in range.
        assert!(!is_prime(u32::MAX));
        assert!(is_prime(4_294_967_291), "the largest 32-bit prime");
    }

    #[test]
    fn workload_names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(w.name().parse::<Workload>(), Ok(w));
        }
        assert!("fast"
            .parse::<Workload>()
            .unwrap_err()
            .contains("unknown workload"));
    }
}
