//! Status codes, the thread-local error message and the guard every entry point runs in.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::Error;

/// What every entry point returns: `ZO_OK` or one of the `ZO_ERR_*` codes, with a message
/// for [`zo_last_error`].
pub type zo_status = i32;

pub const ZO_OK: zo_status = 0;
/// A required pointer or handle is NULL.
pub const ZO_ERR_NULL: zo_status = 1;
/// An argument is out of range, misaligned, not UTF-8, or a handle of the wrong kind.
pub const ZO_ERR_ARGUMENT: zo_status = 2;
/// A params struct's `struct_size` is not one this library knows (a header/library mismatch).
pub const ZO_ERR_STRUCT_SIZE: zo_status = 3;
/// An output buffer is smaller than the result; the needed size is reported where the call
/// has a `needed` argument.
pub const ZO_ERR_BUFFER_TOO_SMALL: zo_status = 4;
/// Shapes that do not match the model, the plan or each other.
pub const ZO_ERR_SHAPE: zo_status = 5;
/// A call out of order: a step ended twice or never begun, a second begin, a run whose
/// steps are all done, training data changed after training started.
pub const ZO_ERR_STATE: zo_status = 6;
/// Losses or log-probs that contain NaN or an infinity.
pub const ZO_ERR_NOT_FINITE: zo_status = 7;
/// A file or directory that does not exist or cannot be read or written (a full disk).
pub const ZO_ERR_IO: zo_status = 8;
/// A file whose contents are not what it claims (corrupt, truncated, another base model).
pub const ZO_ERR_FORMAT: zo_status = 9;
/// A configuration that is malformed or inconsistent.
pub const ZO_ERR_CONFIG: zo_status = 10;
/// Examples, tokens or a task that cannot be used.
pub const ZO_ERR_DATA: zo_status = 11;
/// Something this build or backend does not do: a dtype it was built without, a family the
/// GPU does not run, no CUDA in this build.
pub const ZO_ERR_UNSUPPORTED: zo_status = 12;
/// A CUDA failure: no driver or device, a failed launch.
pub const ZO_ERR_CUDA: zo_status = 13;
/// Training diverged.
pub const ZO_ERR_DIVERGED: zo_status = 14;
/// An internal error (a Rust panic, caught at the boundary). The handle it happened on may be
/// inconsistent: free it.
pub const ZO_ERR_INTERNAL: zo_status = 15;

/// An error on its way to C: the code and the message [`zo_last_error`] will return.
#[derive(Debug)]
pub struct FfiError {
    pub code: zo_status,
    pub msg: String,
}

impl FfiError {
    pub fn new(code: zo_status, msg: impl Into<String>) -> FfiError {
        FfiError {
            code,
            msg: msg.into(),
        }
    }
}

impl From<Error> for FfiError {
    fn from(e: Error) -> FfiError {
        let code = match &e {
            Error::Io { .. } => ZO_ERR_IO,
            Error::Format { .. } => ZO_ERR_FORMAT,
            Error::Config(_) => ZO_ERR_CONFIG,
            Error::Tensor { .. } => ZO_ERR_SHAPE,
            Error::Tokenizer(_) | Error::Data(_) => ZO_ERR_DATA,
            Error::Unsupported(_) => ZO_ERR_UNSUPPORTED,
            Error::Diverged(_) => ZO_ERR_DIVERGED,
            Error::Cuda(_) => ZO_ERR_CUDA,
            // The C ABI runs one rank; a disagreement of ranks is a configuration error.
            Error::Distributed(_) => ZO_ERR_CONFIG,
        };
        FfiError::new(code, e.to_string())
    }
}

pub type FfiResult<T> = std::result::Result<T, FfiError>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    // An interior NUL would end the C string early; show it instead.
    let c = CString::new(msg.replace('\0', "\\0")).expect("NULs were replaced");
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs an entry point's body: its error becomes a status code and this thread's last error,
/// and a panic is caught (it must not unwind into C) and becomes `ZO_ERR_INTERNAL`. Success
/// clears the last error.
pub fn guard(body: impl FnOnce() -> FfiResult<()>) -> zo_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error("");
            ZO_OK
        }
        Ok(Err(e)) => {
            set_last_error(&e.msg);
            e.code
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!(
                "internal error in zo: {what}; the handle may be inconsistent, free it (please \
                 report this)"
            ));
            ZO_ERR_INTERNAL
        }
    }
}

/// The message of the last failed zo call on this thread ("" after a successful call). The
/// pointer stays valid until the next zo call on this thread.
#[no_mangle]
pub extern "C" fn zo_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The name of a status code ("ZO_ERR_SHAPE"), or "unknown status" (static storage).
#[no_mangle]
pub extern "C" fn zo_status_name(status: zo_status) -> *const c_char {
    let name: &'static [u8] = match status {
        ZO_OK => b"ZO_OK\0",
        ZO_ERR_NULL => b"ZO_ERR_NULL\0",
        ZO_ERR_ARGUMENT => b"ZO_ERR_ARGUMENT\0",
        ZO_ERR_STRUCT_SIZE => b"ZO_ERR_STRUCT_SIZE\0",
        ZO_ERR_BUFFER_TOO_SMALL => b"ZO_ERR_BUFFER_TOO_SMALL\0",
        ZO_ERR_SHAPE => b"ZO_ERR_SHAPE\0",
        ZO_ERR_STATE => b"ZO_ERR_STATE\0",
        ZO_ERR_NOT_FINITE => b"ZO_ERR_NOT_FINITE\0",
        ZO_ERR_IO => b"ZO_ERR_IO\0",
        ZO_ERR_FORMAT => b"ZO_ERR_FORMAT\0",
        ZO_ERR_CONFIG => b"ZO_ERR_CONFIG\0",
        ZO_ERR_DATA => b"ZO_ERR_DATA\0",
        ZO_ERR_UNSUPPORTED => b"ZO_ERR_UNSUPPORTED\0",
        ZO_ERR_CUDA => b"ZO_ERR_CUDA\0",
        ZO_ERR_DIVERGED => b"ZO_ERR_DIVERGED\0",
        ZO_ERR_INTERNAL => b"ZO_ERR_INTERNAL\0",
        _ => b"unknown status\0",
    };
    name.as_ptr().cast()
}

/// Panics inside the entry-point guard, so a client can check that a panic comes back as
/// `ZO_ERR_INTERNAL` with a message and never unwinds into C. Nothing else calls it.
#[no_mangle]
pub extern "C" fn zo_debug_panic() -> zo_status {
    guard(|| panic!("zo_debug_panic was called"))
}
