//! The seeded updates on the caller's tensors: the dense (and LoRA A/B) update in place,
//! momentum and Adam on a trained tensor, the low-rank bank update, and the factor merges
//! into a weight (`kernels::update`).

use std::ffi::c_void;

use super::*;

/// One direction of a seeded update as the kernels read it (16 bytes, 4-byte aligned): the
/// direction's seed as two 32-bit halves, and its coefficient. Fill arrays of them with
/// `zo_kernel_update_dirs_fill`, then place them where the kernel runs (device memory for
/// `ZO_KERNEL_CUDA`): the kernel reads them when it runs, so a captured CUDA graph can be
/// replayed with new directions written into the same array.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct zo_kernel_update_dir {
    /// Bits 0..32 of the seed.
    pub seed_lo: u32,
    /// Bits 32..64 of the seed.
    pub seed_hi: u32,
    /// The direction's coefficient.
    pub coef: f32,
    /// 0.
    pub reserved: u32,
}

const _: () = assert!(
    std::mem::size_of::<zo_kernel_update_dir>()
        == std::mem::size_of::<crate::backend::params::ZoUpdateDir>()
);

/// Writes `out[d]` = direction `d` of seed `seeds[d]` and coefficient `coefs[d]`, for `d < n`
/// (host memory). For the dense and LoRA SGD updates the coefficient is `-(lr * g_d) / q` in
/// float arithmetic (q directions); for the low-rank bank, see `zo_kernel_lowrank_bank_update`.
/// `ZO_ERR_NOT_FINITE` for a NaN or infinite coefficient.
///
/// # Safety
/// `seeds` and `coefs` hold `n` elements and `out` room for `n` (each may be NULL when `n` is
/// 0).
#[no_mangle]
pub unsafe extern "C" fn zo_kernel_update_dirs_fill(
    seeds: *const u64,
    coefs: *const f32,
    n: usize,
    out: *mut zo_kernel_update_dir,
) -> zo_status {
    guard(|| {
        with_cuda!({
            // SAFETY: the caller's contract.
            let seeds = unsafe { crate::ffi::args::slice(seeds, n, "seeds") }?;
            // SAFETY: the caller's contract.
            let coefs = unsafe { crate::ffi::args::slice(coefs, n, "coefs") }?;
            // SAFETY: the caller's contract.
            let out = unsafe { crate::ffi::args::slice_mut(out, n, "out") }?;
            if let Some(d) = coefs.iter().position(|c| !c.is_finite()) {
                return Err(FfiError::new(
                    ZO_ERR_NOT_FINITE,
                    format!("coefs[{d}] is {}", coefs[d]),
                ));
            }
            for ((o, &s), &c) in out.iter_mut().zip(seeds).zip(coefs) {
                let d = crate::backend::cuda::kernels::update::update_dir(s, c);
                *o = zo_kernel_update_dir {
                    seed_lo: d.seed_lo,
                    seed_hi: d.seed_hi,
                    coef: d.coef,
                    reserved: d.reserved,
                };
            }
            Ok(())
        })
    })
}

/// A seeded update of one tensor: `zo_kernel_seeded_axpy`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct zo_kernel_axpy_params {
    /// `sizeof(zo_kernel_axpy_params)`.
    pub struct_size: usize,
    /// `ZO_DTYPE_*` of the tensor's elements (default `ZO_DTYPE_F32`).
    pub dtype: i32,
    /// `ZO_DIST_*` of the directions (default `ZO_DIST_GAUSSIAN`).
    pub dist: i32,
    /// The tensor's RNG tensor id (default 0).
    pub tensor_id: u32,
    /// The RNG role: `ZO_ROLE_DENSE` (the default) for a weight, `ZO_ROLE_LORA_A` or
    /// `ZO_ROLE_LORA_B` for a LoRA factor.
    pub role: u32,
    /// The tensor is `rows` × `cols` (default 1 × 0), row `i` stored from element `i * ld`;
    /// `ld` 0 (the default) means `cols`. Element (i, j) has RNG index `i * cols + j`, so a
    /// weight inside a wider buffer draws the same directions as on its own.
    pub rows: usize,
    pub cols: usize,
    pub ld: usize,
    /// λ = lr · weight decay, applied first as `θ = fmaf(-λ, θ, θ)`; 0 (the default) applies
    /// none and leaves θ bit for bit as it is before the directions.
    pub decay: f32,
}

/// Defaults of `zo_kernel_axpy_params`: an f32 tensor of no elements.
#[no_mangle]
pub extern "C" fn zo_kernel_axpy_default_params() -> zo_kernel_axpy_params {
    zo_kernel_axpy_params {
        struct_size: std::mem::size_of::<zo_kernel_axpy_params>(),
        dtype: ZO_DTYPE_F32,
        dist: ZO_DIST_GAUSSIAN,
        tensor_id: 0,
        role: ZO_ROLE_DENSE,
        rows: 1,
        cols: 0,
        ld: 0,
        decay: 0.0,
    }
}

/// The seeded update in place: for every element θ of the tensor (computed in f32 from its
/// dtype), the optional decay `θ = fmaf(-λ, θ, θ)`, then for each direction d in order
/// `θ = fmaf(dirs[d].coef, z_d, θ)` with z_d element `i * cols + j` of the stream (seed_d,
/// tensor_id, role, dist), rounded once to the dtype (round to nearest even). Bit for bit
/// zo's own dense and LoRA updates, and MeZO's in-place perturbation with one direction of
/// coefficient ±ε.
///
/// `theta` holds `theta_len` elements of the dtype, `dirs` `n_dirs` directions (may be NULL
/// when `n_dirs` is 0), both on the target's device. `ZO_ERR_SHAPE` when the tensor's extent
/// (`(rows - 1) * ld + cols`) exceeds `theta_len` or `ld < cols`.
///
/// # Safety
/// The pointers hold what their counts say on the target's device (see `zo_kernel_target`);
/// `target` and `params` point at valid structs.
#[no_mangle]
pub unsafe extern "C" fn zo_kernel_seeded_axpy(
    target: *const zo_kernel_target,
    params: *const zo_kernel_axpy_params,
    theta: *mut c_void,
    theta_len: usize,
    dirs: *const zo_kernel_update_dir,
    n_dirs: usize,
) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        with_cuda!(unsafe { imp::seeded_axpy(target, params, theta, theta_len, dirs, n_dirs) })
    })
}

/// A low-rank bank update: `zo_kernel_lowrank_bank_update`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct zo_kernel_bank_params {
    /// `sizeof(zo_kernel_bank_params)`.
    pub struct_size: usize,
    /// `ZO_DIST_*` of U (default `ZO_DIST_GAUSSIAN`).
    pub dist: i32,
    /// The Linear's RNG tensor id (default 0).
    pub tensor_id: u32,
    /// LoZO-M only: the momentum factor β (default 0.9).
    pub beta: f32,
    /// LoZO-M only: −lr (default 0).
    pub neg_lr: f32,
}

/// Defaults of `zo_kernel_bank_params`.
#[no_mangle]
pub extern "C" fn zo_kernel_bank_default_params() -> zo_kernel_bank_params {
    zo_kernel_bank_params {
        struct_size: std::mem::size_of::<zo_kernel_bank_params>(),
        dist: ZO_DIST_GAUSSIAN,
        tensor_id: 0,
        beta: 0.9,
        neg_lr: 0.0,
    }
}

/// One step's update of a LoZO bank `bankᵀ` (f32 `[rank][out]`, `n` = rank·out elements),
/// with u_d element `e` of Uᵀ_d, the stream (seed_d, tensor_id, `ZO_ROLE_LOWRANK_U`, dist):
/// - `momentum` NULL (LoZO): for each d, `bank[e] = fmaf(c_d, u_d, bank[e])`, with
///   `c_d = -(lr * g_d) / q`;
/// - `momentum` non-NULL (LoZO-M, f32, `n` elements, updated too): `m = beta * m`, then for
///   each d `m = fmaf(a_d, u_d, m)`, then `bank = fmaf(neg_lr, m, bank)`, with `a_d = g_d / q`
///   on the first update of a run and `((1 - beta) * g_d) / q` after.
///
/// The coefficients are `dirs[d].coef` (`n_dirs` of them). Bit for bit zo's lowrank family.
///
/// # Safety
/// As `zo_kernel_seeded_axpy`.
#[no_mangle]
pub unsafe extern "C" fn zo_kernel_lowrank_bank_update(
    target: *const zo_kernel_target,
    params: *const zo_kernel_bank_params,
    bank: *mut f32,
    momentum: *mut f32,
    n: usize,
    dirs: *const zo_kernel_update_dir,
    n_dirs: usize,
) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        with_cuda!(unsafe { imp::bank_update(target, params, bank, momentum, n, dirs, n_dirs) })
    })
}

/// `zo_kernel_moments_params.rule`: ZO-SGD with heavy-ball momentum.
pub const ZO_RULE_MOMENTUM: i32 = 1;
/// `zo_kernel_moments_params.rule`: ZO-Adam with bias correction.
pub const ZO_RULE_ADAM: i32 = 2;

/// A momentum or Adam update of one trained f32 tensor: `zo_kernel_moments_update`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct zo_kernel_moments_params {
    /// `sizeof(zo_kernel_moments_params)`.
    pub struct_size: usize,
    /// `ZO_RULE_MOMENTUM` (the default) or `ZO_RULE_ADAM`.
    pub rule: i32,
    /// `ZO_DIST_*` of the directions (default `ZO_DIST_GAUSSIAN`).
    pub dist: i32,
    /// The tensor's RNG tensor id and role (defaults 0 and `ZO_ROLE_DENSE`).
    pub tensor_id: u32,
    pub role: u32,
    /// Momentum's β, or Adam's β₁ (default 0.9), in [0, 1).
    pub beta1: f32,
    /// Adam's β₂ (default 0.999), in [0, 1).
    pub beta2: f32,
    /// Adam's ε (default 1e-8), positive.
    pub eps: f32,
    /// The step's learning rate (default 0).
    pub lr: f32,
    /// Updates already applied to these moments (default 0): Adam's bias corrections use
    /// t = `updates` + 1.
    pub updates: u64,
    /// λ = lr · weight decay, applied first as `θ = fmaf(-λ, θ, θ)`; 0 (the default): none.
    pub decay: f32,
}

/// Defaults of `zo_kernel_moments_params`: momentum 0.9, lr 0.
#[no_mangle]
pub extern "C" fn zo_kernel_moments_default_params() -> zo_kernel_moments_params {
    zo_kernel_moments_params {
        struct_size: std::mem::size_of::<zo_kernel_moments_params>(),
        rule: ZO_RULE_MOMENTUM,
        dist: ZO_DIST_GAUSSIAN,
        tensor_id: 0,
        role: ZO_ROLE_DENSE,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        lr: 0.0,
        updates: 0,
        decay: 0.0,
    }
}

/// One update of ZO-SGD momentum or ZO-Adam on the f32 tensor `theta` (`n` elements, RNG index
/// = element) and its moments `m` (and, for Adam, `v`), each `n` floats that start at zero
/// before a run's first update. Per element, after the optional decay: ĝ = the fmaf chain
/// over d of `dirs[d].coef * z_d` from 0, with `coef = g_d / q`; momentum: `m = fmaf(β, m,
/// ĝ)`, `θ = fmaf(-lr, m, θ)`; Adam: `m = fmaf(β₁, m, (1-β₁)ĝ)`, `v = fmaf(β₂, v, (1-β₂)ĝ²)`,
/// `θ = fmaf(-lr c₁, m / (sqrtf(v c₂) + ε), θ)` with the bias corrections c₁, c₂ of update t.
/// Bit for bit zo's own momentum and Adam on LoRA factors and prefixes.
///
/// `v` may be NULL for momentum. `ZO_ERR_ARGUMENT` for a rule or coefficient out of range.
///
/// # Safety
/// As `zo_kernel_seeded_axpy`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn zo_kernel_moments_update(
    target: *const zo_kernel_target,
    params: *const zo_kernel_moments_params,
    theta: *mut f32,
    m: *mut f32,
    v: *mut f32,
    n: usize,
    dirs: *const zo_kernel_update_dir,
    n_dirs: usize,
) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        with_cuda!(unsafe { imp::moments_update(target, params, theta, m, v, n, dirs, n_dirs) })
    })
}

/// `zo_kernel_merge_params.left`: the left factor is a LoZO bank `bankᵀ`, f32 `[rank][out]`.
pub const ZO_FACTOR_BANK_T: i32 = 0;
/// `zo_kernel_merge_params.left`: the left factor is LoRA B, f32 `[out][rank]`.
pub const ZO_FACTOR_LORA_B: i32 = 1;

/// A factor merge: `zo_kernel_factor_merge`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct zo_kernel_merge_params {
    /// `sizeof(zo_kernel_merge_params)`.
    pub struct_size: usize,
    /// `ZO_DTYPE_*` of the weight (default `ZO_DTYPE_F32`).
    pub dtype: i32,
    /// `ZO_FACTOR_BANK_T` (the default) or `ZO_FACTOR_LORA_B`.
    pub left: i32,
    /// The weight is `out` × `k`, row `i` stored from element `i * ld` (`ld` 0, the default,
    /// means `k`).
    pub out: usize,
    pub k: usize,
    pub ld: usize,
    /// The factors' rank (default 1).
    pub rank: usize,
    /// s: the low-rank scale (1, or 1/√rank), or LoRA's α/rank (default 1).
    pub scale: f32,
}

/// Defaults of `zo_kernel_merge_params`.
#[no_mangle]
pub extern "C" fn zo_kernel_merge_default_params() -> zo_kernel_merge_params {
    zo_kernel_merge_params {
        struct_size: std::mem::size_of::<zo_kernel_merge_params>(),
        dtype: ZO_DTYPE_F32,
        left: ZO_FACTOR_BANK_T,
        out: 0,
        k: 0,
        ld: 0,
        rank: 1,
        scale: 1.0,
    }
}

/// Merges a product of factors into a weight: `w[i][j] = round(fmaf(scale, acc, w[i][j]))`
/// for i < out, j < k, where acc is the fmaf chain from 0 over ascending kk of
/// `b(i, kk) * a[kk * k + j]`; `b(i, kk)` is `b[kk * out + i]` (`ZO_FACTOR_BANK_T`) or
/// `b[i * rank + kk]` (`ZO_FACTOR_LORA_B`); `a` is f32 `[rank][k]` (Vᵀ or LoRA A). Bit for bit
/// zo's merges of a LoZO bank at a period's end and of LoRA into the base weight.
///
/// `w` holds `w_len` elements of the dtype, `b` `b_len` and `a` `a_len` floats, on the
/// target's device. `ZO_ERR_SHAPE` when an extent exceeds its count.
///
/// # Safety
/// As `zo_kernel_seeded_axpy`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn zo_kernel_factor_merge(
    target: *const zo_kernel_target,
    params: *const zo_kernel_merge_params,
    w: *mut c_void,
    w_len: usize,
    b: *const f32,
    b_len: usize,
    a: *const f32,
    a_len: usize,
) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        with_cuda!(unsafe { imp::factor_merge(target, params, w, w_len, b, b_len, a, a_len) })
    })
}

#[cfg(feature = "cuda")]
mod imp {
    use std::ffi::c_void;

    use super::*;
    use crate::backend::cuda::kernels::update::{self as k, LeftFactor, Strided, UpdateDirs};
    use crate::backend::DType;
    use crate::ffi::args;
    use crate::ffi::kernels::call::{launched, open, opt_view, view};
    use crate::perturb::lowrank::BankStep;
    use crate::perturb::step_rule::{RuleCoefs, StepRule};

    /// The caller's directions as the launchers take them.
    ///
    /// # Safety
    /// A non-NULL `dirs` holds `n` records on the target's device.
    unsafe fn directions(dirs: *const zo_kernel_update_dir, n: usize) -> FfiResult<UpdateDirs> {
        // SAFETY: checked for NULL and alignment; the extent is the caller's contract.
        let v = unsafe { view(dirs.cast(), DType::F32, 4 * n, "dirs") }?;
        // SAFETY: as above.
        Ok(unsafe { UpdateDirs::external(v.ptr(), n) }?)
    }

    /// `ld` 0 means a contiguous row.
    fn strided(rows: usize, cols: usize, ld: usize) -> Strided {
        Strided {
            rows,
            cols,
            ld: if ld == 0 { cols } else { ld },
        }
    }

    pub(super) unsafe fn seeded_axpy(
        target: *const zo_kernel_target,
        params: *const zo_kernel_axpy_params,
        theta: *mut c_void,
        theta_len: usize,
        dirs: *const zo_kernel_update_dir,
        n_dirs: usize,
    ) -> FfiResult<()> {
        // SAFETY: the caller's contract (for every unsafe call below).
        let p = unsafe { args::params(params, "zo_kernel_axpy_params") }?;
        let dtype = dtype(p.dtype)?;
        let dist = dist(p.dist)?;
        if !p.decay.is_finite() {
            return Err(FfiError::new(
                ZO_ERR_ARGUMENT,
                format!("decay is {}", p.decay),
            ));
        }
        let dev = unsafe { open(target) }?;
        let theta = unsafe { view(theta, dtype, theta_len, "theta") }?;
        let dirs = unsafe { directions(dirs, n_dirs) }?;
        let decay = (p.decay != 0.0).then_some(p.decay);
        let shape = strided(p.rows, p.cols, p.ld);
        launched(k::seeded_axpy(
            &dev,
            theta,
            shape,
            p.tensor_id,
            p.role,
            dist,
            &dirs,
            decay,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn moments_update(
        target: *const zo_kernel_target,
        params: *const zo_kernel_moments_params,
        theta: *mut f32,
        m: *mut f32,
        v: *mut f32,
        n: usize,
        dirs: *const zo_kernel_update_dir,
        n_dirs: usize,
    ) -> FfiResult<()> {
        // SAFETY: the caller's contract (for every unsafe call below).
        let p = unsafe { args::params(params, "zo_kernel_moments_params") }?;
        let dist = dist(p.dist)?;
        let bad = |what: String| FfiError::new(ZO_ERR_ARGUMENT, what);
        let rule = match p.rule {
            ZO_RULE_MOMENTUM => StepRule::Momentum { beta: p.beta1 },
            ZO_RULE_ADAM => StepRule::Adam {
                beta1: p.beta1,
                beta2: p.beta2,
                eps: p.eps,
            },
            other => {
                return Err(bad(format!(
                    "rule is {other}: expected ZO_RULE_MOMENTUM or ZO_RULE_ADAM"
                )))
            }
        };
        rule.validate().map_err(|e| bad(e.to_string()))?;
        if !p.lr.is_finite() || !p.decay.is_finite() {
            return Err(bad(format!(
                "lr {} and decay {}: expected finite",
                p.lr, p.decay
            )));
        }
        let k = RuleCoefs::new(rule, p.lr, p.updates).map_err(|e| bad(e.to_string()))?;
        let dev = unsafe { open(target) }?;
        let theta = unsafe { view(theta.cast(), DType::F32, n, "theta") }?;
        let moments = k::MomentViews {
            m: unsafe { view(m.cast(), DType::F32, n, "m") }?,
            v: unsafe { opt_view(v.cast(), DType::F32, n, "v") }?,
        };
        let dirs = unsafe { directions(dirs, n_dirs) }?;
        let decay = (p.decay != 0.0).then_some(p.decay);
        launched(k::moments_update(
            &dev,
            theta,
            moments,
            n,
            p.tensor_id,
            p.role,
            dist,
            &k,
            &dirs,
            decay,
        ))
    }

    pub(super) unsafe fn bank_update(
        target: *const zo_kernel_target,
        params: *const zo_kernel_bank_params,
        bank: *mut f32,
        momentum: *mut f32,
        n: usize,
        dirs: *const zo_kernel_update_dir,
        n_dirs: usize,
    ) -> FfiResult<()> {
        // SAFETY: the caller's contract (for every unsafe call below).
        let p = unsafe { args::params(params, "zo_kernel_bank_params") }?;
        let dist = dist(p.dist)?;
        let dev = unsafe { open(target) }?;
        let bank = unsafe { view(bank.cast(), DType::F32, n, "bank") }?;
        let mom = unsafe { opt_view(momentum.cast(), DType::F32, n, "momentum") }?;
        let dirs = unsafe { directions(dirs, n_dirs) }?;
        // The coefficients are in `dirs`; the step says which update and its scalars.
        let step = match mom {
            None => BankStep::Plain(Vec::new()),
            Some(_) => BankStep::Momentum {
                beta: p.beta,
                neg_lr: p.neg_lr,
                coefs: Vec::new(),
            },
        };
        launched(k::lowrank_bank_update(
            &dev,
            bank,
            mom,
            n,
            p.tensor_id,
            dist,
            &step,
            &dirs,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn factor_merge(
        target: *const zo_kernel_target,
        params: *const zo_kernel_merge_params,
        w: *mut c_void,
        w_len: usize,
        b: *const f32,
        b_len: usize,
        a: *const f32,
        a_len: usize,
    ) -> FfiResult<()> {
        // SAFETY: the caller's contract (for every unsafe call below).
        let p = unsafe { args::params(params, "zo_kernel_merge_params") }?;
        let dtype = dtype(p.dtype)?;
        let layout = match p.left {
            ZO_FACTOR_BANK_T => LeftFactor::Transposed,
            ZO_FACTOR_LORA_B => LeftFactor::RowMajor,
            other => {
                return Err(FfiError::new(
                    ZO_ERR_ARGUMENT,
                    format!("left is {other}: expected ZO_FACTOR_BANK_T or ZO_FACTOR_LORA_B"),
                ))
            }
        };
        let dev = unsafe { open(target) }?;
        let w = unsafe { view(w, dtype, w_len, "w") }?;
        let b = unsafe { view(b.cast(), DType::F32, b_len, "b") }?;
        let a = unsafe { view(a.cast(), DType::F32, a_len, "a") }?;
        let shape = strided(p.out, p.k, p.ld);
        launched(k::factor_merge(
            &dev, w, shape, p.scale, b, layout, a, p.rank,
        ))
    }
}
