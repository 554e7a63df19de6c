//! The row-op kernels (csrc/ops.cu) on the CPU. Storage-type buffers (weights, GEMM inputs)
//! are little-endian bytes of the [`Storage`] type.

use crate::params::{
    ZoActParams, ZoEmbedParams, ZoNormParams, ZoRowsParams, ZO_EMBED_POSITIONS, ZO_EMBED_TOKENS,
    ZO_NORM_GATHER, ZO_NORM_HAS_B, ZO_NORM_HAS_W,
};
use crate::{check_len, Launch, ZoEmuDim};

/// The storage type of a kernel instance (`_f32`, `_bf16`, `_f16`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    F32 = 0,
    Bf16 = 1,
    F16 = 2,
}

impl Storage {
    pub fn size(self) -> usize {
        match self {
            Storage::F32 => 4,
            Storage::Bf16 | Storage::F16 => 2,
        }
    }
}

extern "C" {
    fn zo_emu_embed(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        st: u32,
        p: ZoEmbedParams,
        tokens: *const u32,
        positions: *const u32,
        w_e: *const u8,
        w_p: *const u8,
        x: *mut f32,
    );
    fn zo_emu_norm(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        st: u32,
        p: ZoNormParams,
        row_idx: *const u32,
        w: *const u8,
        b: *const u8,
        x: *mut f32,
        out: *mut u8,
    );
    fn zo_emu_act(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        st: u32,
        p: ZoActParams,
        input: *const f32,
        out: *mut u8,
    );
    fn zo_emu_bias_add(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        st: u32,
        p: ZoRowsParams,
        dst: *mut f32,
        bias: *const u8,
    );
    fn zo_emu_to_storage(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        st: u32,
        p: ZoRowsParams,
        src: *const f32,
        dst: *mut u8,
    );
    fn zo_emu_from_storage(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        st: u32,
        p: ZoRowsParams,
        src: *const u8,
        dst: *mut f32,
    );
    fn zo_emu_fill(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        st: u32,
        p: ZoRowsParams,
        dst: *mut u8,
    );
    fn zo_emu_add_f32(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        p: ZoRowsParams,
        dst: *mut f32,
        src: *const f32,
    );
    fn zo_emu_scale_f32(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        p: ZoRowsParams,
        dst: *mut f32,
    );
    fn zo_emu_gather_rows_f32(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        p: ZoRowsParams,
        idx: *const u32,
        src: *const f32,
        dst: *mut f32,
    );
}

/// Elements a `[rows][width]` region with row stride `ld` spans.
pub fn extent(rows: u32, width: u32, ld: u32) -> u64 {
    if rows == 0 || width == 0 {
        0
    } else {
        (rows as u64 - 1) * ld as u64 + width as u64
    }
}

/// A storage buffer must hold `n` elements and be aligned to them.
#[track_caller]
fn check_storage(what: &str, buf: &[u8], st: Storage, n: u64) {
    check_len(what, buf, n * st.size() as u64);
    assert!(
        (buf.as_ptr() as usize).is_multiple_of(st.size()),
        "{what}: buffer not aligned to {}-byte elements",
        st.size()
    );
}

fn ptr_or_null<T>(v: Option<&[T]>) -> *const T {
    v.map_or(std::ptr::null(), <[T]>::as_ptr)
}

/// `zo_embed_<T>`: rows `[0, n_tokens)` of x (`ld`), from `tokens`/`w_e` and/or
/// `positions`/`w_p` as `p.flags` says (the others may be `None`).
#[allow(clippy::too_many_arguments)]
pub fn embed(
    cfg: Launch,
    st: Storage,
    p: ZoEmbedParams,
    tokens: Option<&[u32]>,
    positions: Option<&[u32]>,
    w_e: Option<&[u8]>,
    w_p: Option<&[u8]>,
    x: &mut [f32],
) {
    let n = p.n_tokens as u64;
    if p.flags & ZO_EMBED_TOKENS != 0 {
        check_len("tokens", tokens.expect("tokens"), n);
        check_storage(
            "w_e",
            w_e.expect("w_e"),
            st,
            p.vocab as u64 * p.width as u64,
        );
    }
    if p.flags & ZO_EMBED_POSITIONS != 0 {
        check_len("positions", positions.expect("positions"), n);
        check_storage(
            "w_p",
            w_p.expect("w_p"),
            st,
            p.n_pos as u64 * p.width as u64,
        );
    }
    check_len("x", x, extent(p.n_tokens, p.width, p.ld));
    // SAFETY: the kernel reads tokens/positions[0, n), table rows it bounds-checks against
    // vocab/n_pos, and writes x within the extent checked above.
    unsafe {
        zo_emu_embed(
            cfg.grid,
            cfg.block,
            cfg.smem,
            st as u32,
            p,
            ptr_or_null(tokens),
            ptr_or_null(positions),
            ptr_or_null(w_e),
            ptr_or_null(w_p),
            x.as_mut_ptr(),
        )
    }
}

/// `zo_norm_<T>`: `out` `[rows][ld_out]` from x `[n_src_rows][ld_in]` (written back when
/// `p.flags` has ZO_NORM_IN_PLACE).
#[allow(clippy::too_many_arguments)]
pub fn norm(
    cfg: Launch,
    st: Storage,
    p: ZoNormParams,
    row_idx: Option<&[u32]>,
    w: Option<&[u8]>,
    b: Option<&[u8]>,
    x: &mut [f32],
    out: &mut [u8],
) {
    if p.flags & ZO_NORM_GATHER != 0 {
        check_len("row_idx", row_idx.expect("row_idx"), p.rows as u64);
    }
    if p.flags & ZO_NORM_HAS_W != 0 {
        check_storage("w", w.expect("w"), st, p.width as u64);
    }
    if p.flags & ZO_NORM_HAS_B != 0 {
        check_storage("b", b.expect("b"), st, p.width as u64);
    }
    check_len("x", x, extent(p.n_src_rows, p.width, p.ld_in));
    check_storage("out", out, st, extent(p.rows, p.width, p.ld_out));
    // SAFETY: every buffer holds the extent the kernel touches (checked above); gathered
    // indices are bounds-checked by the kernel against n_src_rows.
    unsafe {
        zo_emu_norm(
            cfg.grid,
            cfg.block,
            cfg.smem,
            st as u32,
            p,
            ptr_or_null(row_idx),
            ptr_or_null(w),
            ptr_or_null(b),
            x.as_mut_ptr(),
            out.as_mut_ptr(),
        )
    }
}

/// `zo_act_<T>`.
pub fn act(cfg: Launch, st: Storage, p: ZoActParams, input: &[f32], out: &mut [u8]) {
    let in_w = if p.gated != 0 { 2 * p.width } else { p.width };
    check_len("input", input, extent(p.rows, in_w, p.ld_in));
    check_storage("out", out, st, extent(p.rows, p.width, p.ld_out));
    // SAFETY: extents checked above.
    unsafe {
        zo_emu_act(
            cfg.grid,
            cfg.block,
            cfg.smem,
            st as u32,
            p,
            input.as_ptr(),
            out.as_mut_ptr(),
        )
    }
}

/// `zo_bias_add_<T>`: dst (`ld_dst`) += bias `[width]`.
pub fn bias_add(cfg: Launch, st: Storage, p: ZoRowsParams, dst: &mut [f32], bias: &[u8]) {
    check_len("dst", dst, extent(p.rows, p.width, p.ld_dst));
    check_storage("bias", bias, st, p.width as u64);
    // SAFETY: extents checked above.
    unsafe {
        zo_emu_bias_add(
            cfg.grid,
            cfg.block,
            cfg.smem,
            st as u32,
            p,
            dst.as_mut_ptr(),
            bias.as_ptr(),
        )
    }
}

/// `zo_to_storage_<T>`.
pub fn to_storage(cfg: Launch, st: Storage, p: ZoRowsParams, src: &[f32], dst: &mut [u8]) {
    check_len("src", src, extent(p.rows, p.width, p.ld_src));
    check_storage("dst", dst, st, extent(p.rows, p.width, p.ld_dst));
    // SAFETY: extents checked above.
    unsafe {
        zo_emu_to_storage(
            cfg.grid,
            cfg.block,
            cfg.smem,
            st as u32,
            p,
            src.as_ptr(),
            dst.as_mut_ptr(),
        )
    }
}

/// `zo_from_storage_<T>`.
pub fn from_storage(cfg: Launch, st: Storage, p: ZoRowsParams, src: &[u8], dst: &mut [f32]) {
    check_storage("src", src, st, extent(p.rows, p.width, p.ld_src));
    check_len("dst", dst, extent(p.rows, p.width, p.ld_dst));
    // SAFETY: extents checked above.
    unsafe {
        zo_emu_from_storage(
            cfg.grid,
            cfg.block,
            cfg.smem,
            st as u32,
            p,
            src.as_ptr(),
            dst.as_mut_ptr(),
        )
    }
}

/// `zo_fill_<T>`.
pub fn fill(cfg: Launch, st: Storage, p: ZoRowsParams, dst: &mut [u8]) {
    check_storage("dst", dst, st, extent(p.rows, p.width, p.ld_dst));
    // SAFETY: extent checked above.
    unsafe {
        zo_emu_fill(
            cfg.grid,
            cfg.block,
            cfg.smem,
            st as u32,
            p,
            dst.as_mut_ptr(),
        )
    }
}

/// `zo_add_f32`: dst (`ld_dst`) += src (`ld_src`).
pub fn add_f32(cfg: Launch, p: ZoRowsParams, dst: &mut [f32], src: &[f32]) {
    check_len("dst", dst, extent(p.rows, p.width, p.ld_dst));
    check_len("src", src, extent(p.rows, p.width, p.ld_src));
    // SAFETY: extents checked above.
    unsafe {
        zo_emu_add_f32(
            cfg.grid,
            cfg.block,
            cfg.smem,
            p,
            dst.as_mut_ptr(),
            src.as_ptr(),
        )
    }
}

/// `zo_scale_f32`: dst (`ld_dst`) *= p.value.
pub fn scale_f32(cfg: Launch, p: ZoRowsParams, dst: &mut [f32]) {
    check_len("dst", dst, extent(p.rows, p.width, p.ld_dst));
    // SAFETY: extent checked above.
    unsafe { zo_emu_scale_f32(cfg.grid, cfg.block, cfg.smem, p, dst.as_mut_ptr()) }
}

/// `zo_gather_rows_f32`: dst row r = src row idx[r] (src `[n_src_rows][ld_src]`).
pub fn gather_rows_f32(cfg: Launch, p: ZoRowsParams, idx: &[u32], src: &[f32], dst: &mut [f32]) {
    check_len("idx", idx, p.rows as u64);
    check_len("src", src, extent(p.n_src_rows, p.width, p.ld_src));
    check_len("dst", dst, extent(p.rows, p.width, p.ld_dst));
    // SAFETY: extents checked above; indices are bounds-checked by the kernel.
    unsafe {
        zo_emu_gather_rows_f32(
            cfg.grid,
            cfg.block,
            cfg.smem,
            p,
            idx.as_ptr(),
            src.as_ptr(),
            dst.as_mut_ptr(),
        )
    }
}
