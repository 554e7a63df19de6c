//! Checked views of what C passes in: strings, arrays, params structs and handles. Every check
//! that can be made on a pointer is made here (NULL, alignment, size overflow, the params
//! struct's `struct_size`, a handle's kind); what cannot be checked (that an array really has
//! the length given, that a handle is still alive) is the caller's contract, stated in the
//! header.

use std::ffi::{c_char, CStr};

use super::status::*;

/// A required pointer: NULL is `ZO_ERR_NULL`, misalignment `ZO_ERR_ARGUMENT`.
fn check_ptr<T>(p: *const T, what: &str) -> FfiResult<()> {
    if p.is_null() {
        return Err(FfiError::new(ZO_ERR_NULL, format!("{what} is NULL")));
    }
    if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(FfiError::new(
            ZO_ERR_ARGUMENT,
            format!(
                "{what} ({p:p}) is not aligned to {} bytes",
                std::mem::align_of::<T>()
            ),
        ));
    }
    Ok(())
}

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// A non-NULL `p` points at a NUL-terminated string that outlives `'a`.
pub unsafe fn string<'a>(p: *const c_char, what: &str) -> FfiResult<&'a str> {
    check_ptr(p, what)?;
    // SAFETY: non-NULL, NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|e| FfiError::new(ZO_ERR_ARGUMENT, format!("{what} is not UTF-8: {e}")))
}

/// An optional string: NULL is None.
///
/// # Safety
/// As [`string`].
pub unsafe fn opt_string<'a>(p: *const c_char, what: &str) -> FfiResult<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: the caller's contract.
        unsafe { string(p, what) }.map(Some)
    }
}

fn check_len<T>(n: usize, what: &str) -> FfiResult<()> {
    if n.checked_mul(std::mem::size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(FfiError::new(
            ZO_ERR_ARGUMENT,
            format!("{what}: a length of {n} elements is out of range"),
        ));
    }
    Ok(())
}

/// `n` elements at `p`; an empty array may be NULL.
///
/// # Safety
/// A non-NULL `p` points at `n` initialised elements that outlive `'a`.
pub unsafe fn slice<'a, T>(p: *const T, n: usize, what: &str) -> FfiResult<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    check_ptr(p, what)?;
    check_len::<T>(n, what)?;
    // SAFETY: checked non-NULL and aligned; length by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// `n` writable elements at `p`; an empty array may be NULL.
///
/// # Safety
/// A non-NULL `p` points at `n` writable elements, not aliased, that outlive `'a`.
pub unsafe fn slice_mut<'a, T>(p: *mut T, n: usize, what: &str) -> FfiResult<&'a mut [T]> {
    if n == 0 {
        return Ok(&mut []);
    }
    check_ptr(p, what)?;
    check_len::<T>(n, what)?;
    // SAFETY: as `slice`, and the caller gives exclusive access.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, n) })
}

/// One value to write.
///
/// # Safety
/// A non-NULL `p` points at a writable `T`.
pub unsafe fn out<'a, T>(p: *mut T, what: &str) -> FfiResult<&'a mut T> {
    check_ptr(p, what)?;
    // SAFETY: checked non-NULL and aligned; writable by the caller's contract.
    Ok(unsafe { &mut *p })
}

/// A params struct whose first field is `size_t struct_size`. The size is read first, so a
/// struct from a header of another ABI version is refused before anything else of it is read.
///
/// # Safety
/// A non-NULL `p` points at least at a `size_t`, and at a whole `T` when that size is right.
pub unsafe fn params<'a, T>(p: *const T, name: &str) -> FfiResult<&'a T> {
    check_ptr(p, name)?;
    // SAFETY: non-NULL and aligned for T, whose alignment is at least usize's (its first
    // field); the caller's contract covers the first word.
    let size = unsafe { *(p as *const usize) };
    if size != std::mem::size_of::<T>() {
        return Err(FfiError::new(
            ZO_ERR_STRUCT_SIZE,
            format!(
                "{name}.struct_size is {size}, but this library (ABI {}) expects {}: build \
                 against the zo.h of this library and fill the struct from its zo_*_default \
                 function",
                super::ZO_ABI_VERSION,
                std::mem::size_of::<T>()
            ),
        ));
    }
    // SAFETY: the size matches, so the caller's struct is a whole T.
    Ok(unsafe { &*p })
}

/// An opaque handle: a boxed `T` whose first field is a magic word naming its kind, so a
/// handle of another kind (or an obviously wrong pointer) is refused.
pub trait Handle: Sized {
    const MAGIC: u64;
    const NAME: &'static str;
    fn magic(&self) -> u64;
}

/// The handle behind `p`.
///
/// # Safety
/// A non-NULL `p` came from this library's constructor for `H` and was not freed.
pub unsafe fn handle<'a, H: Handle>(p: *const H) -> FfiResult<&'a H> {
    check_ptr(p, H::NAME)?;
    // SAFETY: the caller's contract.
    let h = unsafe { &*p };
    if h.magic() != H::MAGIC {
        return Err(FfiError::new(
            ZO_ERR_ARGUMENT,
            format!("{} is not a live {} handle", H::NAME, H::NAME),
        ));
    }
    Ok(h)
}
