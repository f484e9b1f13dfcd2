//! [`WorkerPoolExecutor`]: Web Workers as the browser's process pool.
//!
//! Each worker is a module Web Worker that instantiates the page's own compiled
//! `WebAssembly.Module` (compiled once, posted to every worker), so function-table indices mean
//! the same thing everywhere and a [`TaskFn`] can travel as two numbers. A call goes to a worker
//! as `(trampoline, function, postcard arguments)`, with the argument buffer transferred, not
//! copied; the reply comes back the same way and completes the futures from `onmessage`. One
//! job is in flight per worker, so a dying or terminated worker takes only its own job with it.
//!
//! The JavaScript objects (workers, closures) cannot cross threads, so they live in a
//! thread-local registry on the thread that made the pool; the executor itself holds only the
//! pool's number, which keeps it `Send + Sync` as the [`Executor`] trait requires. That thread
//! never blocks ([`blocking::forbid_on_this_thread`]): the replies arrive on its event loop.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use js_sys::{Array, Object, Reflect, Uint8Array};
use primepool_core::backend::{Job, TaskFn};
use primepool_core::{blocking, Error, Executor};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{DedicatedWorkerGlobalScope, ErrorEvent, MessageEvent, Worker};

use crate::scheduler::{apply_all, Scheduler, Settle, Transport};

#[wasm_bindgen(module = "/src/js/pool_worker.js")]
extern "C" {
    #[wasm_bindgen(js_name = spawnPoolWorker, catch)]
    fn spawn_pool_worker(id: u32, glue: &str) -> Result<Worker, JsValue>;
}

#[wasm_bindgen]
extern "C" {
    /// The URL of the generated glue module, which every worker imports.
    #[wasm_bindgen(thread_local_v2, js_namespace = ["import", "meta"], js_name = url)]
    static GLUE_URL: String;
}

thread_local! {
    static POOLS: RefCell<HashMap<u32, Scheduler<WebTransport>>> = RefCell::new(HashMap::new());
}

static NEXT_POOL: AtomicU32 = AtomicU32::new(0);

/// Runs `f` on pool `pool`'s scheduler, then applies the settlements after the borrow ends and
/// forgets the pool once it has finished. `None` if the pool is gone, lives on another thread,
/// or is already borrowed further up the stack.
fn with_pool<R>(
    pool: u32,
    f: impl FnOnce(&mut Scheduler<WebTransport>) -> (R, Vec<Settle>),
) -> Option<R> {
    let (out, settles) = POOLS.with(|pools| {
        let mut pools = pools.try_borrow_mut().ok()?;
        let scheduler = pools.get_mut(&pool)?;
        let out = f(scheduler);
        if scheduler.finished() {
            pools.remove(&pool);
        }
        Some(out)
    })?;
    apply_all(settles);
    Some(out)
}

/// Ends every Web Worker pool on this thread at once (the page's Stop button).
pub fn kill_all_pools() {
    let pools: Vec<u32> = POOLS.with(|p| {
        p.try_borrow()
            .map(|p| p.keys().copied().collect())
            .unwrap_or_default()
    });
    for pool in pools {
        with_pool(pool, |s| ((), s.kill_all()));
    }
}

/// A running Web Worker and the handlers the pool attached to it.
struct WebWorker {
    worker: Worker,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(ErrorEvent)>,
}

struct WebTransport {
    pool: u32,
}

fn set(target: &Object, key: &str, value: &JsValue) {
    // Setting a plain property on a fresh plain object cannot fail.
    let _ = Reflect::set(target, &key.into(), value);
}

fn get(target: &JsValue, key: &str) -> JsValue {
    Reflect::get(target, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

fn describe(value: &JsValue) -> String {
    value
        .as_string()
        .or_else(|| {
            value
                .dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.to_string()))
        })
        .unwrap_or_else(|| format!("{value:?}"))
}

/// What the page does with one message from worker `id` in `slot`.
fn on_worker_message(pool: u32, slot: usize, id: u32, data: JsValue) {
    let kind = get(&data, "type").as_string().unwrap_or_default();
    with_pool(pool, |s| match kind.as_str() {
        "ready" => ((), s.on_ready(slot, id)),
        "reply" => {
            let token = get(&data, "token").as_f64().unwrap_or(-1.0) as u64;
            let bytes = get(&data, "bytes");
            let reply = match bytes.dyn_ref::<Uint8Array>() {
                Some(bytes) => Ok(bytes.to_vec()),
                None => Err(Error::Serialization(
                    get(&data, "error")
                        .as_string()
                        .unwrap_or_else(|| "the worker sent no result".into()),
                )),
            };
            ((), s.on_reply(slot, id, token, reply))
        }
        "panic" => {
            let message = get(&data, "message").as_string().unwrap_or_default();
            let location = get(&data, "location").as_string().unwrap_or_default();
            let status = format!(
                "the task panicked: '{message}' at {location}; a panic aborts a wasm instance"
            );
            ((), s.on_died(slot, id, status))
        }
        "failed" => {
            let message = get(&data, "message").as_string().unwrap_or_default();
            (
                (),
                s.on_died(slot, id, format!("failed to start: {message}")),
            )
        }
        _ => ((), Vec::new()),
    });
}

impl Transport for WebTransport {
    type Handle = WebWorker;

    fn spawn(&mut self, slot: usize, id: u32) -> Result<WebWorker, String> {
        let worker = GLUE_URL
            .with(|glue| spawn_pool_worker(id, glue))
            .map_err(|e| describe(&e))?;
        let pool = self.pool;
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            on_worker_message(pool, slot, id, e.data());
        });
        let on_error = Closure::<dyn FnMut(ErrorEvent)>::new(move |e: ErrorEvent| {
            e.prevent_default(); // reported through the task's future, not the console
            let status = format!("uncaught error: {}", e.message());
            with_pool(pool, |s| ((), s.on_died(slot, id, status)));
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        worker.set_onmessageerror(Some(on_error.as_ref().unchecked_ref()));
        let init = Object::new();
        set(&init, "type", &"primepool_pool_init".into());
        set(&init, "module", &wasm_bindgen::module());
        set(
            &init,
            "glue",
            &GLUE_URL.with(|url| JsValue::from(url.as_str())),
        );
        set(&init, "id", &id.into());
        worker.post_message(&init).map_err(|e| describe(&e))?;
        Ok(WebWorker {
            worker,
            _on_message: on_message,
            _on_error: on_error,
        })
    }

    fn send(
        &mut self,
        worker: &WebWorker,
        token: u64,
        call: TaskFn,
        args: Vec<u8>,
    ) -> Result<(), String> {
        let (trampoline, func) = call.to_raw();
        let message = Object::new();
        let args = Uint8Array::from(args.as_slice());
        set(&message, "type", &"call".into());
        set(&message, "token", &(token as f64).into());
        set(&message, "trampoline", &(trampoline as f64).into());
        set(&message, "func", &(func as f64).into());
        set(&message, "args", &args);
        worker
            .worker
            .post_message_with_transfer(&message, &Array::of1(&args.buffer()))
            .map_err(|e| describe(&e))
    }

    fn kill(&mut self, worker: WebWorker) {
        worker.worker.set_onmessage(None);
        worker.worker.set_onerror(None);
        worker.worker.set_onmessageerror(None);
        worker.worker.terminate();
    }

    fn terminator(&self, token: u64) -> Arc<dyn Fn() -> bool + Send + Sync> {
        let pool = self.pool;
        Arc::new(move || with_pool(pool, |s| s.terminate(token)).unwrap_or(false))
    }
}

/// A pool of Web Workers: the browser's `ProcessPoolExecutor`.
///
/// Each worker has its own wasm instance and memory, as a process has; tasks and results cross
/// by message, so tasks must be plain `fn`s with serializable arguments. A worker that dies
/// fails only its own task ([`Error::WorkerDied`]) and is replaced; [`Future::terminate`]
/// ends the worker running a task; a panicking task ends its worker too, because a panic
/// aborts a wasm instance. Results arrive on this thread's event loop: `.await` the futures.
///
/// [`Future::terminate`]: primepool_core::Future::terminate
#[derive(Debug)]
pub struct WorkerPoolExecutor {
    pool: u32,
    workers: usize,
}

impl WorkerPoolExecutor {
    /// Starts `max_workers` Web Workers. Needs a page or worker whose wasm-bindgen glue was
    /// loaded with `--target web` (the workers import the same glue and module).
    pub fn new(max_workers: usize) -> Result<Self, Error> {
        blocking::forbid_on_this_thread();
        // Awaited maps wake at their deadline through the event loop's timers (core's default
        // timer thread cannot start here). Refused, harmlessly, if a driver is already set.
        #[cfg(target_arch = "wasm32")]
        let _ =
            primepool_core::backend::timer::set_driver(Box::new(event_loop_timer::EventLoopTimer));
        let pool = NEXT_POOL.fetch_add(1, Ordering::Relaxed);
        let scheduler = Scheduler::new(WebTransport { pool }, max_workers)?;
        POOLS.with(|p| p.borrow_mut().insert(pool, scheduler));
        Ok(WorkerPoolExecutor {
            pool,
            workers: max_workers,
        })
    }

    /// The ids of the live workers: `0..max_workers` at first; a replacement gets the next
    /// unused id, so an id names one worker's life, as a pid does.
    pub fn worker_ids(&self) -> Vec<u32> {
        with_pool(self.pool, |s| (s.worker_ids(), Vec::new())).unwrap_or_default()
    }

    /// Ends every worker now (the page's Stop button): running tasks fail with
    /// [`Error::Terminated`], queued ones are cancelled, and the pool is shut down.
    pub fn kill(&self) {
        with_pool(self.pool, |s| ((), s.kill_all()));
    }

    fn gone(&self) -> Error {
        let here = POOLS.with(|p| p.try_borrow().map(|p| p.contains_key(&self.pool)));
        match here {
            Ok(false) => Error::ShutDown,
            _ => Error::Broken(
                "a web worker pool can only be used from the thread that created it".into(),
            ),
        }
    }
}

impl Executor for WorkerPoolExecutor {
    fn name(&self) -> &'static str {
        "workers"
    }

    fn max_workers(&self) -> usize {
        self.workers
    }

    fn execute(&self, job: Job) -> Result<(), Error> {
        self.execute_batch(vec![job])
    }

    fn execute_batch(&self, jobs: Vec<Job>) -> Result<(), Error> {
        let outcome = with_pool(self.pool, |s| match s.execute(jobs) {
            Ok(settles) => (Ok(()), settles),
            Err(e) => (Err(e), Vec::new()),
        });
        outcome.unwrap_or_else(|| Err(self.gone()))
    }

    fn shutdown(&self, _wait: bool, cancel_futures: bool) {
        // Replies arrive on this thread's event loop, so waiting here could never end: the
        // browser contract (see `blocking`) is to return and let the futures complete.
        with_pool(self.pool, |s| ((), s.shutdown(cancel_futures)));
    }
}

impl Drop for WorkerPoolExecutor {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

/// Turns this dedicated worker into a pool worker with id `id`: called by the worker script
/// once the glue is loaded; not for use elsewhere. Calls arrive only from the page that owns
/// the worker.
#[doc(hidden)]
#[wasm_bindgen(js_name = poolWorkerStart)]
pub fn pool_worker_start(id: u32) -> Result<(), JsValue> {
    let scope: DedicatedWorkerGlobalScope = js_sys::global()
        .dyn_into()
        .map_err(|_| JsValue::from_str("poolWorkerStart runs only in a dedicated worker"))?;
    crate::task::set_current_worker(id);
    report_panics();
    let reply_to = scope.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
        serve_call(&reply_to, &e.data());
    });
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    let ready = Object::new();
    set(&ready, "type", &"ready".into());
    scope.post_message(&ready)
}

/// Runs one call message in this worker and posts the reply.
fn serve_call(scope: &DedicatedWorkerGlobalScope, data: &JsValue) {
    if get(data, "type").as_string().as_deref() != Some("call") {
        return;
    }
    let token = get(data, "token");
    let trampoline = get(data, "trampoline").as_f64().unwrap_or(0.0) as usize;
    let func = get(data, "func").as_f64().unwrap_or(0.0) as usize;
    let args = get(data, "args")
        .dyn_into::<Uint8Array>()
        .map(|a| a.to_vec())
        .unwrap_or_default();
    // SAFETY: a dedicated worker's `onmessage` receives only what its owner posts through the
    // `Worker` object, and the only owner of a pool worker is `WebTransport`, which keeps the
    // object private and sends `TaskFn::to_raw` addresses of a `TaskFn::new` value. It made
    // them in an instance of the very `WebAssembly.Module` it posted to this worker (the init
    // message carries `wasm_bindgen::module()`), and in instances of one module, function
    // pointers are the same function-table indices.
    let call = unsafe { TaskFn::from_raw(trampoline, func) };
    let reply = Object::new();
    set(&reply, "type", &"reply".into());
    set(&reply, "token", &token);
    let transfer = Array::new();
    match call.invoke(&args) {
        Ok(bytes) => {
            let bytes = Uint8Array::from(bytes.as_slice());
            transfer.push(&bytes.buffer());
            set(&reply, "bytes", &bytes);
        }
        Err(e) => set(&reply, "error", &e.to_string().into()),
    }
    // Posting plain data and an owned buffer to the owner cannot fail.
    let _ = scope.post_message_with_transfer(&reply, &transfer);
}

/// A panic aborts the wasm instance (wasm32-unknown-unknown has no unwinding), so catching it
/// as a result is impossible; instead, tell the page what panicked and where before the
/// instance traps, and the page reports it as this worker's death.
fn report_panics() {
    // Make sure core's hook (which keeps task panics quiet) is installed first, then run ours
    // before it.
    let _ = primepool_core::backend::catch_panic(|| ());
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(scope) = js_sys::global().dyn_into::<DedicatedWorkerGlobalScope>() {
            let report = Object::new();
            set(&report, "type", &"panic".into());
            let message = primepool_core::backend::panic_message(info.payload());
            set(&report, "message", &message.into());
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_default();
            set(&report, "location", &location.into());
            let _ = scope.post_message(&report);
        }
        previous(info);
    }));
}

/// The event loop's timers, for core's awaited deadlines (wasm only: they are the browser's).
#[cfg(target_arch = "wasm32")]
mod event_loop_timer {
    use js_sys::Reflect;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;

    /// A timer driver on the event loop's `setTimeout`/`clearTimeout` (of the page or of the worker
    /// the pool lives in), so an awaited `Map` yields its time-out at the deadline.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        allow(dead_code, reason = "installed in wasm only")
    )]
    pub(super) struct EventLoopTimer;

    /// What `schedule` returns when no timer could be set: nothing to clear.
    const NO_TIMER: u64 = u64::MAX;

    impl EventLoopTimer {
        /// The global scope's function `name`, if it has one.
        fn global_fn(name: &str) -> Option<(JsValue, js_sys::Function)> {
            let global = js_sys::global();
            let f = Reflect::get(&global, &JsValue::from_str(name)).ok()?;
            Some((global.into(), f.dyn_into().ok()?))
        }
    }

    impl primepool_core::backend::timer::Driver for EventLoopTimer {
        fn schedule(&self, at: web_time::Instant, waker: std::task::Waker) -> u64 {
            let ms = at
                .saturating_duration_since(web_time::Instant::now())
                .as_secs_f64()
                * 1000.0;
            // Freed when it runs; a cleared timer's closure stays allocated (a few bytes).
            let wake = Closure::once_into_js(move || waker.wake());
            let handle = Self::global_fn("setTimeout").and_then(|(global, set)| {
                set.call2(&global, &wake, &JsValue::from_f64(ms.ceil()))
                    .ok()?
                    .as_f64()
            });
            handle.map_or(NO_TIMER, |h| h as u64)
        }

        fn cancel(&self, id: u64) {
            if id == NO_TIMER {
                return;
            }
            if let Some((global, clear)) = Self::global_fn("clearTimeout") {
                let _ = clear.call1(&global, &JsValue::from_f64(id as f64));
            }
        }
    }
}
