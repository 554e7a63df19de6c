//! Device draws of the random streams of [`crate::rng`]: bit-identical to the host fills.

use super::device::CudaDevice;
use crate::rng::Stream;
use crate::{Error, Result};

impl CudaDevice {
    /// Standard normals of elements `start .. start + n` of stream `(seed, tensor, role)`.
    pub fn rng_draw_gaussian(
        &self,
        seed: u64,
        tensor: u32,
        role: u32,
        start: u64,
        n: usize,
    ) -> Result<Vec<f32>> {
        self.draw_f32(Stream::new(seed, tensor, role), start, n, Kind::Gaussian)
    }

    /// ±1 of elements `start .. start + n` of stream `(seed, tensor, role)`.
    pub fn rng_draw_rademacher(
        &self,
        seed: u64,
        tensor: u32,
        role: u32,
        start: u64,
        n: usize,
    ) -> Result<Vec<f32>> {
        self.draw_f32(Stream::new(seed, tensor, role), start, n, Kind::Rademacher)
    }

    /// Uniforms in (0, 1] of elements `start .. start + n` of stream `(seed, tensor, role)`.
    pub fn rng_draw_uniform(
        &self,
        seed: u64,
        tensor: u32,
        role: u32,
        start: u64,
        n: usize,
    ) -> Result<Vec<f32>> {
        self.draw_f32(Stream::new(seed, tensor, role), start, n, Kind::Uniform)
    }

    /// Raw Philox bits of elements `start .. start + n` of stream `(seed, tensor, role)`.
    pub fn rng_draw_raw(
        &self,
        seed: u64,
        tensor: u32,
        role: u32,
        start: u64,
        n: usize,
    ) -> Result<Vec<u32>> {
        let s = Stream::new(seed, tensor, role);
        check_range(start, n)?;
        self.launch_draw(s, start, n, Kind::Raw)
    }

    fn draw_f32(&self, s: Stream, start: u64, n: usize, kind: Kind) -> Result<Vec<f32>> {
        check_range(start, n)?;
        self.launch_draw(s, start, n, kind)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gaussian,
    Rademacher,
    Uniform,
    Raw,
}

/// Indices are u64 and must not wrap past the end of the stream.
fn check_range(start: u64, n: usize) -> Result<()> {
    if start.checked_add(n as u64).is_none() {
        return Err(Error::Unsupported(format!(
            "rng draw of {n} elements from index {start} runs past the 2^64-element stream"
        )));
    }
    Ok(())
}

#[cfg(zo_kernels)]
impl CudaDevice {
    fn launch_draw<T>(&self, s: Stream, start: u64, n: usize, kind: Kind) -> Result<Vec<T>>
    where
        T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits + Default + Clone,
    {
        use super::device::cuda_err;
        use super::params::*;
        use cudarc::driver::{LaunchConfig, PushKernelArg};

        if n == 0 {
            return Ok(Vec::new());
        }
        let (name, code) = match kind {
            Kind::Gaussian => ("zo_rng_draw_f32", ZO_RNG_GAUSSIAN),
            Kind::Rademacher => ("zo_rng_draw_f32", ZO_RNG_RADEMACHER),
            Kind::Uniform => ("zo_rng_draw_f32", ZO_RNG_UNIFORM),
            Kind::Raw => ("zo_rng_draw_u32", 0),
        };
        debug_assert_eq!(
            std::mem::size_of::<T>(),
            4,
            "draw kernels write 4-byte elements"
        );
        let params = ZoRngDrawParams {
            stream: s.into(),
            start,
            n: n as u64,
            kind: code,
            reserved: 0,
        };
        let cfg: LaunchConfig = crate::backend::launch::rng_draw_launch_config(start, n).into();
        let func = self.function(name)?;
        let stream = self.stream();
        let mut out = stream
            .alloc_zeros::<T>(n)
            .map_err(cuda_err(format!("allocating {n} draw outputs")))?;
        let mut launch = stream.launch_builder(&func);
        launch.arg(&params).arg(&mut out);
        // SAFETY: the kernel signature is (ZoRngDrawParams, T*) and writes exactly n elements
        // of `out`, which holds n.
        unsafe { launch.launch(cfg) }.map_err(cuda_err(format!("launching {name}")))?;
        stream
            .clone_dtoh(&out)
            .map_err(cuda_err(format!("copying {name} output to the host")))
    }
}

#[cfg(not(zo_kernels))]
impl CudaDevice {
    fn launch_draw<T>(&self, _: Stream, _: u64, _: usize, _: Kind) -> Result<Vec<T>> {
        Err(Error::Cuda("this build has no CUDA kernels".into()))
    }
}
