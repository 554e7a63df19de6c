//! The RNG draw family (csrc/rng.cu, csrc/params/rng.h): elements of one random stream of
//! [`crate::rng`] drawn on the device, bit-identical to the host fills (the numerics contract's
//! check, and lowrank's V).

use super::LaunchDims;
use crate::backend::cuda::params::*;
use crate::backend::cuda::{CudaDevice, DBuf, DType, View};
use crate::rng::Stream;
use crate::{Error, Result};

const THREADS: u32 = 256;
const MAX_GRID: u32 = 8192;

/// One thread per Philox block (four elements) of `[start, start + n)`, grid-striding past
/// 8192 blocks.
pub fn rng_draw_launch_config(start: u64, n: usize) -> LaunchDims {
    let blocks = (start + n as u64).div_ceil(4) - start / 4;
    let grid = blocks.div_ceil(THREADS as u64).clamp(1, MAX_GRID as u64) as u32;
    LaunchDims::linear(grid, THREADS)
}

/// What a draw writes per element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draw {
    Gaussian,
    Rademacher,
    /// In (0, 1].
    Uniform,
    /// The raw Philox word (a u32 buffer).
    Raw,
}

impl From<crate::perturb::Dist> for Draw {
    fn from(d: crate::perturb::Dist) -> Draw {
        match d {
            crate::perturb::Dist::Gaussian => Draw::Gaussian,
            crate::perturb::Dist::Rademacher => Draw::Rademacher,
        }
    }
}

/// Elements `start .. start + out.len` of stream `s` as `kind` into `out` (4-byte elements).
pub fn draw(dev: &CudaDevice, s: Stream, start: u64, kind: Draw, out: View<'_>) -> Result<()> {
    let n = out.len;
    if start.checked_add(n as u64).is_none() {
        return Err(Error::Unsupported(format!(
            "rng draw of {n} elements from index {start} runs past the 2^64-element stream"
        )));
    }
    // u32 words are tagged F32 (four-byte elements), so this checks the element size.
    out.expect("rng draw output", DType::F32)?;
    if n == 0 {
        return Ok(());
    }
    let (name, code) = match kind {
        Draw::Gaussian => ("zo_rng_draw_f32", ZO_RNG_GAUSSIAN),
        Draw::Rademacher => ("zo_rng_draw_f32", ZO_RNG_RADEMACHER),
        Draw::Uniform => ("zo_rng_draw_f32", ZO_RNG_UNIFORM),
        Draw::Raw => ("zo_rng_draw_u32", 0),
    };
    let p = ZoRngDrawParams {
        stream: s.into(),
        start,
        n: n as u64,
        kind: code,
        reserved: 0,
    };
    // SAFETY: (ZoRngDrawParams, T* out); the kernel writes exactly n elements of `out`.
    unsafe { dev.launch(name, rng_draw_launch_config(start, n), &p, &[out.ptr()]) }
}

/// [`draw`] into a new buffer, copied back to the host (tests, benches).
pub fn draw_to_host(
    dev: &CudaDevice,
    s: Stream,
    start: u64,
    n: usize,
    kind: Draw,
) -> Result<Vec<f32>> {
    let out = DBuf::zeros(dev, DType::F32, n)?;
    draw(dev, s, start, kind, out.view())?;
    out.to_f32(dev)
}
