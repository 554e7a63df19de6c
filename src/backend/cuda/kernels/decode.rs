//! The decode family (csrc/decode.cu, csrc/params/decode.h): paged attention of one query row
//! per sequence over its (perturbed) prefix and cached tokens, split across CUDA blocks along
//! the keys (flash-decoding) with a deterministic combine, and the token pick from each row's
//! full-vocabulary logits (greedy or seeded Gumbel-max).
//!
//! Data layout: as the attention family's (see [`super::attention`]): q is a column slice of an
//! fp32 buffer (`QkvLayout`, one row per sequence), the K and V caches are fp32
//! `[num_pages][PAGE][kv_heads][head_dim]` read through `[n_seqs][max_pages]` block tables, and
//! the output is storage dtype `[n_seqs][out_ld]` with head `h` at column `h·head_dim`.
//!
//! CPU twins: `backend::cpu::attention::causal_attention_with_prefix` with the query as the
//! last row of its sequence (within the attention tolerance), and `backend::decode::pick` (bit
//! for bit, noise included).

use super::attention::{DevicePrefix, QkvLayout, MAX_HEAD_DIM, PAGE};
use super::loss::Logits;
use super::{check_rows, check_u32, LaunchDims};
use crate::backend::cuda::params::*;
use crate::backend::cuda::{CudaDevice, DType, View};
use crate::backend::decode::{Sampling, SAMPLE_TENSOR};
use crate::model::Param;
use crate::perturb::role;
use crate::rng::Stream;
use crate::{Error, Result};

/// Keys per split: fixed, so that a sequence's result does not depend on its batch.
pub const SPLIT_KEYS: usize = ZO_DECODE_SPLIT_KEYS as usize;
const WARPS: u32 = ZO_DECODE_WARPS;
/// Query heads of one kv head that a block serves at most.
const BLOCK_HEADS: u32 = ZO_DECODE_HEADS;
/// CUDA grid y/z limit.
const MAX_GRID_YZ: usize = 65_535;
/// Grid cap of the pick (it loops grid-stride beyond it).
const MAX_PICK_GRID: usize = 65_535;

/// `(heads_per_block, head_chunks)`: a block takes up to [`BLOCK_HEADS`] heads of one kv group;
/// larger groups are split into `head_chunks` blocks along grid y.
pub fn decode_tiling(heads: usize, kv_heads: usize) -> (u32, u32) {
    let group = (heads / kv_heads.max(1)).max(1) as u32;
    let hb = group.min(BLOCK_HEADS);
    (hb, group.div_ceil(hb))
}

/// Splits along grid x for sequences of up to `prefix_tokens + max_ctx` keys (at least one).
pub fn decode_splits(prefix_tokens: usize, max_ctx: usize) -> usize {
    (prefix_tokens + max_ctx).div_ceil(SPLIT_KEYS).max(1)
}

/// Dynamic shared memory of a decode block: Q `[HEADS][hd]` and, per warp and head, the max,
/// the sum and the accumulator `[hd]`, fp32. Head dim 256 stays within the 48 KiB a launch
/// gets without opting in.
fn decode_smem(head_dim: usize) -> u32 {
    let hd = head_dim as u32;
    4 * (BLOCK_HEADS * hd + WARPS * BLOCK_HEADS * (2 + hd))
}

/// Launch geometry of the split kernel.
pub fn decode_launch_config(
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    n_seqs: usize,
    splits: usize,
) -> LaunchDims {
    let (_, chunks) = decode_tiling(heads, kv_heads);
    LaunchDims {
        grid: (splits as u32, kv_heads as u32 * chunks, n_seqs as u32),
        block: (WARPS * 32, 1, 1),
        smem: decode_smem(head_dim),
    }
}

/// Launch geometry of the combine kernel: one block per (head, sequence).
pub fn combine_launch_config(heads: usize, n_seqs: usize) -> LaunchDims {
    LaunchDims {
        grid: (heads as u32, n_seqs as u32, 1),
        block: (ZO_DECODE_COMBINE_THREADS, 1, 1),
        smem: 0,
    }
}

/// fp32 elements of the workspace a launch with `splits` splits needs: accumulators and
/// (max, sum) of every (sequence, head, split); none with one split.
pub fn decode_workspace_len(n_seqs: usize, heads: usize, head_dim: usize, splits: usize) -> usize {
    if splits <= 1 {
        0
    } else {
        n_seqs * heads * splits * (head_dim + 2)
    }
}

/// The split-kernel instance for a head dimension and output dtype: fixed-size loops for 64
/// and 128, a generic one for any other head_dim up to 256.
pub fn decode_kernel_name(head_dim: usize, dtype: DType) -> &'static str {
    let base = match head_dim {
        64 => "zo_attn_decode_hd64",
        128 => "zo_attn_decode_hd128",
        _ => "zo_attn_decode_any",
    };
    typed(base, dtype)
}

pub fn combine_kernel_name(dtype: DType) -> &'static str {
    typed("zo_attn_decode_combine", dtype)
}

/// The pick kernel (fp32 logits, u32 ids: one instance).
pub const PICK_KERNEL: &str = "zo_pick";

/// Everything [`decode_attention`] reads.
#[derive(Debug, Clone, Copy)]
pub struct DecodeAttention<'a> {
    /// Queries: the q columns of this buffer, row `s` for sequence `s` (`layout.rows` is the
    /// number of sequences; k and v columns are not read, they reach the kernel through the
    /// caches, the sequence's own token included).
    pub qkv: View<'a>,
    pub layout: QkvLayout,
    pub k_cache: View<'a>,
    pub v_cache: View<'a>,
    /// `[n_seqs]`: cached positions each query attends to, its own token included (the query
    /// at position `L` has `ctx_lens = L + 1`). Clamped to `max_pages·PAGE`.
    pub ctx_lens: View<'a>,
    /// `[n_seqs][max_pages]`: position `p` of sequence `s` is in page
    /// `block_tables[s·max_pages + p / PAGE]`, offset `p % PAGE`; page ids past the caches read
    /// as zeros.
    pub block_tables: View<'a>,
    pub max_pages: usize,
    /// At least the largest `ctx_lens` entry: it sizes the split grid and the workspace. A
    /// longer context is still attended in full, its keys past the grid all going to the last
    /// split (slower, and then rounded differently from a correctly sized launch).
    pub max_ctx: usize,
    /// The layer's trainable prefix; its segments' rows are sequence indices (one row each).
    pub prefix: Option<DevicePrefix<'a>>,
    /// Scores are `(q·k)·scale`.
    pub scale: f32,
}

impl DecodeAttention<'_> {
    /// Splits of this launch.
    pub fn splits(&self) -> usize {
        let ctx = self.max_ctx.min(self.max_pages * PAGE);
        decode_splits(self.prefix.map_or(0, |p| p.tokens), ctx)
    }

    /// fp32 elements the `workspace` of [`decode_attention`] must hold.
    pub fn workspace_len(&self) -> usize {
        let l = &self.layout;
        decode_workspace_len(l.rows, l.heads, l.head_dim, self.splits())
    }
}

fn bad<T>(msg: String) -> Result<T> {
    Err(Error::Data(format!("decode attention: {msg}")))
}

/// Index buffers are u32 words (tagged with a four-byte dtype).
fn check_words(what: &str, v: &View<'_>, n: usize) -> Result<()> {
    if v.dtype.size() != 4 {
        return Err(Error::Data(format!(
            "{what}: a buffer of {} elements where u32 words are needed",
            v.dtype
        )));
    }
    v.need(what, n)?;
    Ok(())
}

/// Host-side checks of [`decode_attention`]; returns `(n_seqs, num_pages, splits)`. Every
/// extent the kernels touch is bounded by the views' lengths (the device-side ctx_lens and
/// page ids are clamped by the kernel).
pub fn check_decode(
    a: &DecodeAttention<'_>,
    workspace: &View<'_>,
    out: &View<'_>,
    out_ld: usize,
) -> Result<(usize, usize, usize)> {
    let l = &a.layout;
    for (what, v) in [
        ("decode attention q", &a.qkv),
        ("K cache", &a.k_cache),
        ("V cache", &a.v_cache),
        ("decode workspace", workspace),
    ] {
        v.expect(what, DType::F32)?;
    }
    if l.heads == 0 || l.kv_heads == 0 || l.head_dim == 0 {
        return bad(format!(
            "{} heads, {} kv heads, head_dim {}; all must be positive",
            l.heads, l.kv_heads, l.head_dim
        ));
    }
    if !l.heads.is_multiple_of(l.kv_heads) {
        return bad(format!(
            "{} heads is not a multiple of {} kv heads",
            l.heads, l.kv_heads
        ));
    }
    if l.head_dim > MAX_HEAD_DIM {
        return Err(Error::Unsupported(format!(
            "decode attention: head_dim {} exceeds {MAX_HEAD_DIM}",
            l.head_dim
        )));
    }
    let n_seqs = l.rows;
    let (qw, kw) = (l.heads * l.head_dim, l.kv_heads * l.head_dim);
    check_rows("decode attention q", a.qkv.len, n_seqs, l.q_col + qw, l.ld)?;
    let page = PAGE * kw;
    if a.k_cache.len != a.v_cache.len || !a.k_cache.len.is_multiple_of(page) {
        return bad(format!(
            "K cache of {} and V cache of {} elements; both must be the same whole number of \
             pages of {PAGE}×{kw}",
            a.k_cache.len, a.v_cache.len
        ));
    }
    let pages = a.k_cache.len / page;
    check_words("decode ctx lens", &a.ctx_lens, n_seqs)?;
    if a.max_pages == 0 {
        return bad("max_pages is 0; a block table row needs at least one page".into());
    }
    let table = n_seqs.checked_mul(a.max_pages);
    match table {
        Some(n) => check_words("decode block tables", &a.block_tables, n)?,
        None => return bad(format!("{n_seqs} block tables of {} pages", a.max_pages)),
    }
    let prefix_tokens = match &a.prefix {
        None => 0,
        Some(p) => {
            if p.tokens == 0 || p.k.len != p.tokens * kw || p.v.len != p.k.len {
                return bad(format!(
                    "prefix keys of {} and values of {} elements; {} positions (at least one) \
                     of {kw} expected",
                    p.k.len, p.v.len, p.tokens
                ));
            }
            p.k.expect("prefix keys", DType::F32)?;
            p.v.expect("prefix values", DType::F32)?;
            if let Some(s) = &p.segments {
                let rec = std::mem::size_of::<ZoSegment>() / 4;
                if !s.len.is_multiple_of(rec) {
                    return bad(format!(
                        "segments of {} words; records are {rec} words each",
                        s.len
                    ));
                }
                check_words("decode segments", s, s.len)?;
            }
            p.tokens
        }
    };
    // Key counts (prefix + the table's capacity, rounded up to a split) stay in 32 bits, and
    // so do the slot ids.
    let keys = prefix_tokens as u64 + (a.max_pages * PAGE) as u64 + SPLIT_KEYS as u64;
    if keys >= u32::MAX as u64 || (pages * PAGE) as u64 >= u32::MAX as u64 {
        return Err(Error::Unsupported(format!(
            "decode attention: up to {keys} keys per sequence over {pages} pages; the kernel \
             counts them in 32 bits"
        )));
    }
    check_u32("decode q row stride", l.ld)?;
    check_u32("decode q column", l.q_col)?;
    check_u32("decode max_ctx", a.max_ctx)?;
    if out_ld < qw {
        return bad(format!(
            "output row stride {out_ld} is narrower than heads·head_dim = {qw}"
        ));
    }
    check_rows("decode attention output", out.len, n_seqs, qw, out_ld)?;
    let splits = a.splits();
    let need = a.workspace_len();
    if workspace.len < need {
        return bad(format!(
            "the workspace holds {} elements; {n_seqs} sequences × {} heads × {splits} splits \
             need {need}",
            workspace.len, l.heads
        ));
    }
    let gy = decode_launch_config(l.heads, l.kv_heads, l.head_dim, n_seqs, splits)
        .grid
        .1;
    if gy as usize > MAX_GRID_YZ || n_seqs > MAX_GRID_YZ {
        return Err(Error::Unsupported(format!(
            "decode attention: {n_seqs} sequences and {gy} head blocks; the grid allows \
             {MAX_GRID_YZ} each"
        )));
    }
    check_u32("decode splits", splits)?;
    Ok((n_seqs, pages, splits))
}

/// Kernel parameters of the decode kernels for arguments already checked by [`check_decode`].
pub fn decode_params(
    a: &DecodeAttention<'_>,
    num_pages: usize,
    splits: usize,
    out_ld: usize,
    n_segments: usize,
) -> ZoDecodeParams {
    let l = &a.layout;
    let (hb, chunks) = decode_tiling(l.heads, l.kv_heads);
    let (tokens, layer, dist) = a
        .prefix
        .map_or((0, 0, crate::perturb::Dist::Gaussian), |p| {
            (p.tokens, p.layer, p.dist)
        });
    ZoDecodeParams {
        n_seqs: l.rows as u32,
        heads: l.heads as u32,
        kv_heads: l.kv_heads as u32,
        head_dim: l.head_dim as u32,
        q_ld: l.ld as u32,
        q_col: l.q_col as u32,
        out_ld: out_ld as u32,
        max_pages: a.max_pages as u32,
        num_pages: num_pages as u32,
        heads_per_block: hb,
        head_chunks: chunks,
        splits: splits as u32,
        scale: a.scale,
        prefix_len: tokens as u32,
        n_segments: n_segments as u32,
        prefix_dist: dist_code(dist),
        prefix_role: role::PREFIX,
        prefix_key_tensor: Param::PrefixKey(layer).tensor_id(),
        prefix_value_tensor: Param::PrefixValue(layer).tensor_id(),
        reserved: 0,
    }
}

/// Attention of each sequence's query row over its prefix and its `ctx_lens[s]` cached
/// positions, written in `out`'s storage type into `out` `[n_seqs][out_ld]`, head `h` at
/// column `h·head_dim` (other columns untouched). `workspace`: fp32, at least
/// [`DecodeAttention::workspace_len`] elements (none when the keys fit one split); it holds
/// the splits' partial results between the two launches, so it must not alias the other
/// buffers. A sequence with no keys at all gets zeros.
pub fn decode_attention(
    dev: &CudaDevice,
    a: &DecodeAttention<'_>,
    workspace: View<'_>,
    out: View<'_>,
    out_ld: usize,
) -> Result<()> {
    let (n_seqs, pages, splits) = check_decode(a, &workspace, &out, out_ld)?;
    if n_seqs == 0 {
        return Ok(());
    }
    let segments = a.prefix.and_then(|p| p.segments);
    let n_segments = segments.map_or(0, |s| s.len * 4 / std::mem::size_of::<ZoSegment>());
    let l = &a.layout;
    let dtype = out.dtype;
    let params = decode_params(a, pages, splits, out_ld, n_segments);
    let ptrs = [
        a.qkv.ptr(),
        a.k_cache.ptr(),
        a.v_cache.ptr(),
        a.ctx_lens.ptr(),
        a.block_tables.ptr(),
        a.prefix.map_or(0, |p| p.k.ptr()),
        a.prefix.map_or(0, |p| p.v.ptr()),
        segments.map_or(0, |s| s.ptr()),
        workspace.ptr(),
        out.ptr(),
    ];
    // SAFETY: (ZoDecodeParams, const float* q, const float* k_cache, const float* v_cache,
    // const u32* ctx_lens, const u32* block_tables, const float* prefix_k, const float*
    // prefix_v, const ZoSegment* segments, float* ws, T* out); check_decode bounded every
    // host-known extent, the kernel clamps ctx_lens to the block table and skips page ids past
    // the caches. Absent prefix, segment and workspace buffers are never read (the workspace
    // only when splits > 1, when check_decode required it).
    unsafe {
        dev.launch(
            decode_kernel_name(l.head_dim, dtype),
            decode_launch_config(l.heads, l.kv_heads, l.head_dim, n_seqs, splits),
            &params,
            &ptrs,
        )?;
    }
    if splits == 1 {
        return Ok(());
    }
    // SAFETY: (ZoDecodeParams, const u32* ctx_lens, const float* ws, T* out), the extents
    // checked above; it reads the partials the launch before wrote (same stream).
    unsafe {
        dev.launch(
            combine_kernel_name(dtype),
            combine_launch_config(l.heads, n_seqs),
            &params,
            &[a.ctx_lens.ptr(), workspace.ptr(), out.ptr()],
        )
    }
}

/// Where each row's sampling noise is drawn: `seq[r]` (the stream role) and `pos[r]` (its
/// position), u32 `[rows]` each; see `decode::gumbel`.
#[derive(Debug, Clone, Copy)]
pub struct NoiseRows<'a> {
    pub seq: View<'a>,
    pub pos: View<'a>,
}

/// Kernel parameters of `zo_pick` (`sampling` already checked by [`pick_tokens`]).
pub fn pick_params(rows: usize, vocab: usize, ld: usize, sampling: Sampling) -> ZoPickParams {
    let (mode, seed, inv_temperature) = match sampling {
        Sampling::Greedy => (ZO_PICK_GREEDY, 0, 1.0),
        // The host's pick forms 1/T the same way, so the scaled logits agree bit for bit.
        Sampling::Seeded { seed, temperature } => (ZO_PICK_GUMBEL, seed, 1.0 / temperature),
    };
    ZoPickParams {
        stream: Stream::new(seed, SAMPLE_TENSOR, 0).into(),
        rows: rows as u32,
        vocab: vocab as u32,
        ld: ld as u32,
        mode,
        inv_temperature,
        reserved: 0,
    }
}

/// The token picked from each row of `logits` into `out` (u32 `[rows]`), equal to
/// `decode::pick(row, sampling, seq[r], pos[r])` bit for bit: the argmax over the vocabulary
/// (ties to the lowest id, NaN never wins), of `fma(logit, 1/T, G)` when sampling. `noise` is
/// required for [`Sampling::Seeded`] and ignored for greedy picks.
pub fn pick_tokens(
    dev: &CudaDevice,
    logits: Logits<'_>,
    sampling: Sampling,
    noise: Option<NoiseRows<'_>>,
    out: View<'_>,
) -> Result<()> {
    logits.data.expect("pick logits", DType::F32)?;
    check_rows(
        "pick logits",
        logits.data.len,
        logits.rows,
        logits.vocab,
        logits.ld,
    )?;
    let rows = logits.rows;
    check_words("picked tokens", &out, rows)?;
    if rows > 0 && logits.vocab == 0 {
        return Err(Error::Data("pick: logits with an empty vocabulary".into()));
    }
    let noise = match sampling {
        Sampling::Greedy => None,
        Sampling::Seeded { temperature, .. } => {
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(Error::Data(format!(
                    "pick: sampling temperature {temperature}; expected a finite value > 0"
                )));
            }
            let n = noise.ok_or_else(|| {
                Error::Data("pick: seeded sampling needs each row's seq and pos".into())
            })?;
            check_words("pick seq", &n.seq, rows)?;
            check_words("pick pos", &n.pos, rows)?;
            Some(n)
        }
    };
    if rows == 0 {
        return Ok(());
    }
    let p = pick_params(rows, logits.vocab, logits.ld, sampling);
    let ptrs = [
        logits.data.ptr(),
        noise.map_or(0, |n| n.seq.ptr()),
        noise.map_or(0, |n| n.pos.ptr()),
        out.ptr(),
    ];
    // SAFETY: (ZoPickParams, const float* logits, const u32* seq, const u32* pos, u32* out);
    // extents checked above; seq and pos are only read by Gumbel picks, which have them.
    unsafe {
        dev.launch(
            PICK_KERNEL,
            LaunchDims::linear(rows.min(MAX_PICK_GRID) as u32, ZO_PICK_THREADS),
            &p,
            &ptrs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiling_and_splits() {
        // OPT: one head per block; Llama-3 (group 8): 8 heads; MQA of 48 heads: 6 chunks.
        assert_eq!(decode_tiling(12, 12), (1, 1));
        assert_eq!(decode_tiling(32, 4), (8, 1));
        assert_eq!(decode_tiling(6, 2), (3, 1));
        assert_eq!(decode_tiling(48, 1), (8, 6));
        assert_eq!(decode_splits(0, 0), 1);
        assert_eq!(decode_splits(0, SPLIT_KEYS), 1);
        assert_eq!(decode_splits(1, SPLIT_KEYS), 2);
        assert_eq!(decode_splits(5, 4000), 32);
        let d = decode_launch_config(32, 8, 128, 5, 3);
        assert_eq!((d.grid, d.block.0), ((3, 8, 5), 128));
        assert!(decode_smem(MAX_HEAD_DIM) <= 48 * 1024);
        assert_eq!(decode_workspace_len(4, 8, 64, 1), 0);
        assert_eq!(decode_workspace_len(4, 8, 64, 3), 4 * 8 * 3 * 66);
    }

    #[test]
    fn kernel_names() {
        assert_eq!(
            decode_kernel_name(64, DType::Bf16),
            "zo_attn_decode_hd64_bf16"
        );
        assert_eq!(
            decode_kernel_name(128, DType::F32),
            "zo_attn_decode_hd128_f32"
        );
        assert_eq!(decode_kernel_name(80, DType::F16), "zo_attn_decode_any_f16");
        assert_eq!(
            combine_kernel_name(DType::Bf16),
            "zo_attn_decode_combine_bf16"
        );
    }

    #[test]
    fn pick_params_take_the_hosts_reciprocal() {
        let s = Sampling::Seeded {
            seed: 0x1234_5678_9abc,
            temperature: 0.7,
        };
        let p = pick_params(3, 10, 12, s);
        assert_eq!(p.mode, ZO_PICK_GUMBEL);
        assert_eq!(p.inv_temperature.to_bits(), (1.0f32 / 0.7).to_bits());
        assert_eq!((p.stream.seed_lo, p.stream.seed_hi), (0x5678_9abc, 0x1234));
        assert_eq!(p.stream.tensor, SAMPLE_TENSOR);
        assert_eq!(pick_params(1, 1, 1, Sampling::Greedy).mode, ZO_PICK_GREEDY);
    }
}
