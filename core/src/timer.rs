//! Waking an awaiting task at a deadline, without a timer crate or target code in core.
//!
//! [`Map::next_async`](crate::Map::next_async) and
//! [`AsCompleted::next_async`](crate::AsCompleted::next_async) (and their `Stream` forms)
//! honour their timeouts: they yield the time-out at the deadline even if nothing finishes.
//! Something must wake the task then.
//! By default core starts one timer thread, lazily, the first time a deadline is awaited
//! (with `std::thread::Builder`, which simply fails where threads do not exist). A host where
//! that is impossible or unwanted (the browser's page, which has `setTimeout`) installs its
//! own [`Driver`] with [`set_driver`] first. With neither, the deadline is still checked each
//! time the task is polled (a chunk finishing polls it), just not woken for on its own.

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::Waker;

use web_time::Instant;

/// Schedules `waker.wake()` at (or soon after) an instant; returns a number that
/// [`Driver::cancel`] takes to drop the wake-up again.
pub trait Driver: Send + Sync {
    /// Wakes `waker` at `at`. The number identifies this wake-up for `cancel`.
    fn schedule(&self, at: Instant, waker: Waker) -> u64;
    /// Drops the wake-up `id` if it has not happened (a no-op otherwise).
    fn cancel(&self, id: u64);
}

static DRIVER: OnceLock<Box<dyn Driver>> = OnceLock::new();

/// Installs the process's timer driver, before the first deadline is awaited. Returns `false`
/// (and changes nothing) if one is already in place, the default one included.
pub fn set_driver(driver: Box<dyn Driver>) -> bool {
    DRIVER.set(driver).is_ok()
}

fn driver() -> &'static dyn Driver {
    DRIVER.get_or_init(|| Box::new(&DEFAULT)).as_ref()
}

/// A wake-up at a deadline for one awaiting task, cancelled when dropped.
#[derive(Debug)]
pub(crate) struct Alarm {
    at: Instant,
    armed: Option<(u64, Waker)>,
}

impl Alarm {
    /// An alarm for `at`, not yet armed.
    pub(crate) fn at(at: Instant) -> Self {
        Alarm { at, armed: None }
    }

    /// Makes sure `waker` is woken at the deadline (re-armed if the task's waker changed).
    pub(crate) fn arm(&mut self, waker: &Waker) {
        if let Some((id, armed)) = &self.armed {
            if armed.will_wake(waker) {
                return;
            }
            driver().cancel(*id);
        }
        let id = driver().schedule(self.at, waker.clone());
        self.armed = Some((id, waker.clone()));
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        if let Some((id, _)) = self.armed.take() {
            driver().cancel(id);
        }
    }
}

/// The default driver: one thread that sleeps until the earliest wake-up. Pending wake-ups
/// are few (one per awaiting task with a deadline), so a list serves.
struct ThreadDriver {
    state: Mutex<Alarms>,
    changed: Condvar,
}

static DEFAULT: ThreadDriver = ThreadDriver {
    state: Mutex::new(Alarms {
        next_id: 0,
        pending: Vec::new(),
        started: false,
    }),
    changed: Condvar::new(),
};

struct Alarms {
    next_id: u64,
    pending: Vec<(u64, Instant, Waker)>,
    /// The thread is running, or could not be started (then nothing is woken: see the module
    /// documentation).
    started: bool,
}

impl ThreadDriver {
    fn lock(&self) -> MutexGuard<'_, Alarms> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            state.pending.retain(|(_, at, waker)| {
                let keep = *at > now;
                if !keep {
                    due.push(waker.clone());
                }
                keep
            });
            if !due.is_empty() {
                drop(state);
                due.into_iter().for_each(Waker::wake);
                state = self.lock();
                continue;
            }
            let earliest = state.pending.iter().map(|(_, at, _)| *at).min();
            state = match earliest {
                None => self.changed.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(at) => {
                    self.changed
                        .wait_timeout(state, at.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

impl Driver for &'static ThreadDriver {
    fn schedule(&self, at: Instant, waker: Waker) -> u64 {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.pending.push((id, at, waker));
        if !std::mem::replace(&mut state.started, true) {
            let spawned = std::thread::Builder::new()
                .name("primepool-timer".into())
                .spawn(|| DEFAULT.run());
            if let Err(e) = spawned {
                log::debug!("no timer thread ({e}); deadlines are checked when polled");
            }
        }
        drop(state);
        self.changed.notify_one();
        id
    }

    fn cancel(&self, id: u64) {
        self.lock().pending.retain(|(alarm, _, _)| *alarm != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn an_armed_alarm_wakes_its_task_at_the_deadline_and_a_dropped_one_never() {
        struct Flag(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let woken = Arc::new(Flag(Default::default()));
        let waker = Waker::from(woken.clone());
        let mut alarm = Alarm::at(Instant::now() + Duration::from_millis(20));
        alarm.arm(&waker);
        alarm.arm(&waker);
        let dropped = Arc::new(Flag(Default::default()));
        let mut cancelled = Alarm::at(Instant::now() + Duration::from_millis(20));
        cancelled.arm(&Waker::from(dropped.clone()));
        drop(cancelled);
        let give_up = Instant::now() + Duration::from_secs(60);
        while woken.0.load(std::sync::atomic::Ordering::SeqCst) == 0 && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(woken.0.load(std::sync::atomic::Ordering::SeqCst), 1, "once");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(dropped.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
