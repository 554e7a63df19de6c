//! Shrink and pack of the K-augmented GEMM (csrc/adapter.cu, layout in
//! csrc/params/adapter.h): the lowrank and lora perturbations ride inside a Linear's
//! cuBLASLt GEMM as extra K columns of its input `x'` and weight `W'`.
//!
//! Typed buffers are generic `CudaSlice<T>` with `T` the storage element (`f32`, `half::bf16`,
//! `half::f16`, or any 2/4-byte plain type such as `u16`) plus the [`DType`] that picks the
//! kernel instance; the two must have the same size. The CPU twin is
//! [`crate::perturb::augment`].

use std::ops::Range;

use cudarc::driver::{CudaSlice, DeviceRepr};

use super::device::CudaDevice;
use super::DType;
use crate::perturb::augment::AugSite;
use crate::perturb::Segment;
use crate::{Error, Result};

/// (grid, block, dynamic shared memory bytes) of a raw launch.
pub type LaunchDims = ((u32, u32, u32), (u32, u32, u32), u32);

/// [`crate::backend::launch::shrink_launch_config`] as a tuple.
#[doc(hidden)]
pub fn shrink_launch_config(rows: usize, rank: usize) -> LaunchDims {
    crate::backend::launch::shrink_launch_config(rows, rank).tuple()
}

/// [`crate::backend::launch::pack_launch_config`] as a tuple.
#[doc(hidden)]
pub fn pack_launch_config(out: usize, width: usize) -> LaunchDims {
    crate::backend::launch::pack_launch_config(out, width).tuple()
}

/// A plan's segments on the device with each segment's direction and the plan's direction
/// seeds (see [`crate::perturb::augment::segment_directions`]); uploaded once per plan and
/// shared by every shrink and pack of its forward.
pub struct DeviceSegments {
    n_segs: usize,
    dirs: usize,
    #[cfg(zo_kernels)]
    segs: CudaSlice<super::params::ZoSegment>,
    #[cfg(zo_kernels)]
    seg_dir: CudaSlice<u32>,
    #[cfg(zo_kernels)]
    seeds: CudaSlice<u64>,
}

impl std::fmt::Debug for DeviceSegments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSegments")
            .field("segments", &self.n_segs)
            .field("dirs", &self.dirs)
            .finish_non_exhaustive()
    }
}

impl DeviceSegments {
    pub fn len(&self) -> usize {
        self.n_segs
    }

    pub fn is_empty(&self) -> bool {
        self.n_segs == 0
    }

    /// Directions of the plan (q).
    pub fn dirs(&self) -> usize {
        self.dirs
    }
}

/// Checks that `T` is as wide as the storage type the kernel instance expects.
pub(crate) fn check_dtype<T>(dtype: DType, what: &str) -> Result<()> {
    if std::mem::size_of::<T>() != dtype.size() {
        return Err(Error::Unsupported(format!(
            "{what}: buffer elements are {} bytes but dtype {dtype} stores {}",
            std::mem::size_of::<T>(),
            dtype.size()
        )));
    }
    Ok(())
}

fn fits_u32(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Unsupported(format!("{what} = {v} exceeds 2^32 - 1")))
}

fn check_site(site: &AugSite, what: &str) -> Result<()> {
    if site.rank == 0 {
        return Err(Error::Data(format!("{what}: rank 0")));
    }
    if site.col0 < site.k || site.col0 + site.width() > site.ld {
        return Err(Error::Data(format!(
            "{what}: block [{}, {}) is outside the extra columns [{}, {}) (K = {}, ld = {})",
            site.col0,
            site.col0 + site.width(),
            site.k,
            site.ld,
            site.k,
            site.ld
        )));
    }
    if !(-126..=126).contains(&site.scale_exp) {
        return Err(Error::Data(format!(
            "{what}: scale exponent {} outside [-126, 126]",
            site.scale_exp
        )));
    }
    fits_u32(site.ld, "ld")?;
    Ok(())
}

#[cfg(zo_kernels)]
fn dist_code(d: crate::perturb::Dist) -> u32 {
    use super::params::*;
    match d {
        crate::perturb::Dist::Gaussian => ZO_DIST_GAUSSIAN,
        crate::perturb::Dist::Rademacher => ZO_DIST_RADEMACHER,
    }
}

#[cfg(zo_kernels)]
fn family_code(f: crate::perturb::augment::AugFamily) -> u32 {
    use super::params::*;
    match f {
        crate::perturb::augment::AugFamily::LowRank => ZO_ADAPTER_LOWRANK,
        crate::perturb::augment::AugFamily::Lora => ZO_ADAPTER_LORA,
    }
}

impl CudaDevice {
    /// Uploads `segs` (sorted, disjoint) with the direction of each: the position of its seed
    /// in `dir_seeds`.
    pub fn upload_segments(&self, segs: &[Segment], dir_seeds: &[u64]) -> Result<DeviceSegments> {
        let dirs = crate::perturb::augment::segment_directions(segs, dir_seeds)?;
        for w in segs.windows(2) {
            if w[1].rows.start < w[0].rows.end {
                return Err(Error::Data(format!(
                    "segments {:?} and {:?} overlap or are out of order",
                    w[0].rows, w[1].rows
                )));
            }
        }
        if let Some(s) = segs.last() {
            fits_u32(s.rows.end, "segment end row")?;
        }
        self.upload_segments_impl(segs, &dirs, dir_seeds)
    }

    #[cfg(zo_kernels)]
    fn upload_segments_impl(
        &self,
        segs: &[Segment],
        dirs: &[u32],
        seeds: &[u64],
    ) -> Result<DeviceSegments> {
        use super::device::cuda_err;
        use super::params::ZoSegment;
        let s = self.stream();
        // Never a zero-length allocation; the counts say how much is meaningful.
        let mut zs: Vec<ZoSegment> = segs.iter().map(ZoSegment::from).collect();
        zs.resize(zs.len().max(1), ZoSegment::default());
        let mut dv = dirs.to_vec();
        dv.resize(dv.len().max(1), 0);
        let mut sv = seeds.to_vec();
        sv.resize(sv.len().max(1), 0);
        Ok(DeviceSegments {
            n_segs: segs.len(),
            dirs: seeds.len(),
            segs: s.clone_htod(&zs).map_err(cuda_err("uploading segments"))?,
            seg_dir: s
                .clone_htod(&dv)
                .map_err(cuda_err("uploading segment directions"))?,
            seeds: s
                .clone_htod(&sv)
                .map_err(cuda_err("uploading direction seeds"))?,
        })
    }

    #[cfg(not(zo_kernels))]
    fn upload_segments_impl(&self, _: &[Segment], _: &[u32], _: &[u64]) -> Result<DeviceSegments> {
        Err(Error::Cuda("this build has no CUDA kernels".into()))
    }

    /// Writes site `site`'s columns of `x` (`[rows][site.ld]`, columns `[0, site.k)` the
    /// activation) and zeroes the columns `pad` of every row (the group's padding: pass it on
    /// one site's call, an empty range on the others). `factor`: fp32 `[rank][k]`, lowrank `Vᵀ`
    /// or lora A.
    #[allow(clippy::too_many_arguments)]
    pub fn adapter_shrink<T: DeviceRepr>(
        &self,
        dtype: DType,
        site: &AugSite,
        rows: usize,
        x: &mut CudaSlice<T>,
        factor: &CudaSlice<f32>,
        segs: &DeviceSegments,
        pad: Range<usize>,
    ) -> Result<()> {
        let what = "adapter shrink";
        check_dtype::<T>(dtype, what)?;
        check_site(site, what)?;
        fits_u32(rows, "rows")?;
        if rows.checked_mul(site.ld).is_none_or(|n| n > x.len()) {
            return Err(Error::Data(format!(
                "{what}: x holds {} elements, expected {rows}×{}",
                x.len(),
                site.ld
            )));
        }
        if factor.len() < site.rank * site.k {
            return Err(Error::Data(format!(
                "{what}: factor holds {} elements, expected {}×{}",
                factor.len(),
                site.rank,
                site.k
            )));
        }
        if segs.dirs != site.dirs {
            return Err(Error::Data(format!(
                "{what}: the site has {} direction sub-blocks but the segments name {} directions",
                site.dirs, segs.dirs
            )));
        }
        if !pad.is_empty() && (pad.start < site.k || pad.end > site.ld) {
            return Err(Error::Data(format!(
                "{what}: padding {pad:?} is outside the extra columns [{}, {})",
                site.k, site.ld
            )));
        }
        if rows == 0 {
            return Ok(());
        }
        self.launch_shrink(dtype, site, rows, x, factor, segs, pad)
    }

    /// Writes rows `[row0, row0 + out)` × site `site`'s columns of `w` (`[*][site.ld]`).
    /// `state`: fp32 lowrank `bankᵀ` (`[rank][out]`) or lora B (`[out][rank]`); the direction
    /// factors are generated from the seeds of `segs`.
    #[allow(clippy::too_many_arguments)]
    pub fn adapter_pack<T: DeviceRepr>(
        &self,
        dtype: DType,
        site: &AugSite,
        out: usize,
        row0: usize,
        w: &mut CudaSlice<T>,
        state: &CudaSlice<f32>,
        segs: &DeviceSegments,
    ) -> Result<()> {
        let what = "adapter pack";
        check_dtype::<T>(dtype, what)?;
        check_site(site, what)?;
        fits_u32(row0 + out, "weight rows")?;
        if (row0 + out)
            .checked_mul(site.ld)
            .is_none_or(|n| n > w.len())
        {
            return Err(Error::Data(format!(
                "{what}: weight holds {} elements, rows [{row0}, {}) of stride {} do not fit",
                w.len(),
                row0 + out,
                site.ld
            )));
        }
        if state.len() < site.rank * out {
            return Err(Error::Data(format!(
                "{what}: state holds {} elements, expected {}×{out}",
                state.len(),
                site.rank
            )));
        }
        if segs.dirs != site.dirs {
            return Err(Error::Data(format!(
                "{what}: the site has {} direction sub-blocks but the segments name {} directions",
                site.dirs, segs.dirs
            )));
        }
        if out == 0 {
            return Ok(());
        }
        self.launch_pack(dtype, site, out, row0, w, state, segs)
    }
}

#[cfg(zo_kernels)]
impl CudaDevice {
    #[allow(clippy::too_many_arguments)]
    fn launch_shrink<T: DeviceRepr>(
        &self,
        dtype: DType,
        site: &AugSite,
        rows: usize,
        x: &mut CudaSlice<T>,
        factor: &CudaSlice<f32>,
        segs: &DeviceSegments,
        pad: Range<usize>,
    ) -> Result<()> {
        use super::device::cuda_err;
        use super::params::*;
        use cudarc::driver::{LaunchConfig, PushKernelArg};

        let p = ZoShrinkParams {
            rows: rows as u32,
            k: site.k as u32,
            ld: site.ld as u32,
            col0: site.col0 as u32,
            rank: site.rank as u32,
            dirs: site.dirs as u32,
            n_segs: segs.n_segs as u32,
            family: family_code(site.family),
            live: site.live as u32,
            dist: dist_code(site.dist),
            tensor: site.tensor_id,
            // cudarc allocations are 256-byte aligned; rows stay 16-byte aligned when ld is a
            // multiple of 16 bytes.
            vec: (site.ld * dtype.size()).is_multiple_of(16) as u32,
            pad_begin: pad.start as u32,
            pad_end: pad.end.max(pad.start) as u32,
            scale: site.scale,
            scale_exp: site.scale_exp,
        };
        let (grid, block, smem) = shrink_launch_config(rows, site.rank);
        let cfg = LaunchConfig {
            grid_dim: grid,
            block_dim: block,
            shared_mem_bytes: smem,
        };
        let name = match dtype {
            DType::F32 => "zo_adapter_shrink_f32",
            DType::Bf16 => "zo_adapter_shrink_bf16",
            DType::F16 => "zo_adapter_shrink_f16",
        };
        let func = self.function(name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(&p)
            .arg(x)
            .arg(factor)
            .arg(&segs.segs)
            .arg(&segs.seg_dir);
        // SAFETY: signature (ZoShrinkParams, T*, const float*, const ZoSegment*, const
        // uint32_t*); the checks above keep every access inside x (rows × ld), factor
        // (rank × k) and the n_segs segments and directions.
        unsafe { launch.launch(cfg) }.map_err(cuda_err(format!("launching {name}")))?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn launch_pack<T: DeviceRepr>(
        &self,
        dtype: DType,
        site: &AugSite,
        out: usize,
        row0: usize,
        w: &mut CudaSlice<T>,
        state: &CudaSlice<f32>,
        segs: &DeviceSegments,
    ) -> Result<()> {
        use super::device::cuda_err;
        use super::params::*;
        use cudarc::driver::{LaunchConfig, PushKernelArg};

        let p = ZoPackParams {
            out: out as u32,
            ld: site.ld as u32,
            row0: row0 as u32,
            col0: site.col0 as u32,
            rank: site.rank as u32,
            dirs: site.dirs as u32,
            family: family_code(site.family),
            dist: dist_code(site.dist),
            tensor: site.tensor_id,
            scale_exp: site.scale_exp,
        };
        let (grid, block, smem) = pack_launch_config(out, site.width());
        let cfg = LaunchConfig {
            grid_dim: grid,
            block_dim: block,
            shared_mem_bytes: smem,
        };
        let name = match dtype {
            DType::F32 => "zo_adapter_pack_f32",
            DType::Bf16 => "zo_adapter_pack_bf16",
            DType::F16 => "zo_adapter_pack_f16",
        };
        let func = self.function(name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch.arg(&p).arg(w).arg(state).arg(&segs.seeds);
        // SAFETY: signature (ZoPackParams, T*, const float*, const uint64_t*); the checks above
        // keep the writes inside w's rows [row0, row0 + out) and the reads inside state
        // (rank × out) and the dirs seeds.
        unsafe { launch.launch(cfg) }.map_err(cuda_err(format!("launching {name}")))?;
        Ok(())
    }
}

#[cfg(not(zo_kernels))]
impl CudaDevice {
    #[allow(clippy::too_many_arguments)]
    fn launch_shrink<T: DeviceRepr>(
        &self,
        _: DType,
        _: &AugSite,
        _: usize,
        _: &mut CudaSlice<T>,
        _: &CudaSlice<f32>,
        _: &DeviceSegments,
        _: Range<usize>,
    ) -> Result<()> {
        Err(Error::Cuda("this build has no CUDA kernels".into()))
    }

    #[allow(clippy::too_many_arguments)]
    fn launch_pack<T: DeviceRepr>(
        &self,
        _: DType,
        _: &AugSite,
        _: usize,
        _: usize,
        _: &mut CudaSlice<T>,
        _: &CudaSlice<f32>,
        _: &DeviceSegments,
    ) -> Result<()> {
        Err(Error::Cuda("this build has no CUDA kernels".into()))
    }
}

#[cfg(zo_kernels)]
// SAFETY: plain #[repr(C)] structs of integers and floats, passed to kernels by value.
unsafe impl DeviceRepr for super::params::ZoShrinkParams {}
#[cfg(zo_kernels)]
// SAFETY: as above.
unsafe impl DeviceRepr for super::params::ZoPackParams {}
