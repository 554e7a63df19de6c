//! The kernel level of the C ABI: zo's kernels on the caller's memory and stream.
//!
//! Every entry point takes a [`zo_kernel_target`] (which device, which CUDA stream), the
//! caller's buffers with their element counts, and a params struct of shapes and scalars. It
//! checks what it can on the host (NULL, alignment, dtype codes, every extent the kernel will
//! touch against the counts, through the same checked launchers training uses) and enqueues
//! one kernel. Nothing allocates: the small tables a kernel reads (update directions, segment
//! tables) are laid out by host helpers into arrays the caller places where the kernel can read
//! them. Without the `cuda` feature every entry point returns `ZO_ERR_UNSUPPORTED`, so the
//! header is the same for every build.
//!
//! One module per kernel family, as in `backend::cuda::kernels`: [`update`], [`loss`],
//! [`adapter`], [`attention`], [`decode`].
// Without the CUDA backend the bodies are cfg'd away and the arguments go unused.
#![cfg_attr(not(feature = "cuda"), allow(unused_variables, unused_imports))]

use std::ffi::c_void;

use crate::backend::DType;
use crate::perturb::Dist;

use super::status::*;

/// The body of a kernel entry point: `$body` where the CUDA backend is built, and
/// `ZO_ERR_UNSUPPORTED` elsewhere.
macro_rules! with_cuda {
    ($body:expr) => {{
        #[cfg(feature = "cuda")]
        let r = $body;
        #[cfg(not(feature = "cuda"))]
        let r = Err($crate::ffi::kernels::no_cuda());
        r
    }};
}

pub mod adapter;
pub mod attention;
pub mod decode;
pub mod loss;
pub mod update;

pub use adapter::*;
pub use attention::*;
pub use decode::*;
pub use loss::*;
pub use update::*;

/// Element types of weights and activations (`dtype` arguments).
pub const ZO_DTYPE_F32: i32 = 0;
pub const ZO_DTYPE_BF16: i32 = 1;
pub const ZO_DTYPE_F16: i32 = 2;

/// Distributions of the random directions (`dist` arguments).
pub const ZO_DIST_GAUSSIAN: i32 = 0;
pub const ZO_DIST_RADEMACHER: i32 = 1;

/// The RNG role of a parameter's dense perturbation. A role says which use of a tensor a random
/// stream serves: every random element is a pure function of (seed, tensor id, role, element
/// index), and zo's own families draw with these roles.
pub const ZO_ROLE_DENSE: u32 = 0;
/// Low-rank Uᵀ (`[rank][out]`), from a step's direction seed.
pub const ZO_ROLE_LOWRANK_U: u32 = 1;
/// Low-rank Vᵀ (`[rank][in]`), from the period seed.
pub const ZO_ROLE_LOWRANK_V: u32 = 2;
/// Perturbation of LoRA A (`[rank][in]`).
pub const ZO_ROLE_LORA_A: u32 = 3;
/// Perturbation of LoRA B (`[out][rank]`).
pub const ZO_ROLE_LORA_B: u32 = 4;
/// Perturbation of prefix keys and values.
pub const ZO_ROLE_PREFIX: u32 = 6;

const _: () = {
    use crate::perturb::role;
    assert!(ZO_ROLE_DENSE == role::DENSE);
    assert!(ZO_ROLE_LOWRANK_U == role::LOWRANK_U);
    assert!(ZO_ROLE_LOWRANK_V == role::LOWRANK_V);
    assert!(ZO_ROLE_LORA_A == role::LORA_A);
    assert!(ZO_ROLE_LORA_B == role::LORA_B);
    assert!(ZO_ROLE_PREFIX == role::PREFIX);
};

/// `zo_kernel_target.device`: run the kernels under zo-emu on the CPU, on host pointers: the
/// host twin of every kernel, bit-exact with the GPU. Calls are synchronous (they return when
/// the kernel has run) and the stream is ignored.
pub const ZO_KERNEL_HOST: i32 = 0;
/// `zo_kernel_target.device`: run the kernels on GPU `ordinal`, on device pointers, enqueued on
/// `stream`.
pub const ZO_KERNEL_CUDA: i32 = 1;

/// Where a kernel call runs.
///
/// With `ZO_KERNEL_CUDA`, every pointer argument of the call is a device address of GPU
/// `ordinal`, and the call only enqueues the kernel on `stream` and returns: the caller orders
/// and waits for it like any other work on that stream, and must keep every buffer alive and
/// unchanged by other streams until the kernel has run. No call allocates, copies or
/// synchronises, so calls can be captured into a CUDA graph (call `zo_kernel_prepare` once
/// before the capture). zo uses the GPU's primary context (the CUDA runtime's): `stream` must
/// belong to it. The calling thread's current context is restored before a call returns.
/// Calls may come from any thread.
///
/// With `ZO_KERNEL_HOST`, every pointer is a host address and the call runs to completion on
/// the CPU.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct zo_kernel_target {
    /// `sizeof(zo_kernel_target)`.
    pub struct_size: usize,
    /// `ZO_KERNEL_CUDA` (the default) or `ZO_KERNEL_HOST`.
    pub device: i32,
    /// The GPU (CUDA device ordinal, default 0); ignored by `ZO_KERNEL_HOST`.
    pub ordinal: i32,
    /// The `CUstream` (or `cudaStream_t`) to enqueue on; NULL (the default) is the legacy
    /// default stream. Ignored by `ZO_KERNEL_HOST`.
    pub stream: *mut c_void,
}

/// A target of GPU 0's legacy default stream.
#[no_mangle]
pub extern "C" fn zo_kernel_target_default_params() -> zo_kernel_target {
    zo_kernel_target {
        struct_size: std::mem::size_of::<zo_kernel_target>(),
        device: ZO_KERNEL_CUDA,
        ordinal: 0,
        stream: std::ptr::null_mut(),
    }
}

/// Opens the target's GPU and loads and resolves every kernel now, so that later calls only
/// enqueue launches: call it before capturing kernel calls into a CUDA graph (a capture
/// refuses the module load a first call would make). Calls without it do the same on first
/// use. `ZO_ERR_UNSUPPORTED` when this build has no CUDA kernels; `ZO_ERR_CUDA` when there is
/// no driver or no such GPU. Nothing to do for `ZO_KERNEL_HOST`.
///
/// # Safety
/// `target` is NULL or points at a `zo_kernel_target` whose stream is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn zo_kernel_prepare(target: *const zo_kernel_target) -> zo_status {
    guard(|| {
        with_cuda!(unsafe { call::open(target) }?
            .prepare()
            .map_err(FfiError::from))
    })
}

/// The dtype behind a `ZO_DTYPE_*` code.
pub fn dtype(code: i32) -> FfiResult<DType> {
    match code {
        ZO_DTYPE_F32 => Ok(DType::F32),
        ZO_DTYPE_BF16 => Ok(DType::Bf16),
        ZO_DTYPE_F16 => Ok(DType::F16),
        other => Err(FfiError::new(
            ZO_ERR_ARGUMENT,
            format!("dtype {other}: expected ZO_DTYPE_F32, ZO_DTYPE_BF16 or ZO_DTYPE_F16"),
        )),
    }
}

/// The distribution behind a `ZO_DIST_*` code.
pub fn dist(code: i32) -> FfiResult<Dist> {
    match code {
        ZO_DIST_GAUSSIAN => Ok(Dist::Gaussian),
        ZO_DIST_RADEMACHER => Ok(Dist::Rademacher),
        other => Err(FfiError::new(
            ZO_ERR_ARGUMENT,
            format!("dist {other}: expected ZO_DIST_GAUSSIAN or ZO_DIST_RADEMACHER"),
        )),
    }
}

#[cfg_attr(feature = "cuda", allow(dead_code))]
pub(crate) fn no_cuda() -> FfiError {
    FfiError::new(
        ZO_ERR_UNSUPPORTED,
        "this build of zo has no CUDA backend (it was built without the `cuda` feature), so \
         the kernel level is unavailable, on the host twin as on a GPU: rebuild with \
         --features cuda",
    )
}

#[cfg(feature = "cuda")]
mod call;
