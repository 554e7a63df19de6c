//! The buffer-init family (csrc/init.cu, csrc/params/init.h): seeded normal or uniform
//! draws and constants written straight into device tensors, so synthetic models and LoRA's A
//! are made on the device bit for bit as the host makes them (`model::random`,
//! `perturb::lora`).

use super::LaunchDims;
use crate::backend::cuda::params::*;
use crate::backend::cuda::{CudaDevice, View};
use crate::{Error, Result};

const THREADS: u32 = 256;

/// One thread per four elements, grid-striding past 65535 blocks.
pub fn init_launch_config(n: usize) -> LaunchDims {
    let grid = (n as u64)
        .div_ceil(4)
        .div_ceil(THREADS as u64)
        .clamp(1, 65_535) as u32;
    LaunchDims::linear(grid, THREADS)
}

/// What [`init`] writes.
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

/// Fills columns `[0, cols)` of a `rows × cols` tensor stored with row stride `ld` at the start
/// of `buf` (element (i, j) gets index `i·cols + j`).
pub fn init(
    dev: &CudaDevice,
    buf: View<'_>,
    rows: usize,
    cols: usize,
    ld: usize,
    how: Init,
) -> Result<()> {
    if cols > ld || rows.saturating_sub(1) * ld + cols > buf.len {
        return Err(Error::Data(format!(
            "init of {rows}x{cols} (ld {ld}) does not fit {buf:?}"
        )));
    }
    if rows == 0 || cols == 0 {
        return Ok(());
    }
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
    // SAFETY: (ZoInitParams, T* out); the range was checked above.
    unsafe {
        dev.launch(
            typed("zo_init", buf.dtype),
            init_launch_config(rows * cols),
            &p,
            &[buf.ptr()],
        )
    }
}
