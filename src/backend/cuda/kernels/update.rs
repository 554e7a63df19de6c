//! The seeded update family (csrc/update.cu, csrc/params/update.h), bit for bit with the CPU
//! families: the coefficients are computed on the host by the families' own functions
//! ([`crate::perturb::lowrank::bank_coefs`], [`crate::perturb::lowrank::momentum_coefs`], the
//! dense/lora `-(lr·g_d)/q`) and passed as `(seed_d, coef_d)` pairs uploaded once per step
//! ([`UpdateDirs`]). Weights carry their storage type; trained fp32 state (bank, momentum,
//! LoRA A/B) is `F32`.

use super::{check_u32, LaunchDims};
use crate::backend::cuda::params::*;
use crate::backend::cuda::{CudaDevice, DBuf, DType, View};
use crate::perturb::lowrank::BankStep;
use crate::perturb::step_rule::RuleCoefs;
use crate::perturb::Dist;
use crate::{Error, Result};

const THREADS: u32 = 256;
const MAX_GRID: u64 = 8192;

/// seeded_axpy and lowrank_momentum: one thread per four elements, grid-striding past 8192
/// blocks.
pub fn axpy_launch_config(n: usize) -> LaunchDims {
    let grid = (n as u64)
        .div_ceil(4)
        .div_ceil(THREADS as u64)
        .clamp(1, MAX_GRID) as u32;
    LaunchDims::linear(grid, THREADS)
}

/// factor_merge: one block row per output row, one thread per column.
pub fn merge_launch_config(out: usize, k: usize) -> LaunchDims {
    LaunchDims {
        grid: (
            k.div_ceil(THREADS as usize).max(1) as u32,
            out.clamp(1, 65535) as u32,
            1,
        ),
        block: (THREADS, 1, 1),
        smem: 0,
    }
}

/// lowrank_basis and lowrank_project: one thread per output element.
pub fn basis_launch_config(n: usize) -> LaunchDims {
    LaunchDims::linear(n.div_ceil(THREADS as usize).max(1) as u32, THREADS)
}

/// A rows × cols tensor stored with row stride `ld` (`ld > cols` for a weight inside an
/// augmented `[out][K_aug]` buffer). Element (i, j) has RNG index `i·cols + j`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strided {
    pub rows: usize,
    pub cols: usize,
    pub ld: usize,
}

impl Strided {
    /// A contiguous tensor of `n` elements.
    pub fn flat(n: usize) -> Strided {
        Strided {
            rows: 1,
            cols: n,
            ld: n,
        }
    }

    fn extent(&self, what: &str) -> Result<usize> {
        if self.ld < self.cols {
            return Err(Error::Data(format!(
                "{what}: row stride {} is below the row length {}",
                self.ld, self.cols
            )));
        }
        if self.rows == 0 || self.cols == 0 {
            return Ok(0);
        }
        self.rows
            .checked_mul(self.cols)
            .and((self.rows - 1).checked_mul(self.ld))
            .and_then(|v| v.checked_add(self.cols))
            .ok_or_else(|| Error::Unsupported(format!("{what}: {self:?} overflows")))
    }
}

/// How a merge reads the left factor `b` (rank components `kk`, output rows `i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftFactor {
    /// lowrank `bankᵀ`, `[rank][out]`: element `kk·out + i`.
    Transposed,
    /// lora B, `[out][rank]`: element `i·rank + kk`.
    RowMajor,
}

/// The kernels' record of one direction.
pub fn update_dir(seed: u64, coef: f32) -> ZoUpdateDir {
    ZoUpdateDir {
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        coef,
        reserved: 0,
    }
}

/// One step's `(seed_d, coef_d)` pairs on the device as `ZoUpdateDir` records, shared by
/// every tensor's update: uploaded, or a table in the caller's memory.
pub struct UpdateDirs {
    /// Device address of the records.
    ptr: u64,
    n: usize,
    /// The allocation behind `ptr` when uploaded.
    _buf: Option<DBuf>,
}

impl UpdateDirs {
    pub fn upload(dev: &CudaDevice, terms: &[(u64, f32)]) -> Result<UpdateDirs> {
        let mut v: Vec<ZoUpdateDir> = terms.iter().map(|&(s, c)| update_dir(s, c)).collect();
        check_u32("directions", v.len())?;
        let n = v.len();
        v.resize(n.max(1), ZoUpdateDir::default());
        let words: Vec<u32> = v
            .iter()
            .flat_map(|d| [d.seed_lo, d.seed_hi, d.coef.to_bits(), d.reserved])
            .collect();
        let buf = DBuf::from_words(dev, &words)?;
        Ok(UpdateDirs {
            ptr: buf.ptr(),
            n,
            _buf: Some(buf),
        })
    }

    /// `n` records that the caller laid out at device address `ptr` (4-byte aligned; never
    /// read when `n` is 0).
    ///
    /// # Safety
    /// `ptr` holds `n` records, on the device the launches run on, for as long as the value
    /// is used.
    pub unsafe fn external(ptr: u64, n: usize) -> Result<UpdateDirs> {
        check_u32("directions", n)?;
        Ok(UpdateDirs { ptr, n, _buf: None })
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// For every element θ of `theta` (layout `shape`, RNG index `i·cols + j`): with
/// `decay = Some(λ)` (λ = lr·wd), `θ = fma(-λ, θ, θ)`; then for each `(seed, c)` of `dirs` in
/// order `θ = fma(c, z, θ)` with z from (seed, `tensor_id`, `role`, index); one rounding to the
/// storage type. Bit-exact with [`crate::perturb::dense::seeded_axpy`] for f32.
#[allow(clippy::too_many_arguments)]
pub fn seeded_axpy(
    dev: &CudaDevice,
    theta: View<'_>,
    shape: Strided,
    tensor_id: u32,
    role: u32,
    dist: Dist,
    dirs: &UpdateDirs,
    decay: Option<f32>,
) -> Result<()> {
    let extent = shape.extent("seeded axpy")?;
    theta.need("seeded axpy: theta", extent)?;
    if extent == 0 || (dirs.is_empty() && decay.is_none()) {
        return Ok(());
    }
    let p = ZoAxpyParams {
        rows: shape.rows as u64,
        cols: shape.cols as u64,
        ld: shape.ld as u64,
        tensor: tensor_id,
        role,
        dist: dist_code(dist),
        dirs: dirs.n as u32,
        decay: decay.is_some() as u32,
        neg_decay: decay.map_or(0.0, |l| -l),
    };
    // SAFETY: (ZoAxpyParams, T* theta, const ZoUpdateDir* dirs); theta holds the extent
    // checked above, dirs its n entries.
    unsafe {
        dev.launch(
            typed("zo_seeded_axpy", theta.dtype),
            axpy_launch_config(shape.rows * shape.cols),
            &p,
            &[theta.ptr(), dirs.ptr],
        )
    }
}

/// MeZO's in-place perturbation of one tensor, `θ = round_T(fma(scale, z, θ))`, z from (seed,
/// `tensor_id`, DENSE, index): [`crate::perturb::dense::perturb_in_place`] per tensor, with
/// the one-term `dirs` of `(seed, scale)`.
pub fn perturb_in_place(
    dev: &CudaDevice,
    theta: View<'_>,
    shape: Strided,
    tensor_id: u32,
    dist: Dist,
    dirs: &UpdateDirs,
) -> Result<()> {
    let role = crate::perturb::role::DENSE;
    seeded_axpy(dev, theta, shape, tensor_id, role, dist, dirs, None)
}

/// One step's update of a lowrank bank `bankᵀ` (`[rank][out]`, fp32, `n` elements) and, for
/// LoZO-M, its momentum (same shape): [`crate::perturb::lowrank::bank_update`] bit for bit.
/// `dirs` holds the step's coefficients (`BankStep`'s `coefs`).
#[allow(clippy::too_many_arguments)]
pub fn lowrank_bank_update(
    dev: &CudaDevice,
    bank: View<'_>,
    mom: Option<View<'_>>,
    n: usize,
    tensor_id: u32,
    dist: Dist,
    step: &BankStep,
    dirs: &UpdateDirs,
) -> Result<()> {
    bank.expect("lowrank bank", DType::F32)?
        .need("lowrank bank", n)?;
    let role = crate::perturb::role::LOWRANK_U;
    match (step, mom) {
        (BankStep::Plain(_), _) => seeded_axpy(
            dev,
            bank,
            Strided::flat(n),
            tensor_id,
            role,
            dist,
            dirs,
            None,
        ),
        (BankStep::Momentum { beta, neg_lr, .. }, Some(mom)) => {
            mom.expect("lowrank momentum", DType::F32)?
                .need("lowrank momentum", n)?;
            if n == 0 {
                return Ok(());
            }
            let p = ZoMomentumParams {
                n: n as u64,
                tensor: tensor_id,
                dist: dist_code(dist),
                dirs: dirs.n as u32,
                beta: *beta,
                neg_lr: *neg_lr,
                reserved: 0,
            };
            // SAFETY: (ZoMomentumParams, float* bank, float* mom, const ZoUpdateDir*); bank
            // and mom hold n elements.
            unsafe {
                dev.launch(
                    "zo_lowrank_momentum",
                    axpy_launch_config(n),
                    &p,
                    &[bank.ptr(), mom.ptr(), dirs.ptr],
                )
            }
        }
        (BankStep::Momentum { .. }, None) => Err(Error::Data(
            "lowrank bank update: a momentum step needs the momentum buffer".into(),
        )),
    }
}

/// A stateful rule's buffers for one fp32 trained tensor of `n` elements: the first moment,
/// and Adam's second.
#[derive(Debug, Clone, Copy)]
pub struct MomentViews<'a> {
    pub m: View<'a>,
    pub v: Option<View<'a>>,
}

/// One update of ZO-SGD momentum or ZO-Adam (`k`) on the fp32 `theta` (`n` elements, RNG
/// index = element) and its moments, after the weight-decay fma when `decay = Some(λ)`:
/// [`crate::perturb::step_rule::Moments::apply`] bit for bit. `dirs` holds the step's
/// [`crate::perturb::step_rule::direction_coefs`].
#[allow(clippy::too_many_arguments)]
pub fn moments_update(
    dev: &CudaDevice,
    theta: View<'_>,
    moments: MomentViews<'_>,
    n: usize,
    tensor_id: u32,
    role: u32,
    dist: Dist,
    k: &RuleCoefs,
    dirs: &UpdateDirs,
    decay: Option<f32>,
) -> Result<()> {
    theta
        .expect("moments update: theta", DType::F32)?
        .need("moments update: theta", n)?;
    moments
        .m
        .expect("moments update: first moment", DType::F32)?
        .need("moments update: first moment", n)?;
    let v = match (k.adam, moments.v) {
        (true, Some(v)) => v
            .expect("moments update: second moment", DType::F32)?
            .need("moments update: second moment", n)?
            .ptr(),
        (true, None) => {
            return Err(Error::Data(
                "moments update: an Adam step needs the second-moment buffer".into(),
            ))
        }
        (false, _) => 0,
    };
    if n == 0 {
        return Ok(());
    }
    let p = ZoMomentsParams {
        n: n as u64,
        tensor: tensor_id,
        role,
        dist: dist_code(dist),
        dirs: dirs.n as u32,
        decay: decay.is_some() as u32,
        adam: k.adam as u32,
        neg_decay: decay.map_or(0.0, |l| -l),
        beta1: k.beta1,
        beta2: k.beta2,
        one_m_b1: k.one_m_b1,
        one_m_b2: k.one_m_b2,
        c2: k.c2,
        eps: k.adam_eps,
        neg_lr: if k.adam { k.neg_lr_c1 } else { k.neg_lr },
    };
    // SAFETY: (ZoMomentsParams, float* theta, float* m, float* v, const ZoUpdateDir*); theta
    // and m hold n elements, v too when the kernel reads it (Adam), dirs its n records.
    unsafe {
        dev.launch(
            "zo_moments_update",
            axpy_launch_config(n),
            &p,
            &[theta.ptr(), moments.m.ptr(), v, dirs.ptr],
        )
    }
}

/// `w[i][j] = round_T(fma(scale, acc, w[i][j]))` for i < out, j < k (row stride `ld`), acc an
/// fma chain over ascending kk of `b[i][kk]·a[kk][j]` from 0: the merge of
/// [`crate::perturb::lowrank::merge_low_rank`] (b = bankᵀ, [`LeftFactor::Transposed`]) and of
/// the lora family (b = B, [`LeftFactor::RowMajor`]); bit-exact for f32.
#[allow(clippy::too_many_arguments)]
pub fn factor_merge(
    dev: &CudaDevice,
    w: View<'_>,
    shape: Strided,
    scale: f32,
    b: View<'_>,
    layout: LeftFactor,
    a: View<'_>,
    rank: usize,
) -> Result<()> {
    let (out, k) = (shape.rows, shape.cols);
    let extent = shape.extent("factor merge")?;
    w.need("factor merge: weight", extent)?;
    b.expect("factor merge: left factor", DType::F32)?
        .need("factor merge: left factor", rank * out)?;
    a.expect("factor merge: right factor", DType::F32)?
        .need("factor merge: right factor", rank * k)?;
    check_u32("rows", out)?;
    check_u32("columns", k)?;
    check_u32("row stride", shape.ld)?;
    check_u32("factor elements", rank * out.max(k))?;
    if extent == 0 {
        return Ok(());
    }
    let (b_si, b_sk) = match layout {
        LeftFactor::Transposed => (1, out as u32),
        LeftFactor::RowMajor => (rank as u32, 1),
    };
    let p = ZoMergeParams {
        out: out as u32,
        k: k as u32,
        ld: shape.ld as u32,
        rank: rank as u32,
        b_si,
        b_sk,
        scale,
        reserved: 0,
    };
    // SAFETY: (ZoMergeParams, T* w, const float* b, const float* a); extents checked above.
    unsafe {
        dev.launch(
            typed("zo_factor_merge", w.dtype),
            merge_launch_config(out, k),
            &p,
            &[w.ptr(), b.ptr(), a.ptr()],
        )
    }
}

/// LoZO-M's change of basis at a V refresh, `P = Vᵀ_old·Vᵀ_newᵀ / k_in` (`[rank][rank]`):
/// [`crate::perturb::lowrank::change_of_basis`] bit for bit.
pub fn lowrank_change_of_basis(
    dev: &CudaDevice,
    p: View<'_>,
    old_vt: View<'_>,
    new_vt: View<'_>,
    rank: usize,
    k_in: usize,
) -> Result<()> {
    p.need("change of basis: P", rank * rank)?;
    old_vt.need("change of basis: old Vᵀ", rank * k_in)?;
    new_vt.need("change of basis: new Vᵀ", rank * k_in)?;
    check_u32("rank²", rank * rank)?;
    check_u32("input width", k_in)?;
    if rank == 0 {
        return Ok(());
    }
    launch_basis(dev, "zo_lowrank_basis", [p, old_vt, new_vt], rank, k_in, 0)
}

/// `mᵀ_new = project(mᵀ, P)` (`[rank][out]`): [`crate::perturb::lowrank::project_momentum`] bit
/// for bit. `new_m` must not alias `mom`.
pub fn lowrank_project_momentum(
    dev: &CudaDevice,
    new_m: View<'_>,
    mom: View<'_>,
    p: View<'_>,
    rank: usize,
    out: usize,
) -> Result<()> {
    new_m.need("project momentum: output", rank * out)?;
    mom.need("project momentum: momentum", rank * out)?;
    p.need("project momentum: P", rank * rank)?;
    check_u32("momentum elements", rank * out.max(rank))?;
    if rank * out == 0 {
        return Ok(());
    }
    launch_basis(dev, "zo_lowrank_project", [new_m, mom, p], rank, 0, out)
}

fn launch_basis(
    dev: &CudaDevice,
    name: &'static str,
    bufs: [View<'_>; 3],
    rank: usize,
    k_in: usize,
    out: usize,
) -> Result<()> {
    for v in &bufs {
        v.expect(name, DType::F32)?;
    }
    let p = ZoBasisParams {
        rank: rank as u32,
        k_in: k_in as u32,
        out: out as u32,
        reserved: 0,
    };
    let n = if out == 0 { rank * rank } else { rank * out };
    // SAFETY: (ZoBasisParams, float* dst, const float* x, const float* y); the callers checked
    // every buffer against rank, k_in and out.
    unsafe {
        dev.launch(
            name,
            basis_launch_config(n),
            &p,
            &[bufs[0].ptr(), bufs[1].ptr(), bufs[2].ptr()],
        )
    }
}
