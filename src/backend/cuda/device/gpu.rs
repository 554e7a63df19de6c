//! The real GPU behind the device seam: a CUDA context, the one stream every launch and copy
//! goes on, the embedded kernel module (loaded on first use) with its function cache, and
//! cuBLASLt for the GEMMs.

use std::collections::{HashMap, HashSet};
use std::ffi::c_void;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{result, sys, CudaContext, CudaFunction, CudaModule, CudaStream, DriverError};

use super::cublaslt::Gemm;
use super::{Alloc, Arrival, DeviceApi, Pinned};
use crate::backend::cuda::gemm::GemmShape;
use crate::backend::cuda::kernels::LaunchDims;
use crate::{Error, Result};

/// The fatbin build.rs compiled from csrc/*.cu.
#[cfg(zo_kernels)]
static FATBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/zo_kernels.fatbin"));

/// Whether this build embeds the CUDA kernels (nvcc was found at build time).
pub fn kernels_built() -> bool {
    cfg!(zo_kernels)
}

/// Wraps a driver error with what we were doing.
pub(crate) fn cuda_err(what: impl std::fmt::Display) -> impl FnOnce(DriverError) -> Error {
    move |e| Error::Cuda(format!("{what}: {e}"))
}

/// Shared memory a kernel may use without opting in (48 KiB).
const DEFAULT_SMEM: u32 = 48 * 1024;

pub(super) struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    module: OnceLock<Arc<CudaModule>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    /// (kernel, bytes) pairs whose dynamic shared memory limit has been raised.
    smem_opt_in: Mutex<HashSet<(&'static str, u32)>>,
    gemm: OnceLock<Gemm>,
    /// The stream host-to-device weight copies run on beside the compute stream (created on
    /// first use).
    copy: OnceLock<CopyStream>,
}

/// A non-blocking stream (it does not wait for the legacy default stream the compute work is
/// on), destroyed with the value.
struct CopyStream {
    ctx: Arc<CudaContext>,
    /// The `CUstream`, as an integer so the value is Send and Sync.
    stream: usize,
}

impl Drop for CopyStream {
    fn drop(&mut self) {
        // SAFETY: the stream was created in this context and nothing uses it after the owner
        // is dropped. A failure cannot be reported from a destructor; the context goes too.
        unsafe {
            let _ = self.ctx.bind_to_thread();
            let _ = result::stream::destroy(self.stream as sys::CUstream);
        }
    }
}

/// A CUDA event destroyed with the value (the driver releases a pending one when it completes).
struct Event {
    ctx: Arc<CudaContext>,
    event: usize,
}

impl Event {
    /// A new event recorded on `stream`.
    fn record(ctx: &Arc<CudaContext>, stream: sys::CUstream) -> Result<Event> {
        ctx.bind_to_thread()
            .map_err(cuda_err("binding the CUDA context"))?;
        let ev = result::event::create(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)
            .map_err(cuda_err("creating a CUDA event"))?;
        let event = Event {
            ctx: ctx.clone(),
            event: ev as usize,
        };
        // SAFETY: both the event and the stream are live in this context.
        unsafe { result::event::record(ev, stream) }.map_err(cuda_err("recording an event"))?;
        Ok(event)
    }

    fn cu(&self) -> sys::CUevent {
        self.event as sys::CUevent
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: the event is this value's; destroying a pending event is allowed.
        unsafe {
            let _ = self.ctx.bind_to_thread();
            let _ = result::event::destroy(self.cu());
        }
    }
}

/// Page-locked host memory from cuMemHostAlloc, freed with the value.
struct HostAlloc {
    ctx: Arc<CudaContext>,
    ptr: usize,
}

impl Drop for HostAlloc {
    fn drop(&mut self) {
        // SAFETY: the pointer came from cuMemHostAlloc in this context; the owner's contract
        // (stream_in's) has every copy from it finished before it is dropped.
        unsafe {
            let _ = self.ctx.bind_to_thread();
            let _ = result::free_host(self.ptr as *mut c_void);
        }
    }
}

/// How many GPUs the CUDA driver reports (0 without a driver).
pub fn gpu_count() -> usize {
    // SAFETY: only tries to open the library, calls nothing in it.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return 0;
    }
    CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
}

impl Gpu {
    pub(super) fn new(ordinal: usize) -> Result<Self> {
        if !kernels_built() {
            return Err(Error::Cuda(
                "this build has no CUDA kernels: nvcc was not found when zo was compiled; set \
                 NVCC=/path/to/nvcc (or put nvcc on PATH) and rebuild with --features cuda"
                    .into(),
            ));
        }
        // cudarc panics on the first driver call when libcuda is missing; ask first.
        // SAFETY: only tries to open the library, calls nothing in it.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(Error::Cuda(
                "the CUDA driver library (libcuda.so) was not found: no NVIDIA driver on this \
                 machine"
                    .into(),
            ));
        }
        let count = CudaContext::device_count().map_err(cuda_err("counting CUDA devices"))?;
        if count <= 0 {
            return Err(Error::Cuda("the CUDA driver reports no GPU".into()));
        }
        if ordinal >= count as usize {
            return Err(Error::Cuda(format!(
                "GPU {ordinal} requested but only {count} present"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(cuda_err(format!("opening GPU {ordinal}")))?;
        let stream = ctx.default_stream();
        Ok(Gpu {
            ctx,
            stream,
            module: OnceLock::new(),
            functions: Mutex::new(HashMap::new()),
            smem_opt_in: Mutex::new(HashSet::new()),
            gemm: OnceLock::new(),
            copy: OnceLock::new(),
        })
    }

    fn copy_stream(&self) -> Result<sys::CUstream> {
        if let Some(c) = self.copy.get() {
            return Ok(c.stream as sys::CUstream);
        }
        self.bind()?;
        let stream = result::stream::create(result::stream::StreamKind::NonBlocking)
            .map_err(cuda_err("creating the copy stream"))?;
        let made = CopyStream {
            ctx: self.ctx.clone(),
            stream: stream as usize,
        };
        // A concurrent caller may have won the race; the loser's stream is destroyed.
        Ok(self.copy.get_or_init(|| made).stream as sys::CUstream)
    }

    /// The embedded kernel module, loaded on first use.
    fn module(&self) -> Result<&Arc<CudaModule>> {
        if let Some(m) = self.module.get() {
            return Ok(m);
        }
        let m = self.load_module()?;
        // A concurrent caller may have won the race; either module is equivalent.
        Ok(self.module.get_or_init(|| m))
    }

    #[cfg(zo_kernels)]
    fn load_module(&self) -> Result<Arc<CudaModule>> {
        // cuModuleLoadData takes a fatbin image as readily as a cubin or PTX text; the driver
        // picks the SASS for this GPU or JIT-compiles the PTX.
        let image = cudarc::nvrtc::Ptx::from_binary(FATBIN.to_vec());
        self.ctx
            .load_module(image)
            .map_err(cuda_err("loading the embedded kernel fatbin"))
    }

    #[cfg(not(zo_kernels))]
    fn load_module(&self) -> Result<Arc<CudaModule>> {
        Err(Error::Cuda("this build has no CUDA kernels".into()))
    }

    /// The kernel `name` from the embedded module (looked up once, then cached).
    fn function(&self, name: &str) -> Result<CudaFunction> {
        let mut cache = self
            .functions
            .lock()
            .map_err(|_| Error::Cuda("kernel cache poisoned by an earlier panic".into()))?;
        if let Some(f) = cache.get(name) {
            return Ok(f.clone());
        }
        let f = self
            .module()?
            .load_function(name)
            .map_err(cuda_err(format!(
                "kernel {name} not in the embedded fatbin"
            )))?;
        cache.insert(name.to_string(), f.clone());
        Ok(f)
    }

    /// Kernels asking for more than 48 KiB of dynamic shared memory must opt in, once.
    fn allow_smem(&self, name: &'static str, f: &CudaFunction, bytes: u32) -> Result<()> {
        if bytes <= DEFAULT_SMEM {
            return Ok(());
        }
        let mut done = self
            .smem_opt_in
            .lock()
            .map_err(|_| Error::Cuda("shared-memory cache poisoned".into()))?;
        if done.insert((name, bytes)) {
            f.set_attribute(
                cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )
            .map_err(cuda_err(format!("allowing {bytes} bytes of shared memory for {name}")))?;
        }
        Ok(())
    }

    /// Launches `name` on `stream`, a stream of this GPU's context.
    ///
    /// # Safety
    /// As [`DeviceApi::launch`], and `stream` is a live stream of this context (or NULL).
    pub(super) unsafe fn launch_on(
        &self,
        stream: cudarc::driver::sys::CUstream,
        name: &'static str,
        dims: LaunchDims,
        params: *const c_void,
        ptrs: &[u64],
    ) -> Result<()> {
        let f = self.function(name)?;
        self.allow_smem(name, &f, dims.smem)?;
        self.bind()?;
        // cuLaunchKernel reads each argument through a pointer to it: the params struct, then
        // each device address (which lives in `ptrs` for the duration of the call).
        let mut args: Vec<*mut c_void> = Vec::with_capacity(1 + ptrs.len());
        args.push(params as *mut c_void);
        args.extend(ptrs.iter().map(|p| p as *const u64 as *mut c_void));
        // SAFETY: the argument list matches the kernel's signature (the caller's contract).
        unsafe {
            result::launch_kernel(
                f.cu_function(),
                dims.grid,
                dims.block,
                dims.smem,
                stream,
                &mut args,
            )
        }
        .map_err(cuda_err(format!("launching {name}")))
    }

    /// Loads the module and resolves every kernel in it now, so that later launches make no
    /// module calls (which a CUDA graph capture would refuse).
    pub(super) fn load_kernels(&self) -> Result<()> {
        self.bind()?;
        // Into the cache the launches read, so a captured launch finds its function there.
        for name in zo_emu::kernel_names() {
            self.function(&name)?;
        }
        Ok(())
    }

    fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(cuda_err("binding the CUDA context"))
    }
}

impl DeviceApi for Gpu {
    fn describe(&self) -> Result<String> {
        let name = self.ctx.name().map_err(cuda_err("device name"))?;
        let (major, minor) = self
            .ctx
            .compute_capability()
            .map_err(cuda_err("compute capability"))?;
        Ok(format!("{name} (sm_{major}{minor})"))
    }

    fn memory(&self) -> Result<(usize, usize)> {
        self.ctx
            .mem_get_info()
            .map_err(cuda_err("querying GPU memory"))
    }

    fn alloc(&self, bytes: usize, zeroed: bool) -> Result<Alloc> {
        let bytes = bytes.max(1);
        let buf = if zeroed {
            self.stream.alloc_zeros::<u8>(bytes)
        } else {
            // SAFETY: bytes need no initialisation to be valid; the caller overwrites them.
            unsafe { self.stream.alloc::<u8>(bytes) }
        }
        .map_err(cuda_err(format!(
            "allocating {} MiB on the GPU",
            bytes.div_ceil(1 << 20)
        )))?;
        use cudarc::driver::DevicePtr;
        let ptr = buf.device_ptr(&self.stream).0;
        Ok(Alloc::new(ptr, bytes, Box::new(buf)))
    }

    unsafe fn upload(&self, dst: u64, src: &[u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: the range is the caller's; a copy from pageable memory has read `src` when
        // it returns.
        unsafe { result::memcpy_htod_async(dst, src, self.stream.cu_stream()) }
            .map_err(cuda_err("copying to the GPU"))
    }

    unsafe fn download(&self, src: u64, dst: &mut [u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: the range is the caller's; the sync below finishes the copy before `dst`
        // is read.
        unsafe { result::memcpy_dtoh_async(dst, src, self.stream.cu_stream()) }
            .map_err(cuda_err("copying from the GPU"))?;
        self.synchronize()
    }

    unsafe fn memset_zero(&self, dst: u64, bytes: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: the range is the caller's.
        unsafe { result::memset_d8_async(dst, 0, bytes, self.stream.cu_stream()) }
            .map_err(cuda_err("zeroing a GPU buffer"))
    }

    unsafe fn copy(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: the ranges are the caller's.
        unsafe { result::memcpy_dtod_async(dst, src, bytes, self.stream.cu_stream()) }
            .map_err(cuda_err("copying on the GPU"))
    }

    unsafe fn launch(
        &self,
        name: &'static str,
        dims: LaunchDims,
        params: *const c_void,
        _params_size: usize,
        ptrs: &[u64],
    ) -> Result<()> {
        // SAFETY: the caller's contract.
        unsafe { self.launch_on(self.stream.cu_stream(), name, dims, params, ptrs) }
    }

    unsafe fn gemm(
        &self,
        shape: &GemmShape,
        x: u64,
        w: u64,
        y: u64,
        bias: Option<u64>,
    ) -> Result<()> {
        let gemm = match self.gemm.get() {
            Some(g) => g,
            None => {
                let g = Gemm::new(self.stream.clone())?;
                self.gemm.get_or_init(|| g)
            }
        };
        self.bind()?;
        // SAFETY: upheld by the caller.
        unsafe { gemm.run(shape, x, w, y, bias) }
    }

    fn prepare(&self) -> Result<()> {
        self.load_kernels()
    }

    fn synchronize(&self) -> Result<()> {
        if let Some(c) = self.copy.get() {
            self.bind()?;
            // SAFETY: the copy stream is live while `self` is.
            unsafe { result::stream::synchronize(c.stream as sys::CUstream) }
                .map_err(cuda_err("synchronising the copy stream"))?;
        }
        self.stream
            .synchronize()
            .map_err(cuda_err("synchronising the stream"))
    }

    fn pinned(&self, bytes: usize) -> Result<Pinned> {
        let bytes = bytes.max(1);
        self.bind()?;
        // SAFETY: flags 0: plain page-locked memory (host reads stay fast, unlike write-combined).
        let ptr = unsafe { result::malloc_host(bytes, 0) }.map_err(cuda_err(format!(
            "page-locking {} MiB of host memory",
            bytes.div_ceil(1 << 20)
        )))? as *mut u8;
        let owner = HostAlloc {
            ctx: self.ctx.clone(),
            ptr: ptr as usize,
        };
        // SAFETY: the allocation holds `bytes` bytes; zeroing makes them initialised.
        unsafe { std::ptr::write_bytes(ptr, 0, bytes) };
        Ok(Pinned::new(ptr, bytes, Box::new(owner)))
    }

    unsafe fn stream_in(&self, dst: u64, src: &[u8]) -> Result<Arrival> {
        let copy = self.copy_stream()?;
        // The copy may overwrite what the compute stream's queued work still reads.
        let freed = Event::record(&self.ctx, self.stream.cu_stream())?;
        // SAFETY: both are live; the caller's contract covers `dst` and `src`.
        unsafe {
            result::stream::wait_event(
                copy,
                freed.cu(),
                sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
            )
            .map_err(cuda_err("ordering a copy after compute"))?;
            result::memcpy_htod_async(dst, src, copy).map_err(cuda_err("streaming to the GPU"))?;
        }
        Ok(Arrival(Box::new(Event::record(&self.ctx, copy)?)))
    }

    fn arrive(&self, arrival: Arrival) -> Result<()> {
        let ev = arrival
            .0
            .downcast::<Event>()
            .map_err(|_| Error::Cuda("an arrival of another device".into()))?;
        self.bind()?;
        // SAFETY: the event and the compute stream are live in this context.
        unsafe {
            result::stream::wait_event(
                self.stream.cu_stream(),
                ev.cu(),
                sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
            )
        }
        .map_err(cuda_err("waiting for a copy"))
    }
}

#[cfg(all(test, zo_kernels))]
mod tests {
    use super::FATBIN;

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// The embedded image holds SASS for sm_80 and sm_90 (ELF e_flags carry the SM number in
    /// bits 8..16) and names every kernel the host launches.
    #[test]
    fn fatbin_has_both_sass_targets_and_the_kernels() {
        let mut archs = Vec::new();
        let mut i = 0;
        while let Some(off) = FATBIN[i..].windows(4).position(|w| w == b"\x7fELF") {
            let at = i + off;
            let flags = u32::from_le_bytes(FATBIN[at + 0x30..at + 0x34].try_into().unwrap());
            archs.push((flags >> 8) & 0xff);
            i = at + 4;
        }
        archs.sort();
        assert_eq!(archs, [80, 90], "SASS targets in the fatbin");
        // Both devices hold the same kernels: the emulator's registry is the list.
        let names = zo_emu::kernel_names();
        assert!(names.len() > 20, "registry holds {} kernels", names.len());
        for name in names {
            assert!(contains(FATBIN, name.as_bytes()), "{name} missing");
        }
    }
}
