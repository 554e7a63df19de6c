//! The emulated device: zo-emu runs the kernels on the CPU, device memory is host memory, and
//! the GEMM is a twin of cuBLASLt's: x and W widened from the storage type, one fp32
//! accumulator per output summed over k in order, then `+ y` (β = 1) and `+ bias`, rounded once
//! to y's type.

use std::ffi::c_void;

use rayon::prelude::*;
use zo_emu::GuardedVec;

use super::{Alloc, Arrival, DeviceApi, Pinned};
use crate::backend::cuda::gemm::GemmShape;
use crate::backend::cuda::kernels::LaunchDims;
use crate::backend::cuda::DType;
use crate::{Error, Result};

pub(super) struct Emu;

/// Allocations are rounded up to 16 bytes (the widest access a kernel makes) and end at a guard
/// page, so a kernel that runs more than one vector past a buffer faults at once.
const GRANULE: usize = 16;

fn load(dtype: DType, base: u64, i: usize) -> f32 {
    // SAFETY: callers index inside the extents GemmShape's contract guarantees.
    unsafe {
        match dtype {
            DType::F32 => *(base as *const f32).add(i),
            DType::Bf16 => half::bf16::from_bits(*(base as *const u16).add(i)).to_f32(),
            DType::F16 => half::f16::from_bits(*(base as *const u16).add(i)).to_f32(),
        }
    }
}

fn store(dtype: DType, base: u64, i: usize, v: f32) {
    // SAFETY: as in `load`.
    unsafe {
        match dtype {
            DType::F32 => *(base as *mut f32).add(i) = v,
            DType::Bf16 => *(base as *mut u16).add(i) = half::bf16::from_f32(v).to_bits(),
            DType::F16 => *(base as *mut u16).add(i) = half::f16::from_f32(v).to_bits(),
        }
    }
}

impl DeviceApi for Emu {
    fn describe(&self) -> Result<String> {
        Ok("zo-emu (the CUDA kernels emulated on the CPU)".into())
    }

    fn memory(&self) -> Result<(usize, usize)> {
        // Host memory stands in; report what the system says is available.
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |name: &str| {
            meminfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<usize>().ok())
                .map_or(0, |kib| kib * 1024)
        };
        Ok((field("MemAvailable:"), field("MemTotal:")))
    }

    fn alloc(&self, bytes: usize, _zeroed: bool) -> Result<Alloc> {
        let n = bytes.max(1).next_multiple_of(GRANULE);
        let buf = GuardedVec::filled(n, 0u8);
        let ptr = buf.as_ptr() as u64;
        Ok(Alloc::new(ptr, n, Box::new(buf)))
    }

    unsafe fn upload(&self, dst: u64, src: &[u8]) -> Result<()> {
        // SAFETY: the caller's range; host memory on both sides.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }

    unsafe fn download(&self, src: u64, dst: &mut [u8]) -> Result<()> {
        // SAFETY: as in upload.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    unsafe fn memset_zero(&self, dst: u64, bytes: usize) -> Result<()> {
        // SAFETY: the caller's range.
        unsafe { std::ptr::write_bytes(dst as *mut u8, 0, bytes) };
        Ok(())
    }

    unsafe fn copy(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        // SAFETY: the caller's ranges (cudaMemcpy semantics: they do not overlap).
        unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, bytes) };
        Ok(())
    }

    unsafe fn launch(
        &self,
        name: &'static str,
        dims: LaunchDims,
        params: *const c_void,
        params_size: usize,
        ptrs: &[u64],
    ) -> Result<()> {
        let cfg = zo_emu::Launch::new(dims.grid, dims.block, dims.smem);
        // SAFETY: the caller's contract is zo_emu::launch's.
        unsafe { zo_emu::launch(name, cfg, params, params_size, ptrs) }
            .map_err(|e| Error::Cuda(format!("launching {name} (emulated): {e}")))
    }

    unsafe fn gemm(&self, s: &GemmShape, x: u64, w: u64, y: u64, bias: Option<u64>) -> Result<()> {
        let y_type = if s.store_y { s.dtype } else { DType::F32 };
        // Rows are independent: each output element has one accumulator and one order.
        let s = *s;
        (0..s.rows).into_par_iter().for_each(|r| {
            for o in 0..s.out {
                let mut acc = 0.0f32;
                for k in 0..s.k {
                    let a = load(s.dtype, x, r * s.ld_x + k);
                    let b = load(s.dtype, w, o * s.ld_w + k);
                    acc = a.mul_add(b, acc);
                }
                let at = r * s.ld_y + o;
                if s.accumulate {
                    acc += load(y_type, y, at);
                }
                if let Some(b) = bias {
                    acc += load(y_type, b, o);
                }
                store(y_type, y, at, acc);
            }
        });
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn pinned(&self, bytes: usize) -> Result<Pinned> {
        let mut buf = vec![0u8; bytes.max(1)].into_boxed_slice();
        let ptr = buf.as_mut_ptr();
        Ok(Pinned::new(ptr, bytes, Box::new(buf)))
    }

    unsafe fn stream_in(&self, dst: u64, src: &[u8]) -> Result<Arrival> {
        // The copy happens when it is waited for, the latest a GPU could finish it: a forward
        // that touched the destination before waiting reads the previous contents and fails
        // its comparison with the resident path.
        let copy = DeferredCopy {
            dst,
            src: src.as_ptr() as u64,
            bytes: src.len(),
        };
        Ok(Arrival(Box::new(copy)))
    }

    fn arrive(&self, arrival: Arrival) -> Result<()> {
        let c = arrival
            .0
            .downcast::<DeferredCopy>()
            .map_err(|_| Error::Cuda("an arrival of another device".into()))?;
        // SAFETY: stream_in's contract keeps both ranges alive until the arrival is waited for.
        unsafe { std::ptr::copy_nonoverlapping(c.src as *const u8, c.dst as *mut u8, c.bytes) };
        Ok(())
    }
}

/// A copy [`Emu::stream_in`] queued: addresses as plain integers (host memory both sides).
struct DeferredCopy {
    dst: u64,
    src: u64,
    bytes: usize,
}
