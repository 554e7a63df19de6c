//! The adapter family (csrc/adapter.cu, layout in csrc/params/adapter.h): the shrink and pack
//! of the K-augmented GEMM, through which the lowrank and lora perturbations ride inside a
//! Linear's GEMM as extra K columns of its input `x'` and weight `W'`. CPU twin:
//! [`crate::perturb::adapter`] (bit for bit).

use std::ops::Range;

use super::LaunchDims;
use crate::backend::cuda::params::*;
use crate::backend::cuda::{CudaDevice, DBuf, DType, View};
use crate::perturb::adapter::{AugFamily, AugSite};
use crate::perturb::Segment;
use crate::{Error, Result};

/// The most blocks a pack launches (it grid-strides beyond).
const PACK_MAX_GRID: u64 = 4096;

/// Blocks a shrink launch should keep to fill a GPU (two per SM of an H100).
const SHRINK_MIN_BLOCKS: usize = 264;

/// Rows per shrink block: lora generates Z_A once per block and direction, so it takes the
/// most rows a block holds; lowrank reads the factor through the cache, so it shares it over
/// as many rows as still leave [`SHRINK_MIN_BLOCKS`] blocks.
pub fn shrink_rows_per_block(family: AugFamily, rows: usize, rank: usize) -> usize {
    let max = ZO_SHRINK_ROWS as usize;
    if family == AugFamily::Lora {
        return max;
    }
    let rank_blocks = rank.div_ceil(ZO_SHRINK_RANKS as usize).max(1);
    (1..=max)
        .rev()
        .find(|&n| rows.div_ceil(n) * rank_blocks >= SHRINK_MIN_BLOCKS)
        .unwrap_or(1)
}

/// `zo_adapter_shrink_<T>`: one block per `rows_per_block` rows × ZO_SHRINK_RANKS rank
/// components.
pub fn shrink_launch_config(rows: usize, rank: usize, rows_per_block: usize) -> LaunchDims {
    LaunchDims {
        grid: (
            rows.div_ceil(rows_per_block.max(1)).max(1) as u32,
            rank.div_ceil(ZO_SHRINK_RANKS as usize).max(1) as u32,
            1,
        ),
        block: (ZO_SHRINK_THREADS, 1, 1),
        smem: 0,
    }
}

/// `zo_adapter_pack_<T>`: one thread per element of the site's `out × width` block.
pub fn pack_launch_config(out: usize, width: usize) -> LaunchDims {
    let n = (out * width) as u64;
    let grid = n.div_ceil(ZO_PACK_THREADS as u64).clamp(1, PACK_MAX_GRID) as u32;
    LaunchDims::linear(grid, ZO_PACK_THREADS)
}

/// Where a plan's segment tables sit in one buffer of 32-bit words: the `ZoSegment` records
/// (six words each), then each segment's direction index (one word), then, from an even word
/// so that the pack's 8-byte loads are aligned, the direction seeds as (lo, hi) words. The C
/// ABI documents this layout for tables its callers keep in their own memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentTable {
    pub n_segs: usize,
    pub dirs: usize,
}

impl SegmentTable {
    pub fn new(n_segs: usize, dirs: usize) -> Result<SegmentTable> {
        fits_u32(n_segs, "segments")?;
        fits_u32(dirs, "directions")?;
        Ok(SegmentTable { n_segs, dirs })
    }

    /// Word offset of the direction indices.
    pub fn seg_dir_at(&self) -> usize {
        6 * self.n_segs
    }

    /// Word offset of the seeds.
    pub fn seeds_at(&self) -> usize {
        (7 * self.n_segs).next_multiple_of(2)
    }

    pub fn words(&self) -> usize {
        self.seeds_at() + 2 * self.dirs
    }

    /// The table of `segs` (sorted, disjoint) with the direction of each: the position of its
    /// seed in `dir_seeds`.
    pub fn fill(segs: &[Segment], dir_seeds: &[u64]) -> Result<Vec<u32>> {
        let t = SegmentTable::new(segs.len(), dir_seeds.len())?;
        let dirs = crate::perturb::adapter::segment_directions(segs, dir_seeds)?;
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
        let mut words = segment_words(segs);
        words.extend(dirs);
        words.resize(t.seeds_at(), 0);
        words.extend(dir_seeds.iter().flat_map(|&x| [x as u32, (x >> 32) as u32]));
        debug_assert_eq!(words.len(), t.words());
        Ok(words)
    }
}

/// A plan's segments on the device with each segment's direction and the plan's direction
/// seeds (see [`crate::perturb::adapter::segment_directions`]), laid out as a
/// [`SegmentTable`]: uploaded once per plan and shared by every shrink, pack and prefix
/// attention of its forward, or a table in the caller's memory.
pub struct DeviceSegments {
    table: SegmentTable,
    /// Device address of the table.
    ptr: u64,
    /// The allocation behind `ptr` when uploaded.
    _buf: Option<DBuf>,
}

impl std::fmt::Debug for DeviceSegments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSegments")
            .field("segments", &self.table.n_segs)
            .field("dirs", &self.table.dirs)
            .finish_non_exhaustive()
    }
}

impl DeviceSegments {
    /// Uploads `segs` (sorted, disjoint) with the direction of each: the position of its seed
    /// in `dir_seeds`.
    pub fn upload(dev: &CudaDevice, segs: &[Segment], dir_seeds: &[u64]) -> Result<Self> {
        let mut words = SegmentTable::fill(segs, dir_seeds)?;
        // Never a zero-length copy; the counts say how much is meaningful.
        words.resize(words.len().max(2), 0);
        let buf = DBuf::from_words(dev, &words)?;
        Ok(DeviceSegments {
            table: SegmentTable::new(segs.len(), dir_seeds.len())?,
            ptr: buf.ptr(),
            _buf: Some(buf),
        })
    }

    /// A table of `table.words()` words that the caller laid out at device address `ptr`
    /// (8-byte aligned). The kernels read its entries as given: a row range or direction index
    /// out of place gives wrong values, never an access outside the table.
    ///
    /// # Safety
    /// `ptr` holds the whole table, on the device the launches run on, for as long as the
    /// value is used.
    pub unsafe fn external(ptr: u64, table: SegmentTable) -> DeviceSegments {
        DeviceSegments {
            table,
            ptr,
            _buf: None,
        }
    }

    pub fn len(&self) -> usize {
        self.table.n_segs
    }

    pub fn is_empty(&self) -> bool {
        self.table.n_segs == 0
    }

    /// Directions of the plan (q).
    pub fn dirs(&self) -> usize {
        self.table.dirs
    }

    /// The segments as the attention kernel reads them (the prefix family's perturbation).
    pub fn segments(&self) -> View<'_> {
        // SAFETY: the first 6·n_segs words of the table, which lives as long as self.
        unsafe { View::external(self.ptr, DType::F32, 6 * self.table.n_segs) }
    }

    fn seg_dir(&self) -> u64 {
        self.ptr + 4 * self.table.seg_dir_at() as u64
    }

    fn seeds(&self) -> u64 {
        self.ptr + 4 * self.table.seeds_at() as u64
    }
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

/// The plan's directions must fit the site's direction sub-blocks.
fn check_dirs(what: &str, site: &AugSite, segs: &DeviceSegments) -> Result<()> {
    if segs.dirs() > site.dirs {
        return Err(Error::Data(format!(
            "{what}: the site has {} direction sub-blocks but the segments name {} directions; \
             lay the weights out for at least the estimator's q",
            site.dirs,
            segs.dirs()
        )));
    }
    Ok(())
}

fn family_code(f: AugFamily) -> u32 {
    match f {
        AugFamily::LowRank => ZO_ADAPTER_LOWRANK,
        AugFamily::Lora => ZO_ADAPTER_LORA,
    }
}

/// Writes site `site`'s columns of `x` (`[rows][site.ld]` in the storage type, columns
/// `[0, site.k)` the activation) and zeroes the columns `pad` of every row (the group's
/// padding: pass it on one site's call, an empty range on the others). All `site.dirs`
/// direction sub-blocks are written (zero on rows no segment perturbs). `factor`: fp32
/// `[rank][k]`, lowrank `Vᵀ` or lora A.
pub fn shrink(
    dev: &CudaDevice,
    site: &AugSite,
    rows: usize,
    x: View<'_>,
    factor: View<'_>,
    segs: &DeviceSegments,
    pad: Range<usize>,
) -> Result<()> {
    let rpb = shrink_rows_per_block(site.family, rows, site.rank);
    shrink_tiled(dev, site, rows, x, factor, segs, pad, rpb)
}

/// [`shrink`] with `rows_per_block` (1..=ZO_SHRINK_ROWS) rows per block instead of the
/// launcher's choice: for the tests and benchmarks of the tiling (the result is the same
/// bits whatever the tiling).
#[allow(clippy::too_many_arguments)]
pub fn shrink_tiled(
    dev: &CudaDevice,
    site: &AugSite,
    rows: usize,
    x: View<'_>,
    factor: View<'_>,
    segs: &DeviceSegments,
    pad: Range<usize>,
    rows_per_block: usize,
) -> Result<()> {
    let what = "adapter shrink";
    if !(1..=ZO_SHRINK_ROWS as usize).contains(&rows_per_block) {
        return Err(Error::Data(format!(
            "{what}: {rows_per_block} rows per block; expected 1..={ZO_SHRINK_ROWS}"
        )));
    }
    check_site(site, what)?;
    fits_u32(rows, "rows")?;
    if rows.checked_mul(site.ld).is_none_or(|n| n > x.len) {
        return Err(Error::Data(format!(
            "{what}: x holds {} elements, expected {rows}×{}",
            x.len, site.ld
        )));
    }
    factor
        .expect("adapter shrink factor", DType::F32)?
        .need("adapter shrink factor", site.rank * site.k)?;
    check_dirs(what, site, segs)?;
    if !pad.is_empty() && (pad.start < site.k || pad.end > site.ld) {
        return Err(Error::Data(format!(
            "{what}: padding {pad:?} is outside the extra columns [{}, {})",
            site.k, site.ld
        )));
    }
    if rows == 0 {
        return Ok(());
    }
    let p = ZoShrinkParams {
        rows: rows as u32,
        k: site.k as u32,
        ld: site.ld as u32,
        col0: site.col0 as u32,
        rank: site.rank as u32,
        dirs: site.dirs as u32,
        n_segs: segs.len() as u32,
        family: family_code(site.family),
        live: site.live as u32,
        dist: dist_code(site.dist),
        tensor: site.tensor_id,
        // Allocations are at least 16-byte aligned; rows stay so when ld is a multiple of 16
        // bytes and the view starts on a 16-byte boundary.
        vec: ((site.ld * x.dtype.size()).is_multiple_of(16) && x.ptr().is_multiple_of(16)) as u32,
        pad_begin: pad.start as u32,
        pad_end: pad.end.max(pad.start) as u32,
        scale: site.scale,
        scale_exp: site.scale_exp,
        rows_per_block: rows_per_block as u32,
        reserved: 0,
    };
    let ptrs = [x.ptr(), factor.ptr(), segs.ptr, segs.seg_dir()];
    // SAFETY: (ZoShrinkParams, T* x, const float* factor, const ZoSegment* segs, const u32*
    // seg_dir); the checks above keep every access inside x (rows × ld), factor (rank × k) and
    // the n_segs segments and directions.
    unsafe {
        dev.launch(
            typed("zo_adapter_shrink", x.dtype),
            shrink_launch_config(rows, site.rank, rows_per_block),
            &p,
            &ptrs,
        )
    }
}

/// Writes rows `[row0, row0 + out)` × site `site`'s columns of `w` (`[*][site.ld]` in the
/// storage type): sub-block 0 and the sub-blocks of the plan's `segs.dirs()` directions (the
/// others, unused by the plan, keep what they held). `state`: fp32 lowrank `bankᵀ`
/// (`[rank][out]`) or lora B (`[out][rank]`); the direction factors are generated from the
/// seeds of `segs`.
pub fn pack(
    dev: &CudaDevice,
    site: &AugSite,
    out: usize,
    row0: usize,
    w: View<'_>,
    state: View<'_>,
    segs: &DeviceSegments,
) -> Result<()> {
    let what = "adapter pack";
    check_site(site, what)?;
    fits_u32(row0 + out, "weight rows")?;
    if (row0 + out).checked_mul(site.ld).is_none_or(|n| n > w.len) {
        return Err(Error::Data(format!(
            "{what}: weight holds {} elements, rows [{row0}, {}) of stride {} do not fit",
            w.len,
            row0 + out,
            site.ld
        )));
    }
    state
        .expect("adapter pack state", DType::F32)?
        .need("adapter pack state", site.rank * out)?;
    check_dirs(what, site, segs)?;
    if out == 0 {
        return Ok(());
    }
    let p = ZoPackParams {
        out: out as u32,
        ld: site.ld as u32,
        row0: row0 as u32,
        col0: site.col0 as u32,
        rank: site.rank as u32,
        dirs: segs.dirs() as u32,
        family: family_code(site.family),
        dist: dist_code(site.dist),
        tensor: site.tensor_id,
        scale_exp: site.scale_exp,
    };
    // SAFETY: (ZoPackParams, T* w, const float* state, const u64* seeds); the checks above keep
    // the writes inside w's rows [row0, row0 + out) and the reads inside state (rank × out)
    // and the dirs seeds.
    unsafe {
        dev.launch(
            typed("zo_adapter_pack", w.dtype),
            pack_launch_config(out, site.rank * (segs.dirs() + 1)),
            &p,
            &[w.ptr(), state.ptr(), segs.seeds()],
        )
    }
}
