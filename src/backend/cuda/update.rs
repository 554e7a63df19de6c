//! Seeded updates on the device (csrc/update.cu), bit for bit with the CPU families: the
//! coefficients are computed on the host by the families' own functions
//! ([`crate::perturb::lowrank::bank_coefs`], [`crate::perturb::lowrank::momentum_coefs`], the
//! dense/lora `-(lr·g_d)/q`) and passed as `(seed_d, coef_d)` pairs, which each call uploads.
//!
//! Typed weight buffers are generic `CudaSlice<T>` plus the [`DType`] that picks the kernel
//! instance (as in [`super::adapter`]); trained fp32 state (bank, momentum, LoRA A/B) is
//! `CudaSlice<f32>`.

use cudarc::driver::{CudaSlice, DeviceRepr};

use super::adapter::{check_dtype, LaunchDims};
use super::device::CudaDevice;
use super::DType;
use crate::perturb::lowrank::BankStep;
use crate::perturb::Dist;
use crate::{Error, Result};

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

    fn extent(&self) -> Option<usize> {
        if self.rows == 0 || self.cols == 0 {
            return Some(0);
        }
        (self.rows - 1).checked_mul(self.ld)?.checked_add(self.cols)
    }
}

/// [`crate::backend::launch::axpy_launch_config`] as a tuple.
#[doc(hidden)]
pub fn axpy_launch_config(n: usize) -> LaunchDims {
    crate::backend::launch::axpy_launch_config(n).tuple()
}

/// [`crate::backend::launch::merge_launch_config`] as a tuple.
#[doc(hidden)]
pub fn merge_launch_config(out: usize, k: usize) -> LaunchDims {
    crate::backend::launch::merge_launch_config(out, k).tuple()
}

/// [`crate::backend::launch::basis_launch_config`] as a tuple.
#[doc(hidden)]
pub fn basis_launch_config(n: usize) -> LaunchDims {
    crate::backend::launch::basis_launch_config(n).tuple()
}

/// How a merge reads the left factor `b` (rank components `kk`, output rows `i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftFactor {
    /// lowrank `bankᵀ`, `[rank][out]`: element `kk·out + i`.
    Transposed,
    /// lora B, `[out][rank]`: element `i·rank + kk`.
    RowMajor,
}

fn fits_u32(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Unsupported(format!("{what} = {v} exceeds 2^32 - 1")))
}

fn need(len: usize, want: usize, what: &str) -> Result<()> {
    if len < want {
        return Err(Error::Data(format!(
            "{what} holds {len} elements, expected at least {want}"
        )));
    }
    Ok(())
}

impl CudaDevice {
    /// For every element θ of `theta` (layout `shape`, RNG index `i·cols + j`): with
    /// `decay = Some(λ)` (λ = lr·wd), `θ = fma(-λ, θ, θ)`; then for each `(seed, c)` in order
    /// `θ = fma(c, z, θ)` with z from (seed, `tensor_id`, `role`, index); one rounding to the
    /// storage type. Bit-exact with [`crate::perturb::dense::seeded_axpy`] for f32.
    #[allow(clippy::too_many_arguments)]
    pub fn seeded_axpy<T: DeviceRepr>(
        &self,
        dtype: DType,
        theta: &mut CudaSlice<T>,
        shape: Strided,
        tensor_id: u32,
        role: u32,
        dist: Dist,
        terms: &[(u64, f32)],
        decay: Option<f32>,
    ) -> Result<()> {
        check_dtype::<T>(dtype, "seeded axpy")?;
        if shape.ld < shape.cols {
            return Err(Error::Data(format!(
                "seeded axpy: row stride {} is below the row length {}",
                shape.ld, shape.cols
            )));
        }
        let extent = shape
            .extent()
            .ok_or_else(|| Error::Unsupported(format!("seeded axpy: {shape:?} overflows")))?;
        need(theta.len(), extent, "seeded axpy: theta")?;
        if shape.rows.checked_mul(shape.cols).is_none() {
            return Err(Error::Unsupported(format!(
                "seeded axpy: {shape:?} overflows"
            )));
        }
        if extent == 0 || (terms.is_empty() && decay.is_none()) {
            return Ok(());
        }
        self.launch_axpy(dtype, theta, shape, tensor_id, role, dist, terms, decay)
    }

    /// MeZO's in-place perturbation of one tensor, `θ = round_T(fma(scale, z, θ))`, z from
    /// (seed, `tensor_id`, DENSE, index): [`crate::perturb::dense::perturb_in_place`] per
    /// tensor.
    #[allow(clippy::too_many_arguments)]
    pub fn perturb_in_place<T: DeviceRepr>(
        &self,
        dtype: DType,
        theta: &mut CudaSlice<T>,
        shape: Strided,
        tensor_id: u32,
        dist: Dist,
        seed: u64,
        scale: f32,
    ) -> Result<()> {
        let role = crate::perturb::role::DENSE;
        self.seeded_axpy(
            dtype,
            theta,
            shape,
            tensor_id,
            role,
            dist,
            &[(seed, scale)],
            None,
        )
    }

    /// One step's update of a lowrank bank `bankᵀ` (`[rank][out]`, fp32) and, for LoZO-M, its
    /// momentum (same shape): [`crate::perturb::lowrank::bank_update`] bit for bit.
    pub fn lowrank_bank_update(
        &self,
        bank: &mut CudaSlice<f32>,
        mom: Option<&mut CudaSlice<f32>>,
        n: usize,
        tensor_id: u32,
        dist: Dist,
        step: &BankStep,
    ) -> Result<()> {
        need(bank.len(), n, "lowrank bank")?;
        match (step, mom) {
            (BankStep::Plain(coefs), _) => self.seeded_axpy(
                DType::F32,
                bank,
                Strided::flat(n),
                tensor_id,
                crate::perturb::role::LOWRANK_U,
                dist,
                coefs,
                None,
            ),
            (
                BankStep::Momentum {
                    beta,
                    neg_lr,
                    coefs,
                },
                Some(mom),
            ) => {
                need(mom.len(), n, "lowrank momentum")?;
                if n == 0 {
                    return Ok(());
                }
                self.launch_momentum(bank, mom, n, tensor_id, dist, *beta, *neg_lr, coefs)
            }
            (BankStep::Momentum { .. }, None) => Err(Error::Data(
                "lowrank bank update: a momentum step needs the momentum buffer".into(),
            )),
        }
    }

    /// `w[i][j] = round_T(fma(scale, acc, w[i][j]))` for i < out, j < k (row stride `ld`), acc
    /// an fma chain over ascending kk of `b[i][kk]·a[kk][j]` from 0: the merge of
    /// [`crate::perturb::lowrank::merge_low_rank`] (b = bankᵀ, [`LeftFactor::Transposed`]) and
    /// of the lora family (b = B, [`LeftFactor::RowMajor`]); bit-exact for f32.
    #[allow(clippy::too_many_arguments)]
    pub fn factor_merge<T: DeviceRepr>(
        &self,
        dtype: DType,
        w: &mut CudaSlice<T>,
        shape: Strided,
        scale: f32,
        b: &CudaSlice<f32>,
        layout: LeftFactor,
        a: &CudaSlice<f32>,
        rank: usize,
    ) -> Result<()> {
        check_dtype::<T>(dtype, "factor merge")?;
        let (out, k) = (shape.rows, shape.cols);
        if shape.ld < k {
            return Err(Error::Data(format!(
                "factor merge: row stride {} is below the row length {k}",
                shape.ld
            )));
        }
        let extent = shape
            .extent()
            .ok_or_else(|| Error::Unsupported(format!("factor merge: {shape:?} overflows")))?;
        need(w.len(), extent, "factor merge: weight")?;
        need(b.len(), rank * out, "factor merge: left factor")?;
        need(a.len(), rank * k, "factor merge: right factor")?;
        fits_u32(out, "rows")?;
        fits_u32(k, "columns")?;
        fits_u32(shape.ld, "row stride")?;
        fits_u32(rank * out.max(k), "factor elements")?;
        if extent == 0 {
            return Ok(());
        }
        self.launch_merge(dtype, w, shape, scale, b, layout, a, rank)
    }

    /// LoZO-M's change of basis at a V refresh, `P = Vᵀ_old·Vᵀ_newᵀ / k_in` (`[rank][rank]`):
    /// [`crate::perturb::lowrank::change_of_basis`] bit for bit.
    pub fn lowrank_change_of_basis(
        &self,
        p: &mut CudaSlice<f32>,
        old_vt: &CudaSlice<f32>,
        new_vt: &CudaSlice<f32>,
        rank: usize,
        k_in: usize,
    ) -> Result<()> {
        need(p.len(), rank * rank, "change of basis: P")?;
        need(old_vt.len(), rank * k_in, "change of basis: old Vᵀ")?;
        need(new_vt.len(), rank * k_in, "change of basis: new Vᵀ")?;
        fits_u32(rank * rank, "rank²")?;
        fits_u32(k_in, "input width")?;
        if rank == 0 {
            return Ok(());
        }
        self.launch_basis(
            "zo_lowrank_basis",
            p,
            old_vt,
            new_vt,
            rank,
            k_in,
            0,
            rank * rank,
        )
    }

    /// `mᵀ_new = project(mᵀ, P)` (`[rank][out]`): [`crate::perturb::lowrank::project_momentum`]
    /// bit for bit. `new_m` must not alias `mom`.
    pub fn lowrank_project_momentum(
        &self,
        new_m: &mut CudaSlice<f32>,
        mom: &CudaSlice<f32>,
        p: &CudaSlice<f32>,
        rank: usize,
        out: usize,
    ) -> Result<()> {
        need(new_m.len(), rank * out, "project momentum: output")?;
        need(mom.len(), rank * out, "project momentum: momentum")?;
        need(p.len(), rank * rank, "project momentum: P")?;
        fits_u32(rank * out.max(rank), "momentum elements")?;
        if rank * out == 0 {
            return Ok(());
        }
        self.launch_basis(
            "zo_lowrank_project",
            new_m,
            mom,
            p,
            rank,
            0,
            out,
            rank * out,
        )
    }
}

#[cfg(zo_kernels)]
use super::params::*;

#[cfg(zo_kernels)]
fn dist_code(d: Dist) -> u32 {
    match d {
        Dist::Gaussian => ZO_DIST_GAUSSIAN,
        Dist::Rademacher => ZO_DIST_RADEMACHER,
    }
}

#[cfg(zo_kernels)]
fn dims(d: LaunchDims) -> cudarc::driver::LaunchConfig {
    cudarc::driver::LaunchConfig {
        grid_dim: d.0,
        block_dim: d.1,
        shared_mem_bytes: d.2,
    }
}

#[cfg(zo_kernels)]
impl CudaDevice {
    fn upload_dirs(&self, terms: &[(u64, f32)]) -> Result<CudaSlice<ZoUpdateDir>> {
        let mut v: Vec<ZoUpdateDir> = terms
            .iter()
            .map(|&(seed, coef)| ZoUpdateDir {
                seed_lo: seed as u32,
                seed_hi: (seed >> 32) as u32,
                coef,
                reserved: 0,
            })
            .collect();
        v.resize(v.len().max(1), ZoUpdateDir::default());
        self.stream()
            .clone_htod(&v)
            .map_err(super::device::cuda_err("uploading update directions"))
    }

    #[allow(clippy::too_many_arguments)]
    fn launch_axpy<T: DeviceRepr>(
        &self,
        dtype: DType,
        theta: &mut CudaSlice<T>,
        shape: Strided,
        tensor_id: u32,
        role: u32,
        dist: Dist,
        terms: &[(u64, f32)],
        decay: Option<f32>,
    ) -> Result<()> {
        use cudarc::driver::PushKernelArg;
        let dirs = self.upload_dirs(terms)?;
        let p = ZoAxpyParams {
            rows: shape.rows as u64,
            cols: shape.cols as u64,
            ld: shape.ld as u64,
            tensor: tensor_id,
            role,
            dist: dist_code(dist),
            dirs: fits_u32(terms.len(), "directions")?,
            decay: decay.is_some() as u32,
            neg_decay: decay.map_or(0.0, |l| -l),
        };
        let name = match dtype {
            DType::F32 => "zo_seeded_axpy_f32",
            DType::Bf16 => "zo_seeded_axpy_bf16",
            DType::F16 => "zo_seeded_axpy_f16",
        };
        let func = self.function(name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch.arg(&p).arg(theta).arg(&dirs);
        // SAFETY: signature (ZoAxpyParams, T*, const ZoUpdateDir*); the caller checked that
        // theta holds (rows - 1)·ld + cols elements; dirs holds `dirs` entries.
        unsafe { launch.launch(dims(axpy_launch_config(shape.rows * shape.cols))) }
            .map_err(super::device::cuda_err(format!("launching {name}")))?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn launch_momentum(
        &self,
        bank: &mut CudaSlice<f32>,
        mom: &mut CudaSlice<f32>,
        n: usize,
        tensor_id: u32,
        dist: Dist,
        beta: f32,
        neg_lr: f32,
        coefs: &[(u64, f32)],
    ) -> Result<()> {
        use cudarc::driver::PushKernelArg;
        let dirs = self.upload_dirs(coefs)?;
        let p = ZoMomentumParams {
            n: n as u64,
            tensor: tensor_id,
            dist: dist_code(dist),
            dirs: fits_u32(coefs.len(), "directions")?,
            beta,
            neg_lr,
            reserved: 0,
        };
        let name = "zo_lowrank_momentum";
        let func = self.function(name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch.arg(&p).arg(bank).arg(mom).arg(&dirs);
        // SAFETY: signature (ZoMomentumParams, float*, float*, const ZoUpdateDir*); bank and
        // mom hold n elements (checked by the caller).
        unsafe { launch.launch(dims(axpy_launch_config(n))) }
            .map_err(super::device::cuda_err(format!("launching {name}")))?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn launch_merge<T: DeviceRepr>(
        &self,
        dtype: DType,
        w: &mut CudaSlice<T>,
        shape: Strided,
        scale: f32,
        b: &CudaSlice<f32>,
        layout: LeftFactor,
        a: &CudaSlice<f32>,
        rank: usize,
    ) -> Result<()> {
        use cudarc::driver::PushKernelArg;
        let (b_si, b_sk) = match layout {
            LeftFactor::Transposed => (1, shape.rows as u32),
            LeftFactor::RowMajor => (rank as u32, 1),
        };
        let p = ZoMergeParams {
            out: shape.rows as u32,
            k: shape.cols as u32,
            ld: shape.ld as u32,
            rank: rank as u32,
            b_si,
            b_sk,
            scale,
            reserved: 0,
        };
        let name = match dtype {
            DType::F32 => "zo_factor_merge_f32",
            DType::Bf16 => "zo_factor_merge_bf16",
            DType::F16 => "zo_factor_merge_f16",
        };
        let func = self.function(name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch.arg(&p).arg(w).arg(b).arg(a);
        // SAFETY: signature (ZoMergeParams, T*, const float*, const float*); the caller checked
        // w (out rows of stride ld), b (rank·out) and a (rank·k).
        unsafe { launch.launch(dims(merge_launch_config(shape.rows, shape.cols))) }
            .map_err(super::device::cuda_err(format!("launching {name}")))?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn launch_basis(
        &self,
        name: &'static str,
        dst: &mut CudaSlice<f32>,
        x: &CudaSlice<f32>,
        y: &CudaSlice<f32>,
        rank: usize,
        k_in: usize,
        out: usize,
        n: usize,
    ) -> Result<()> {
        use cudarc::driver::PushKernelArg;
        let p = ZoBasisParams {
            rank: rank as u32,
            k_in: k_in as u32,
            out: out as u32,
            reserved: 0,
        };
        let func = self.function(name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch.arg(&p).arg(dst).arg(x).arg(y);
        // SAFETY: signature (ZoBasisParams, float*, const float*, const float*); the caller
        // checked every buffer against rank, k_in and out.
        unsafe { launch.launch(dims(basis_launch_config(n))) }
            .map_err(super::device::cuda_err(format!("launching {name}")))?;
        Ok(())
    }
}

#[cfg(not(zo_kernels))]
impl CudaDevice {
    #[allow(clippy::too_many_arguments)]
    fn launch_axpy<T: DeviceRepr>(
        &self,
        _: DType,
        _: &mut CudaSlice<T>,
        _: Strided,
        _: u32,
        _: u32,
        _: Dist,
        _: &[(u64, f32)],
        _: Option<f32>,
    ) -> Result<()> {
        Err(Error::Cuda("this build has no CUDA kernels".into()))
    }

    #[allow(clippy::too_many_arguments)]
    fn launch_momentum(
        &self,
        _: &mut CudaSlice<f32>,
        _: &mut CudaSlice<f32>,
        _: usize,
        _: u32,
        _: Dist,
        _: f32,
        _: f32,
        _: &[(u64, f32)],
    ) -> Result<()> {
        Err(Error::Cuda("this build has no CUDA kernels".into()))
    }

    #[allow(clippy::too_many_arguments)]
    fn launch_merge<T: DeviceRepr>(
        &self,
        _: DType,
        _: &mut CudaSlice<T>,
        _: Strided,
        _: f32,
        _: &CudaSlice<f32>,
        _: LeftFactor,
        _: &CudaSlice<f32>,
        _: usize,
    ) -> Result<()> {
        Err(Error::Cuda("this build has no CUDA kernels".into()))
    }

    #[allow(clippy::too_many_arguments)]
    fn launch_basis(
        &self,
        _: &'static str,
        _: &mut CudaSlice<f32>,
        _: &CudaSlice<f32>,
        _: &CudaSlice<f32>,
        _: usize,
        _: usize,
        _: usize,
        _: usize,
    ) -> Result<()> {
        Err(Error::Cuda("this build has no CUDA kernels".into()))
    }
}

#[cfg(zo_kernels)]
// SAFETY: plain #[repr(C)] structs of integers and floats, passed to kernels by value or
// copied to the device as arrays.
unsafe impl DeviceRepr for ZoAxpyParams {}
#[cfg(zo_kernels)]
// SAFETY: as above.
unsafe impl DeviceRepr for ZoMomentumParams {}
#[cfg(zo_kernels)]
// SAFETY: as above.
unsafe impl DeviceRepr for ZoMergeParams {}
#[cfg(zo_kernels)]
// SAFETY: as above.
unsafe impl DeviceRepr for ZoBasisParams {}
#[cfg(zo_kernels)]
// SAFETY: as above.
unsafe impl DeviceRepr for ZoUpdateDir {}
