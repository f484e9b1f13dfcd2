//! Wall-clock milliseconds that can be compared across the page and its workers.
//!
//! `std::time::Instant` panics in the browser, and each worker's `performance.now()` counts from
//! its own start; `performance.timeOrigin + performance.now()` is on one scale everywhere, so a
//! task timed in a worker can be placed on the page's timeline.

/// Milliseconds since the Unix epoch, with sub-millisecond precision where the host gives it.
pub fn now_ms() -> f64 {
    imp::now_ms()
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use wasm_bindgen::JsCast;

    thread_local! {
        static PERFORMANCE: web_sys::Performance = js_sys::Reflect::get(
            &js_sys::global(),
            &"performance".into(),
        )
        .expect("every window and worker has `performance`")
        .unchecked_into();
    }

    pub fn now_ms() -> f64 {
        PERFORMANCE.with(|p| p.time_origin() + p.now())
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub fn now_ms() -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_moves_forward() {
        let a = super::now_ms();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = super::now_ms();
        assert!(b - a >= 4.0, "{a} -> {b}");
    }
}
