//! One checked launcher per kernel, one module per kernel family (`csrc/<family>.cu`). Each
//! module holds, next to one another, the family's launch geometry, its params builders (with
//! constants read from the bindgen header, never restated), its kernel names and the launchers
//! that training, tests, benches and the C ABI all call. A launcher takes [`View`]s of device
//! buffers, checks every extent the kernel will touch against them, and launches through the
//! device seam, so the same call runs on a GPU and under emulation.
//!
//! | family | kernels | CPU twin |
//! |---|---|---|
//! | `ops` | embed, norm, act | `backend::cpu::ops` |
//! | `attention` | rope, kv_write, attn_prefill | `backend::cpu::attention` |
//! | `adapter` | adapter_shrink, adapter_pack | `perturb::adapter` |
//! | `decode` | attn_decode (+ combine), pick | `backend::cpu::attention`, `backend::decode::pick` |
//! | `loss` | candidate_logprobs | `backend::cpu::ops::log_sum_exp` |
//! | `update` | seeded_axpy, factor_merge, lowrank_{momentum,basis,project} | `perturb::{dense,lowrank,lora}` |
//! | `rng` | rng_draw | `rng` |
//! | `init` | init | `model::random`, `perturb::lora` |
//!
//! [`View`]: super::View

pub mod adapter;
pub mod attention;
pub mod decode;
pub mod init;
pub mod loss;
pub mod ops;
pub mod rng;
pub mod update;

use crate::{Error, Result};

/// Grid, block and dynamic shared memory of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchDims {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    /// Dynamic shared memory, bytes.
    pub smem: u32,
}

impl LaunchDims {
    /// A one-dimensional grid of one-dimensional blocks with no dynamic shared memory.
    pub const fn linear(grid: u32, block: u32) -> Self {
        LaunchDims {
            grid: (grid, 1, 1),
            block: (block, 1, 1),
            smem: 0,
        }
    }
}

/// Every dimension a kernel receives is a u32.
pub(crate) fn check_u32(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::Unsupported(format!(
            "{what} = {v} exceeds the kernels' 32-bit dimensions"
        ))
    })
}

/// A `[rows][width]` region with row stride `ld` must fit in `len` elements.
pub(crate) fn check_rows(
    what: &str,
    len: usize,
    rows: usize,
    width: usize,
    ld: usize,
) -> Result<()> {
    check_u32(&format!("{what} rows"), rows)?;
    check_u32(&format!("{what} width"), width)?;
    check_u32(&format!("{what} row stride"), ld)?;
    if ld < width {
        return Err(Error::Data(format!(
            "{what}: row stride {ld} is smaller than the width {width}"
        )));
    }
    if rows == 0 || width == 0 {
        return Ok(());
    }
    let need = (rows - 1)
        .checked_mul(ld)
        .and_then(|v| v.checked_add(width));
    match need {
        Some(n) if n <= len => Ok(()),
        _ => Err(Error::Data(format!(
            "{what}: {rows} rows of {width} columns at stride {ld} need {} elements but the \
             buffer holds {len}",
            need.map_or_else(|| "more than usize::MAX".to_string(), |n| n.to_string())
        ))),
    }
}

/// Whole rows of stride `ld` (and `width` columns) that a buffer of `len` elements holds.
pub(crate) fn rows_in(len: usize, width: usize, ld: usize) -> usize {
    if len < width || ld == 0 {
        0
    } else {
        (len - width) / ld + 1
    }
}
