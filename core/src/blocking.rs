//! Where a thread may block, and what happens where it may not.
//!
//! # The browser contract
//!
//! The browser's main thread must never block: `Atomics.wait` is forbidden there and a busy
//! wait freezes the page. primepool's rule, on every target:
//!
//! - The async forms are the browser API: `.await` a [`Future`](crate::Future), or use
//!   [`Map::next_async`](crate::Map::next_async) and [`AsCompleted::next_async`](crate::AsCompleted::next_async).
//! - A blocking call ([`Future::result`](crate::Future::result), [`wait`](crate::wait()), iterating
//!   a [`Map`](crate::Map), a shutdown that waits) made where blocking is impossible does not
//!   freeze and does not panic: if the answer is not there yet it returns
//!   [`Error::WouldBlock`](crate::Error::WouldBlock) (shutdown returns without waiting).
//! - Blocking is impossible on `wasm32` without the `atomics` feature, and on any thread a host
//!   marks with [`forbid_on_this_thread`] (the web crate marks the page's main thread).
//! - Dropping an executor where blocking is impossible shuts it down without waiting: queued
//!   work still completes its futures, which stay awaitable.

use std::cell::Cell;

thread_local! {
    static FORBIDDEN: Cell<bool> = const { Cell::new(false) };
}

/// True when the current thread may block waiting for another thread.
pub fn allowed() -> bool {
    let target_can_block = !cfg!(all(target_arch = "wasm32", not(target_feature = "atomics")));
    target_can_block && !FORBIDDEN.with(Cell::get)
}

/// Marks the current thread as one that must never block (e.g. a browser's main thread).
/// Blocking calls made on it afterwards return [`Error::WouldBlock`](crate::Error::WouldBlock).
pub fn forbid_on_this_thread() {
    FORBIDDEN.with(|f| f.set(true));
}

#[cfg(test)]
mod tests {
    #[test]
    fn forbidding_is_per_thread() {
        assert!(super::allowed());
        std::thread::spawn(|| {
            super::forbid_on_this_thread();
            assert!(!super::allowed());
        })
        .join()
        .unwrap();
        assert!(super::allowed());
    }
}
