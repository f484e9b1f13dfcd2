//! How long a thread of the process pool stays awake waiting for input before it sleeps.
//!
//! On a virtual machine, waking a thread whose CPU has gone idle costs tens of microseconds
//! (the hypervisor has to run that virtual CPU again): more than a whole no-op task. A lone
//! task's round trip therefore crosses no sleep when the threads on its path wait awake for a
//! moment first: the worker's main thread for the next job, the pool's I/O thread for the
//! answer. Waiting awake costs a CPU, so it is bounded ([`SPIN_LIMIT`]), it yields the CPU to
//! any other runnable thread between checks, and it is adaptive: a [`Spin`] stops spinning
//! once input has stopped arriving within the bound (the pool is idle, or busy on long tasks),
//! and starts again as soon as input comes that soon after a wait began.

use std::time::{Duration, Instant};

/// The longest a thread waits awake before it sleeps.
pub(super) const SPIN_LIMIT: Duration = Duration::from_micros(50);

/// One thread's adaptive bound on waiting awake (see the module docs).
#[derive(Debug)]
pub(super) struct Spin {
    budget: Duration,
}

impl Default for Spin {
    fn default() -> Self {
        Spin { budget: SPIN_LIMIT }
    }
}

impl Spin {
    /// How long the next wait may stay awake.
    #[cfg(test)]
    fn budget(&self) -> Duration {
        self.budget
    }

    /// Input came `after` the wait began (asleep or not): waiting awake pays off when it comes
    /// within [`SPIN_LIMIT`], so the next wait spins fully; otherwise the budget halves, down
    /// to nothing after a few such waits.
    pub(super) fn arrived(&mut self, after: Duration) {
        self.budget = if after <= SPIN_LIMIT {
            SPIN_LIMIT
        } else if self.budget < Duration::from_micros(2) {
            Duration::ZERO
        } else {
            self.budget / 2
        };
    }

    /// Calls `check` until it returns `Some` or the budget since `since` is spent, yielding
    /// the CPU between calls (so a runnable thread never waits for the spinner); `None` when
    /// the budget ran out (the caller then sleeps).
    pub(super) fn run<T>(&self, since: Instant, mut check: impl FnMut() -> Option<T>) -> Option<T> {
        loop {
            if let Some(found) = check() {
                return Some(found);
            }
            if since.elapsed() >= self.budget {
                return None;
            }
            std::hint::spin_loop();
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_shrinks_to_nothing_when_input_is_late_and_recovers_when_it_is_prompt() {
        let mut spin = Spin::default();
        assert_eq!(spin.budget(), SPIN_LIMIT);
        for _ in 0..16 {
            spin.arrived(Duration::from_millis(5));
        }
        assert_eq!(
            spin.budget(),
            Duration::ZERO,
            "late input stops the spinning"
        );
        spin.arrived(Duration::from_micros(10));
        assert_eq!(spin.budget(), SPIN_LIMIT, "prompt input restores it");
    }

    #[test]
    fn run_returns_what_check_finds_and_none_once_the_budget_is_spent() {
        let spin = Spin::default();
        let mut calls = 0;
        assert_eq!(
            spin.run(Instant::now(), || {
                calls += 1;
                (calls == 3).then_some(calls)
            }),
            Some(3)
        );
        let mut idle = Spin::default();
        for _ in 0..16 {
            idle.arrived(Duration::from_secs(1));
        }
        let mut checked = 0;
        assert_eq!(
            idle.run(Instant::now(), || {
                checked += 1;
                None::<()>
            }),
            None
        );
        assert_eq!(checked, 1, "with no budget it checks once and gives up");
    }
}
