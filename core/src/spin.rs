//! [`SpinBudget`]: how long a thread waits awake for something before it sleeps.

use std::time::Duration;

/// An adaptive bound on how long a thread waits awake (spinning, yielding) for input or for a
/// future before it sleeps.
///
/// On a virtual machine, waking a thread whose CPU has gone idle costs tens of microseconds:
/// more than a lone task's whole round trip. Waiting awake for a moment avoids that wake-up
/// when the answer comes soon, but costs a CPU, so the bound is short
/// ([`SpinBudget::LIMIT`]) and adapts: after a wait that took longer than the limit the next
/// budget is half (nothing after a few such waits: an idle pool or long tasks do not spin),
/// and after a wait that took less it is the full limit again.
///
/// ```
/// use std::time::Duration;
/// use primepool_core::backend::SpinBudget;
///
/// let mut budget = SpinBudget::default();
/// assert_eq!(budget.get(), SpinBudget::LIMIT);
/// for _ in 0..16 {
///     budget = budget.after_wait(Duration::from_millis(5));
/// }
/// assert_eq!(budget.get(), Duration::ZERO);
/// assert_eq!(budget.after_wait(Duration::from_micros(10)).get(), SpinBudget::LIMIT);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpinBudget(Duration);

impl SpinBudget {
    /// The longest a thread waits awake.
    pub const LIMIT: Duration = Duration::from_micros(50);

    /// The full budget.
    pub const fn new() -> Self {
        SpinBudget(Self::LIMIT)
    }

    /// How long the next wait may stay awake.
    pub fn get(self) -> Duration {
        self.0
    }

    /// The budget after a wait (asleep or not) that took `waited`.
    pub fn after_wait(self, waited: Duration) -> Self {
        SpinBudget(if waited <= Self::LIMIT {
            Self::LIMIT
        } else if self.0 < Duration::from_micros(2) {
            Duration::ZERO
        } else {
            self.0 / 2
        })
    }
}

impl Default for SpinBudget {
    fn default() -> Self {
        Self::new()
    }
}
