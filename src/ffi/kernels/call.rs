//! What every kernel entry point does before and after its launcher: the device of a target,
//! views of the caller's pointers, and the status of a launcher's refusal.

use std::ffi::c_void;

use crate::backend::cuda::{kernels_built, CudaDevice, View};
use crate::backend::DType;
use crate::ffi::args;
use crate::ffi::status::*;
use crate::Error;

use super::{zo_kernel_target, ZO_KERNEL_CUDA, ZO_KERNEL_HOST};

/// The device a target names: the emulation over host memory, or the GPU on the caller's
/// stream.
///
/// # Safety
/// `target` is NULL or points at a `zo_kernel_target` whose stream is NULL or live.
pub(super) unsafe fn open(target: *const zo_kernel_target) -> FfiResult<CudaDevice> {
    // SAFETY: the caller's contract.
    let t = unsafe { args::params(target, "zo_kernel_target") }?;
    match t.device {
        ZO_KERNEL_HOST => Ok(CudaDevice::emulated()),
        ZO_KERNEL_CUDA => {
            if !kernels_built() {
                return Err(FfiError::new(
                    ZO_ERR_UNSUPPORTED,
                    "ZO_KERNEL_CUDA: this build of zo has no GPU kernels (nvcc was not found \
                     when it was compiled); use ZO_KERNEL_HOST, or rebuild with NVCC set",
                ));
            }
            let ordinal = usize::try_from(t.ordinal).map_err(|_| {
                FfiError::new(
                    ZO_ERR_ARGUMENT,
                    format!("zo_kernel_target.ordinal is {}", t.ordinal),
                )
            })?;
            // SAFETY: the stream is the caller's, NULL or live (the contract above).
            Ok(unsafe { CudaDevice::on_stream(ordinal, t.stream) }?)
        }
        other => Err(FfiError::new(
            ZO_ERR_ARGUMENT,
            format!(
                "zo_kernel_target.device is {other}: expected ZO_KERNEL_HOST ({ZO_KERNEL_HOST}) \
                 or ZO_KERNEL_CUDA ({ZO_KERNEL_CUDA})"
            ),
        )),
    }
}

/// `len` elements of `dtype` at the caller's `p`. NULL is refused unless `len` is 0; the
/// address must be aligned for the element type. Whether `p` really holds `len` elements is
/// the caller's contract.
///
/// # Safety
/// A non-NULL `p` holds `len` elements of `dtype` on the target's device for `'a`.
pub(super) unsafe fn view<'a>(
    p: *const c_void,
    dtype: DType,
    len: usize,
    what: &str,
) -> FfiResult<View<'a>> {
    if p.is_null() && len > 0 {
        return Err(FfiError::new(ZO_ERR_NULL, format!("{what} is NULL")));
    }
    let size = dtype.size();
    if !(p as usize).is_multiple_of(size) {
        return Err(FfiError::new(
            ZO_ERR_ARGUMENT,
            format!("{what} ({p:p}) is not aligned to {size} bytes"),
        ));
    }
    if len
        .checked_mul(size)
        .and_then(|b| (p as usize).checked_add(b))
        .is_none_or(|end| end > isize::MAX as usize)
    {
        return Err(FfiError::new(
            ZO_ERR_ARGUMENT,
            format!("{what}: {len} elements at {p:p} run past the address space"),
        ));
    }
    // SAFETY: checked non-NULL where it is read and aligned; the extent is the caller's
    // contract.
    Ok(unsafe { View::external(p as u64, dtype, len) })
}

/// An optional buffer: NULL is None.
///
/// # Safety
/// As [`view`].
pub(super) unsafe fn opt_view<'a>(
    p: *const c_void,
    dtype: DType,
    len: usize,
    what: &str,
) -> FfiResult<Option<View<'a>>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's contract.
    unsafe { view(p, dtype, len, what) }.map(Some)
}

/// The status of a launcher's result: its refusals of extents that do not fit are
/// `ZO_ERR_SHAPE` here, where every such refusal is about the caller's shapes and lengths.
pub(super) fn launched(r: crate::Result<()>) -> FfiResult<()> {
    r.map_err(|e| match e {
        Error::Data(msg) => FfiError::new(ZO_ERR_SHAPE, msg),
        other => other.into(),
    })
}
