//! Device, stream and the lazily loaded kernel module.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DriverError};

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

/// One GPU: its context, the stream work is issued on, and the kernel module (loaded on first
/// use, then shared) with a cache of the functions looked up so far.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    module: OnceLock<Arc<CudaModule>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ctx.ordinal())
            .finish_non_exhaustive()
    }
}

impl CudaDevice {
    /// Opens GPU `ordinal`. Fails with a clear [`Error::Cuda`] when the crate was built without
    /// kernels, when the CUDA driver library cannot be loaded, or when there is no such GPU.
    pub fn new(ordinal: usize) -> Result<Self> {
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
        Ok(CudaDevice {
            ctx,
            stream,
            module: OnceLock::new(),
            functions: Mutex::new(HashMap::new()),
        })
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream every launch and copy of this device goes on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// "NVIDIA H100 80GB HBM3 (sm_90)".
    pub fn describe(&self) -> Result<String> {
        let name = self.ctx.name().map_err(cuda_err("device name"))?;
        let (major, minor) = self
            .ctx
            .compute_capability()
            .map_err(cuda_err("compute capability"))?;
        Ok(format!("{name} (sm_{major}{minor})"))
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
    pub fn function(&self, name: &'static str) -> Result<CudaFunction> {
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
        cache.insert(name, f.clone());
        Ok(f)
    }
}

impl CudaDevice {
    /// Launches kernel `name(params, ptrs...)` on the stream: the calling convention of every
    /// zo kernel (a params struct by value, then device pointers).
    ///
    /// # Safety
    /// `name` must take exactly (P, one pointer per entry of `ptrs`), and each pointer must be
    /// valid for every access the kernel makes with `params` and this geometry.
    pub(crate) unsafe fn launch_raw<P: cudarc::driver::DeviceRepr>(
        &self,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        smem: u32,
        params: &P,
        ptrs: &[u64],
    ) -> Result<()> {
        use cudarc::driver::{LaunchConfig, PushKernelArg};
        let f = self.function(name)?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(params);
        for p in ptrs {
            l.arg(p);
        }
        l.launch(LaunchConfig {
            grid_dim: grid,
            block_dim: block,
            shared_mem_bytes: smem,
        })
        .map(|_| ())
        .map_err(cuda_err(format!("launching {name}")))
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
        for name in [
            "zo_rng_draw_f32",
            "zo_rng_draw_u32",
            "zo_embed_bf16",
            "zo_norm_f16",
            "zo_act_f32",
            "zo_add_f32",
            "zo_gather_rows_f32",
            "zo_candidate_logprobs",
            "zo_classification_loss",
        ] {
            assert!(contains(FATBIN, name.as_bytes()), "{name} missing");
        }
    }
}
