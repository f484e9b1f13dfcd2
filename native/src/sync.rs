//! Poison-tolerant locking, the one way this crate takes its locks.
//!
//! A lock is poisoned when a thread panics while holding it. Every lock of this crate guards
//! state that is consistent again before anything that can panic runs under it (no future is
//! completed and no user code runs under these locks, or the code that does is caught), so a
//! poisoned lock is still usable: these helpers take it anyway instead of spreading one panic
//! to every thread that touches the pool.

use std::sync::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, poisoned or not.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The contents of a `mutex` held exclusively, poisoned or not.
#[cfg_attr(
    not(unix),
    allow(
        dead_code,
        reason = "only the process pool, which is Unix-only, uses it"
    )
)]
pub(crate) fn get_mut<T: ?Sized>(mutex: &mut Mutex<T>) -> &mut T {
    mutex.get_mut().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `condvar` with `guard`, poisoned or not.
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(|e| e.into_inner())
}

/// Takes `lock` for reading, poisoned or not.
pub(crate) fn read<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// Takes `lock` for writing, poisoned or not.
pub(crate) fn write<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}
