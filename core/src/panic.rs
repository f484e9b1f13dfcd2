//! Turning a panic inside a task into a [`TaskPanic`] value, with its message and location.
//!
//! A process-wide panic hook (installed once, chained to the previous hook) records the
//! location of panics raised while a task runs, and keeps them off stderr: like an exception in
//! a Python future, a task's panic is reported through its future, not printed. Panics outside
//! tasks go to the previous hook unchanged.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use crate::error::TaskPanic;

thread_local! {
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_TASK.with(Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                LOCATION.with(|slot| *slot.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, catching a panic as a [`TaskPanic`].
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, TaskPanic> {
    install_hook();
    let was_in_task = IN_TASK.with(|t| t.replace(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    IN_TASK.with(|t| t.set(was_in_task));
    outcome.map_err(|payload| {
        TaskPanic::with_payload(
            payload_message(payload.as_ref()),
            LOCATION.with(|slot| slot.borrow_mut().take()),
            payload,
        )
    })
}

/// The text of a panic payload (`&str` or `String`), or a placeholder for other types.
pub fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_keeps_its_message_and_location() {
        let err = catch(|| -> u32 { panic!("bad value {}", 7) }).unwrap_err();
        assert_eq!(err.message, "bad value 7");
        let at = err.location.expect("location recorded");
        assert!(
            at.starts_with("core/src/panic.rs:") || at.contains("panic.rs:"),
            "{at}"
        );
    }

    #[test]
    fn a_caught_panic_keeps_its_payload_to_re_raise_once() {
        #[derive(Debug, PartialEq)]
        struct Custom(u8);
        let err = catch(|| -> u32 { panic::panic_any(Custom(3)) }).unwrap_err();
        assert_eq!(err.message, "non-string panic payload");
        let clone = err.clone();
        let again = catch(|| panic::resume_unwind(err.into_payload())).unwrap_err();
        assert_eq!(
            again.take_payload().unwrap().downcast_ref(),
            Some(&Custom(3))
        );
        let fallback = clone.into_payload();
        assert_eq!(
            fallback.downcast_ref::<String>().map(String::as_str),
            Some("non-string panic payload"),
            "taken once: a clone then gets the message"
        );
    }

    #[test]
    fn no_panic_passes_the_value_through() {
        assert_eq!(catch(|| 5), Ok(5));
    }
}
