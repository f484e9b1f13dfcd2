//! How long a thread of the process pool stays awake waiting for input before it sleeps.
//!
//! On a virtual machine, waking a thread whose CPU has gone idle costs tens of microseconds
//! (the hypervisor has to run that virtual CPU again): more than a whole no-op task. A lone
//! task's round trip therefore crosses no sleep when the threads on its path wait awake for a
//! moment first: the worker's main thread for the next job, the pool's I/O thread for the
//! answer (and the caller for its future, in `primepool_core`). Each waits for at most
//! [`SpinBudget::LIMIT`], yielding the CPU to any other runnable thread between checks, and
//! the bound adapts ([`SpinBudget`]): it stops spinning once input has stopped arriving within
//! it (the pool is idle, or busy on long tasks), and starts again as soon as input comes that
//! soon after a wait began.

use std::time::{Duration, Instant};

use primepool_core::backend::SpinBudget;

/// One thread's adaptive bound on waiting awake (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Spin {
    budget: SpinBudget,
}

impl Spin {
    /// Input came `after` the wait began (asleep or not).
    pub(super) fn arrived(&mut self, after: Duration) {
        self.budget = self.budget.after_wait(after);
    }

    /// Calls `check` until it returns `Some` or the budget since `since` is spent, yielding
    /// the CPU between calls (so a runnable thread never waits for the spinner); `None` when
    /// the budget ran out (the caller then sleeps). The loop is core's, the one a blocking
    /// wait on a future uses.
    pub(super) fn run<T>(&self, since: Instant, check: impl FnMut() -> Option<T>) -> Option<T> {
        self.budget.wait_awake(since, check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_returns_what_check_finds_and_none_once_the_budget_is_spent() {
        let spin = Spin::default();
        let mut calls = 0;
        // A wait that began in the future has spent none of its budget however slowly this
        // loaded machine runs the loop: the check alone decides when it ends.
        let not_yet = Instant::now() + Duration::from_secs(3600);
        assert_eq!(
            spin.run(not_yet, || {
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
