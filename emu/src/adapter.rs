//! The shrink and pack kernels of the K-augmented GEMM (csrc/adapter.cu) on the CPU. bf16 and
//! f16 buffers are their raw 16-bit patterns.

use crate::params::{ZoPackParams, ZoSegment, ZoShrinkParams};
use crate::{check_len, Launch, ZoEmuDim};

macro_rules! adapter {
    ($shrink:ident, $pack:ident, $ext_shrink:ident, $ext_pack:ident, $t:ty) => {
        extern "C" {
            fn $ext_shrink(
                grid: ZoEmuDim,
                block: ZoEmuDim,
                smem: usize,
                p: ZoShrinkParams,
                x: *mut $t,
                factor: *const f32,
                segs: *const ZoSegment,
                seg_dir: *const u32,
            );
            fn $ext_pack(
                grid: ZoEmuDim,
                block: ZoEmuDim,
                smem: usize,
                p: ZoPackParams,
                w: *mut $t,
                state: *const f32,
                seeds: *const u64,
            );
        }

        /// The shrink: x `[rows][ld]`, factor `[rank][k]`, `n_segs` segments and directions.
        pub fn $shrink(
            cfg: Launch,
            p: ZoShrinkParams,
            x: &mut [$t],
            factor: &[f32],
            segs: &[ZoSegment],
            seg_dir: &[u32],
        ) {
            check_len("shrink x", x, p.rows as u64 * p.ld as u64);
            check_len("shrink factor", factor, p.rank as u64 * p.k as u64);
            check_len("shrink segments", segs, p.n_segs as u64);
            check_len("shrink segment directions", seg_dir, p.n_segs as u64);
            assert!(
                p.col0 + (p.dirs + 1) * p.rank <= p.ld && p.pad_end <= p.ld,
                "shrink columns past ld"
            );
            // SAFETY: the checks above bound every access of the kernel.
            unsafe {
                $ext_shrink(
                    cfg.grid,
                    cfg.block,
                    cfg.smem,
                    p,
                    x.as_mut_ptr(),
                    factor.as_ptr(),
                    segs.as_ptr(),
                    seg_dir.as_ptr(),
                )
            }
        }

        /// The pack: rows `[row0, row0 + out)` of w (`[*][ld]`), state `rank·out`, `dirs` seeds.
        pub fn $pack(cfg: Launch, p: ZoPackParams, w: &mut [$t], state: &[f32], seeds: &[u64]) {
            check_len("pack w", w, (p.row0 + p.out) as u64 * p.ld as u64);
            check_len("pack state", state, p.rank as u64 * p.out as u64);
            check_len("pack seeds", seeds, p.dirs as u64);
            assert!(
                p.col0 + (p.dirs + 1) * p.rank <= p.ld,
                "pack columns past ld"
            );
            // SAFETY: the checks above bound every access of the kernel.
            unsafe {
                $ext_pack(
                    cfg.grid,
                    cfg.block,
                    cfg.smem,
                    p,
                    w.as_mut_ptr(),
                    state.as_ptr(),
                    seeds.as_ptr(),
                )
            }
        }
    };
}

adapter!(
    shrink_f32,
    pack_f32,
    zo_emu_adapter_shrink_f32,
    zo_emu_adapter_pack_f32,
    f32
);
adapter!(
    shrink_bf16,
    pack_bf16,
    zo_emu_adapter_shrink_bf16,
    zo_emu_adapter_pack_bf16,
    u16
);
adapter!(
    shrink_f16,
    pack_f16,
    zo_emu_adapter_shrink_f16,
    zo_emu_adapter_pack_f16,
    u16
);
