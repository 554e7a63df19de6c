//! The attention kernels (csrc/attention.cu) on the CPU: RoPE, the KV-cache write and paged
//! prefill attention.

use std::ffi::c_void;

use crate::params::{ZoAttnParams, ZoKvWriteParams, ZoRopeParams, ZoSegment, ZO_ATTN_PAGE};
use crate::{check_len, Launch, ZoEmuDim};

type Prefill = unsafe extern "C" fn(
    ZoEmuDim,
    ZoEmuDim,
    usize,
    ZoAttnParams,
    *const f32,
    *const f32,
    *const f32,
    *const u32,
    *const u32,
    *const u32,
    *const f32,
    *const f32,
    *const ZoSegment,
    *mut c_void,
);

macro_rules! prefill_decls {
    ($($name:ident),*) => {
        extern "C" {
            $(fn $name(
                grid: ZoEmuDim,
                block: ZoEmuDim,
                smem: usize,
                p: ZoAttnParams,
                q: *const f32,
                k_cache: *const f32,
                v_cache: *const f32,
                cu_seqlens: *const u32,
                ctx_lens: *const u32,
                block_tables: *const u32,
                prefix_k: *const f32,
                prefix_v: *const f32,
                segments: *const ZoSegment,
                out: *mut c_void,
            );)*
        }
    };
}

prefill_decls!(
    zo_emu_zo_attn_prefill_hd64_f32,
    zo_emu_zo_attn_prefill_hd128_f32,
    zo_emu_zo_attn_prefill_any_f32,
    zo_emu_zo_attn_prefill_hd64_bf16,
    zo_emu_zo_attn_prefill_hd128_bf16,
    zo_emu_zo_attn_prefill_any_bf16,
    zo_emu_zo_attn_prefill_hd64_f16,
    zo_emu_zo_attn_prefill_hd128_f16,
    zo_emu_zo_attn_prefill_any_f16
);

extern "C" {
    fn zo_emu_rope(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        p: ZoRopeParams,
        x: *mut f32,
        cos: *const f32,
        sin: *const f32,
    );
    fn zo_emu_kv_write(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        p: ZoKvWriteParams,
        qkv: *const f32,
        slots: *const u32,
        k_cache: *mut f32,
        v_cache: *mut f32,
    );
}

/// Elements of `[rows][ld]` up to column `end` of the last row.
fn strided(rows: u32, ld: u32, end: u32) -> u64 {
    match rows {
        0 => 0,
        r => (r as u64 - 1) * ld as u64 + end as u64,
    }
}

/// `zo_rope`: rotates the q and k columns of `x` in place with `cos`/`sin` `[rows][hd/2]`.
pub fn rope(cfg: Launch, p: ZoRopeParams, x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let end = (p.q_col + p.q_heads * p.head_dim).max(p.k_col + p.k_heads * p.head_dim);
    check_len("rope x", x, strided(p.rows, p.ld, end));
    let half = p.rows as u64 * (p.head_dim / 2) as u64;
    check_len("rope cos", cos, half);
    check_len("rope sin", sin, half);
    // SAFETY: the kernel touches x up to `end` of the last row and cos/sin [rows][hd/2].
    unsafe {
        zo_emu_rope(
            cfg.grid,
            cfg.block,
            cfg.smem,
            p,
            x.as_mut_ptr(),
            cos.as_ptr(),
            sin.as_ptr(),
        )
    }
}

/// `zo_kv_write`: k and v columns of each row of `qkv` into cache slot `slots[row]`.
pub fn kv_write(
    cfg: Launch,
    p: ZoKvWriteParams,
    qkv: &[f32],
    slots: &[u32],
    k_cache: &mut [f32],
    v_cache: &mut [f32],
) {
    let end = (p.k_col + p.kv_width).max(p.v_col + p.kv_width);
    check_len("kv write qkv", qkv, strided(p.rows, p.ld, end));
    check_len("kv write slots", slots, p.rows as u64);
    let cache = p.num_slots as u64 * p.kv_width as u64;
    check_len("kv write K cache", k_cache, cache);
    check_len("kv write V cache", v_cache, cache);
    // SAFETY: rows and columns are inside qkv; slots >= num_slots are skipped by the kernel.
    unsafe {
        zo_emu_kv_write(
            cfg.grid,
            cfg.block,
            cfg.smem,
            p,
            qkv.as_ptr(),
            slots.as_ptr(),
            k_cache.as_mut_ptr(),
            v_cache.as_mut_ptr(),
        )
    }
}

/// Output of a prefill launch; the variant picks the `_f32`/`_bf16`/`_f16` instance (16-bit
/// outputs as raw bits).
pub enum Out<'a> {
    F32(&'a mut [f32]),
    Bf16(&'a mut [u16]),
    F16(&'a mut [u16]),
}

/// Inputs of a prefill launch (see csrc/params/attention.h).
pub struct PrefillInputs<'a> {
    pub q: &'a [f32],
    pub k_cache: &'a [f32],
    pub v_cache: &'a [f32],
    pub cu_seqlens: &'a [u32],
    pub ctx_lens: &'a [u32],
    pub block_tables: &'a [u32],
    /// Empty without a prefix.
    pub prefix_k: &'a [f32],
    pub prefix_v: &'a [f32],
    pub segments: &'a [ZoSegment],
}

/// `zo_attn_prefill_*`: the instance for `p.head_dim` (64, 128, other) and the output type.
pub fn prefill(cfg: Launch, p: ZoAttnParams, b: &PrefillInputs, out: Out) {
    let (hd, qw) = (p.head_dim, p.heads * p.head_dim);
    let kv_width = p.kv_heads as u64 * hd as u64;
    check_len("prefill q", b.q, strided(p.rows, p.q_ld, p.q_col + qw));
    let cache = p.num_pages as u64 * ZO_ATTN_PAGE as u64 * kv_width;
    check_len("prefill K cache", b.k_cache, cache);
    check_len("prefill V cache", b.v_cache, cache);
    check_len("prefill cu_seqlens", b.cu_seqlens, p.n_seqs as u64 + 1);
    check_len("prefill ctx_lens", b.ctx_lens, p.n_seqs as u64);
    let tables = p.n_seqs as u64 * p.max_pages as u64;
    check_len("prefill block tables", b.block_tables, tables);
    let prefix = p.prefix_len as u64 * kv_width;
    check_len("prefill prefix keys", b.prefix_k, prefix);
    check_len("prefill prefix values", b.prefix_v, prefix);
    check_len("prefill segments", b.segments, p.n_segments as u64);
    let need = strided(p.rows, p.out_ld, qw);
    let (f, ptr): (Prefill, *mut c_void) = match out {
        Out::F32(o) => {
            check_len("prefill output", o, need);
            let f = match hd {
                64 => zo_emu_zo_attn_prefill_hd64_f32 as Prefill,
                128 => zo_emu_zo_attn_prefill_hd128_f32,
                _ => zo_emu_zo_attn_prefill_any_f32,
            };
            (f, o.as_mut_ptr().cast())
        }
        Out::Bf16(o) => {
            check_len("prefill output", o, need);
            let f = match hd {
                64 => zo_emu_zo_attn_prefill_hd64_bf16 as Prefill,
                128 => zo_emu_zo_attn_prefill_hd128_bf16,
                _ => zo_emu_zo_attn_prefill_any_bf16,
            };
            (f, o.as_mut_ptr().cast())
        }
        Out::F16(o) => {
            check_len("prefill output", o, need);
            let f = match hd {
                64 => zo_emu_zo_attn_prefill_hd64_f16 as Prefill,
                128 => zo_emu_zo_attn_prefill_hd128_f16,
                _ => zo_emu_zo_attn_prefill_any_f16,
            };
            (f, o.as_mut_ptr().cast())
        }
    };
    // SAFETY: every buffer holds the extent the kernel indexes for these params (checked
    // above); device-side tables are clamped by the kernel.
    unsafe {
        f(
            cfg.grid,
            cfg.block,
            cfg.smem,
            p,
            b.q.as_ptr(),
            b.k_cache.as_ptr(),
            b.v_cache.as_ptr(),
            b.cu_seqlens.as_ptr(),
            b.ctx_lens.as_ptr(),
            b.block_tables.as_ptr(),
            b.prefix_k.as_ptr(),
            b.prefix_v.as_ptr(),
            b.segments.as_ptr(),
            ptr,
        )
    }
}
