//! The attention family (csrc/attention.cu, csrc/params/attention.h): RoPE of q and k in
//! place, the KV-cache write, and paged causal prefill attention with an optional trainable
//! prefix whose perturbation is generated as the kernel loads it.
//!
//! Data layout: q, k and v are fp32 column slices of the fused qkv GEMM output (see
//! [`QkvLayout`]); the K and V caches are fp32 `[num_pages][PAGE][kv_heads][head_dim]`; the
//! attention output is the o-projection's GEMM input, storage dtype, `[rows][out_ld]` with head
//! `h` at column `h·head_dim`.
//!
//! CPU twins: `backend::cpu::ops::apply_rope` (bit-identical) and
//! `backend::cpu::attention::causal_attention(_with_prefix)` (within the attention tolerance).

use super::LaunchDims;
use crate::backend::cuda::params::*;
use crate::backend::cuda::{CudaDevice, DType, View};
use crate::model::Param;
use crate::perturb::{role, Dist};
use crate::{Error, Result};

/// Tokens per KV-cache page.
pub const PAGE: usize = ZO_ATTN_PAGE as usize;
/// Warps per prefill block, query rows per warp, keys per shared-memory tile.
const WARPS: u32 = ZO_ATTN_WARPS;
const ROWS_PER_WARP: u32 = ZO_ATTN_ROWS;
const TILE_KEYS: u32 = ZO_ATTN_KEYS;
/// Query rows ((token, head) pairs) of one prefill block.
const BLOCK_ROWS: u32 = WARPS * ROWS_PER_WARP;
/// Threads of the elementwise kernels, and a grid cap (they loop grid-stride beyond it).
const ELEMENT_THREADS: u32 = 256;
const MAX_GRID: u32 = 4096;

/// Where q, k and v sit in one fp32 buffer: row `r`, head `h` of q starts at element
/// `r·ld + q_col + h·head_dim` (k and v likewise with `kv_heads` heads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QkvLayout {
    pub rows: usize,
    pub ld: usize,
    pub q_col: usize,
    pub k_col: usize,
    pub v_col: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl QkvLayout {
    /// The fused qkv GEMM output `[rows][q_dim + 2·kv_dim]`: q, then k, then v.
    pub fn fused(rows: usize, heads: usize, kv_heads: usize, head_dim: usize) -> QkvLayout {
        let (q_dim, kv_dim) = (heads * head_dim, kv_heads * head_dim);
        QkvLayout {
            rows,
            ld: q_dim + 2 * kv_dim,
            q_col: 0,
            k_col: q_dim,
            v_col: q_dim + kv_dim,
            heads,
            kv_heads,
            head_dim,
        }
    }
}

/// `(heads_per_block, tokens_per_block, head_chunks)` of the prefill kernel: a block takes up
/// to [`BLOCK_ROWS`] heads of one kv group and as many tokens as fill its rows; groups larger
/// than a block are split into `head_chunks` blocks along grid y.
pub fn attention_tiling(heads: usize, kv_heads: usize) -> (u32, u32, u32) {
    let group = (heads / kv_heads.max(1)).max(1) as u32;
    let hb = group.min(BLOCK_ROWS);
    (hb, BLOCK_ROWS / hb, group.div_ceil(hb))
}

/// Dynamic shared memory of a prefill block: Q `[rows][hd]`, K `[keys][hd]` (swizzled; the
/// generic instance pads rows to hd + 1), V `[keys][hd]`, fp32. Head dims 64 and 128 stay
/// within the 48 KiB a launch gets without opting in.
fn attention_smem(head_dim: usize) -> u32 {
    let hd = head_dim as u32;
    let k_stride = if fixed_head_dim(head_dim) { hd } else { hd + 1 };
    4 * (BLOCK_ROWS * hd + TILE_KEYS * k_stride + TILE_KEYS * hd)
}

/// Head dims with their own kernel instance (compile-time loops, swizzled K tile).
fn fixed_head_dim(head_dim: usize) -> bool {
    matches!(head_dim, 64 | 128)
}

/// Launch geometry of the prefill kernel.
pub fn attention_launch_config(
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    n_seqs: usize,
    max_seqlen: usize,
) -> LaunchDims {
    let (_, bt, chunks) = attention_tiling(heads, kv_heads);
    let tiles = (max_seqlen as u32).div_ceil(bt);
    LaunchDims {
        grid: (tiles, kv_heads as u32 * chunks, n_seqs as u32),
        block: (WARPS * 32, 1, 1),
        smem: attention_smem(head_dim),
    }
}

/// Launch geometry of `zo_rope`: one thread per (row, head, rotation pair), grid-stride.
pub fn rope_launch_config(
    rows: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> LaunchDims {
    let total = (rows * (heads + kv_heads) * (head_dim / 2)) as u64;
    let grid = total
        .div_ceil(ELEMENT_THREADS as u64)
        .clamp(1, MAX_GRID as u64) as u32;
    LaunchDims::linear(grid, ELEMENT_THREADS)
}

/// Launch geometry of `zo_kv_write`: one block per row, grid-stride.
pub fn kv_write_launch_config(rows: usize) -> LaunchDims {
    let grid = (rows as u32).clamp(1, MAX_GRID);
    LaunchDims::linear(grid, 128)
}

/// Largest head dimension the prefill kernels take.
pub const MAX_HEAD_DIM: usize = 256;
/// CUDA grid y/z limit.
const MAX_GRID_YZ: usize = 65_535;

fn kv_width(l: &QkvLayout) -> usize {
    l.kv_heads * l.head_dim
}

fn check_heads(l: &QkvLayout, what: &str) -> Result<()> {
    if l.heads == 0 || l.kv_heads == 0 || l.head_dim == 0 {
        return Err(Error::Data(format!(
            "{what}: {} heads, {} kv heads, head_dim {}; all must be positive",
            l.heads, l.kv_heads, l.head_dim
        )));
    }
    if !l.heads.is_multiple_of(l.kv_heads) {
        return Err(Error::Data(format!(
            "{what}: {} heads is not a multiple of {} kv heads",
            l.heads, l.kv_heads
        )));
    }
    Ok(())
}

/// Checks that column range `[col, col + width)` fits a row and that `len` elements hold
/// every row.
fn check_cols(l: &QkvLayout, what: &str, name: &str, col: usize, width: usize) -> Result<()> {
    if col + width > l.ld {
        return Err(Error::Data(format!(
            "{what}: {name} columns [{col}, {}) run past the row stride {}",
            col + width,
            l.ld
        )));
    }
    Ok(())
}

/// Elements a buffer needs to hold every row up to the last used column.
fn check_len(l: &QkvLayout, what: &str, len: usize, end_col: usize) -> Result<()> {
    let need = match l.rows {
        0 => 0,
        r => (r - 1) * l.ld + end_col,
    };
    if len < need {
        return Err(Error::Data(format!(
            "{what}: the qkv buffer holds {len} elements; {} rows of stride {} need {need}",
            l.rows, l.ld
        )));
    }
    Ok(())
}

/// Per-sequence tables of a prefill batch, in device memory.
#[derive(Debug, Clone, Copy)]
pub struct SeqTables<'a> {
    /// `[n_seqs + 1]`: sequence `s` owns packed rows `cu_seqlens[s] .. cu_seqlens[s + 1]`.
    pub cu_seqlens: View<'a>,
    /// `[n_seqs]`: cached tokens each sequence attends to before its own (a shared prompt, or
    /// the tokens a decoder has already fed).
    pub ctx_lens: View<'a>,
    /// `[n_seqs]`: the block-table position of each sequence's first own token. None: own
    /// tokens follow the cached ones (`ctx_len`). A sequence reading another's prompt starts
    /// its own tokens on a fresh page (`ceil(ctx_len / PAGE)·PAGE`), so sequences sharing the
    /// prompt's partially filled last page never write into it.
    pub own_starts: Option<View<'a>>,
    /// `[n_seqs][max_pages]`: page ids; cached token `c` of sequence `s` is at table position
    /// `c` and own token `i` at `own_start + i`; table position `p` is in page
    /// `block_tables[s·max_pages + p / PAGE]`, offset `p % PAGE`.
    pub block_tables: View<'a>,
    pub max_pages: usize,
    /// At least the longest sequence's own token count (it sizes the grid; rows of longer
    /// sequences would be left unwritten).
    pub max_seqlen: usize,
}

/// One layer's trainable prefix, fp32 `[tokens][kv_heads·head_dim]` each.
#[derive(Debug, Clone, Copy)]
pub struct DevicePrefix<'a> {
    pub k: View<'a>,
    pub v: View<'a>,
    pub tokens: usize,
    /// The layer: Z comes from `Param::PrefixKey(layer)` / `Param::PrefixValue(layer)`.
    pub layer: usize,
    pub dist: Dist,
    /// Perturbed segments (sorted, disjoint); a sequence whose first row lies in one reads
    /// `fma(scale, z, x)`, the others the prefix as stored. None: no sequence is perturbed.
    pub segments: Option<View<'a>>,
}

/// Everything [`attention_prefill`] reads.
#[derive(Debug, Clone, Copy)]
pub struct PrefillAttention<'a> {
    /// Queries: the q columns of this buffer (k and v columns are not read; they reach the
    /// kernel through the caches after [`kv_write`]).
    pub qkv: View<'a>,
    pub layout: QkvLayout,
    pub k_cache: View<'a>,
    pub v_cache: View<'a>,
    pub seqs: SeqTables<'a>,
    pub prefix: Option<DevicePrefix<'a>>,
    /// Scores are `(q·k)·scale` (Llama: 1/√head_dim; OPT: 1, its q is pre-scaled).
    pub scale: f32,
}

/// The prefill instance for a head dimension and output dtype: fixed-size loops for 64 and
/// 128, a generic one for any other head_dim up to 256.
pub fn attention_kernel_name(head_dim: usize, dtype: DType) -> &'static str {
    let base = match head_dim {
        64 => "zo_attn_prefill_hd64",
        128 => "zo_attn_prefill_hd128",
        _ => "zo_attn_prefill_any",
    };
    typed(base, dtype)
}

/// Pages of a K or V cache with rows of `kv_width`, after checking the two caches agree.
fn cache_pages(what: &str, k: usize, v: usize, kv_width: usize) -> Result<usize> {
    let page = PAGE * kv_width;
    if k != v || !k.is_multiple_of(page) {
        return Err(Error::Data(format!(
            "{what}: K cache of {k} and V cache of {v} elements; both must be the same whole \
             number of pages of {PAGE}×{kv_width}"
        )));
    }
    let pages = k / page;
    if pages * PAGE >= u32::MAX as usize {
        return Err(Error::Unsupported(format!(
            "{what}: {pages} cache pages; slot ids must fit 32 bits"
        )));
    }
    Ok(pages)
}

fn check_u32(what: &str, name: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::Unsupported(format!(
            "{what}: {name} = {v} does not fit the kernel's 32 bits"
        ))
    })
}

/// Host-side checks of [`rope_in_place`].
pub fn check_rope(layout: &QkvLayout, qkv_len: usize, table_len: (usize, usize)) -> Result<()> {
    const WHAT: &str = "rope";
    check_heads(layout, WHAT)?;
    let l = layout;
    if !l.head_dim.is_multiple_of(2) {
        return Err(Error::Data(format!(
            "{WHAT}: head_dim {} is odd",
            l.head_dim
        )));
    }
    let (qw, kw) = (l.heads * l.head_dim, kv_width(l));
    check_cols(l, WHAT, "q", l.q_col, qw)?;
    check_cols(l, WHAT, "k", l.k_col, kw)?;
    if l.q_col < l.k_col + kw && l.k_col < l.q_col + qw {
        return Err(Error::Data(format!(
            "{WHAT}: q columns [{}, {}) overlap k columns [{}, {})",
            l.q_col,
            l.q_col + qw,
            l.k_col,
            l.k_col + kw
        )));
    }
    check_len(l, WHAT, qkv_len, (l.q_col + qw).max(l.k_col + kw))?;
    let need = l.rows * l.head_dim / 2;
    if table_len.0 < need || table_len.1 < need {
        return Err(Error::Data(format!(
            "{WHAT}: cos/sin tables of {} and {} elements; [{}][{}] needs {need}",
            table_len.0,
            table_len.1,
            l.rows,
            l.head_dim / 2
        )));
    }
    check_u32(WHAT, "ld", l.ld)?;
    check_u32(WHAT, "rows", l.rows)?;
    Ok(())
}

/// Host-side checks of [`kv_write`]; returns the number of cache slots.
pub fn check_kv_write(
    layout: &QkvLayout,
    qkv_len: usize,
    slots_len: usize,
    cache_len: (usize, usize),
) -> Result<usize> {
    const WHAT: &str = "kv write";
    check_heads(layout, WHAT)?;
    let l = layout;
    let kw = kv_width(l);
    check_cols(l, WHAT, "k", l.k_col, kw)?;
    check_cols(l, WHAT, "v", l.v_col, kw)?;
    check_len(l, WHAT, qkv_len, (l.k_col + kw).max(l.v_col + kw))?;
    if slots_len < l.rows {
        return Err(Error::Data(format!(
            "{WHAT}: {slots_len} slots for {} rows",
            l.rows
        )));
    }
    check_u32(WHAT, "ld", l.ld)?;
    check_u32(WHAT, "rows", l.rows)?;
    Ok(cache_pages(WHAT, cache_len.0, cache_len.1, kw)? * PAGE)
}

/// Element counts of the buffers of a prefill call, for [`check_attention`].
#[derive(Debug, Clone, Copy)]
pub struct AttentionLens {
    pub qkv: usize,
    pub k_cache: usize,
    pub v_cache: usize,
    pub cu_seqlens: usize,
    pub ctx_lens: usize,
    /// Entries of the own-start table, if one is given.
    pub own_starts: Option<usize>,
    pub block_tables: usize,
    /// (keys, values) of the prefix.
    pub prefix: Option<(usize, usize)>,
    pub out: usize,
}

/// Host-side checks of [`attention_prefill`] (`prefix_tokens` is read only when
/// `lens.prefix` is set); returns `(n_seqs, num_pages)`.
#[allow(clippy::too_many_arguments)]
pub fn check_attention(
    layout: &QkvLayout,
    max_pages: usize,
    max_seqlen: usize,
    prefix_tokens: usize,
    lens: &AttentionLens,
    out_ld: usize,
    out_elem: usize,
    dtype: DType,
) -> Result<(usize, usize)> {
    const WHAT: &str = "prefill attention";
    check_heads(layout, WHAT)?;
    let l = layout;
    if l.head_dim > MAX_HEAD_DIM {
        return Err(Error::Unsupported(format!(
            "{WHAT}: head_dim {} exceeds {MAX_HEAD_DIM}",
            l.head_dim
        )));
    }
    let (qw, kw) = (l.heads * l.head_dim, kv_width(l));
    check_cols(l, WHAT, "q", l.q_col, qw)?;
    check_len(l, WHAT, lens.qkv, l.q_col + qw)?;
    let pages = cache_pages(WHAT, lens.k_cache, lens.v_cache, kw)?;
    let n_seqs = lens.cu_seqlens.checked_sub(1).ok_or_else(|| {
        Error::Data(format!(
            "{WHAT}: cu_seqlens is empty; it needs n_seqs + 1 entries"
        ))
    })?;
    if lens.ctx_lens != n_seqs {
        return Err(Error::Data(format!(
            "{WHAT}: {} ctx lengths for {n_seqs} sequences",
            lens.ctx_lens
        )));
    }
    if let Some(n) = lens.own_starts.filter(|&n| n != n_seqs) {
        return Err(Error::Data(format!(
            "{WHAT}: {n} own starts for {n_seqs} sequences"
        )));
    }
    if max_pages == 0 || lens.block_tables != n_seqs * max_pages {
        return Err(Error::Data(format!(
            "{WHAT}: block tables of {} entries; {n_seqs} sequences × {max_pages} pages (at \
             least one) expected",
            lens.block_tables
        )));
    }
    if let Some((k, v)) = lens.prefix {
        if prefix_tokens == 0 || k != prefix_tokens * kw || v != k {
            return Err(Error::Data(format!(
                "{WHAT}: prefix keys of {k} and values of {v} elements; {prefix_tokens} \
                 positions (at least one) of {kw} expected"
            )));
        }
    }
    // Key counts and table positions (prefix + cached or own start + own) stay in 32 bits.
    let keys = prefix_tokens as u64 + (max_pages * PAGE) as u64 + l.rows as u64;
    if keys >= u32::MAX as u64 {
        return Err(Error::Unsupported(format!(
            "{WHAT}: up to {keys} keys per sequence; the kernel counts them in 32 bits"
        )));
    }
    check_u32(WHAT, "q ld", l.ld)?;
    check_u32(WHAT, "out ld", out_ld)?;
    check_u32(WHAT, "max_seqlen", max_seqlen)?;
    if out_ld < qw {
        return Err(Error::Data(format!(
            "{WHAT}: output row stride {out_ld} is narrower than heads·head_dim = {qw}"
        )));
    }
    let need = match l.rows {
        0 => 0,
        r => (r - 1) * out_ld + qw,
    };
    if lens.out < need {
        return Err(Error::Data(format!(
            "{WHAT}: the output holds {} elements; {} rows of stride {out_ld} need {need}",
            lens.out, l.rows
        )));
    }
    if out_elem != dtype.size() {
        return Err(Error::Data(format!(
            "{WHAT}: output elements of {out_elem} bytes for dtype {dtype}"
        )));
    }
    let gy = attention_launch_config(l.heads, l.kv_heads, l.head_dim, n_seqs, 1)
        .grid
        .1;
    if gy as usize > MAX_GRID_YZ || n_seqs > MAX_GRID_YZ {
        return Err(Error::Unsupported(format!(
            "{WHAT}: {n_seqs} sequences and {gy} head blocks; the grid allows {MAX_GRID_YZ} each"
        )));
    }
    Ok((n_seqs, pages))
}

/// Kernel parameters of `zo_rope` for a layout already checked by [`check_rope`].
pub fn rope_params(l: &QkvLayout) -> ZoRopeParams {
    ZoRopeParams {
        rows: l.rows as u32,
        ld: l.ld as u32,
        q_col: l.q_col as u32,
        q_heads: l.heads as u32,
        k_col: l.k_col as u32,
        k_heads: l.kv_heads as u32,
        head_dim: l.head_dim as u32,
        reserved: 0,
    }
}

/// Kernel parameters of `zo_kv_write` for a layout already checked by [`check_kv_write`].
pub fn kv_write_params(l: &QkvLayout, num_slots: usize) -> ZoKvWriteParams {
    ZoKvWriteParams {
        rows: l.rows as u32,
        ld: l.ld as u32,
        k_col: l.k_col as u32,
        v_col: l.v_col as u32,
        kv_width: kv_width(l) as u32,
        num_slots: num_slots as u32,
    }
}

/// Kernel parameters of the prefill kernels for arguments already checked by
/// [`check_attention`]. `prefix`: (tokens, layer, dist, n_segments).
#[allow(clippy::too_many_arguments)]
pub fn attention_params(
    l: &QkvLayout,
    n_seqs: usize,
    max_pages: usize,
    num_pages: usize,
    out_ld: usize,
    scale: f32,
    prefix: Option<(usize, usize, Dist, usize)>,
) -> ZoAttnParams {
    let (hb, bt, chunks) = attention_tiling(l.heads, l.kv_heads);
    let (tokens, layer, dist, n_segments) = prefix.unwrap_or((0, 0, Dist::Gaussian, 0));
    ZoAttnParams {
        rows: l.rows as u32,
        n_seqs: n_seqs as u32,
        heads: l.heads as u32,
        kv_heads: l.kv_heads as u32,
        head_dim: l.head_dim as u32,
        q_ld: l.ld as u32,
        q_col: l.q_col as u32,
        out_ld: out_ld as u32,
        max_pages: max_pages as u32,
        num_pages: num_pages as u32,
        heads_per_block: hb,
        tokens_per_block: bt,
        head_chunks: chunks,
        scale,
        prefix_len: tokens as u32,
        n_segments: n_segments as u32,
        prefix_dist: match dist {
            Dist::Gaussian => ZO_DIST_GAUSSIAN,
            Dist::Rademacher => ZO_DIST_RADEMACHER,
        },
        prefix_role: role::PREFIX,
        prefix_key_tensor: Param::PrefixKey(layer).tensor_id(),
        prefix_value_tensor: Param::PrefixValue(layer).tensor_id(),
    }
}

/// Rotates the q and k columns of `qkv` in place (Llama family, HF `rotate_half`), with
/// `cos`/`sin` `[rows][head_dim/2]` computed on the host by `rope_tables` for each row's
/// position; bit-identical to `ops::apply_rope`.
pub fn rope_in_place(
    dev: &CudaDevice,
    qkv: View<'_>,
    layout: &QkvLayout,
    cos: View<'_>,
    sin: View<'_>,
) -> Result<()> {
    for (what, v) in [("rope qkv", &qkv), ("rope cos", &cos), ("rope sin", &sin)] {
        v.expect(what, DType::F32)?;
    }
    check_rope(layout, qkv.len, (cos.len, sin.len))?;
    if layout.rows == 0 {
        return Ok(());
    }
    let l = layout;
    // SAFETY: (ZoRopeParams, float* x, const float* cos, const float* sin); check_rope bounded
    // every index the kernel forms by the buffer lengths.
    unsafe {
        dev.launch(
            "zo_rope",
            rope_launch_config(l.rows, l.heads, l.kv_heads, l.head_dim),
            &rope_params(l),
            &[qkv.ptr(), cos.ptr(), sin.ptr()],
        )
    }
}

/// Copies each row's k and v columns of `qkv` into cache slot `slots[row]` (`page·PAGE +
/// offset`); rows with a slot past the caches (e.g. `u32::MAX`) are skipped.
pub fn kv_write(
    dev: &CudaDevice,
    qkv: View<'_>,
    layout: &QkvLayout,
    slots: View<'_>,
    k_cache: View<'_>,
    v_cache: View<'_>,
) -> Result<()> {
    for (what, v) in [
        ("kv write qkv", &qkv),
        ("K cache", &k_cache),
        ("V cache", &v_cache),
    ] {
        v.expect(what, DType::F32)?;
    }
    let num_slots = check_kv_write(layout, qkv.len, slots.len, (k_cache.len, v_cache.len))?;
    if layout.rows == 0 {
        return Ok(());
    }
    // SAFETY: (ZoKvWriteParams, const float* qkv, const u32* slots, float* k_cache, float*
    // v_cache); rows and columns are checked, slots past num_slots are skipped.
    unsafe {
        dev.launch(
            "zo_kv_write",
            kv_write_launch_config(layout.rows),
            &kv_write_params(layout, num_slots),
            &[qkv.ptr(), slots.ptr(), k_cache.ptr(), v_cache.ptr()],
        )
    }
}

/// Causal prefill attention of every packed row over its sequence's prefix, cached context and
/// own tokens (in that order; see [`SeqTables`] for where each is paged), written in `out`'s storage type into `out` `[rows][out_ld]`,
/// head `h` at column `h·head_dim` (other columns untouched).
///
/// Device tables are trusted for memory safety only as far as indices go: out-of-range rows
/// are clamped, page ids past the caches read as zeros.
pub fn attention_prefill(
    dev: &CudaDevice,
    a: &PrefillAttention<'_>,
    out: View<'_>,
    out_ld: usize,
) -> Result<()> {
    for (what, v) in [
        ("attention q", &a.qkv),
        ("K cache", &a.k_cache),
        ("V cache", &a.v_cache),
    ] {
        v.expect(what, DType::F32)?;
    }
    let lens = AttentionLens {
        qkv: a.qkv.len,
        k_cache: a.k_cache.len,
        v_cache: a.v_cache.len,
        cu_seqlens: a.seqs.cu_seqlens.len,
        ctx_lens: a.seqs.ctx_lens.len,
        own_starts: a.seqs.own_starts.map(|v| v.len),
        block_tables: a.seqs.block_tables.len,
        prefix: a.prefix.map(|p| (p.k.len, p.v.len)),
        out: out.len,
    };
    let dtype = out.dtype;
    let (n_seqs, pages) = check_attention(
        &a.layout,
        a.seqs.max_pages,
        a.seqs.max_seqlen,
        a.prefix.map_or(0, |p| p.tokens),
        &lens,
        out_ld,
        dtype.size(),
        dtype,
    )?;
    let segments = a.prefix.and_then(|p| p.segments);
    // Segments are uploaded as the 32-bit words of ZoSegment records.
    let n_segments = segments.map_or(0, |s| s.len * 4 / std::mem::size_of::<ZoSegment>());
    if n_seqs == 0 || a.seqs.max_seqlen == 0 || a.layout.rows == 0 {
        return Ok(());
    }
    let l = &a.layout;
    let params = attention_params(
        l,
        n_seqs,
        a.seqs.max_pages,
        pages,
        out_ld,
        a.scale,
        a.prefix.map(|p| (p.tokens, p.layer, p.dist, n_segments)),
    );
    let ptrs = [
        a.qkv.ptr(),
        a.k_cache.ptr(),
        a.v_cache.ptr(),
        a.seqs.cu_seqlens.ptr(),
        a.seqs.ctx_lens.ptr(),
        a.seqs.own_starts.map_or(0, |v| v.ptr()),
        a.seqs.block_tables.ptr(),
        a.prefix.map_or(0, |p| p.k.ptr()),
        a.prefix.map_or(0, |p| p.v.ptr()),
        segments.map_or(0, |s| s.ptr()),
        out.ptr(),
    ];
    // SAFETY: (ZoAttnParams, const float* q, const float* k_cache, const float* v_cache, const
    // u32* cu_seqlens, const u32* ctx_lens, const u32* own_starts, const u32* block_tables,
    // const float* prefix_k, const float* prefix_v, const ZoSegment* segments, T* out);
    // check_attention bounded the host-known shapes and the kernel clamps the device-side
    // tables. Absent prefix, segment and own-start buffers are null pointers the kernel never
    // reads.
    unsafe {
        dev.launch(
            attention_kernel_name(l.head_dim, dtype),
            attention_launch_config(l.heads, l.kv_heads, l.head_dim, n_seqs, a.seqs.max_seqlen),
            &params,
            &ptrs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiling_fills_the_block_rows() {
        // OPT (no GQA): 32 tokens of one head; Llama-3 (group 8): 4 tokens × 8 heads;
        // group 3: 10 tokens × 3 heads (2 rows idle); MQA of 48 heads: 2 chunks of 32.
        assert_eq!(attention_tiling(12, 12), (1, 32, 1));
        assert_eq!(attention_tiling(32, 4), (8, 4, 1));
        assert_eq!(attention_tiling(6, 2), (3, 10, 1));
        assert_eq!(attention_tiling(48, 1), (32, 1, 2));
        let d = attention_launch_config(32, 4, 128, 5, 33);
        assert_eq!((d.grid, d.block.0), ((9, 4, 5), 128));
        assert_eq!(d.smem, 48 * 1024);
        assert_eq!(attention_launch_config(4, 4, 64, 1, 1).smem, 24 * 1024);
        assert_eq!(
            attention_launch_config(4, 4, 80, 1, 1).smem,
            4 * (32 * 80 * 2 + 32 * 81)
        );
    }
    #[test]
    fn kernel_names_by_head_dim() {
        assert_eq!(
            attention_kernel_name(64, DType::Bf16),
            "zo_attn_prefill_hd64_bf16"
        );
        assert_eq!(
            attention_kernel_name(128, DType::F32),
            "zo_attn_prefill_hd128_f32"
        );
        assert_eq!(
            attention_kernel_name(80, DType::F16),
            "zo_attn_prefill_any_f16"
        );
    }

    #[test]
    fn bad_shapes_are_refused() {
        let l = QkvLayout::fused(4, 6, 4, 8);
        assert!(check_rope(&l, 1000, (64, 64))
            .unwrap_err()
            .to_string()
            .contains("multiple"));
        let l = QkvLayout::fused(4, 4, 2, 8);
        let n = 4 * l.ld;
        check_rope(&l, n, (16, 16)).unwrap();
        assert!(check_rope(&l, n - l.ld + 47, (16, 16)).is_err());
        assert!(check_rope(&l, n, (15, 16)).is_err());
        let overlap = QkvLayout { k_col: 8, ..l };
        assert!(check_rope(&overlap, n, (16, 16))
            .unwrap_err()
            .to_string()
            .contains("overlap"));
        let page = PAGE * 16;
        assert_eq!(check_kv_write(&l, n, 4, (2 * page, 2 * page)).unwrap(), 32);
        assert!(check_kv_write(&l, n, 3, (2 * page, 2 * page)).is_err());
        assert!(check_kv_write(&l, n, 4, (2 * page, page)).is_err());
        let lens = AttentionLens {
            qkv: n,
            k_cache: 2 * page,
            v_cache: 2 * page,
            cu_seqlens: 3,
            ctx_lens: 2,
            own_starts: None,
            block_tables: 4,
            prefix: None,
            out: 4 * 32,
        };
        assert_eq!(
            check_attention(&l, 2, 3, 0, &lens, 32, 2, DType::Bf16).unwrap(),
            (2, 2)
        );
        assert!(check_attention(&l, 2, 3, 0, &lens, 32, 4, DType::Bf16).is_err());
        assert!(check_attention(&l, 2, 3, 0, &lens, 31, 2, DType::Bf16).is_err());
        assert!(check_attention(&l, 3, 3, 0, &lens, 32, 2, DType::Bf16).is_err());
        let own = |n| AttentionLens {
            own_starts: Some(n),
            ..lens
        };
        check_attention(&l, 2, 3, 0, &own(2), 32, 2, DType::Bf16).unwrap();
        assert!(check_attention(&l, 2, 3, 0, &own(3), 32, 2, DType::Bf16).is_err());
        let bad_prefix = AttentionLens {
            prefix: Some((16, 15)),
            ..lens
        };
        assert!(check_attention(&l, 2, 3, 1, &bad_prefix, 32, 2, DType::Bf16).is_err());
        let wide = QkvLayout::fused(4, 2, 2, 258);
        assert!(check_attention(&wide, 2, 3, 0, &lens, 32, 2, DType::Bf16).is_err());
    }
}
