//! Untyped device buffers tagged with their element type, and the init kernel that fills them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use super::device::{cuda_err, CudaDevice};
use super::DType;
use crate::{Error, Result};

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes of one live device allocation, counted in the process-wide totals until dropped.
/// Every allocation of the backend (buffers and the cuBLASLt workspace) holds one, so
/// [`peak_device_bytes`] is the high-water mark of what zo asked the driver for.
pub(crate) struct Tracked(usize);

impl Tracked {
    pub(crate) fn new(bytes: usize) -> Tracked {
        let live = LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
        PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
        Tracked(bytes)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        LIVE_BYTES.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// Device bytes zo holds now, over all GPUs of the process (the CUDA context and the
/// libraries' own reservations are not included).
pub fn live_device_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// The most device bytes zo held at once so far (see [`live_device_bytes`]).
pub fn peak_device_bytes() -> usize {
    PEAK_BYTES.load(Ordering::Relaxed)
}

/// Restarts the high-water mark at what is held now (benchmarks measure one phase).
pub fn reset_peak_device_bytes() {
    PEAK_BYTES.store(LIVE_BYTES.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// A device allocation of `len` elements of `dtype`. The raw address is taken once at
/// allocation: kernels and cuBLASLt receive plain pointers, and the one stream the backend
/// uses orders every access.
pub struct DBuf {
    buf: CudaSlice<u8>,
    ptr: u64,
    pub dtype: DType,
    pub len: usize,
    _tracked: Tracked,
}

impl std::fmt::Debug for DBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DBuf({} x {})", self.len, self.dtype)
    }
}

impl DBuf {
    /// `len` zeroed elements.
    pub fn zeros(dev: &CudaDevice, dtype: DType, len: usize) -> Result<DBuf> {
        let bytes = (len * dtype.size()).max(1);
        let buf = dev
            .stream()
            .alloc_zeros::<u8>(bytes)
            .map_err(cuda_err(format!(
                "allocating {} MiB on the GPU",
                bytes.div_ceil(1 << 20)
            )))?;
        Ok(Self::wrap(dev.stream(), buf, dtype, len))
    }

    fn wrap(stream: &Arc<CudaStream>, buf: CudaSlice<u8>, dtype: DType, len: usize) -> DBuf {
        let ptr = buf.device_ptr(stream).0;
        DBuf {
            _tracked: Tracked::new(buf.len()),
            buf,
            ptr,
            dtype,
            len,
        }
    }

    /// Host f32 values rounded once to `dtype` and copied up.
    pub fn from_f32(dev: &CudaDevice, dtype: DType, host: &[f32]) -> Result<DBuf> {
        let bytes: Vec<u8> = match dtype {
            DType::F32 => bytemuck::cast_slice(host).to_vec(),
            DType::Bf16 => host
                .iter()
                .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                .collect(),
            DType::F16 => host
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect(),
        };
        let buf = dev
            .stream()
            .clone_htod(&bytes)
            .map_err(cuda_err("copying weights to the GPU"))?;
        Ok(Self::wrap(dev.stream(), buf, dtype, host.len()))
    }

    /// Host u32/i32/f32 words copied up as they are.
    pub fn from_words<T: bytemuck::Pod>(dev: &CudaDevice, host: &[T]) -> Result<DBuf> {
        debug_assert_eq!(std::mem::size_of::<T>(), 4);
        let buf = dev
            .stream()
            .clone_htod(bytemuck::cast_slice::<T, u8>(host))
            .map_err(cuda_err("copying plan data to the GPU"))?;
        Ok(Self::wrap(dev.stream(), buf, DType::F32, host.len()))
    }

    /// The elements widened to f32 on the host (tests, exports).
    pub fn to_f32(&self, dev: &CudaDevice) -> Result<Vec<f32>> {
        let bytes = dev
            .stream()
            .clone_dtoh(&self.buf)
            .map_err(cuda_err("copying from the GPU"))?;
        let bytes = &bytes[..self.len * self.dtype.size()];
        Ok(match self.dtype {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::Bf16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        })
    }

    /// Overwrites the first `host.len()` elements (an f32 buffer) from the host.
    pub fn write_f32(&mut self, dev: &CudaDevice, host: &[f32]) -> Result<()> {
        if self.dtype != DType::F32 || host.len() > self.len {
            return Err(Error::Data(format!(
                "writing {} f32 values into {self:?}",
                host.len()
            )));
        }
        let mut view = self.buf.slice_mut(..host.len() * 4);
        dev.stream()
            .memcpy_htod(bytemuck::cast_slice::<f32, u8>(host), &mut view)
            .map_err(cuda_err("copying to the GPU"))
    }

    /// Device address of element 0.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Device address of element `i`.
    pub fn at(&self, i: usize) -> u64 {
        debug_assert!(i <= self.len);
        self.ptr + (i * self.dtype.size()) as u64
    }

    pub fn bytes(&self) -> usize {
        self.len * self.dtype.size()
    }
}

/// What [`CudaDevice::init`] writes.
#[derive(Debug, Clone, Copy)]
pub enum Init {
    /// `std · gaussian(seed, tensor, role, index)`.
    Normal {
        seed: u64,
        tensor: u32,
        role: u32,
        std: f32,
    },
    Const(f32),
    /// `bound · (2u − 1)` with `u = uniform_open0(raw(seed, tensor, role, index))`: LoRA A's
    /// Kaiming-uniform init, bit for bit the host's (`2u − 1` is exact, one rounding).
    Uniform {
        seed: u64,
        tensor: u32,
        role: u32,
        bound: f32,
    },
}

unsafe impl cudarc::driver::DeviceRepr for super::params::ZoInitParams {}

impl CudaDevice {
    /// Sets every byte of `buf` to zero.
    pub fn zero(&self, buf: &DBuf) -> Result<()> {
        // SAFETY: the range is the buffer's own allocation.
        unsafe {
            cudarc::driver::result::memset_d8_async(
                buf.ptr(),
                0,
                buf.bytes(),
                self.stream().cu_stream(),
            )
        }
        .map_err(cuda_err("zeroing a GPU buffer"))
    }

    /// Copies all of `src` over the start of `dst` (same dtype).
    pub fn copy(&self, src: &DBuf, dst: &DBuf) -> Result<()> {
        if src.dtype != dst.dtype || src.len > dst.len {
            return Err(Error::Data(format!("copying {src:?} into {dst:?}")));
        }
        // SAFETY: both ranges lie inside their allocations (checked above).
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                dst.ptr(),
                src.ptr(),
                src.bytes(),
                self.stream().cu_stream(),
            )
        }
        .map_err(cuda_err("copying on the GPU"))
    }

    /// Elements `0..buf.len` of stream (seed, tensor, role) drawn into an f32 buffer, bit for
    /// bit the host's `Dist::fill`.
    pub fn rng_fill(
        &self,
        buf: &DBuf,
        seed: u64,
        tensor: u32,
        role: u32,
        dist: crate::perturb::Dist,
    ) -> Result<()> {
        use super::params::*;
        if buf.dtype != DType::F32 {
            return Err(Error::Data(format!("rng fill into {buf:?}")));
        }
        let p = ZoRngDrawParams {
            stream: crate::rng::Stream::new(seed, tensor, role).into(),
            start: 0,
            n: buf.len as u64,
            kind: match dist {
                crate::perturb::Dist::Gaussian => ZO_RNG_GAUSSIAN,
                crate::perturb::Dist::Rademacher => ZO_RNG_RADEMACHER,
            },
            reserved: 0,
        };
        let grid = (buf.len as u64).div_ceil(4).div_ceil(256).clamp(1, 8192) as u32;
        // SAFETY: the kernel writes exactly buf.len f32 elements (grid-stride).
        unsafe {
            self.launch_raw(
                "zo_rng_draw_f32",
                (grid, 1, 1),
                (256, 1, 1),
                0,
                &p,
                &[buf.ptr()],
            )
        }
    }
}

impl CudaDevice {
    /// Fills columns `[0, cols)` of a `rows × cols` tensor stored with row stride `ld`
    /// starting at element `offset` of `buf` (element (i, j) gets index `i·cols + j`).
    pub fn init(
        &self,
        buf: &DBuf,
        offset: usize,
        rows: usize,
        cols: usize,
        ld: usize,
        how: Init,
    ) -> Result<()> {
        if cols > ld || offset + rows.saturating_sub(1) * ld + cols > buf.len {
            return Err(Error::Data(format!(
                "init of {rows}x{cols} (ld {ld}) at {offset} does not fit {buf:?}"
            )));
        }
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        self.launch_init(buf, offset, rows, cols, ld, how)
    }

    #[cfg(zo_kernels)]
    fn launch_init(
        &self,
        buf: &DBuf,
        offset: usize,
        rows: usize,
        cols: usize,
        ld: usize,
        how: Init,
    ) -> Result<()> {
        use super::params::*;
        use cudarc::driver::{LaunchConfig, PushKernelArg};
        let (stream, std_dev, value, kind) = match how {
            Init::Normal {
                seed,
                tensor,
                role,
                std,
            } => (
                crate::rng::Stream::new(seed, tensor, role).into(),
                std,
                0.0,
                ZO_INIT_NORMAL,
            ),
            Init::Const(v) => (ZoRngStream::default(), 0.0, v, ZO_INIT_CONST),
            Init::Uniform {
                seed,
                tensor,
                role,
                bound,
            } => (
                crate::rng::Stream::new(seed, tensor, role).into(),
                bound,
                0.0,
                ZO_INIT_UNIFORM,
            ),
        };
        let p = ZoInitParams {
            stream,
            rows: rows as u64,
            cols: cols as u64,
            ld: ld as u64,
            std_dev,
            value,
            kind,
            reserved: 0,
        };
        let cfg: LaunchConfig = crate::backend::launch::init_launch_config(rows * cols).into();
        let name = match buf.dtype {
            DType::F32 => "zo_init_f32",
            DType::Bf16 => "zo_init_bf16",
            DType::F16 => "zo_init_f16",
        };
        let f = self.function(name)?;
        let ptr = buf.at(offset);
        let mut l = self.stream().launch_builder(&f);
        l.arg(&p).arg(&ptr);
        // SAFETY: (ZoInitParams, T*) is the kernel's signature; the range was checked above.
        unsafe { l.launch(cfg) }.map_err(cuda_err(format!("launching {name}")))?;
        Ok(())
    }

    #[cfg(not(zo_kernels))]
    fn launch_init(&self, _: &DBuf, _: usize, _: usize, _: usize, _: usize, _: Init) -> Result<()> {
        Err(Error::Cuda("this build has no CUDA kernels".into()))
    }
}
