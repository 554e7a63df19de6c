//! The attention family on the GPU (csrc/attention.cu): RoPE of q and k in place, the KV-cache
//! write, and paged causal prefill attention with an optional trainable prefix whose
//! perturbation is generated as the kernel loads it.
//!
//! Data layout: q, k and v are fp32 column slices of the fused qkv GEMM output (see
//! [`QkvLayout`]); the K and V caches are fp32 `[num_pages][PAGE][kv_heads][head_dim]`; the
//! attention output is the o-projection's GEMM input, storage dtype, `[rows][out_ld]` with head
//! `h` at column `h·head_dim`.
//!
//! CPU twins: `backend::cpu::ops::apply_rope` (bit-identical) and
//! `backend::cpu::attention::causal_attention(_with_prefix)` (within the attention tolerance).

use cudarc::driver::{CudaSlice, DeviceRepr};

use super::device::CudaDevice;
use super::dtype::DType;
use super::ZoSegment;
pub use crate::backend::launch::attention::{
    attention_launch_config, attention_tiling, kv_write_launch_config, rope_launch_config,
    LaunchGeometry, QkvLayout, PAGE,
};
use crate::perturb::Dist;
use crate::{Error, Result};

/// Largest head dimension the prefill kernels take.
pub const MAX_HEAD_DIM: usize = 256;
/// CUDA grid y/z limit.
const MAX_GRID_YZ: usize = 65_535;
/// Dynamic shared memory available without opting in.
#[cfg(zo_kernels)]
const DEFAULT_SMEM: u32 = 48 * 1024;

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
    pub cu_seqlens: &'a CudaSlice<u32>,
    /// `[n_seqs]`: cached tokens each sequence attends to before its own (a shared prompt).
    pub ctx_lens: &'a CudaSlice<u32>,
    /// `[n_seqs][max_pages]`: page ids; position `p` of sequence `s` (ctx tokens first, then
    /// its own) is in page `block_tables[s·max_pages + p / PAGE]`, offset `p % PAGE`.
    pub block_tables: &'a CudaSlice<u32>,
    pub max_pages: usize,
    /// At least the longest sequence's own token count (it sizes the grid; rows of longer
    /// sequences would be left unwritten).
    pub max_seqlen: usize,
}

/// One layer's trainable prefix, fp32 `[tokens][kv_heads·head_dim]` each.
#[derive(Debug, Clone, Copy)]
pub struct DevicePrefix<'a> {
    pub k: &'a CudaSlice<f32>,
    pub v: &'a CudaSlice<f32>,
    pub tokens: usize,
    /// The layer: Z comes from `Param::PrefixKey(layer)` / `Param::PrefixValue(layer)`.
    pub layer: usize,
    pub dist: Dist,
    /// Perturbed segments (sorted, disjoint); a sequence whose first row lies in one reads
    /// `fma(scale, z, x)`, the others the prefix as stored. None: no sequence is perturbed.
    pub segments: Option<&'a CudaSlice<ZoSegment>>,
}

/// Everything [`CudaDevice::attention_prefill`] reads.
#[derive(Debug, Clone, Copy)]
pub struct PrefillAttention<'a> {
    /// Queries: the q columns of this buffer (k and v columns are not read; they reach the
    /// kernel through the caches after [`CudaDevice::kv_write`]).
    pub qkv: &'a CudaSlice<f32>,
    pub layout: QkvLayout,
    pub k_cache: &'a CudaSlice<f32>,
    pub v_cache: &'a CudaSlice<f32>,
    pub seqs: SeqTables<'a>,
    pub prefix: Option<DevicePrefix<'a>>,
    /// Scores are `(q·k)·scale` (Llama: 1/√head_dim; OPT: 1, its q is pre-scaled).
    pub scale: f32,
}

/// The prefill instance for a head dimension and output dtype: fixed-size loops for 64 and
/// 128, a generic one for any other head_dim up to 256.
#[doc(hidden)]
pub fn attention_kernel_name(head_dim: usize, dtype: DType) -> &'static str {
    match (head_dim, dtype) {
        (64, DType::F32) => "zo_attn_prefill_hd64_f32",
        (64, DType::Bf16) => "zo_attn_prefill_hd64_bf16",
        (64, DType::F16) => "zo_attn_prefill_hd64_f16",
        (128, DType::F32) => "zo_attn_prefill_hd128_f32",
        (128, DType::Bf16) => "zo_attn_prefill_hd128_bf16",
        (128, DType::F16) => "zo_attn_prefill_hd128_f16",
        (_, DType::F32) => "zo_attn_prefill_any_f32",
        (_, DType::Bf16) => "zo_attn_prefill_any_bf16",
        (_, DType::F16) => "zo_attn_prefill_any_f16",
    }
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

/// Host-side checks of [`CudaDevice::rope_in_place`].
#[doc(hidden)]
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

/// Host-side checks of [`CudaDevice::kv_write`]; returns the number of cache slots.
#[doc(hidden)]
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
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct AttentionLens {
    pub qkv: usize,
    pub k_cache: usize,
    pub v_cache: usize,
    pub cu_seqlens: usize,
    pub ctx_lens: usize,
    pub block_tables: usize,
    /// (keys, values) of the prefix.
    pub prefix: Option<(usize, usize)>,
    pub out: usize,
}

/// Host-side checks of [`CudaDevice::attention_prefill`] (`prefix_tokens` is read only when
/// `lens.prefix` is set); returns `(n_seqs, num_pages)`.
#[doc(hidden)]
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
    // Key counts (prefix + cached + own) stay in 32 bits.
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
    let ((_, gy, _), _, _) = attention_launch_config(l.heads, l.kv_heads, l.head_dim, n_seqs, 1);
    if gy as usize > MAX_GRID_YZ || n_seqs > MAX_GRID_YZ {
        return Err(Error::Unsupported(format!(
            "{WHAT}: {n_seqs} sequences and {gy} head blocks; the grid allows {MAX_GRID_YZ} each"
        )));
    }
    Ok((n_seqs, pages))
}

impl CudaDevice {
    /// Rotates the q and k columns of `qkv` in place (Llama family, HF `rotate_half`), with
    /// `cos`/`sin` `[rows][head_dim/2]` computed on the host by `ops::rope_tables` for each
    /// row's position; bit-identical to `ops::apply_rope`.
    pub fn rope_in_place(
        &self,
        qkv: &mut CudaSlice<f32>,
        layout: &QkvLayout,
        cos: &CudaSlice<f32>,
        sin: &CudaSlice<f32>,
    ) -> Result<()> {
        check_rope(layout, qkv.len(), (cos.len(), sin.len()))?;
        if layout.rows == 0 {
            return Ok(());
        }
        self.launch_rope(qkv, layout, cos, sin)
    }

    /// Copies each row's k and v columns of `qkv` into cache slot `slots[row]`
    /// (`page·PAGE + offset`); rows with a slot past the caches (e.g. `u32::MAX`) are skipped.
    pub fn kv_write(
        &self,
        qkv: &CudaSlice<f32>,
        layout: &QkvLayout,
        slots: &CudaSlice<u32>,
        k_cache: &mut CudaSlice<f32>,
        v_cache: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let num_slots = check_kv_write(
            layout,
            qkv.len(),
            slots.len(),
            (k_cache.len(), v_cache.len()),
        )?;
        if layout.rows == 0 {
            return Ok(());
        }
        self.launch_kv_write(qkv, layout, slots, k_cache, v_cache, num_slots)
    }

    /// Causal prefill attention of every packed row over its sequence's prefix, cached context
    /// and own tokens (in that order), written as `dtype` into `out` `[rows][out_ld]`, head `h`
    /// at column `h·head_dim` (other columns untouched). `O` is the element type of the output
    /// buffer (f32, `half::bf16`/`half::f16` or any 2-byte type for the half dtypes): it only
    /// sizes the buffer, `dtype` picks the kernel.
    ///
    /// Device tables are trusted for memory safety only as far as indices go: out-of-range
    /// rows are clamped, page ids past the caches read as zeros.
    pub fn attention_prefill<O: DeviceRepr>(
        &self,
        a: &PrefillAttention<'_>,
        out: &mut CudaSlice<O>,
        out_ld: usize,
        dtype: DType,
    ) -> Result<()> {
        let lens = AttentionLens {
            qkv: a.qkv.len(),
            k_cache: a.k_cache.len(),
            v_cache: a.v_cache.len(),
            cu_seqlens: a.seqs.cu_seqlens.len(),
            ctx_lens: a.seqs.ctx_lens.len(),
            block_tables: a.seqs.block_tables.len(),
            prefix: a.prefix.map(|p| (p.k.len(), p.v.len())),
            out: out.len(),
        };
        let (n_seqs, pages) = check_attention(
            &a.layout,
            a.seqs.max_pages,
            a.seqs.max_seqlen,
            a.prefix.map_or(0, |p| p.tokens),
            &lens,
            out_ld,
            std::mem::size_of::<O>(),
            dtype,
        )?;
        if n_seqs == 0 || a.seqs.max_seqlen == 0 || a.layout.rows == 0 {
            return Ok(());
        }
        self.launch_attention(a, out, out_ld, dtype, n_seqs, pages)
    }
}

#[cfg(zo_kernels)]
mod launch {
    use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};

    use super::super::device::cuda_err;
    use super::super::params::*;
    use super::*;
    use crate::model::Param;
    use crate::perturb::role;

    // SAFETY: plain #[repr(C)] structs of 32-bit integers and floats, passed by value.
    unsafe impl DeviceRepr for ZoRopeParams {}
    unsafe impl DeviceRepr for ZoKvWriteParams {}
    unsafe impl DeviceRepr for ZoAttnParams {}

    fn config(g: LaunchGeometry) -> LaunchConfig {
        LaunchConfig {
            grid_dim: g.0,
            block_dim: g.1,
            shared_mem_bytes: g.2,
        }
    }

    /// Kernel parameters of `zo_rope` for a layout already checked by [`check_rope`].
    #[doc(hidden)]
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
    #[doc(hidden)]
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
    #[doc(hidden)]
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

    impl CudaDevice {
        pub(super) fn launch_rope(
            &self,
            qkv: &mut CudaSlice<f32>,
            l: &QkvLayout,
            cos: &CudaSlice<f32>,
            sin: &CudaSlice<f32>,
        ) -> Result<()> {
            let params = rope_params(l);
            let cfg = config(rope_launch_config(l.rows, l.heads, l.kv_heads, l.head_dim));
            let func = self.function("zo_rope")?;
            let mut b = self.stream().launch_builder(&func);
            b.arg(&params).arg(qkv).arg(cos).arg(sin);
            // SAFETY: signature (ZoRopeParams, float*, const float*, const float*); check_rope
            // bounded every index the kernel forms by the buffer lengths.
            unsafe { b.launch(cfg) }.map_err(cuda_err("launching zo_rope"))?;
            Ok(())
        }

        pub(super) fn launch_kv_write(
            &self,
            qkv: &CudaSlice<f32>,
            l: &QkvLayout,
            slots: &CudaSlice<u32>,
            k_cache: &mut CudaSlice<f32>,
            v_cache: &mut CudaSlice<f32>,
            num_slots: usize,
        ) -> Result<()> {
            let params = kv_write_params(l, num_slots);
            let cfg = config(kv_write_launch_config(l.rows));
            let func = self.function("zo_kv_write")?;
            let mut b = self.stream().launch_builder(&func);
            b.arg(&params).arg(qkv).arg(slots).arg(k_cache).arg(v_cache);
            // SAFETY: signature (ZoKvWriteParams, const float*, const uint32_t*, float*,
            // float*); rows and columns are checked, slots past num_slots are skipped.
            unsafe { b.launch(cfg) }.map_err(cuda_err("launching zo_kv_write"))?;
            Ok(())
        }

        pub(super) fn launch_attention<O: DeviceRepr>(
            &self,
            a: &PrefillAttention<'_>,
            out: &mut CudaSlice<O>,
            out_ld: usize,
            dtype: DType,
            n_seqs: usize,
            pages: usize,
        ) -> Result<()> {
            let l = &a.layout;
            let n_segments = a.prefix.and_then(|p| p.segments).map_or(0, |s| s.len());
            let params = attention_params(
                l,
                n_seqs,
                a.seqs.max_pages,
                pages,
                out_ld,
                a.scale,
                a.prefix.map(|p| (p.tokens, p.layer, p.dist, n_segments)),
            );
            let geom =
                attention_launch_config(l.heads, l.kv_heads, l.head_dim, n_seqs, a.seqs.max_seqlen);
            let name = attention_kernel_name(l.head_dim, dtype);
            let func = self.function(name)?;
            if geom.2 > DEFAULT_SMEM {
                func.set_attribute(
                    cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    geom.2 as i32,
                )
                .map_err(cuda_err(format!("allowing {} bytes of shared memory for {name}", geom.2)))?;
            }
            // Absent prefix / segment buffers are null pointers the kernel never reads.
            let null: u64 = 0;
            let mut b = self.stream().launch_builder(&func);
            b.arg(&params)
                .arg(a.qkv)
                .arg(a.k_cache)
                .arg(a.v_cache)
                .arg(a.seqs.cu_seqlens)
                .arg(a.seqs.ctx_lens)
                .arg(a.seqs.block_tables);
            match &a.prefix {
                Some(p) => b.arg(p.k).arg(p.v),
                None => b.arg(&null).arg(&null),
            };
            match a.prefix.and_then(|p| p.segments) {
                Some(s) => b.arg(s),
                None => b.arg(&null),
            };
            b.arg(out);
            // SAFETY: signature (ZoAttnParams, const float* q, const float* k_cache, const
            // float* v_cache, const uint32_t* cu_seqlens, const uint32_t* ctx_lens, const
            // uint32_t* block_tables, const float* prefix_k, const float* prefix_v, const
            // ZoSegment* segments, T* out); check_attention bounded the host-known shapes and
            // the kernel clamps the device-side tables.
            unsafe { b.launch(config(geom)) }.map_err(cuda_err(format!("launching {name}")))?;
            Ok(())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn constants_match_the_header() {
            use crate::backend::launch::attention::{ROWS_PER_WARP, TILE_KEYS, WARPS};
            assert_eq!(PAGE as u32, ZO_ATTN_PAGE);
            assert_eq!(WARPS, ZO_ATTN_WARPS);
            assert_eq!(ROWS_PER_WARP, ZO_ATTN_ROWS);
            assert_eq!(TILE_KEYS, ZO_ATTN_KEYS);
        }
    }
}

#[cfg(zo_kernels)]
#[doc(hidden)]
pub use launch::{attention_params, kv_write_params, rope_params};

#[cfg(not(zo_kernels))]
impl CudaDevice {
    fn launch_rope(
        &self,
        _: &mut CudaSlice<f32>,
        _: &QkvLayout,
        _: &CudaSlice<f32>,
        _: &CudaSlice<f32>,
    ) -> Result<()> {
        Err(Error::Cuda("this build has no CUDA kernels".into()))
    }

    fn launch_kv_write(
        &self,
        _: &CudaSlice<f32>,
        _: &QkvLayout,
        _: &CudaSlice<u32>,
        _: &mut CudaSlice<f32>,
        _: &mut CudaSlice<f32>,
        _: usize,
    ) -> Result<()> {
        Err(Error::Cuda("this build has no CUDA kernels".into()))
    }

    fn launch_attention<O: DeviceRepr>(
        &self,
        _: &PrefillAttention<'_>,
        _: &mut CudaSlice<O>,
        _: usize,
        _: DType,
        _: usize,
        _: usize,
    ) -> Result<()> {
        Err(Error::Cuda("this build has no CUDA kernels".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let bad_prefix = AttentionLens {
            prefix: Some((16, 15)),
            ..lens
        };
        assert!(check_attention(&l, 2, 3, 1, &bad_prefix, 32, 2, DType::Bf16).is_err());
        let wide = QkvLayout::fused(4, 2, 2, 258);
        assert!(check_attention(&wide, 2, 3, 0, &lens, 32, 2, DType::Bf16).is_err());
    }
}
