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

    /// This budget, or `at` if that is shorter (a wait with a timeout).
    pub fn capped(self, at: Duration) -> Self {
        SpinBudget(self.0.min(at))
    }

    /// Calls `check` until it returns `Some` or this budget, counted from `since`, is spent;
    /// `None` when it ran out (the caller then sleeps; with no budget after one look). A few pauses come first (what is
    /// awaited on another CPU is often there within a microsecond, sooner than a yield
    /// returns), then the CPU is yielded between checks, so a runnable thread, often the one
    /// that brings what is awaited, is never held up by the spinning.
    pub fn wait_awake<T>(
        self,
        since: web_time::Instant,
        mut check: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let mut round = 0u32;
        loop {
            if let Some(found) = check() {
                return Some(found);
            }
            if self.0.is_zero() {
                // No budget: one look, no waiting at all.
                return None;
            }
            if round < 5 {
                (0..1u32 << round).for_each(|_| std::hint::spin_loop());
                round += 1;
                continue;
            }
            if since.elapsed() >= self.0 {
                return None;
            }
            std::thread::yield_now();
        }
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
