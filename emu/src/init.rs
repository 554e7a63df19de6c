//! The on-device init kernel (csrc/init.cu) on the CPU.

use crate::params::ZoInitParams;
use crate::{check_len, Launch, ZoEmuDim};

extern "C" {
    fn zo_emu_init_f32(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        p: ZoInitParams,
        out: *mut f32,
    );
}

/// `zo_init_f32`: columns `[0, p.cols)` of the `p.rows × p.cols` tensor stored with row stride
/// `p.ld` in `out`.
pub fn init_f32(cfg: Launch, p: ZoInitParams, out: &mut [f32]) {
    let need = if p.rows == 0 || p.cols == 0 {
        0
    } else {
        (p.rows - 1) * p.ld + p.cols
    };
    assert!(
        p.cols <= p.ld,
        "init: {} columns with row stride {}",
        p.cols,
        p.ld
    );
    check_len("init output", out, need);
    // SAFETY: the kernel writes element i·ld + j for i < rows, j < cols, all below `need`.
    unsafe { zo_emu_init_f32(cfg.grid, cfg.block, cfg.smem, p, out.as_mut_ptr()) }
}
