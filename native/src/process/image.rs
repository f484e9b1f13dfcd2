//! Which program image this process runs, and code addresses relative to it.
//!
//! Calls travel as code addresses (see [`primepool_core::backend::TaskFn`]), rebased as offsets from
//! [`marker`] because each process loads the executable at its own random base. An offset only
//! means the same function in the *identical* image, so a worker compares its identity with
//! the pool's before running anything:
//!
//! - the GNU build-id note, read from the loaded image in memory (microseconds; a hash of the
//!   linked output, so any change to the program changes it), when the linker wrote one;
//! - otherwise the executable file's (device, inode, size, modification time), taken through
//!   `/proc/self/exe` on Linux so that a parent whose file was since replaced on disk still
//!   describes the file it runs.
//!
//! A random id made by a build script would not do: the crate holding it is not rebuilt when
//! only the application changes.

use std::sync::OnceLock;

use primepool_core::Error;

/// The reference point for code offsets: any function of this image would do, this one exists
/// for nothing else (it is never called).
#[inline(never)]
pub(crate) fn marker() {}

fn marker_address() -> usize {
    let marker: fn() = marker;
    marker as usize
}

/// A code address of this image as an offset from the marker, for another process.
pub(crate) fn to_offset(address: usize) -> u64 {
    address.wrapping_sub(marker_address()) as u64
}

/// The address, in this process, of an offset made by [`to_offset`] in a process running the
/// same image.
pub(crate) fn from_offset(offset: u64) -> usize {
    marker_address().wrapping_add(offset as usize)
}

/// This process's program image identity, computed once: `build-id:<hex>` or
/// `file:<dev>:<inode>:<size>:<mtime>`.
pub(crate) fn identity() -> &'static str {
    static IDENTITY: OnceLock<String> = OnceLock::new();
    IDENTITY.get_or_init(|| match build_id() {
        Some(id) => format!("build-id:{}", hex(&id)),
        None => file_identity(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_identity() -> String {
    use std::os::unix::fs::MetadataExt;
    let path = if cfg!(target_os = "linux") {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        match std::env::current_exe() {
            Ok(path) => path,
            Err(e) => return format!("file:unknown ({e})"),
        }
    };
    match std::fs::metadata(&path) {
        Ok(m) => format!(
            "file:{}:{}:{}:{}.{}",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec()
        ),
        Err(e) => format!("file:unknown ({e})"),
    }
}

/// The `NT_GNU_BUILD_ID` descriptor in a block of ELF notes, if any. `align` is the note
/// segment's alignment (4, or 8 for some 64-bit note segments). Bounds-checked throughout.
#[cfg(any(target_os = "linux", test))]
pub(crate) fn find_build_id(mut notes: &[u8], align: usize) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let align = align.max(4);
    let padded = |n: usize| n.checked_add(align - 1).map(|n| n / align * align);
    let word = |b: &[u8], at: usize| -> Option<u32> {
        let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_ne_bytes(bytes))
    };
    while notes.len() >= 12 {
        let name_len = word(notes, 0)? as usize;
        let desc_len = word(notes, 4)? as usize;
        let kind = word(notes, 8)?;
        let name_at = 12;
        let desc_at = name_at + padded(name_len)?;
        let next = desc_at.checked_add(padded(desc_len)?)?;
        let name = notes.get(name_at..name_at + name_len)?;
        let desc = notes.get(desc_at..desc_at.checked_add(desc_len)?)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
            return Some(desc);
        }
        notes = notes.get(next..)?;
    }
    None
}

/// A program header of the loaded objects, as `dl_iterate_phdr` describes them.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
type Phdr = libc::Elf64_Phdr;
#[cfg(all(target_os = "linux", target_pointer_width = "32"))]
type Phdr = libc::Elf32_Phdr;

/// Calls `visit` with the load address and program headers of the first loaded object, which
/// is the executable: the image whose identity workers check.
#[cfg(target_os = "linux")]
fn with_main_object<T>(mut visit: impl FnMut(usize, &[Phdr]) -> T) -> Option<T> {
    use std::ffi::c_void;

    type Visit<'a> = &'a mut dyn FnMut(usize, &[Phdr]);

    /// Visits the first loaded object and stops.
    unsafe extern "C" fn first_object(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> libc::c_int {
        // SAFETY: `dl_iterate_phdr` passes a valid `dl_phdr_info` for the duration of the
        // call, and `data` is the `Visit` given below, alive and not otherwise borrowed while
        // `dl_iterate_phdr` runs.
        let (info, visit) = unsafe { (&*info, &mut *data.cast::<Visit<'_>>()) };
        if !info.dlpi_phdr.is_null() {
            // SAFETY: `dlpi_phdr` points to the object's `dlpi_phnum` program headers, mapped
            // for as long as the object is loaded (the executable: for the life of the
            // process).
            let headers =
                unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
            visit(info.dlpi_addr as usize, headers);
        }
        1
    }

    let mut out = None;
    let mut call = |base: usize, headers: &[Phdr]| out = Some(visit(base, headers));
    let mut data: Visit<'_> = &mut call;
    // SAFETY: `first_object` upholds the callback contract (reads only what the loader
    // describes, returns non-zero to stop); `data` points to a `Visit` that outlives the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(first_object),
            (&mut data as *mut Visit<'_>).cast::<c_void>(),
        );
    }
    out
}

#[cfg(target_os = "linux")]
fn build_id() -> Option<Vec<u8>> {
    with_main_object(|base, headers| {
        for note in headers.iter().filter(|h| h.p_type == libc::PT_NOTE) {
            let start = note.p_vaddr as usize;
            let len = note.p_memsz as usize;
            // Only read notes that lie inside a readable loaded segment of this object.
            let mapped = headers.iter().any(|h| {
                h.p_type == libc::PT_LOAD
                    && h.p_flags & libc::PF_R != 0
                    && start >= h.p_vaddr as usize
                    && start.saturating_add(len)
                        <= (h.p_vaddr as usize).saturating_add(h.p_memsz as usize)
            });
            if !mapped {
                continue;
            }
            // SAFETY: the range lies inside a readable PT_LOAD segment of the loaded object
            // (checked just above), which the loader mapped at `base + p_vaddr` for its whole
            // `p_memsz`; that memory is immutable for the life of the process.
            let bytes =
                unsafe { std::slice::from_raw_parts(base.wrapping_add(start) as *const u8, len) };
            if let Some(id) = find_build_id(bytes, note.p_align as usize) {
                return Some(id.to_vec());
            }
        }
        None
    })
    .flatten()
}

/// Whether `address` lies in the code of the main executable: the image whose identity
/// workers check, and whose marker offsets are taken from.
#[cfg(target_os = "linux")]
fn in_main_image(address: usize) -> bool {
    static CODE: OnceLock<Vec<std::ops::Range<usize>>> = OnceLock::new();
    let code = CODE.get_or_init(|| {
        with_main_object(|base, headers| {
            headers
                .iter()
                .filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0)
                .map(|h| {
                    let start = base.wrapping_add(h.p_vaddr as usize);
                    start..start.saturating_add(h.p_memsz as usize)
                })
                .collect()
        })
        .unwrap_or_default()
    });
    code.iter().any(|range| range.contains(&address))
}

/// Whether `address` lies in the same loaded object as the marker (`dladdr`), which, with
/// primepool linked statically as usual, is the executable.
#[cfg(not(target_os = "linux"))]
fn in_main_image(address: usize) -> bool {
    fn object_of(address: usize) -> Option<usize> {
        let mut info = std::mem::MaybeUninit::<libc::Dl_info>::uninit();
        // SAFETY: dladdr only reads the loader's tables and writes a `Dl_info` into the buffer
        // it is given, which is large enough; on failure (0) we do not read it.
        if unsafe { libc::dladdr(address as *const libc::c_void, info.as_mut_ptr()) } == 0 {
            return None;
        }
        // SAFETY: dladdr returned non-zero, so it filled in the struct.
        Some(unsafe { info.assume_init() }.dli_fbase as usize)
    }
    object_of(address).is_some_and(|base| Some(base) == object_of(marker_address()))
}

/// Checks that a call's two code addresses (trampoline and function, from
/// `TaskFn::to_raw`) lie in the main executable, the image workers run and check: an address
/// in a shared object (a Rust `dylib`, `-C prefer-dynamic`, a `dlopen`ed plugin, a C library
/// function cast to a `fn` type) would be shipped as an offset that leads anywhere in the
/// worker. For every backend that ships code offsets.
pub(crate) fn check_shippable(trampoline: usize, func: usize) -> Result<(), Error> {
    for (what, address) in [("function", func), ("trampoline", trampoline)] {
        if !in_main_image(address) {
            return Err(Error::invalid(format!(
                "the task's {what} (at {address:#x}) is not in the main executable (is it in a \
                 shared library or a plugin?); a worker process can only run functions of the \
                 program image it shares with the pool"
            )));
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn build_id() -> Option<Vec<u8>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&(name.len() as u32).to_ne_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_ne_bytes());
        n.extend_from_slice(&kind.to_ne_bytes());
        n.extend_from_slice(name);
        n.resize(n.len().div_ceil(4) * 4, 0);
        n.extend_from_slice(desc);
        n.resize(n.len().div_ceil(4) * 4, 0);
        n
    }

    #[test]
    fn the_build_id_is_found_after_other_notes_and_garbage_is_ignored() {
        let mut notes = note(b"GNU\0", 1, &[0; 16]);
        notes.extend(note(b"GNU\0", 3, &[0xab, 0xcd, 0xef]));
        assert_eq!(find_build_id(&notes, 4), Some(&[0xab, 0xcd, 0xef][..]));
        assert_eq!(find_build_id(&notes[..20], 4), None);
        let huge = [0xff; 12];
        assert_eq!(find_build_id(&huge, 4), None);
        assert_eq!(find_build_id(&[], 8), None);
    }

    #[test]
    fn an_offset_from_the_marker_leads_back_to_the_same_function() {
        let f: fn(u32) -> u32 = primepool_core::workload::noop;
        assert_eq!(from_offset(to_offset(f as usize)), f as usize);
    }

    #[test]
    fn code_of_this_image_is_shippable_and_a_c_library_function_is_not() {
        let f: fn(u32) -> u32 = primepool_core::workload::noop;
        let task = primepool_core::backend::TaskFn::new(f);
        let (trampoline, func) = task.to_raw();
        assert_eq!(check_shippable(trampoline, func), Ok(()));
        let abs = libc::abs as unsafe extern "C" fn(libc::c_int) -> libc::c_int as usize;
        let err = check_shippable(trampoline, abs).unwrap_err();
        assert!(
            err.to_string().contains("not in the main executable"),
            "{err}"
        );
        assert!(check_shippable(abs, func).is_err(), "a foreign trampoline");
    }

    #[test]
    fn this_test_binary_has_a_stable_identity() {
        let id = identity();
        assert!(
            id.starts_with("build-id:") || id.starts_with("file:"),
            "{id}"
        );
        assert!(!id.contains("unknown"), "{id}");
        assert_eq!(id, identity());
    }
}
