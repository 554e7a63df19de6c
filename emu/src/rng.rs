//! The RNG draw kernels (csrc/rng.cu) on the CPU.

use crate::params::ZoRngDrawParams;
use crate::{check_len, Launch, ZoEmuDim};

extern "C" {
    fn zo_emu_rng_draw_f32(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        p: ZoRngDrawParams,
        out: *mut f32,
    );
    fn zo_emu_rng_draw_u32(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        p: ZoRngDrawParams,
        out: *mut u32,
    );
}

/// `zo_rng_draw_f32`: elements `[p.start, p.start + p.n)` of the stream, as `p.kind`, into
/// `out[..p.n]`.
pub fn draw_f32(cfg: Launch, p: ZoRngDrawParams, out: &mut [f32]) {
    check_len("rng draw output", out, p.n);
    // SAFETY: the kernel writes out[0, p.n), which the check above keeps inside the slice.
    unsafe { zo_emu_rng_draw_f32(cfg.grid, cfg.block, cfg.smem, p, out.as_mut_ptr()) }
}

/// `zo_rng_draw_u32`: raw Philox bits of elements `[p.start, p.start + p.n)` into `out[..p.n]`.
pub fn draw_u32(cfg: Launch, p: ZoRngDrawParams, out: &mut [u32]) {
    check_len("rng draw output", out, p.n);
    // SAFETY: as in draw_f32.
    unsafe { zo_emu_rng_draw_u32(cfg.grid, cfg.block, cfg.smem, p, out.as_mut_ptr()) }
}
