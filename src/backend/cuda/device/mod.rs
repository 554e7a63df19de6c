//! The device seam: the few things the CUDA backend asks of a device (allocate, copy, launch a
//! kernel by name, run a GEMM, synchronise), with two implementations.
//!
//! - [`CudaDevice::new`]: a real GPU through the CUDA driver, the embedded kernel fatbin and
//!   cuBLASLt.
//! - [`CudaDevice::emulated`]: zo-emu, which runs the unmodified `csrc/*.cu` kernels on the CPU,
//!   and a GEMM twin with cuBLASLt's semantics (storage-type inputs, fp32 accumulation in one
//!   fixed order, the β = 1 residual, the fp32 bias epilogue). Device memory is host memory
//!   that ends at a guard page.
//!
//! Everything above this module (buffers, the family launchers, the forward, the GPU families,
//! benches and tests) is written once against [`CudaDevice`], so the CUDA backend's whole
//! training step runs in CI on machines with no GPU, and a GPU run confirms what emulation
//! already showed.

mod cublaslt;
mod emu;
mod gpu;
mod stream;

use std::ffi::c_void;

pub(crate) use gpu::cuda_err;
pub use gpu::{gpu_count, kernels_built};

use super::buffer::Tracked;
use super::gemm::GemmShape;
use super::kernels::LaunchDims;
use crate::Result;

/// One device allocation: its address in the device's address space and what keeps it alive.
pub(crate) struct Alloc {
    pub(crate) ptr: u64,
    pub(crate) bytes: usize,
    _owner: Box<dyn Send + Sync>,
    _tracked: Tracked,
}

impl Alloc {
    pub(crate) fn new(ptr: u64, bytes: usize, owner: Box<dyn Send + Sync>) -> Alloc {
        Alloc {
            ptr,
            bytes,
            _owner: owner,
            _tracked: Tracked::new(bytes),
        }
    }

    /// A range inside an allocation `owner` keeps alive and the totals count already.
    pub(crate) fn within(ptr: u64, bytes: usize, owner: Box<dyn Send + Sync>) -> Alloc {
        Alloc {
            ptr,
            bytes,
            _owner: owner,
            _tracked: Tracked::new(0),
        }
    }
}

/// Host memory a device copies from asynchronously: page-locked on a GPU (so a copy runs at the
/// bus's speed while the host goes on), plain host memory under emulation.
pub(crate) struct Pinned {
    ptr: *mut u8,
    bytes: usize,
    _owner: Box<dyn Send + Sync>,
}

// SAFETY: the memory is owned by `_owner` for the value's lifetime and reached only through
// `&self` / `&mut self`, as a Vec<u8> would be.
unsafe impl Send for Pinned {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for Pinned {}

impl Pinned {
    pub(crate) fn new(ptr: *mut u8, bytes: usize, owner: Box<dyn Send + Sync>) -> Pinned {
        Pinned {
            ptr,
            bytes,
            _owner: owner,
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + bytes` is owned by `_owner` and initialised at allocation.
        unsafe { std::slice::from_raw_parts(self.ptr, self.bytes) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes) }
    }
}

/// A host-to-device copy in flight on the copy stream ([`DeviceApi::stream_in`]); the compute
/// stream may touch its destination only after [`DeviceApi::arrive`].
pub(crate) struct Arrival(pub(crate) Box<dyn std::any::Any + Send + Sync>);

/// What a device implements. Addresses are the device's own (`u64`, as kernels receive them);
/// every operation is ordered after the ones issued before it, as on one CUDA stream.
pub(crate) trait DeviceApi: Send + Sync {
    fn describe(&self) -> Result<String>;
    /// (free, total) bytes of device memory.
    fn memory(&self) -> Result<(usize, usize)>;
    /// `bytes` bytes, aligned to at least 16: zeroed, or (`zeroed == false`, for buffers an
    /// upload fills at once) with whatever the device held.
    fn alloc(&self, bytes: usize, zeroed: bool) -> Result<Alloc>;
    /// # Safety
    /// `dst..dst + src.len()` lies inside one live allocation of this device.
    unsafe fn upload(&self, dst: u64, src: &[u8]) -> Result<()>;
    /// Waits for the work issued before, then copies.
    ///
    /// # Safety
    /// `src..src + dst.len()` lies inside one live allocation of this device.
    unsafe fn download(&self, src: u64, dst: &mut [u8]) -> Result<()>;
    /// # Safety
    /// The range lies inside one live allocation of this device.
    unsafe fn memset_zero(&self, dst: u64, bytes: usize) -> Result<()>;
    /// # Safety
    /// Both ranges lie inside live allocations of this device.
    unsafe fn copy(&self, dst: u64, src: u64, bytes: usize) -> Result<()>;
    /// Launches kernel `name(params, ptrs...)`.
    ///
    /// # Safety
    /// `params` points at the kernel's params struct (`params_size` bytes) and every pointer
    /// is valid for every access the kernel makes with those params and this geometry.
    unsafe fn launch(
        &self,
        name: &'static str,
        dims: LaunchDims,
        params: *const c_void,
        params_size: usize,
        ptrs: &[u64],
    ) -> Result<()>;
    /// `y = x·Wᵀ (+ bias) (+ y)` (see [`GemmShape`]).
    ///
    /// # Safety
    /// The pointers hold the extents the shape implies.
    unsafe fn gemm(
        &self,
        shape: &GemmShape,
        x: u64,
        w: u64,
        y: u64,
        bias: Option<u64>,
    ) -> Result<()>;
    fn synchronize(&self) -> Result<()>;
    /// `bytes` bytes of zeroed host memory the device copies from asynchronously.
    fn pinned(&self, bytes: usize) -> Result<Pinned>;
    /// Copies `src` to `dst` on a second (copy) stream, after every operation issued before on
    /// the compute stream, so that compute goes on while the bytes cross the bus.
    ///
    /// # Safety
    /// `dst..dst + src.len()` lies inside one live allocation of this device, and `src` (page
    /// locked on a GPU, from [`DeviceApi::pinned`]) stays alive and unwritten until the
    /// arrival has been waited for and the device synchronised.
    unsafe fn stream_in(&self, dst: u64, src: &[u8]) -> Result<Arrival>;
    /// Orders every later operation of the compute stream after the copy of `arrival`.
    fn arrive(&self, arrival: Arrival) -> Result<()>;
    /// Makes every later launch a plain enqueue: loads and resolves the kernels ahead (a GPU),
    /// nothing to do (emulation).
    fn prepare(&self) -> Result<()> {
        Ok(())
    }
}

/// Which device to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The GPU of this ordinal.
    Gpu(usize),
    /// zo-emu: the kernels on the CPU.
    Emulated,
}

/// The device the CUDA backend runs on: a GPU, or the CPU emulation of one.
pub struct CudaDevice {
    imp: Box<dyn DeviceApi>,
    emulated: bool,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = self.imp.describe().unwrap_or_else(|e| e.to_string());
        f.debug_struct("CudaDevice").field("device", &what).finish()
    }
}

/// Marks the kernel params structs of csrc/zo_params.h (plain `#[repr(C)]` values).
///
/// # Safety
/// Implement only for `#[repr(C)]` structs of integers and floats that a kernel takes by value.
pub unsafe trait KernelParams: Copy {}

impl CudaDevice {
    /// Opens GPU `ordinal`. Fails with a clear [`crate::Error::Cuda`] when the crate was built
    /// without kernels, when the CUDA driver library cannot be loaded, or when there is no such
    /// GPU.
    pub fn new(ordinal: usize) -> Result<CudaDevice> {
        Ok(CudaDevice {
            imp: Box::new(gpu::Gpu::new(ordinal)?),
            emulated: false,
        })
    }

    /// GPU `ordinal` launching on the caller's `stream` (a `CUstream` of the GPU's primary
    /// context; NULL is the legacy default stream): the device of the C ABI's kernel level.
    /// Launches are enqueued and return; the device allocates, copies and synchronises
    /// nothing (those calls fail), so its launches can be captured into a CUDA graph. The
    /// context and module are opened once per GPU and shared by every such device.
    ///
    /// # Safety
    /// `stream` is NULL or a live stream of that context, and stays alive while the device
    /// launches on it.
    pub unsafe fn on_stream(ordinal: usize, stream: *mut c_void) -> Result<CudaDevice> {
        Ok(CudaDevice {
            imp: Box::new(stream::OnStream::new(ordinal, stream)?),
            emulated: false,
        })
    }

    /// Loads and resolves every kernel now, so that later launches only enqueue work (a CUDA
    /// graph capture refuses module loads). Launches do this themselves when needed.
    pub fn prepare(&self) -> Result<()> {
        self.imp.prepare()
    }

    pub fn open(target: Target) -> Result<CudaDevice> {
        match target {
            Target::Gpu(ordinal) => Self::new(ordinal),
            Target::Emulated => Ok(Self::emulated()),
        }
    }

    /// The CPU emulation of a GPU (zo-emu): the same kernels, launches and GEMM semantics, on
    /// the host. Always available; slow (every CUDA thread is a fiber), so for tiny models.
    pub fn emulated() -> CudaDevice {
        CudaDevice {
            imp: Box::new(emu::Emu),
            emulated: true,
        }
    }

    pub fn is_emulated(&self) -> bool {
        self.emulated
    }

    /// "NVIDIA H100 80GB HBM3 (sm_90)", or "zo-emu (CPU emulation)".
    pub fn describe(&self) -> Result<String> {
        self.imp.describe()
    }

    /// (free, total) bytes of device memory.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.imp.memory()
    }

    /// Waits for everything issued so far.
    pub fn synchronize(&self) -> Result<()> {
        self.imp.synchronize()
    }

    pub(crate) fn api(&self) -> &dyn DeviceApi {
        &*self.imp
    }

    /// Launches kernel `name(params, ptrs...)`: the calling convention of every zo kernel (a
    /// params struct by value, then device pointers). Only the family launchers call this.
    ///
    /// # Safety
    /// `name` must take exactly (P, one pointer per entry of `ptrs`), and each pointer must be
    /// valid for every access the kernel makes with `params` and `dims`.
    pub(crate) unsafe fn launch<P: KernelParams>(
        &self,
        name: &'static str,
        dims: LaunchDims,
        params: &P,
        ptrs: &[u64],
    ) -> Result<()> {
        // SAFETY: upheld by the caller; P is a plain repr(C) value.
        unsafe {
            self.imp.launch(
                name,
                dims,
                params as *const P as *const c_void,
                std::mem::size_of::<P>(),
                ptrs,
            )
        }
    }

    /// `y = x·Wᵀ (+ bias) (+ y)` on the device: cuBLASLt on a GPU, its twin under emulation
    /// (callers go through the checked [`super::gemm::linear`]).
    ///
    /// # Safety
    /// The pointers must be live allocations of this device holding at least `rows·ld_x` (x),
    /// `out·ld_w` (W), `rows·ld_y` (y) elements and `out` biases, in the shape's types.
    pub(crate) unsafe fn gemm(
        &self,
        shape: &GemmShape,
        x: u64,
        w: u64,
        y: u64,
        bias: Option<u64>,
    ) -> Result<()> {
        // SAFETY: upheld by the caller.
        unsafe { self.imp.gemm(shape, x, w, y, bias) }
    }
}
