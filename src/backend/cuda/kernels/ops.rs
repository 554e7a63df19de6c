//! The row-op family (csrc/ops.cu, csrc/params/ops.h) between the GEMMs: embedding gather,
//! RMSNorm/LayerNorm, MLP activations. CPU twin: `backend::cpu::ops`.
//!
//! fp32 buffers (the residual, GEMM outputs) are `F32` views; storage-type buffers (weights and
//! GEMM inputs) carry their [`DType`], which picks the kernel instance. An op writes only
//! columns `[0, width)` of each output row (row strides `ld` in elements), so GEMM-input
//! buffers can carry extra columns written by other kernels. Indices that live in device
//! memory (tokens, positions, gathered rows) are checked by the kernels, which write NaN rather
//! than read out of bounds.

use super::{check_rows, check_u32, rows_in, LaunchDims};
use crate::backend::cuda::params::*;
use crate::backend::cuda::{CudaDevice, DType, View};
use crate::model::{Activation, NormKind};
use crate::{Error, Result};

/// Threads of a row-op block (embed, act): one block per row.
const ROW_THREADS: usize = 256;

/// embed and act: one block per row, up to 256 threads striding the columns.
pub fn row_launch_config(rows: usize, width: usize) -> LaunchDims {
    let threads = width.next_multiple_of(32).clamp(32, ROW_THREADS);
    LaunchDims::linear(rows as u32, threads as u32)
}

/// norm: one block per row, one thread per four columns (up to 1024), since the whole row is
/// reduced twice.
pub fn norm_launch_config(rows: usize, width: usize) -> LaunchDims {
    let threads = width.div_ceil(4).next_multiple_of(32).clamp(32, 1024);
    LaunchDims::linear(rows as u32, threads as u32)
}

/// `rows` rows of `width` columns read from a buffer with row stride `ld_in` and written to one
/// with row stride `ld_out` (elements). Each op says which buffer is which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowShape {
    pub rows: usize,
    pub width: usize,
    pub ld_in: usize,
    pub ld_out: usize,
}

impl RowShape {
    /// Packed rows: both strides equal the width.
    pub fn dense(rows: usize, width: usize) -> RowShape {
        RowShape {
            rows,
            width,
            ld_in: width,
            ld_out: width,
        }
    }

    pub fn with_ld(self, ld_in: usize, ld_out: usize) -> RowShape {
        RowShape {
            ld_in,
            ld_out,
            ..self
        }
    }
}

/// A storage-type table `[rows][width]` in device memory (token or position embeddings).
#[derive(Debug, Clone, Copy)]
pub struct Table<'a> {
    pub data: View<'a>,
    pub rows: usize,
}

/// OPT's learned positions: row `positions[t] + offset` of `table` is added to token `t`.
#[derive(Debug, Clone, Copy)]
pub struct Positions<'a> {
    pub positions: View<'a>,
    pub table: Table<'a>,
    /// 2 for OPT (a fairseq legacy).
    pub offset: u32,
}

/// A norm's parameters on the device: weight and bias `[width]` in the storage type.
#[derive(Debug, Clone, Copy)]
pub struct NormWeights<'a> {
    pub kind: NormKind,
    pub eps: f32,
    pub w: Option<View<'a>>,
    pub b: Option<View<'a>>,
}

fn activation_code(act: Activation) -> u32 {
    match act {
        Activation::Silu => ZO_ACT_SILU,
        Activation::Relu => ZO_ACT_RELU,
        Activation::Gelu => ZO_ACT_GELU,
    }
}

fn storage(what: &str, v: &View<'_>, dtype: DType) -> Result<()> {
    v.expect(what, dtype).map(|_| ())
}

fn need(what: &str, v: &View<'_>, n: usize) -> Result<()> {
    v.need(what, n).map(|_| ())
}

/// Token embeddings into the fp32 residual `x` (dense `[n_tokens][width]`, n_tokens =
/// `tokens.len`): `x[t] = widen(words[tokens[t]])`, plus, when `positions` is given (no
/// projection between the two), `widen(P[positions[t] + offset])` added in fp32 as the CPU adds
/// the two rows. A token or position outside its table gives a NaN row.
pub fn embed(
    dev: &CudaDevice,
    width: usize,
    tokens: View<'_>,
    words: Table<'_>,
    positions: Option<Positions<'_>>,
    x: View<'_>,
) -> Result<()> {
    let n = tokens.len;
    let dtype = words.data.dtype;
    check_rows("token embeddings", words.data.len, words.rows, width, width)?;
    storage("embedding output x", &x, DType::F32)?;
    check_rows("embedding output x", x.len, n, width, width)?;
    let mut flags = ZO_EMBED_TOKENS;
    let (mut n_pos, mut offset) = (0, 0);
    if let Some(p) = &positions {
        need("embedding positions", &p.positions, n)?;
        storage("position embeddings", &p.table.data, dtype)?;
        check_rows(
            "position embeddings",
            p.table.data.len,
            p.table.rows,
            width,
            width,
        )?;
        flags |= ZO_EMBED_POSITIONS;
        n_pos = p.table.rows;
        offset = p.offset;
    }
    let p = ZoEmbedParams {
        n_tokens: check_u32("tokens", n)?,
        width: width as u32,
        ld: width as u32,
        vocab: check_u32("vocabulary", words.rows)?,
        n_pos: check_u32("position table rows", n_pos)?,
        pos_offset: offset,
        flags,
        reserved: 0,
    };
    if n == 0 || width == 0 {
        return Ok(());
    }
    let ptrs = [
        tokens.ptr(),
        positions.map_or(0, |p| p.positions.ptr()),
        words.data.ptr(),
        positions.map_or(0, |p| p.table.data.ptr()),
        x.ptr(),
    ];
    // SAFETY: (ZoEmbedParams, const u32* tokens, const u32* positions, const T* w_e, const T*
    // w_p, float* x); every extent was checked above, ids are checked by the kernel.
    unsafe {
        dev.launch(
            typed("zo_embed", dtype),
            row_launch_config(n, width),
            &p,
            &ptrs,
        )
    }
}

/// Adds learned positions into the fp32 residual `x` (dense `[n_tokens][width]`, n_tokens =
/// `positions.positions.len`): `x[t] += widen(P[positions[t] + offset])`, for models that
/// project the token embeddings before the positions are added.
pub fn add_positions(
    dev: &CudaDevice,
    width: usize,
    positions: Positions<'_>,
    x: View<'_>,
) -> Result<()> {
    let n = positions.positions.len;
    let t = positions.table;
    check_rows("position embeddings", t.data.len, t.rows, width, width)?;
    storage("residual x", &x, DType::F32)?;
    check_rows("residual x", x.len, n, width, width)?;
    let p = ZoEmbedParams {
        n_tokens: check_u32("tokens", n)?,
        width: width as u32,
        ld: width as u32,
        vocab: 0,
        n_pos: check_u32("position table rows", t.rows)?,
        pos_offset: positions.offset,
        flags: ZO_EMBED_POSITIONS,
        reserved: 0,
    };
    if n == 0 || width == 0 {
        return Ok(());
    }
    let ptrs = [0, positions.positions.ptr(), 0, t.data.ptr(), x.ptr()];
    // SAFETY: as in `embed`, without the token table.
    unsafe {
        dev.launch(
            typed("zo_embed", t.data.dtype),
            row_launch_config(n, width),
            &p,
            &ptrs,
        )
    }
}

/// Normalises rows `[0, shape.rows)` of the fp32 `x` (stride `ld_in`) into the storage-type
/// GEMM input `out` (stride `ld_out`, columns `[0, width)`), HF's order of operations (twin:
/// `backend::cpu::ops::norm_row`).
pub fn norm(
    dev: &CudaDevice,
    norm: &NormWeights<'_>,
    shape: RowShape,
    x: View<'_>,
    out: View<'_>,
) -> Result<()> {
    storage("norm input x", &x, DType::F32)?;
    check_rows("norm input x", x.len, shape.rows, shape.width, shape.ld_in)?;
    launch_norm(dev, Some(norm), shape, None, shape.rows, false, x, out)
}

/// [`norm`] of gathered rows: output row `r` normalises row `rows[r]` of `x` (`shape.rows ==
/// rows.len`); the final norm on the scoring rows only. An index past the rows `x` holds gives
/// a NaN row.
pub fn norm_gather(
    dev: &CudaDevice,
    norm: &NormWeights<'_>,
    shape: RowShape,
    rows: View<'_>,
    x: View<'_>,
    out: View<'_>,
) -> Result<()> {
    if rows.len != shape.rows {
        return Err(Error::Data(format!(
            "norm gather: {} row indices for {} output rows",
            rows.len, shape.rows
        )));
    }
    storage("norm input x", &x, DType::F32)?;
    check_rows("norm input x", x.len, 0, shape.width, shape.ld_in)?;
    let n_src = rows_in(x.len, shape.width, shape.ld_in);
    launch_norm(dev, Some(norm), shape, Some(rows), n_src, false, x, out)
}

/// OPT's post-LN: normalises rows of the fp32 residual `x` in place (stride `ld_in`) and
/// writes the same values in the storage type to `out` (stride `ld_out`) for the next GEMM.
pub fn norm_in_place(
    dev: &CudaDevice,
    norm: &NormWeights<'_>,
    shape: RowShape,
    x: View<'_>,
    out: View<'_>,
) -> Result<()> {
    storage("norm residual x", &x, DType::F32)?;
    check_rows(
        "norm residual x",
        x.len,
        shape.rows,
        shape.width,
        shape.ld_in,
    )?;
    launch_norm(dev, Some(norm), shape, None, shape.rows, true, x, out)
}

/// Rows of the fp32 `x` (stride `ld_in`) rounded into the storage-type GEMM input `out`
/// (stride `ld_out`, columns `[0, width)`), with no normalisation: a post-LN model's residual
/// is already normalised where its next GEMM reads it. With `rows`, output row `r` is row
/// `rows[r]` of `x` (`shape.rows == rows.len`; an index past the rows `x` holds gives a NaN
/// row), as [`norm_gather`] picks the scoring rows.
pub fn cast_rows(
    dev: &CudaDevice,
    shape: RowShape,
    rows: Option<View<'_>>,
    x: View<'_>,
    out: View<'_>,
) -> Result<()> {
    storage("cast input x", &x, DType::F32)?;
    let n_src = match rows {
        Some(r) => {
            if r.len != shape.rows {
                return Err(Error::Data(format!(
                    "cast gather: {} row indices for {} output rows",
                    r.len, shape.rows
                )));
            }
            check_rows("cast input x", x.len, 0, shape.width, shape.ld_in)?;
            rows_in(x.len, shape.width, shape.ld_in)
        }
        None => {
            check_rows("cast input x", x.len, shape.rows, shape.width, shape.ld_in)?;
            shape.rows
        }
    };
    launch_norm(dev, None, shape, rows, n_src, false, x, out)
}

#[allow(clippy::too_many_arguments)]
fn launch_norm(
    dev: &CudaDevice,
    norm: Option<&NormWeights<'_>>,
    shape: RowShape,
    rows: Option<View<'_>>,
    n_src: usize,
    in_place: bool,
    x: View<'_>,
    out: View<'_>,
) -> Result<()> {
    let dtype = out.dtype;
    let (w, b) = norm.map_or((None, None), |n| (n.w, n.b));
    for (what, t) in [("norm weight", w), ("norm bias", b)] {
        if let Some(t) = t {
            storage(what, &t, dtype)?;
            need(what, &t, shape.width)?;
        }
    }
    check_rows(
        "norm output",
        out.len,
        shape.rows,
        shape.width,
        shape.ld_out,
    )?;
    let eps = norm.map_or(0.0, |n| n.eps);
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(Error::Data(format!(
            "norm eps {eps} is not a finite eps >= 0"
        )));
    }
    let mut flags = 0;
    if w.is_some() {
        flags |= ZO_NORM_HAS_W;
    }
    if b.is_some() {
        flags |= ZO_NORM_HAS_B;
    }
    if rows.is_some() {
        flags |= ZO_NORM_GATHER;
    }
    if in_place {
        flags |= ZO_NORM_IN_PLACE;
    }
    let p = ZoNormParams {
        rows: shape.rows as u32,
        width: shape.width as u32,
        ld_in: shape.ld_in as u32,
        ld_out: shape.ld_out as u32,
        n_src_rows: check_u32("norm source rows", n_src)?,
        kind: match norm.map(|n| n.kind) {
            Some(NormKind::Rms) => ZO_NORM_RMS,
            Some(NormKind::Layer) => ZO_NORM_LAYER,
            None => ZO_NORM_NONE,
        },
        flags,
        eps,
    };
    if shape.rows == 0 || shape.width == 0 {
        return Ok(());
    }
    let ptrs = [
        rows.map_or(0, |r| r.ptr()),
        w.map_or(0, |w| w.ptr()),
        b.map_or(0, |b| b.ptr()),
        x.ptr(),
        out.ptr(),
    ];
    // SAFETY: (ZoNormParams, const u32* row_idx, const T* w, const T* b, float* x, T* out);
    // extents checked above, gathered indices checked by the kernel against n_src_rows.
    unsafe {
        dev.launch(
            typed("zo_norm", dtype),
            norm_launch_config(shape.rows, shape.width),
            &p,
            &ptrs,
        )
    }
}

/// The MLP's activation from the fp32 GEMM output `input` (stride `ld_in`) into the
/// storage-type GEMM input `out` (stride `ld_out`): `act(in[r][c])`, or when `gated`
/// `act(in[r][c]) * in[r][width + c]` (the fused gate/up output, gate columns first, so
/// `ld_in >= 2 * width`). Twins: `backend::cpu::ops::activate`, `gated_in_place`.
pub fn activation(
    dev: &CudaDevice,
    act: Activation,
    gated: bool,
    shape: RowShape,
    input: View<'_>,
    out: View<'_>,
) -> Result<()> {
    let in_width = if gated { 2 * shape.width } else { shape.width };
    storage("activation input", &input, DType::F32)?;
    check_rows(
        "activation input",
        input.len,
        shape.rows,
        in_width,
        shape.ld_in,
    )?;
    check_rows(
        "activation output",
        out.len,
        shape.rows,
        shape.width,
        shape.ld_out,
    )?;
    let p = ZoActParams {
        rows: shape.rows as u32,
        width: shape.width as u32,
        ld_in: shape.ld_in as u32,
        ld_out: shape.ld_out as u32,
        act: activation_code(act),
        gated: gated as u32,
    };
    if shape.rows == 0 || shape.width == 0 {
        return Ok(());
    }
    // SAFETY: (ZoActParams, const float* in, T* out); extents checked above.
    unsafe {
        dev.launch(
            typed("zo_act", out.dtype),
            row_launch_config(shape.rows, shape.width),
            &p,
            &[input.ptr(), out.ptr()],
        )
    }
}
