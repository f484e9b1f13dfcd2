//! primepool in the browser: the same executor API and benchmark as natively, with
//! **Web Workers as the process pool** ([`WorkerPoolExecutor`]: each worker has its own wasm
//! instance and memory, and tasks cross by message) and, on a cross-origin isolated page,
//! **rayon on wasm-bindgen-rayon as the thread pool** (`RayonExecutor`, in the "atomics" build).
//!
//! Two builds come from this crate (`cargo xtask web` makes both):
//! - **plain** (stable Rust): [`WorkerPoolExecutor`], the serial executor, the JS API;
//! - **atomics** (nightly, `+atomics,+bulk-memory`, `-Z build-std`, feature `rayon`): the same,
//!   plus the rayon pool, loaded by the page in a dedicated worker when `crossOriginIsolated`.
//!
//! Pure logic (option checks, report, the pool's scheduling) is target-independent and tested
//! natively; the rest is tested in headless Chromium by `cargo xtask test`.

pub mod api;
pub mod bench;
pub mod checks;
pub mod clock;
pub mod options;
#[cfg(feature = "rayon")]
pub mod rayon_pool;
pub mod report;
pub mod scheduler;
pub mod task;
pub mod worker_pool;

#[cfg(feature = "rayon")]
pub use rayon_pool::RayonExecutor;
pub use worker_pool::WorkerPoolExecutor;

#[cfg(feature = "rayon")]
pub use wasm_bindgen_rayon::init_thread_pool;
