//! The seeded update kernels (csrc/update.cu) on the CPU. bf16 and f16 buffers are their raw
//! 16-bit patterns.

use crate::params::{ZoAxpyParams, ZoBasisParams, ZoMergeParams, ZoMomentumParams, ZoUpdateDir};
use crate::{check_len, Launch, ZoEmuDim};

extern "C" {
    fn zo_emu_lowrank_momentum(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        p: ZoMomentumParams,
        bank: *mut f32,
        mom: *mut f32,
        dirs: *const ZoUpdateDir,
    );
    fn zo_emu_lowrank_basis(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        p: ZoBasisParams,
        out: *mut f32,
        old_vt: *const f32,
        new_vt: *const f32,
    );
    fn zo_emu_lowrank_project(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        p: ZoBasisParams,
        new_m: *mut f32,
        m: *const f32,
        pm: *const f32,
    );
}

macro_rules! typed {
    ($axpy:ident, $merge:ident, $ext_axpy:ident, $ext_merge:ident, $t:ty) => {
        extern "C" {
            fn $ext_axpy(
                grid: ZoEmuDim,
                block: ZoEmuDim,
                smem: usize,
                p: ZoAxpyParams,
                theta: *mut $t,
                dirs: *const ZoUpdateDir,
            );
            fn $ext_merge(
                grid: ZoEmuDim,
                block: ZoEmuDim,
                smem: usize,
                p: ZoMergeParams,
                w: *mut $t,
                b: *const f32,
                a: *const f32,
            );
        }

        /// Seeded axpy over a rows × cols tensor of row stride ld.
        pub fn $axpy(cfg: Launch, p: ZoAxpyParams, theta: &mut [$t], dirs: &[ZoUpdateDir]) {
            if p.rows > 0 && p.cols > 0 {
                check_len("axpy theta", theta, (p.rows - 1) * p.ld + p.cols);
            }
            check_len("axpy directions", dirs, p.dirs as u64);
            // SAFETY: the checks above bound every access of the kernel.
            unsafe {
                $ext_axpy(
                    cfg.grid,
                    cfg.block,
                    cfg.smem,
                    p,
                    theta.as_mut_ptr(),
                    dirs.as_ptr(),
                )
            }
        }

        /// `w += scale·b·a` on out × k of row stride ld.
        pub fn $merge(cfg: Launch, p: ZoMergeParams, w: &mut [$t], b: &[f32], a: &[f32]) {
            if p.out > 0 && p.k > 0 {
                check_len("merge w", w, (p.out as u64 - 1) * p.ld as u64 + p.k as u64);
            }
            check_len("merge b", b, p.rank as u64 * p.out as u64);
            check_len("merge a", a, p.rank as u64 * p.k as u64);
            // SAFETY: the checks above bound every access of the kernel.
            unsafe {
                $ext_merge(
                    cfg.grid,
                    cfg.block,
                    cfg.smem,
                    p,
                    w.as_mut_ptr(),
                    b.as_ptr(),
                    a.as_ptr(),
                )
            }
        }
    };
}

typed!(
    seeded_axpy_f32,
    factor_merge_f32,
    zo_emu_seeded_axpy_f32,
    zo_emu_factor_merge_f32,
    f32
);
typed!(
    seeded_axpy_bf16,
    factor_merge_bf16,
    zo_emu_seeded_axpy_bf16,
    zo_emu_factor_merge_bf16,
    u16
);
typed!(
    seeded_axpy_f16,
    factor_merge_f16,
    zo_emu_seeded_axpy_f16,
    zo_emu_factor_merge_f16,
    u16
);

/// LoZO-M: bank and momentum of `p.n` elements.
pub fn lowrank_momentum(
    cfg: Launch,
    p: ZoMomentumParams,
    bank: &mut [f32],
    mom: &mut [f32],
    dirs: &[ZoUpdateDir],
) {
    check_len("momentum bank", bank, p.n);
    check_len("momentum m", mom, p.n);
    check_len("momentum directions", dirs, p.dirs as u64);
    // SAFETY: the checks above bound every access of the kernel.
    unsafe {
        zo_emu_lowrank_momentum(
            cfg.grid,
            cfg.block,
            cfg.smem,
            p,
            bank.as_mut_ptr(),
            mom.as_mut_ptr(),
            dirs.as_ptr(),
        )
    }
}

/// `P = Vᵀ_old·Vᵀ_newᵀ / k_in`, `[rank][rank]`.
pub fn lowrank_basis(cfg: Launch, p: ZoBasisParams, out: &mut [f32], old: &[f32], new: &[f32]) {
    check_len("basis P", out, p.rank as u64 * p.rank as u64);
    check_len("basis old", old, p.rank as u64 * p.k_in as u64);
    check_len("basis new", new, p.rank as u64 * p.k_in as u64);
    // SAFETY: the checks above bound every access of the kernel.
    unsafe {
        zo_emu_lowrank_basis(
            cfg.grid,
            cfg.block,
            cfg.smem,
            p,
            out.as_mut_ptr(),
            old.as_ptr(),
            new.as_ptr(),
        )
    }
}

/// The momentum projected onto the new basis, `[rank][out]`.
pub fn lowrank_project(cfg: Launch, p: ZoBasisParams, new_m: &mut [f32], m: &[f32], pm: &[f32]) {
    check_len("project output", new_m, p.rank as u64 * p.out as u64);
    check_len("project m", m, p.rank as u64 * p.out as u64);
    check_len("project P", pm, p.rank as u64 * p.rank as u64);
    // SAFETY: the checks above bound every access of the kernel.
    unsafe {
        zo_emu_lowrank_project(
            cfg.grid,
            cfg.block,
            cfg.smem,
            p,
            new_m.as_mut_ptr(),
            m.as_ptr(),
            pm.as_ptr(),
        )
    }
}
