//! Paged causal prefill attention with the trainable prefix and its perturbation on the
//! caller's buffers (`kernels::attention`).

use std::ffi::c_void;

use super::*;

/// Tokens per KV-cache page. A cache is f32 `[num_pages][ZO_KERNEL_ATTN_PAGE][kv_heads]
/// [head_dim]`: block-table position p of a sequence lives in page `block_tables[s * max_pages
/// + p / ZO_KERNEL_ATTN_PAGE]`, slot `p % ZO_KERNEL_ATTN_PAGE`.
pub const ZO_KERNEL_ATTN_PAGE: usize = 16;

const _: () = assert!(ZO_KERNEL_ATTN_PAGE == crate::backend::params::ZO_ATTN_PAGE as usize);

/// Shapes and scalars of `zo_kernel_attention_prefill`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct zo_kernel_attention_params {
    /// `sizeof(zo_kernel_attention_params)`.
    pub struct_size: usize,
    /// `ZO_DTYPE_*` of the output (default `ZO_DTYPE_BF16`): the o-projection's GEMM input.
    pub out_dtype: i32,
    /// Query heads, key/value heads (a divisor of heads) and the head dimension (1..=256).
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Packed new tokens of every sequence.
    pub rows: usize,
    /// The queries: row r, head h starts at `q[r * q_ld + q_col + h * head_dim]` (f32; `q_ld`
    /// 0, the default, means heads·head_dim), e.g. the q columns of a fused qkv output.
    pub q_ld: usize,
    pub q_col: usize,
    /// Row stride of the output (0, the default, means heads·head_dim); head h of row r is
    /// written at `out[r * out_ld + h * head_dim]`, other columns are left as they are.
    pub out_ld: usize,
    /// Row length of the block table (at least 1).
    pub max_pages: usize,
    /// At least the longest sequence's own token count (it sizes the grid; the rows of a
    /// longer sequence would be left unwritten).
    pub max_seqlen: usize,
    /// Scores are `(q·k) * scale` (Llama: 1/√head_dim; OPT: 1, its q is pre-scaled).
    pub scale: f32,
    /// Trainable prefix positions every sequence attends to first (0, the default: none).
    pub prefix_tokens: usize,
    /// The prefix's layer (below 2²⁴): its keys and values are perturbed with the streams of
    /// zo's prefix family for that layer.
    pub prefix_layer: usize,
    /// `ZO_DIST_*` of the prefix perturbation (default `ZO_DIST_GAUSSIAN`).
    pub prefix_dist: i32,
}

/// Defaults of `zo_kernel_attention_params`.
#[no_mangle]
pub extern "C" fn zo_kernel_attention_default_params() -> zo_kernel_attention_params {
    zo_kernel_attention_params {
        struct_size: std::mem::size_of::<zo_kernel_attention_params>(),
        out_dtype: ZO_DTYPE_BF16,
        heads: 0,
        kv_heads: 0,
        head_dim: 0,
        rows: 0,
        q_ld: 0,
        q_col: 0,
        out_ld: 0,
        max_pages: 1,
        max_seqlen: 0,
        scale: 1.0,
        prefix_tokens: 0,
        prefix_layer: 0,
        prefix_dist: ZO_DIST_GAUSSIAN,
    }
}

/// The buffers of `zo_kernel_attention_prefill`, each with its element count, all on the
/// target's device.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct zo_kernel_attention_buffers {
    /// `sizeof(zo_kernel_attention_buffers)`.
    pub struct_size: usize,
    /// The queries, f32 (layout in `zo_kernel_attention_params`).
    pub q: *const f32,
    pub q_len: usize,
    /// The K and V caches, f32, the same whole number of pages each (see
    /// `ZO_KERNEL_ATTN_PAGE`); every sequence's own tokens must already be in them.
    pub k_cache: *const f32,
    pub k_cache_len: usize,
    pub v_cache: *const f32,
    pub v_cache_len: usize,
    /// `n_seqs + 1` entries: sequence s owns packed rows `[cu_seqlens[s], cu_seqlens[s+1])`.
    pub cu_seqlens: *const u32,
    pub cu_seqlens_len: usize,
    /// `n_seqs` entries: cached tokens a sequence attends to before its own (a shared prompt).
    pub ctx_lens: *const u32,
    pub ctx_lens_len: usize,
    /// `n_seqs * max_pages` page ids: cached token c of a sequence is at table position c, own
    /// token i at `own_starts[s] + i` (see `own_starts`). Page ids past the caches read as
    /// zeros.
    pub block_tables: *const u32,
    pub block_tables_len: usize,
    /// The prefix's keys and values, f32 `[prefix_tokens][kv_heads * head_dim]` each (NULL
    /// without a prefix).
    pub prefix_k: *const f32,
    pub prefix_k_len: usize,
    pub prefix_v: *const f32,
    pub prefix_v_len: usize,
    /// The step's segment table (`zo_kernel_segment_table_fill`; NULL when `n_segments` and
    /// `n_dirs` are 0): a sequence whose first row lies in a segment reads the prefix as
    /// `fmaf(scale, z, x)`, z from the segment's seed; the others read it as stored.
    pub segment_table: *const c_void,
    pub n_segments: usize,
    pub n_dirs: usize,
    /// The output, `out_len` elements of `out_dtype`.
    pub out: *mut c_void,
    pub out_len: usize,
    /// `n_seqs` entries (or NULL): the block-table position of each sequence's first own
    /// token. NULL means `ctx_lens[s]`, own tokens right after the cached ones. A sequence
    /// reading a prompt shared with others starts its own tokens on a fresh page,
    /// `ceil(ctx_lens[s] / ZO_KERNEL_ATTN_PAGE) * ZO_KERNEL_ATTN_PAGE`, so that none of them
    /// writes into the prompt's partially filled last page. Callers built against a header
    /// without this field pass the shorter struct and get NULL.
    pub own_starts: *const u32,
    pub own_starts_len: usize,
}

/// `struct_size` of `zo_kernel_attention_buffers` before `own_starts` was added: those fields
/// are a prefix of the struct, so such a caller's struct is read as it was.
#[cfg(feature = "cuda")]
const BUFFERS_WITHOUT_OWN_STARTS: usize =
    std::mem::offset_of!(zo_kernel_attention_buffers, own_starts);

/// Defaults of `zo_kernel_attention_buffers`: every pointer NULL, every count 0.
#[no_mangle]
pub extern "C" fn zo_kernel_attention_default_buffers() -> zo_kernel_attention_buffers {
    zo_kernel_attention_buffers {
        struct_size: std::mem::size_of::<zo_kernel_attention_buffers>(),
        q: std::ptr::null(),
        q_len: 0,
        k_cache: std::ptr::null(),
        k_cache_len: 0,
        v_cache: std::ptr::null(),
        v_cache_len: 0,
        cu_seqlens: std::ptr::null(),
        cu_seqlens_len: 0,
        ctx_lens: std::ptr::null(),
        ctx_lens_len: 0,
        block_tables: std::ptr::null(),
        block_tables_len: 0,
        prefix_k: std::ptr::null(),
        prefix_k_len: 0,
        prefix_v: std::ptr::null(),
        prefix_v_len: 0,
        segment_table: std::ptr::null(),
        n_segments: 0,
        n_dirs: 0,
        out: std::ptr::null_mut(),
        out_len: 0,
        own_starts: std::ptr::null(),
        own_starts_len: 0,
    }
}

/// Causal prefill attention of every packed row over its sequence's prefix, cached context
/// and own tokens (in that order), with online softmax in f32, written in `out_dtype`. Within
/// a few ulp of a double-precision evaluation; bit-exact between the GPU and the host twin.
/// `ZO_ERR_SHAPE` when shapes and counts disagree, `ZO_ERR_UNSUPPORTED` for a head dimension
/// above 256 or counts past the kernel's 32 bits.
///
/// # Safety
/// The buffers hold what their counts say on the target's device (see `zo_kernel_target`);
/// `target`, `params` and `buffers` point at valid structs.
#[no_mangle]
pub unsafe extern "C" fn zo_kernel_attention_prefill(
    target: *const zo_kernel_target,
    params: *const zo_kernel_attention_params,
    buffers: *const zo_kernel_attention_buffers,
) -> zo_status {
    // SAFETY: the caller's contract.
    guard(|| with_cuda!(unsafe { imp::prefill(target, params, buffers) }))
}

#[cfg(feature = "cuda")]
mod imp {
    use super::*;
    use crate::backend::cuda::kernels::attention::{
        attention_prefill, DevicePrefix, PrefillAttention, QkvLayout, SeqTables,
    };
    use crate::ffi::args;
    use call::{launched, open, view};

    pub(super) unsafe fn prefill(
        target: *const zo_kernel_target,
        params: *const zo_kernel_attention_params,
        buffers: *const zo_kernel_attention_buffers,
    ) -> FfiResult<()> {
        // SAFETY: the caller's contract (for every unsafe call below).
        let p = unsafe { args::params(params, "zo_kernel_attention_params") }?;
        let b = unsafe { buffers_of(buffers) }?;
        let out_dtype = dtype(p.out_dtype)?;
        let prefix_dist = dist(p.prefix_dist)?;
        let dev = unsafe { open(target) }?;
        let f32s = |ptr: *const f32, len, what| unsafe { view(ptr.cast(), DType::F32, len, what) };
        let words = |ptr: *const u32, len, what| unsafe { view(ptr.cast(), DType::F32, len, what) };
        if p.prefix_layer >= 1 << 24 {
            return Err(FfiError::new(
                ZO_ERR_ARGUMENT,
                format!("prefix_layer is {}; expected below 2^24", p.prefix_layer),
            ));
        }
        // Saturating: an absurd width fails the launcher's checks instead of wrapping.
        let width = p.heads.saturating_mul(p.head_dim);
        let or_width = |ld: usize| if ld == 0 { width } else { ld };
        let layout = QkvLayout {
            rows: p.rows,
            ld: or_width(p.q_ld),
            q_col: p.q_col,
            // The prefill reads k and v from the caches only.
            k_col: p.q_col,
            v_col: p.q_col,
            heads: p.heads,
            kv_heads: p.kv_heads,
            head_dim: p.head_dim,
        };
        let segs = unsafe { adapter::imp::segments(b.segment_table, b.n_segments, b.n_dirs) }?;
        let prefix = match p.prefix_tokens {
            0 => None,
            tokens => Some(DevicePrefix {
                k: f32s(b.prefix_k, b.prefix_k_len, "prefix_k")?,
                v: f32s(b.prefix_v, b.prefix_v_len, "prefix_v")?,
                tokens,
                layer: p.prefix_layer,
                dist: prefix_dist,
                segments: (!segs.is_empty()).then(|| segs.segments()),
            }),
        };
        let a = PrefillAttention {
            qkv: f32s(b.q, b.q_len, "q")?,
            layout,
            k_cache: f32s(b.k_cache, b.k_cache_len, "k_cache")?,
            v_cache: f32s(b.v_cache, b.v_cache_len, "v_cache")?,
            seqs: SeqTables {
                cu_seqlens: words(b.cu_seqlens, b.cu_seqlens_len, "cu_seqlens")?,
                ctx_lens: words(b.ctx_lens, b.ctx_lens_len, "ctx_lens")?,
                own_starts: match b.own_starts.is_null() {
                    true => None,
                    false => Some(words(b.own_starts, b.own_starts_len, "own_starts")?),
                },
                block_tables: words(b.block_tables, b.block_tables_len, "block_tables")?,
                max_pages: p.max_pages,
                max_seqlen: p.max_seqlen,
            },
            prefix,
            scale: p.scale,
        };
        let out = unsafe { view(b.out, out_dtype, b.out_len, "out") }?;
        launched(attention_prefill(&dev, &a, out, or_width(p.out_ld)))
    }

    /// The caller's buffers struct, of this header or of one before `own_starts`.
    ///
    /// # Safety
    /// A non-NULL `b` points at least at a `size_t`, and at a whole struct of the size it
    /// names.
    unsafe fn buffers_of(
        b: *const zo_kernel_attention_buffers,
    ) -> FfiResult<zo_kernel_attention_buffers> {
        // SAFETY: the caller's contract; the size word is read only through a non-NULL,
        // aligned pointer.
        let older = !b.is_null()
            && b.is_aligned()
            && unsafe { *(b as *const usize) } == BUFFERS_WITHOUT_OWN_STARTS;
        if !older {
            // SAFETY: the caller's contract.
            return unsafe { args::params(b, "zo_kernel_attention_buffers") }.copied();
        }
        let mut full = zo_kernel_attention_default_buffers();
        // SAFETY: the caller's struct holds the first BUFFERS_WITHOUT_OWN_STARTS bytes, laid
        // out as this struct's (the same fields in the same order).
        unsafe {
            std::ptr::copy_nonoverlapping(
                b as *const u8,
                &mut full as *mut zo_kernel_attention_buffers as *mut u8,
                BUFFERS_WITHOUT_OWN_STARTS,
            )
        };
        full.struct_size = std::mem::size_of::<zo_kernel_attention_buffers>();
        Ok(full)
    }
}
