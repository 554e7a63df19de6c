//! Device buffers tagged with their element type, the checked views launchers take, and the
//! accounting of device memory.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::device::{Alloc, CudaDevice};
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

/// A device allocation of `len` elements of `dtype` (index buffers of u32 words are tagged
/// `F32`: four-byte elements). The address is taken once at allocation: kernels and the GEMM
/// receive plain addresses, and the device orders every access.
pub struct DBuf {
    mem: Alloc,
    pub dtype: DType,
    pub len: usize,
}

impl std::fmt::Debug for DBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DBuf({} x {})", self.len, self.dtype)
    }
}

/// A checked window of a device buffer as a launcher takes it: address, element type and the
/// number of elements it may touch. Launchers check both against what the kernel will access.
#[derive(Clone, Copy)]
pub struct View<'a> {
    ptr: u64,
    pub dtype: DType,
    pub len: usize,
    _buf: PhantomData<&'a DBuf>,
}

impl std::fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "View({} x {})", self.len, self.dtype)
    }
}

impl<'a> View<'a> {
    /// A view of `len` elements of `dtype` at device address `ptr` in memory zo does not own
    /// (the C ABI's kernel level: the caller's buffers). It owns and frees nothing.
    ///
    /// # Safety
    /// `ptr..ptr + len·size` lies in memory of the device the view is launched on, aligned
    /// for `dtype`, and stays valid for `'a`.
    pub unsafe fn external(ptr: u64, dtype: DType, len: usize) -> View<'a> {
        View {
            ptr,
            dtype,
            len,
            _buf: PhantomData,
        }
    }
}

impl View<'_> {
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Fails unless the view holds `dtype` elements.
    pub fn expect(&self, what: &str, dtype: DType) -> Result<&Self> {
        if self.dtype != dtype {
            return Err(Error::Data(format!(
                "{what}: a buffer of {} elements where {dtype} is needed",
                self.dtype
            )));
        }
        Ok(self)
    }

    /// Fails unless the view holds at least `n` elements.
    pub fn need(&self, what: &str, n: usize) -> Result<&Self> {
        if self.len < n {
            return Err(Error::Data(format!(
                "{what}: {n} elements needed but the buffer holds {}",
                self.len
            )));
        }
        Ok(self)
    }
}

impl View<'_> {
    /// The raw bytes of the viewed elements (a sync point).
    pub fn to_bytes(&self, dev: &CudaDevice) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; self.len * self.dtype.size()];
        // SAFETY: the view lies inside its buffer's allocation.
        unsafe { dev.api().download(self.ptr, &mut bytes)? };
        Ok(bytes)
    }

    /// The viewed elements widened to f32 on the host.
    pub fn to_f32(&self, dev: &CudaDevice) -> Result<Vec<f32>> {
        let bytes = self.to_bytes(dev)?;
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
}

/// Alignment of the buffers an [`Arena`] hands out (cuBLASLt and vector loads want 16; 256
/// keeps every tensor on its own cache lines).
pub(crate) const ARENA_ALIGN: usize = 256;

/// One device allocation cut into consecutive buffers: a layer's tensors in one range, so that
/// the whole layer moves in a single copy (layer streaming). Buffers keep the allocation alive.
pub(crate) struct Arena {
    mem: Arc<Alloc>,
    used: AtomicUsize,
}

impl Arena {
    pub(crate) fn new(dev: &CudaDevice, bytes: usize) -> Result<Arena> {
        Ok(Arena {
            mem: Arc::new(dev.api().alloc(bytes, true)?),
            used: AtomicUsize::new(0),
        })
    }

    pub(crate) fn ptr(&self) -> u64 {
        self.mem.ptr
    }

    pub(crate) fn capacity(&self) -> usize {
        self.mem.bytes
    }

    /// Bytes handed out since the last [`Arena::reset`].
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Starts handing out from the beginning again: buffers taken before alias the new ones
    /// (two layers of one stream buffer share its memory by design).
    pub(crate) fn reset(&self) {
        self.used.store(0, Ordering::Relaxed);
    }

    fn take(&self, bytes: usize) -> Result<Alloc> {
        let at = self.used();
        let end = at + bytes.max(1).next_multiple_of(ARENA_ALIGN);
        if end > self.capacity() {
            return Err(Error::Cuda(format!(
                "a layer buffer of {} bytes cannot hold {end} bytes of tensors",
                self.capacity()
            )));
        }
        self.used.store(end, Ordering::Relaxed);
        Ok(Alloc::within(
            self.ptr() + at as u64,
            bytes,
            Box::new(self.mem.clone()),
        ))
    }
}

/// Where a buffer is allocated: its own device allocation, or the next range of an arena.
#[derive(Clone, Copy)]
pub(crate) enum Place<'a> {
    Own,
    In(&'a Arena),
}

impl DBuf {
    /// `len` zeroed elements.
    pub fn zeros(dev: &CudaDevice, dtype: DType, len: usize) -> Result<DBuf> {
        Self::zeros_at(dev, Place::Own, dtype, len)
    }

    /// `len` zeroed elements at `place`.
    pub(crate) fn zeros_at(
        dev: &CudaDevice,
        place: Place<'_>,
        dtype: DType,
        len: usize,
    ) -> Result<DBuf> {
        let bytes = len * dtype.size();
        let mem = match place {
            Place::Own => dev.api().alloc(bytes, true)?,
            Place::In(arena) => {
                let mem = arena.take(bytes)?;
                // SAFETY: the range is the arena's, just handed out.
                unsafe { dev.api().memset_zero(mem.ptr, bytes)? };
                mem
            }
        };
        Ok(DBuf { mem, dtype, len })
    }

    fn upload(
        dev: &CudaDevice,
        place: Place<'_>,
        dtype: DType,
        len: usize,
        bytes: &[u8],
    ) -> Result<DBuf> {
        let mem = match place {
            Place::Own => dev.api().alloc(bytes.len(), false)?,
            Place::In(arena) => arena.take(bytes.len())?,
        };
        let buf = DBuf { mem, dtype, len };
        // SAFETY: the allocation holds `bytes.len()` = len·size bytes.
        unsafe { dev.api().upload(buf.ptr(), bytes)? };
        Ok(buf)
    }

    /// Host f32 values rounded once to `dtype` and copied up.
    pub fn from_f32(dev: &CudaDevice, dtype: DType, host: &[f32]) -> Result<DBuf> {
        Self::from_f32_at(dev, Place::Own, dtype, host)
    }

    /// [`DBuf::from_f32`] at `place`.
    pub(crate) fn from_f32_at(
        dev: &CudaDevice,
        place: Place<'_>,
        dtype: DType,
        host: &[f32],
    ) -> Result<DBuf> {
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
        Self::upload(dev, place, dtype, host.len(), &bytes)
    }

    /// Host u32/i32/f32 words (or 8-byte words, as two elements each) copied up as they are.
    pub fn from_words<T: bytemuck::Pod>(dev: &CudaDevice, host: &[T]) -> Result<DBuf> {
        let bytes = bytemuck::cast_slice::<T, u8>(host);
        debug_assert!(bytes.len().is_multiple_of(4));
        Self::upload(dev, Place::Own, DType::F32, bytes.len() / 4, bytes)
    }

    /// The raw bytes of the elements (a sync point).
    pub fn to_bytes(&self, dev: &CudaDevice) -> Result<Vec<u8>> {
        self.view().to_bytes(dev)
    }

    /// The elements widened to f32 on the host (tests, exports).
    pub fn to_f32(&self, dev: &CudaDevice) -> Result<Vec<f32>> {
        self.view().to_f32(dev)
    }

    /// The elements as u32 words (index buffers, raw RNG draws).
    pub fn to_words(&self, dev: &CudaDevice) -> Result<Vec<u32>> {
        Ok(self
            .to_bytes(dev)?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// Overwrites the first `host.len()` elements (an f32 buffer) from the host.
    pub fn write_f32(&mut self, dev: &CudaDevice, host: &[f32]) -> Result<()> {
        if self.dtype != DType::F32 || host.len() > self.len || 4 * host.len() > self.mem.bytes {
            return Err(Error::Data(format!(
                "writing {} f32 values into {self:?}",
                host.len()
            )));
        }
        // SAFETY: host.len() ≤ len elements of 4 bytes.
        unsafe { dev.api().upload(self.ptr(), bytemuck::cast_slice(host)) }
    }

    /// Device address of element 0.
    pub fn ptr(&self) -> u64 {
        self.mem.ptr
    }

    /// Device address of element `i`.
    pub fn at(&self, i: usize) -> u64 {
        debug_assert!(i <= self.len);
        self.ptr() + (i * self.dtype.size()) as u64
    }

    pub fn bytes(&self) -> usize {
        self.len * self.dtype.size()
    }

    /// The whole buffer as a launcher argument.
    pub fn view(&self) -> View<'_> {
        self.slice(0..self.len)
    }

    /// Elements `range` as a launcher argument.
    pub fn slice(&self, range: std::ops::Range<usize>) -> View<'_> {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "slice {range:?} of {self:?}"
        );
        // `len` and `dtype` are public: a view must still lie inside the allocation.
        assert!(
            self.mem.bytes >= self.bytes(),
            "{self:?} exceeds its allocation"
        );
        View {
            ptr: self.at(range.start),
            dtype: self.dtype,
            len: range.end - range.start,
            _buf: PhantomData,
        }
    }
}

impl CudaDevice {
    /// Sets every byte of `buf` to zero.
    pub fn zero(&self, buf: &DBuf) -> Result<()> {
        // SAFETY: the range is the buffer's own allocation.
        unsafe { self.api().memset_zero(buf.ptr(), buf.bytes()) }
    }

    /// Copies all of `src` over the start of `dst` (same dtype).
    pub fn copy(&self, src: &DBuf, dst: &DBuf) -> Result<()> {
        if src.dtype != dst.dtype || src.len > dst.len {
            return Err(Error::Data(format!("copying {src:?} into {dst:?}")));
        }
        // SAFETY: both ranges lie inside their allocations (checked above).
        unsafe { self.api().copy(dst.ptr(), src.ptr(), src.bytes()) }
    }
}
