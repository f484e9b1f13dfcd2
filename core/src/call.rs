//! Turning a plain function into a call that can cross a process or Web Worker boundary.
//!
//! Python pickles a top-level function by name; primepool ships a `fn(A) -> R` by identity.
//! A [`TaskFn`] holds two code addresses: the user's function pointer, and a *trampoline*
//! monomorphised for `(A, R)` that decodes a chunk of arguments, calls the function on each,
//! catches panics, and encodes the outcomes. Only plain functions qualify: `fn` items and
//! non-capturing closures coerce to `fn(A) -> R`, capturing closures are rejected at compile
//! time, so there is never captured state to lose on the way.
//!
//! An address means something only inside the identical program image. Native backends send
//! each address as an offset from a marker function and check, in a handshake, that the worker
//! runs the same executable; in the browser every worker instantiates the same compiled module,
//! where function pointers are indices into the module's function table. That check is the
//! safety condition of [`TaskFn::from_raw`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, TaskPanic};

/// What an argument or a result must be: serializable, so it can travel to another worker.
pub trait Value: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Value for T {}

/// Decodes a chunk of arguments, runs the function on each, encodes the outcomes.
type Trampoline = fn(func: usize, args: &[u8]) -> Result<Vec<u8>, Error>;

/// The outcome of one call, as it travels back from a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome<R> {
    Returned(R),
    Panicked(TaskPanic),
}

/// A function shipped by identity: the `fn` pointer plus the trampoline that calls it on
/// encoded arguments.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskFn {
    trampoline: usize,
    func: usize,
}

impl std::fmt::Debug for TaskFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskFn({:#x}, {:#x})", self.trampoline, self.func)
    }
}

impl TaskFn {
    /// The identity of `f`, ready to be shipped.
    pub fn new<A: Value, R: Value>(f: fn(A) -> R) -> Self {
        let trampoline: Trampoline = trampoline::<A, R>;
        TaskFn {
            trampoline: trampoline as usize,
            func: f as usize,
        }
    }

    /// The two code addresses: `(trampoline, function)`. Native backends turn them into
    /// offsets from a marker function; in wasm they are function-table indices.
    pub fn to_raw(self) -> (usize, usize) {
        (self.trampoline, self.func)
    }

    /// Rebuilds a `TaskFn` from [`to_raw`](TaskFn::to_raw) addresses.
    ///
    /// # Safety
    ///
    /// `(trampoline, func)` must be exactly what `to_raw` returned for a `TaskFn` made by
    /// [`TaskFn::new`] in an identical program image (the same executable, or an instance of
    /// the same wasm module), after the caller's rebasing. Anything else makes
    /// [`invoke`](TaskFn::invoke) jump to an arbitrary address.
    pub unsafe fn from_raw(trampoline: usize, func: usize) -> Self {
        TaskFn { trampoline, func }
    }

    /// Runs the function on a chunk of encoded arguments (a postcard `Vec<A>`) and returns the
    /// encoded outcomes (one per argument, panics caught). This is what a worker calls.
    pub fn invoke(self, args: &[u8]) -> Result<Vec<u8>, Error> {
        // SAFETY: `trampoline` holds the address of a `Trampoline` made in `TaskFn::new`: either
        // this very value was made by `new`, or it was rebuilt through `from_raw`, whose contract
        // requires the same address in an identical program image. Function pointers and `usize`
        // have the same size on every target Rust supports.
        let trampoline = unsafe { std::mem::transmute::<usize, Trampoline>(self.trampoline) };
        trampoline(self.func, args)
    }
}

fn trampoline<A: Value, R: Value>(func: usize, args: &[u8]) -> Result<Vec<u8>, Error> {
    // SAFETY: this trampoline is only reachable through a `TaskFn` whose `func` was made from an
    // `fn(A) -> R` in `TaskFn::new::<A, R>`, the same instantiation that produced this
    // trampoline (both addresses travel together and `from_raw` requires them unchanged).
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func) };
    let args: Vec<A> = decode_part(args, Part::Argument)?;
    let outcomes: Vec<Outcome<R>> = args
        .into_iter()
        .map(|arg| match crate::panic::catch(|| f(arg)) {
            Ok(r) => Outcome::Returned(r),
            Err(p) => Outcome::Panicked(p),
        })
        .collect();
    encode_part(&outcomes, Part::Result)
}

/// Encodes a value with postcard, the compact format every boundary uses. A `Serialize` impl
/// that panics is an [`Error::Serialization`] saying so, not a panic of the caller.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    encode_part(value, Part::Value)
}

/// Decodes a postcard value; malformed bytes, or a `Deserialize` impl that panics, give
/// [`Error::Serialization`], never a panic.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    decode_part(bytes, Part::Value)
}

/// What a value is to its call, so that an error says which side failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The arguments of a call or chunk.
    Argument,
    /// The outcomes of a call or chunk.
    Result,
    /// Anything else.
    Value,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Argument => "the argument",
            Part::Result => "the result",
            Part::Value => "a value",
        })
    }
}

/// [`encode`], saying in an error which `part` of the call failed.
pub(crate) fn encode_part<T: Serialize + ?Sized>(value: &T, part: Part) -> Result<Vec<u8>, Error> {
    guarded("encoding", "Serialize", part, || {
        postcard::to_allocvec(value)
    })
}

/// [`decode`], saying in an error which `part` of the call failed.
pub(crate) fn decode_part<T: DeserializeOwned>(bytes: &[u8], part: Part) -> Result<T, Error> {
    guarded("decoding", "Deserialize", part, || {
        postcard::from_bytes(bytes)
    })
}

/// Runs a postcard call, turning its error, or a panic of the user's serde impl inside it,
/// into one [`Error::Serialization`] that names the side and keeps the serializer's message.
fn guarded<T>(
    verb: &str,
    impl_name: &str,
    part: Part,
    f: impl FnOnce() -> postcard::Result<T>,
) -> Result<T, Error> {
    match crate::panic::catch(f) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Error::Serialization(format!("{verb} {part}: {e}"))),
        Err(panic) => Err(Error::Serialization(format!(
            "{verb} {part}: its {impl_name} impl panicked: {panic}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u64 {
        u64::from(x) * 2
    }

    fn fails(_: ()) -> u8 {
        panic!("no")
    }

    #[test]
    fn an_invoked_taskfn_runs_the_function_on_each_encoded_argument() {
        let call = TaskFn::new(double);
        let out = call.invoke(&encode(&vec![1u32, 2, 3]).unwrap()).unwrap();
        let outcomes: Vec<Outcome<u64>> = decode(&out).unwrap();
        let values: Vec<u64> = outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Returned(v) => v,
                Outcome::Panicked(p) => panic!("{p}"),
            })
            .collect();
        assert_eq!(values, [2, 4, 6]);
    }

    #[test]
    fn a_taskfn_survives_a_round_trip_through_raw_addresses() {
        let (t, f) = TaskFn::new(double).to_raw();
        // SAFETY: the addresses come straight from `to_raw` in this same process.
        let call = unsafe { TaskFn::from_raw(t, f) };
        assert_eq!(call, TaskFn::new(double));
        let closure: fn(u8) -> u8 = |x| x + 1;
        assert_ne!(TaskFn::new(closure), TaskFn::new(|x: u8| x + 2));
    }

    #[test]
    fn a_panic_on_the_far_side_travels_back_as_an_outcome() {
        let out = TaskFn::new(fails)
            .invoke(&encode(&vec![()]).unwrap())
            .unwrap();
        match decode::<Vec<Outcome<u8>>>(&out).unwrap().pop() {
            Some(Outcome::Panicked(p)) => assert_eq!(p.message, "no"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn garbage_arguments_are_a_serialization_error_not_a_panic() {
        let err = TaskFn::new(double).invoke(&[0xff, 0xff, 0xff]).unwrap_err();
        assert!(matches!(err, Error::Serialization(_)), "{err:?}");
    }
}
