//! A GPU driven through a stream the caller owns: the device of the C ABI's kernel level. It
//! only launches. Each launch is enqueued on the caller's stream and returns, nothing is
//! allocated, copied or synchronised, so a sequence of launches can be captured into the
//! caller's CUDA graph. One context per GPU (the primary context, shared with the CUDA
//! runtime) with its loaded module serves every caller of the process.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use cudarc::driver::{result, sys};

use super::gpu::Gpu;
use super::{Alloc, Arrival, DeviceApi, Pinned};
use crate::backend::cuda::gemm::GemmShape;
use crate::backend::cuda::kernels::LaunchDims;
use crate::{Error, Result};

/// Opened GPUs by ordinal. A failed open is not kept, so a later call can try again.
static GPUS: Mutex<Option<HashMap<usize, Arc<Gpu>>>> = Mutex::new(None);

fn shared(ordinal: usize) -> Result<Arc<Gpu>> {
    // Entries are inserted whole, so a panic elsewhere leaves the table consistent.
    let mut gpus = GPUS.lock().unwrap_or_else(|e| e.into_inner());
    let gpus = gpus.get_or_insert_with(HashMap::new);
    if let Some(g) = gpus.get(&ordinal) {
        return Ok(g.clone());
    }
    let g = Arc::new(Gpu::new(ordinal)?);
    gpus.insert(ordinal, g.clone());
    Ok(g)
}

pub(super) struct OnStream {
    gpu: Arc<Gpu>,
    /// The caller's `CUstream`, kept as an integer so the device is Send and Sync; the
    /// caller keeps the stream alive while the device is in use.
    stream: usize,
}

impl OnStream {
    pub(super) fn new(ordinal: usize, stream: *mut c_void) -> Result<OnStream> {
        // cudarc panics on a driver call when libcuda is missing; opening the GPU then fails
        // before it makes a context current.
        // SAFETY: only tries to open the library, calls nothing in it.
        let _restore = unsafe { sys::is_culib_present() }.then(Restore::current);
        Ok(OnStream {
            gpu: shared(ordinal)?,
            stream: stream as usize,
        })
    }
}

/// Puts back the calling thread's current context, which opening the GPU and launching replace
/// with the GPU's primary context: the caller's own CUDA calls on this thread must not change
/// device.
struct Restore(sys::CUcontext);

impl Restore {
    /// What is current on this thread now (the driver library is loaded). Before cuInit
    /// nothing is current: NULL is what to restore then.
    fn current() -> Restore {
        let ctx = result::ctx::get_current().ok().flatten();
        Restore(ctx.unwrap_or(std::ptr::null_mut()))
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: the context was current on this thread when the call began, so it is live
        // (or NULL, which unbinds). A failure leaves the primary context current: there is no
        // one to report it to from a destructor, and that context is valid.
        let _ = unsafe { result::ctx::set_current(self.0) };
    }
}

fn refuse<T>(what: &str) -> Result<T> {
    Err(Error::Unsupported(format!(
        "{what} on the caller's stream: the kernel level only launches kernels on the caller's \
         memory"
    )))
}

impl DeviceApi for OnStream {
    fn describe(&self) -> Result<String> {
        Ok(format!("{} on the caller's stream", self.gpu.describe()?))
    }

    fn memory(&self) -> Result<(usize, usize)> {
        let _restore = Restore::current();
        self.gpu.memory()
    }

    fn alloc(&self, _bytes: usize, _zeroed: bool) -> Result<Alloc> {
        refuse("allocating")
    }

    unsafe fn upload(&self, _dst: u64, _src: &[u8]) -> Result<()> {
        refuse("copying to the device")
    }

    unsafe fn download(&self, _src: u64, _dst: &mut [u8]) -> Result<()> {
        refuse("copying from the device")
    }

    unsafe fn memset_zero(&self, _dst: u64, _bytes: usize) -> Result<()> {
        refuse("zeroing memory")
    }

    unsafe fn copy(&self, _dst: u64, _src: u64, _bytes: usize) -> Result<()> {
        refuse("copying on the device")
    }

    unsafe fn launch(
        &self,
        name: &'static str,
        dims: LaunchDims,
        params: *const c_void,
        _params_size: usize,
        ptrs: &[u64],
    ) -> Result<()> {
        let _restore = Restore::current();
        // SAFETY: the caller's contract; the stream is the caller's, of this GPU's primary
        // context (the header's contract).
        unsafe {
            self.gpu
                .launch_on(self.stream as sys::CUstream, name, dims, params, ptrs)
        }
    }

    unsafe fn gemm(
        &self,
        _shape: &GemmShape,
        _x: u64,
        _w: u64,
        _y: u64,
        _bias: Option<u64>,
    ) -> Result<()> {
        refuse("a GEMM")
    }

    fn prepare(&self) -> Result<()> {
        let _restore = Restore::current();
        self.gpu.load_kernels()
    }

    fn synchronize(&self) -> Result<()> {
        // Launches stay asynchronous (and capturable): waiting is the caller's to do.
        refuse("synchronising")
    }

    fn pinned(&self, _bytes: usize) -> Result<Pinned> {
        refuse("allocating host memory")
    }

    unsafe fn stream_in(&self, _dst: u64, _src: &[u8]) -> Result<Arrival> {
        refuse("copying to the device")
    }

    fn arrive(&self, _arrival: Arrival) -> Result<()> {
        refuse("waiting for a copy")
    }
}
