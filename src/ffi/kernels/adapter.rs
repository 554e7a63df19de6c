//! The shrink and pack of the K-augmented GEMM, through which the lowrank and lora
//! perturbations ride inside a Linear's GEMM as extra K columns (`kernels::adapter`), and the
//! segment table they (and the prefix attention) read.

use std::ffi::c_void;

use super::*;

/// Rows `[row_start, row_end)` of the packed batch that run under one perturbed variant:
/// its direction seed and `scale` = sign · ε. The input of `zo_kernel_segment_table_fill`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct zo_kernel_segment {
    pub row_start: usize,
    pub row_end: usize,
    pub seed: u64,
    pub scale: f32,
}

/// Writes `*bytes`, the size of the segment table of `n_segments` segments and `n_dirs`
/// directions. The table is 32-bit words: at word 0, `n_segments` records of six words
/// (row_start, row_end, seed bits 0..32, seed bits 32..64, scale as float bits, 0); at word
/// 6·n_segments, each segment's direction index (the position of its seed among the
/// directions); from the next even word, the `n_dirs` direction seeds as (low, high) word
/// pairs. Place it 8-byte aligned.
///
/// # Safety
/// `bytes` points at a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn zo_kernel_segment_table_size(
    n_segments: usize,
    n_dirs: usize,
    bytes: *mut usize,
) -> zo_status {
    guard(|| {
        with_cuda!({
            // SAFETY: the caller's contract.
            let out = unsafe { crate::ffi::args::out(bytes, "bytes") }?;
            *out = 4 * segment_table(n_segments, n_dirs)?.words();
            Ok(())
        })
    })
}

/// Fills the segment table (host memory, `table_bytes` bytes at `table`, 4-byte aligned) for
/// `segments` (sorted by row, disjoint, rows below 2³²) and the step's direction seeds
/// `dir_seeds` (each segment's seed must be among them; the + and − segments of a direction
/// share it). `ZO_ERR_BUFFER_TOO_SMALL` when the table needs more than `table_bytes` (see
/// `zo_kernel_segment_table_size`), `ZO_ERR_ARGUMENT` for segments out of order or a seed that
/// is not a direction's. Copy the table to where the kernels run; they read it when they run,
/// so a captured graph can be replayed over a table rewritten for the next step with the same
/// counts.
///
/// # Safety
/// `segments` holds `n_segments`, `dir_seeds` `n_dirs` elements (NULL when 0); `table` holds
/// `table_bytes` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn zo_kernel_segment_table_fill(
    segments: *const zo_kernel_segment,
    n_segments: usize,
    dir_seeds: *const u64,
    n_dirs: usize,
    table: *mut c_void,
    table_bytes: usize,
) -> zo_status {
    guard(|| {
        with_cuda!({
            use crate::backend::cuda::kernels::adapter::SegmentTable;
            use crate::ffi::args;
            // SAFETY: the caller's contract (for every unsafe call below).
            let segs = unsafe { args::slice(segments, n_segments, "segments") }?;
            let seeds = unsafe { args::slice(dir_seeds, n_dirs, "dir_seeds") }?;
            let need = segment_table(n_segments, n_dirs)?.words();
            if table_bytes < 4 * need {
                return Err(FfiError::new(
                    ZO_ERR_BUFFER_TOO_SMALL,
                    format!(
                        "the segment table of {n_segments} segments and {n_dirs} directions \
                         needs {} bytes; table_bytes is {table_bytes}",
                        4 * need
                    ),
                ));
            }
            let out = unsafe { args::slice_mut(table.cast::<u32>(), need, "table") }?;
            let segs: Vec<crate::perturb::Segment> = segs
                .iter()
                .map(|s| crate::perturb::Segment {
                    rows: s.row_start..s.row_end,
                    variant: 0,
                    seed: s.seed,
                    scale: s.scale,
                })
                .collect();
            let words = SegmentTable::fill(&segs, seeds)
                .map_err(|e| FfiError::new(ZO_ERR_ARGUMENT, e.to_string()))?;
            out.copy_from_slice(&words);
            Ok(())
        })
    })
}

#[cfg(feature = "cuda")]
fn segment_table(
    n_segments: usize,
    n_dirs: usize,
) -> FfiResult<crate::backend::cuda::kernels::adapter::SegmentTable> {
    crate::backend::cuda::kernels::adapter::SegmentTable::new(n_segments, n_dirs)
        .map_err(|e| FfiError::new(ZO_ERR_ARGUMENT, e.to_string()))
}

/// `zo_kernel_adapter_site.family`: lowrank, `h = x·V` (factor Vᵀ, f32 `[rank][k]`), state
/// `bankᵀ` (f32 `[rank][out]`), directions Uᵀ_d.
pub const ZO_ADAPTER_LOWRANK: i32 = 0;
/// `zo_kernel_adapter_site.family`: lora, `h = x·(A + sc·Z_A)ᵀ` (factor A, f32 `[rank][k]`),
/// state B (f32 `[out][rank]`), directions Z_B,d.
pub const ZO_ADAPTER_LORA: i32 = 1;

/// One Linear's column block of a K-augmented GEMM `y = x'·W'ᵀ`, where x' (`[rows][ld]`) and
/// W' (`[out_total][ld]`) are in the GEMM's storage dtype. A group of G sites sharing one
/// input x (q/k/v, gate/up, or a single Linear) uses `ld = K_aug = round_up(k + G·(dirs+1)·rank,
/// 8)`; site g owns columns `[col0, col0 + (dirs+1)·rank)` with `col0 = k + g·(dirs+1)·rank`,
/// in sub-blocks of `rank` columns: sub-block 0 the trained state on every row, sub-block
/// 1 + d direction d's perturbation on the rows of its segments. Columns
/// `[k + G·(dirs+1)·rank, ld)` are padding (zeroed by one site's shrink).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct zo_kernel_adapter_site {
    /// `sizeof(zo_kernel_adapter_site)`.
    pub struct_size: usize,
    /// `ZO_ADAPTER_LOWRANK` (the default) or `ZO_ADAPTER_LORA`.
    pub family: i32,
    /// `ZO_DTYPE_*` of x' and W' (default `ZO_DTYPE_BF16`).
    pub dtype: i32,
    /// Input width K: columns `[0, k)` of x' are the activation.
    pub k: usize,
    /// Row stride of x' and W' (K_aug).
    pub ld: usize,
    /// First column of the site's block.
    pub col0: usize,
    /// The factors' rank (default 1).
    pub rank: usize,
    /// Direction sub-blocks the site's columns hold (at least the step's q; default 1).
    pub dirs: usize,
    /// Non-zero when the trained state is (LoZO bank since the last merge, LoRA B): sub-block
    /// 0 is then written, else zeros (default 1).
    pub live: i32,
    /// `ZO_DIST_*` of the directions (default `ZO_DIST_GAUSSIAN`).
    pub dist: i32,
    /// The Linear's weight's RNG tensor id.
    pub tensor_id: u32,
    /// e: sub-block 0 of x' is scaled by 2^-e and of W' by 2^e, exact power-of-two scalings
    /// that keep a tiny state out of fp16's subnormals; in [-126, 126], 0 (the default) for
    /// f32 and bf16.
    pub scale_exp: i32,
    /// lowrank s (1 or 1/√rank), lora α/rank (default 1).
    pub scale: f32,
}

/// Defaults of `zo_kernel_adapter_site`.
#[no_mangle]
pub extern "C" fn zo_kernel_adapter_site_default_params() -> zo_kernel_adapter_site {
    zo_kernel_adapter_site {
        struct_size: std::mem::size_of::<zo_kernel_adapter_site>(),
        family: ZO_ADAPTER_LOWRANK,
        dtype: ZO_DTYPE_BF16,
        k: 0,
        ld: 0,
        col0: 0,
        rank: 1,
        dirs: 1,
        live: 1,
        dist: ZO_DIST_GAUSSIAN,
        tensor_id: 0,
        scale_exp: 0,
        scale: 1.0,
    }
}

/// The shrink: writes the site's columns of x' (`x`, `x_len` elements of the site's dtype,
/// `[rows][ld]`, columns `[0, k)` read) from the factor (f32 `[rank][k]`, `factor_len`
/// floats): on row t, h = the row's shrink (see `ZO_ADAPTER_*`), sub-block 0 = `scale · h ·
/// 2^-e` (zeros when not live), sub-block 1 + d = `scale · h · sc_t` on the rows of direction
/// d's segments (zeros elsewhere), sc_t the row's segment scale. Zeroes columns
/// `[pad_begin, pad_end)` of every row (pass the group's padding on one site's call,
/// `pad_begin == pad_end` on the others). Bit for bit zo's CPU twin.
///
/// `segment_table` is the table of `zo_kernel_segment_table_fill` for `n_segments` segments
/// and `n_dirs` directions (n_dirs ≤ the site's dirs), on the target's device, 8-byte aligned
/// (NULL when both counts are 0).
///
/// # Safety
/// The pointers hold what their counts say on the target's device (see `zo_kernel_target`);
/// `target` and `site` point at valid structs.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn zo_kernel_adapter_shrink(
    target: *const zo_kernel_target,
    site: *const zo_kernel_adapter_site,
    rows: usize,
    x: *mut c_void,
    x_len: usize,
    factor: *const f32,
    factor_len: usize,
    segment_table: *const c_void,
    n_segments: usize,
    n_dirs: usize,
    pad_begin: usize,
    pad_end: usize,
) -> zo_status {
    guard(|| {
        with_cuda!({
            // SAFETY: the caller's contract (for every unsafe call below).
            let (dev, s) = unsafe { imp::site(target, site) }?;
            let x = unsafe { call::view(x, s.dtype, x_len, "x") }?;
            let f = unsafe { call::view(factor.cast(), DType::F32, factor_len, "factor") }?;
            let segs = unsafe { imp::segments(segment_table, n_segments, n_dirs) }?;
            call::launched(crate::backend::cuda::kernels::adapter::shrink(
                &dev,
                &s.site,
                rows,
                x,
                f,
                &segs,
                pad_begin..pad_end,
            ))
        })
    })
}

/// The pack: writes rows `[row0, row0 + out)` × the site's columns of W' (`w`, `w_len`
/// elements of the site's dtype, `[*][ld]`): sub-block 0 = the state · 2^e (`state`, f32,
/// `state_len` floats: bankᵀ `[rank][out]` or B `[out][rank]`), sub-block 1 + d = direction
/// d's Uᵀ_d or Z_B,d generated from its seed, for the table's `n_dirs` directions (other
/// sub-blocks keep what they hold). The segment table as for `zo_kernel_adapter_shrink`.
/// Bit for bit zo's CPU twin.
///
/// # Safety
/// As `zo_kernel_adapter_shrink`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn zo_kernel_adapter_pack(
    target: *const zo_kernel_target,
    site: *const zo_kernel_adapter_site,
    out: usize,
    row0: usize,
    w: *mut c_void,
    w_len: usize,
    state: *const f32,
    state_len: usize,
    segment_table: *const c_void,
    n_segments: usize,
    n_dirs: usize,
) -> zo_status {
    guard(|| {
        with_cuda!({
            // SAFETY: the caller's contract (for every unsafe call below).
            let (dev, s) = unsafe { imp::site(target, site) }?;
            let w = unsafe { call::view(w, s.dtype, w_len, "w") }?;
            let st = unsafe { call::view(state.cast(), DType::F32, state_len, "state") }?;
            let segs = unsafe { imp::segments(segment_table, n_segments, n_dirs) }?;
            call::launched(crate::backend::cuda::kernels::adapter::pack(
                &dev, &s.site, out, row0, w, st, &segs,
            ))
        })
    })
}

#[cfg(feature = "cuda")]
pub(super) mod imp {
    use std::ffi::c_void;

    use super::*;
    use crate::backend::cuda::kernels::adapter::DeviceSegments;
    use crate::backend::cuda::CudaDevice;
    use crate::perturb::adapter::{AugFamily, AugSite};

    pub(in crate::ffi::kernels) struct Site {
        pub site: AugSite,
        pub dtype: DType,
    }

    /// The device and the site, its codes checked.
    ///
    /// # Safety
    /// `target` and `site` are NULL or point at valid structs.
    pub(in crate::ffi::kernels) unsafe fn site(
        target: *const zo_kernel_target,
        site: *const zo_kernel_adapter_site,
    ) -> FfiResult<(CudaDevice, Site)> {
        // SAFETY: the caller's contract.
        let p = unsafe { crate::ffi::args::params(site, "zo_kernel_adapter_site") }?;
        let family = match p.family {
            ZO_ADAPTER_LOWRANK => AugFamily::LowRank,
            ZO_ADAPTER_LORA => AugFamily::Lora,
            other => {
                return Err(FfiError::new(
                    ZO_ERR_ARGUMENT,
                    format!("family is {other}: expected ZO_ADAPTER_LOWRANK or ZO_ADAPTER_LORA"),
                ))
            }
        };
        let s = Site {
            site: AugSite {
                family,
                k: p.k,
                ld: p.ld,
                col0: p.col0,
                rank: p.rank,
                dirs: p.dirs,
                live: p.live != 0,
                scale: p.scale,
                scale_exp: p.scale_exp,
                tensor_id: p.tensor_id,
                dist: dist(p.dist)?,
            },
            dtype: dtype(p.dtype)?,
        };
        // SAFETY: the caller's contract.
        Ok((unsafe { call::open(target) }?, s))
    }

    /// The caller's segment table.
    ///
    /// # Safety
    /// A non-NULL `table` holds the table of these counts on the target's device.
    pub(in crate::ffi::kernels) unsafe fn segments(
        table: *const c_void,
        n_segments: usize,
        n_dirs: usize,
    ) -> FfiResult<DeviceSegments> {
        let t = super::segment_table(n_segments, n_dirs)?;
        // SAFETY: the caller's contract.
        let v = unsafe { call::view(table, DType::F32, t.words(), "segment_table") }?;
        // The pack reads the seeds as 8-byte words.
        if !v.ptr().is_multiple_of(8) {
            return Err(FfiError::new(
                ZO_ERR_ARGUMENT,
                format!("segment_table ({table:p}) is not aligned to 8 bytes"),
            ));
        }
        // SAFETY: as above.
        Ok(unsafe { DeviceSegments::external(v.ptr(), t) })
    }
}
