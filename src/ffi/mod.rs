//! The C ABI: `libzo.so` / `libzo.a` and the header `csrc/include/zo.h`, which cbindgen
//! generates from this module (`tests/ffi_header.rs` fails when the committed header is
//! stale; `ZO_BLESS=1` rewrites it).
//!
//! Three levels, each usable alone:
//! - [`session`]: zo as a library: open a model, give a config and examples, step, evaluate,
//!   checkpoint, resume, export ([`crate::session::Session`]).
//! - [`scheduler`]: the caller's engine runs the forward: `zo_step_begin` hands out the
//!   step's variants and packed plan, `zo_step_end` takes the scores and returns the update,
//!   `zo_apply_update` applies a seeded update to a tensor the caller owns, and the factor
//!   helpers materialize a variant's LoRA or low-rank perturbation.
//! - [`kernels`]: zo's kernels on the caller's memory and stream.
//!
//! Conventions (those of embeddable engines such as llama.cpp): opaque handles; params
//! structs that start with `struct_size` and come from `zo_*_default_params()`; every entry
//! point returns a [`status::zo_status`] and leaves a message for [`status::zo_last_error`];
//! no Rust panic crosses the boundary ([`status::guard`]).
#![allow(non_camel_case_types)]

pub mod args;
pub mod kernels;
pub mod scheduler;
pub mod session;
pub mod status;

/// Bumped on every change of the ABI: a function, a struct's fields, a constant's meaning.
pub const ZO_ABI_VERSION: u32 = 1;

/// The ABI version this library implements; a client compares it with the
/// `ZO_ABI_VERSION` of the header it was built against.
#[no_mangle]
pub extern "C" fn zo_abi_version() -> u32 {
    ZO_ABI_VERSION
}
