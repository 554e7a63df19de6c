//! Row-wise forward ops between the GEMMs (csrc/ops.cu): embedding gather, RMSNorm/LayerNorm,
//! MLP activations, residual and bias adds, storage conversions, row gathers, fills.
//!
//! Buffers are any cudarc slice or view (`CudaSlice`, `CudaView`, `CudaViewMut`). fp32 buffers
//! are typed `f32`. Storage-type buffers (weights and GEMM inputs, whose element type is known
//! only at run time as a [`DType`]) are generic over the slice's element type `S`: either a type
//! of the dtype's size (`f32`, `half::bf16`, `half::f16`, `u16`) or raw bytes (`u8`); their
//! lengths are counted in elements of the dtype. An op writes only columns `[0, width)` of each
//! output row (row strides `ld` in elements), so GEMM-input buffers can carry extra columns
//! written by other kernels. Launches are queued on the device's stream; nothing synchronises.
//! Shapes are checked here; indices that live in device memory (tokens, positions, gathered
//! rows) are checked by the kernels, which write NaN rather than read out of bounds.

use cudarc::driver::{DevicePtr, DevicePtrMut};

use super::device::CudaDevice;
use super::dtype::DType;
use super::params::*;
#[cfg(zo_kernels)]
use crate::backend::launch::{norm_launch_config, row_launch_config, LaunchDims};
use crate::model::{Activation, NormKind};
use crate::{Error, Result};

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
pub struct Table<'a, S> {
    pub data: &'a dyn DevicePtr<S>,
    pub rows: usize,
}

/// OPT's learned positions: row `positions[t] + offset` of `table` is added to token `t`.
pub struct Positions<'a, S> {
    pub positions: &'a dyn DevicePtr<u32>,
    pub table: Table<'a, S>,
    /// 2 for OPT (a fairseq legacy).
    pub offset: u32,
}

/// A norm's parameters on the device: weight and bias `[width]` in the storage type.
pub struct NormWeights<'a, W> {
    pub kind: NormKind,
    pub eps: f32,
    pub w: Option<&'a dyn DevicePtr<W>>,
    pub b: Option<&'a dyn DevicePtr<W>>,
}

/// The kernel instance for a storage type: `typed!("zo_norm", dtype)` is "zo_norm_bf16" etc.
#[cfg(zo_kernels)]
macro_rules! typed {
    ($base:literal, $dtype:expr) => {
        match $dtype {
            DType::F32 => concat!($base, "_f32"),
            DType::Bf16 => concat!($base, "_bf16"),
            DType::F16 => concat!($base, "_f16"),
        }
    };
}

/// Elements of `dtype` that a buffer of `n` elements of type `S` holds, refusing element types
/// that are neither bytes nor of the dtype's size.
pub(crate) fn storage_len<S>(what: &str, n: usize, dtype: DType) -> Result<usize> {
    let s = std::mem::size_of::<S>();
    if s != 1 && s != dtype.size() {
        return Err(Error::Unsupported(format!(
            "{what}: a buffer of {s}-byte elements cannot hold {dtype} values; use a {}-byte \
             element type or bytes",
            dtype.size()
        )));
    }
    Ok(n * s / dtype.size())
}

/// Every dimension a kernel receives is a u32.
pub(crate) fn check_u32(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::Unsupported(format!(
            "{what} = {v} exceeds the kernels' 32-bit dimensions"
        ))
    })
}

/// A `[rows][width]` region with row stride `ld` must fit in `len` elements.
pub(crate) fn check_rows(
    what: &str,
    len: usize,
    rows: usize,
    width: usize,
    ld: usize,
) -> Result<()> {
    check_u32(&format!("{what} rows"), rows)?;
    check_u32(&format!("{what} width"), width)?;
    check_u32(&format!("{what} row stride"), ld)?;
    if ld < width {
        return Err(Error::Data(format!(
            "{what}: row stride {ld} is smaller than the width {width}"
        )));
    }
    if rows == 0 || width == 0 {
        return Ok(());
    }
    let need = (rows - 1)
        .checked_mul(ld)
        .and_then(|v| v.checked_add(width));
    match need {
        Some(n) if n <= len => Ok(()),
        _ => Err(Error::Data(format!(
            "{what}: {rows} rows of {width} columns at stride {ld} need {} elements but the \
             buffer holds {len}",
            need.map_or_else(|| "more than usize::MAX".to_string(), |n| n.to_string())
        ))),
    }
}

/// Whole rows of stride `ld` (and `width` columns) that a buffer of `len` elements holds.
pub(crate) fn rows_in(len: usize, width: usize, ld: usize) -> usize {
    if len < width || ld == 0 {
        0
    } else {
        (len - width) / ld + 1
    }
}

fn check_len(what: &str, len: usize, want: usize) -> Result<()> {
    if len < want {
        return Err(Error::Data(format!(
            "{what}: {want} elements needed but the buffer holds {len}"
        )));
    }
    Ok(())
}

fn activation_code(act: Activation) -> u32 {
    match act {
        Activation::Silu => ZO_ACT_SILU,
        Activation::Relu => ZO_ACT_RELU,
        Activation::Gelu => ZO_ACT_GELU,
    }
}

#[cfg(not(zo_kernels))]
fn no_kernels() -> Error {
    Error::Cuda("this build has no CUDA kernels".into())
}

impl CudaDevice {
    /// Token embeddings into the fp32 residual `x` (dense `[n_tokens][width]`, n_tokens =
    /// `tokens.len()`): `x[t] = widen(words[tokens[t]])`, plus, when `positions` is given (no
    /// projection between the two), `widen(P[positions[t] + offset])` added in fp32 as the CPU
    /// adds the two rows. A token or position outside its table gives a NaN row.
    pub fn embed<S>(
        &self,
        dtype: DType,
        width: usize,
        tokens: &impl DevicePtr<u32>,
        words: Table<'_, S>,
        positions: Option<Positions<'_, S>>,
        x: &mut impl DevicePtrMut<f32>,
    ) -> Result<()> {
        let n = tokens.len();
        let len = storage_len::<S>("token embeddings", words.data.len(), dtype)?;
        check_rows("token embeddings", len, words.rows, width, width)?;
        check_rows("embedding output x", x.len(), n, width, width)?;
        let mut flags = ZO_EMBED_TOKENS;
        let (mut n_pos, mut offset) = (0, 0);
        if let Some(p) = &positions {
            check_len("embedding positions", p.positions.len(), n)?;
            let len = storage_len::<S>("position embeddings", p.table.data.len(), dtype)?;
            check_rows("position embeddings", len, p.table.rows, width, width)?;
            flags |= ZO_EMBED_POSITIONS;
            n_pos = p.table.rows;
            offset = p.offset;
        }
        check_u32("vocabulary", words.rows)?;
        check_u32("position table rows", n_pos)?;
        if n == 0 || width == 0 {
            return Ok(());
        }
        #[cfg(zo_kernels)]
        {
            let p = ZoEmbedParams {
                n_tokens: n as u32,
                width: width as u32,
                ld: width as u32,
                vocab: words.rows as u32,
                n_pos: n_pos as u32,
                pos_offset: offset,
                flags,
                reserved: 0,
            };
            let mut a = super::kernel_args::KernelArgs::new(self.stream());
            a.read("tokens", tokens, 4)?;
            match &positions {
                Some(pos) => a.read("positions", pos.positions, 4)?,
                None => a.read_opt::<u32, dyn DevicePtr<u32>>("positions", None, 4)?,
            };
            a.read("token embeddings", words.data, dtype.size())?;
            match &positions {
                Some(pos) => a.read("position embeddings", pos.table.data, dtype.size())?,
                None => a.read_opt::<S, dyn DevicePtr<S>>("position embeddings", None, 1)?,
            };
            a.write("embedding output x", x, 4)?;
            self.launch_ops(
                typed!("zo_embed", dtype),
                &p,
                row_launch_config(n, width),
                a,
            )
        }
        #[cfg(not(zo_kernels))]
        {
            let _ = (flags, n_pos, offset, x);
            Err(no_kernels())
        }
    }

    /// Adds learned positions into the fp32 residual `x` (dense `[n_tokens][width]`, n_tokens =
    /// `positions.positions.len()`): `x[t] += widen(P[positions[t] + offset])`, for models
    /// that project the token embeddings before the positions are added.
    pub fn add_positions<S>(
        &self,
        dtype: DType,
        width: usize,
        positions: Positions<'_, S>,
        x: &mut impl DevicePtrMut<f32>,
    ) -> Result<()> {
        let n = positions.positions.len();
        let len = storage_len::<S>("position embeddings", positions.table.data.len(), dtype)?;
        check_rows(
            "position embeddings",
            len,
            positions.table.rows,
            width,
            width,
        )?;
        check_rows("residual x", x.len(), n, width, width)?;
        check_u32("position table rows", positions.table.rows)?;
        if n == 0 || width == 0 {
            return Ok(());
        }
        #[cfg(zo_kernels)]
        {
            let p = ZoEmbedParams {
                n_tokens: n as u32,
                width: width as u32,
                ld: width as u32,
                vocab: 0,
                n_pos: positions.table.rows as u32,
                pos_offset: positions.offset,
                flags: ZO_EMBED_POSITIONS,
                reserved: 0,
            };
            let mut a = super::kernel_args::KernelArgs::new(self.stream());
            a.read_opt::<u32, dyn DevicePtr<u32>>("tokens", None, 4)?;
            a.read("positions", positions.positions, 4)?;
            a.read_opt::<S, dyn DevicePtr<S>>("token embeddings", None, 1)?;
            a.read("position embeddings", positions.table.data, dtype.size())?;
            a.write("residual x", x, 4)?;
            self.launch_ops(
                typed!("zo_embed", dtype),
                &p,
                row_launch_config(n, width),
                a,
            )
        }
        #[cfg(not(zo_kernels))]
        {
            let _ = x;
            Err(no_kernels())
        }
    }

    /// Normalises rows `[0, shape.rows)` of the fp32 `x` (stride `ld_in`) into the storage-type
    /// GEMM input `out` (stride `ld_out`, columns `[0, width)`), HF's order of operations
    /// (twin: `backend::cpu::ops::norm_row`).
    pub fn norm<W, S>(
        &self,
        dtype: DType,
        norm: &NormWeights<'_, W>,
        shape: RowShape,
        x: &impl DevicePtr<f32>,
        out: &mut impl DevicePtrMut<S>,
    ) -> Result<()> {
        check_rows(
            "norm input x",
            x.len(),
            shape.rows,
            shape.width,
            shape.ld_in,
        )?;
        self.norm_launch(dtype, norm, shape, None, shape.rows, x, out)
    }

    /// [`CudaDevice::norm`] of gathered rows: output row `r` normalises row `rows[r]` of `x`
    /// (`shape.rows == rows.len()`); the final norm on the scoring rows only. An index past the
    /// rows `x` holds gives a NaN row.
    pub fn norm_gather<W, S>(
        &self,
        dtype: DType,
        norm: &NormWeights<'_, W>,
        shape: RowShape,
        rows: &impl DevicePtr<u32>,
        x: &impl DevicePtr<f32>,
        out: &mut impl DevicePtrMut<S>,
    ) -> Result<()> {
        if rows.len() != shape.rows {
            return Err(Error::Data(format!(
                "norm gather: {} row indices for {} output rows",
                rows.len(),
                shape.rows
            )));
        }
        check_rows("norm input x", x.len(), 0, shape.width, shape.ld_in)?;
        let n_src = rows_in(x.len(), shape.width, shape.ld_in);
        let rows: &dyn DevicePtr<u32> = rows;
        self.norm_launch(dtype, norm, shape, Some(rows), n_src, x, out)
    }

    /// OPT's post-LN: normalises rows of the fp32 residual `x` in place (stride `ld_in`) and
    /// writes the same values in the storage type to `out` (stride `ld_out`) for the next GEMM.
    pub fn norm_in_place<W, S>(
        &self,
        dtype: DType,
        norm: &NormWeights<'_, W>,
        shape: RowShape,
        x: &mut impl DevicePtrMut<f32>,
        out: &mut impl DevicePtrMut<S>,
    ) -> Result<()> {
        check_rows(
            "norm residual x",
            x.len(),
            shape.rows,
            shape.width,
            shape.ld_in,
        )?;
        self.norm_launch_mut(dtype, norm, shape, x, out)
    }

    /// The MLP's activation from the fp32 GEMM output `input` (stride `ld_in`) into the
    /// storage-type GEMM input `out` (stride `ld_out`): `act(in[r][c])`, or when `gated`
    /// `act(in[r][c]) * in[r][width + c]` (the fused gate/up output, gate columns first, so
    /// `ld_in >= 2 * width`). Twins: `backend::cpu::ops::activate`, `gated_in_place`.
    pub fn activation<S>(
        &self,
        dtype: DType,
        act: Activation,
        gated: bool,
        shape: RowShape,
        input: &impl DevicePtr<f32>,
        out: &mut impl DevicePtrMut<S>,
    ) -> Result<()> {
        let in_width = if gated { 2 * shape.width } else { shape.width };
        check_rows(
            "activation input",
            input.len(),
            shape.rows,
            in_width,
            shape.ld_in,
        )?;
        let len = storage_len::<S>("activation output", out.len(), dtype)?;
        check_rows(
            "activation output",
            len,
            shape.rows,
            shape.width,
            shape.ld_out,
        )?;
        if shape.rows == 0 || shape.width == 0 {
            return Ok(());
        }
        #[cfg(zo_kernels)]
        {
            let p = ZoActParams {
                rows: shape.rows as u32,
                width: shape.width as u32,
                ld_in: shape.ld_in as u32,
                ld_out: shape.ld_out as u32,
                act: activation_code(act),
                gated: gated as u32,
            };
            let mut a = super::kernel_args::KernelArgs::new(self.stream());
            a.read("activation input", input, 4)?;
            a.write("activation output", out, dtype.size())?;
            let cfg = row_launch_config(shape.rows, shape.width);
            self.launch_ops(typed!("zo_act", dtype), &p, cfg, a)
        }
        #[cfg(not(zo_kernels))]
        {
            let _ = (activation_code(act), out);
            Err(no_kernels())
        }
    }

    /// Residual add `x += y` in fp32 (x: stride `ld_out`, y: stride `ld_in`).
    pub fn add_f32(
        &self,
        shape: RowShape,
        x: &mut impl DevicePtrMut<f32>,
        y: &impl DevicePtr<f32>,
    ) -> Result<()> {
        check_rows("residual x", x.len(), shape.rows, shape.width, shape.ld_out)?;
        check_rows(
            "residual addend y",
            y.len(),
            shape.rows,
            shape.width,
            shape.ld_in,
        )?;
        if shape.rows == 0 || shape.width == 0 {
            return Ok(());
        }
        #[cfg(zo_kernels)]
        {
            let mut a = super::kernel_args::KernelArgs::new(self.stream());
            a.write("residual x", x, 4)?;
            a.read("residual addend y", y, 4)?;
            self.launch_rows("zo_add_f32", shape, 0, 0.0, a)
        }
        #[cfg(not(zo_kernels))]
        {
            let _ = (x, y);
            Err(no_kernels())
        }
    }

    /// `y[r][c] += widen(bias[c])` in fp32 (y: stride `ld_out`), for GEMMs whose epilogue does
    /// not add the bias.
    pub fn bias_add<S>(
        &self,
        dtype: DType,
        shape: RowShape,
        y: &mut impl DevicePtrMut<f32>,
        bias: &impl DevicePtr<S>,
    ) -> Result<()> {
        check_rows(
            "bias-add output y",
            y.len(),
            shape.rows,
            shape.width,
            shape.ld_out,
        )?;
        let len = storage_len::<S>("bias", bias.len(), dtype)?;
        check_len("bias", len, shape.width)?;
        if shape.rows == 0 || shape.width == 0 {
            return Ok(());
        }
        #[cfg(zo_kernels)]
        {
            let mut a = super::kernel_args::KernelArgs::new(self.stream());
            a.write("bias-add output y", y, 4)?;
            a.read("bias", bias, dtype.size())?;
            self.launch_rows(typed!("zo_bias_add", dtype), shape, 0, 0.0, a)
        }
        #[cfg(not(zo_kernels))]
        {
            let _ = y;
            Err(no_kernels())
        }
    }

    /// fp32 `src` (stride `ld_in`) rounded to the storage type into `dst` (stride `ld_out`).
    pub fn to_storage<S>(
        &self,
        dtype: DType,
        shape: RowShape,
        src: &impl DevicePtr<f32>,
        dst: &mut impl DevicePtrMut<S>,
    ) -> Result<()> {
        check_rows(
            "conversion input",
            src.len(),
            shape.rows,
            shape.width,
            shape.ld_in,
        )?;
        let len = storage_len::<S>("conversion output", dst.len(), dtype)?;
        check_rows(
            "conversion output",
            len,
            shape.rows,
            shape.width,
            shape.ld_out,
        )?;
        if shape.rows == 0 || shape.width == 0 {
            return Ok(());
        }
        #[cfg(zo_kernels)]
        {
            let mut a = super::kernel_args::KernelArgs::new(self.stream());
            a.read("conversion input", src, 4)?;
            a.write("conversion output", dst, dtype.size())?;
            self.launch_rows(typed!("zo_to_storage", dtype), shape, 0, 0.0, a)
        }
        #[cfg(not(zo_kernels))]
        {
            let _ = dst;
            Err(no_kernels())
        }
    }

    /// Storage-type `src` (stride `ld_in`) widened to fp32 into `dst` (stride `ld_out`).
    pub fn from_storage<S>(
        &self,
        dtype: DType,
        shape: RowShape,
        src: &impl DevicePtr<S>,
        dst: &mut impl DevicePtrMut<f32>,
    ) -> Result<()> {
        let len = storage_len::<S>("conversion input", src.len(), dtype)?;
        check_rows(
            "conversion input",
            len,
            shape.rows,
            shape.width,
            shape.ld_in,
        )?;
        check_rows(
            "conversion output",
            dst.len(),
            shape.rows,
            shape.width,
            shape.ld_out,
        )?;
        if shape.rows == 0 || shape.width == 0 {
            return Ok(());
        }
        #[cfg(zo_kernels)]
        {
            let mut a = super::kernel_args::KernelArgs::new(self.stream());
            a.read("conversion input", src, dtype.size())?;
            a.write("conversion output", dst, 4)?;
            self.launch_rows(typed!("zo_from_storage", dtype), shape, 0, 0.0, a)
        }
        #[cfg(not(zo_kernels))]
        {
            let _ = dst;
            Err(no_kernels())
        }
    }

    /// `dst` row `r` (stride `ld_out`) = `src` row `rows[r]` (stride `ld_in`), fp32;
    /// `shape.rows == rows.len()`. An index past the rows `src` holds gives a NaN row.
    pub fn gather_rows_f32(
        &self,
        shape: RowShape,
        rows: &impl DevicePtr<u32>,
        src: &impl DevicePtr<f32>,
        dst: &mut impl DevicePtrMut<f32>,
    ) -> Result<()> {
        if rows.len() != shape.rows {
            return Err(Error::Data(format!(
                "row gather: {} row indices for {} output rows",
                rows.len(),
                shape.rows
            )));
        }
        check_rows("gather input", src.len(), 0, shape.width, shape.ld_in)?;
        check_rows(
            "gather output",
            dst.len(),
            shape.rows,
            shape.width,
            shape.ld_out,
        )?;
        let n_src = check_u32(
            "gather input rows",
            rows_in(src.len(), shape.width, shape.ld_in),
        )?;
        if shape.rows == 0 || shape.width == 0 {
            return Ok(());
        }
        #[cfg(zo_kernels)]
        {
            let mut a = super::kernel_args::KernelArgs::new(self.stream());
            a.read("gather rows", rows, 4)?;
            a.read("gather input", src, 4)?;
            a.write("gather output", dst, 4)?;
            self.launch_rows("zo_gather_rows_f32", shape, n_src, 0.0, a)
        }
        #[cfg(not(zo_kernels))]
        {
            let _ = (n_src, dst);
            Err(no_kernels())
        }
    }

    /// Columns `[0, width)` of `dst` (stride `ld_out`) set to `value` rounded to the storage type
    /// (offset the view to fill a column range that does not start at 0).
    pub fn fill<S>(
        &self,
        dtype: DType,
        shape: RowShape,
        value: f32,
        dst: &mut impl DevicePtrMut<S>,
    ) -> Result<()> {
        let len = storage_len::<S>("fill output", dst.len(), dtype)?;
        check_rows("fill output", len, shape.rows, shape.width, shape.ld_out)?;
        if shape.rows == 0 || shape.width == 0 {
            return Ok(());
        }
        #[cfg(zo_kernels)]
        {
            let mut a = super::kernel_args::KernelArgs::new(self.stream());
            a.write("fill output", dst, dtype.size())?;
            self.launch_rows(typed!("zo_fill", dtype), shape, 0, value, a)
        }
        #[cfg(not(zo_kernels))]
        {
            let _ = (value, dst);
            Err(no_kernels())
        }
    }

    /// `x *= value` in fp32 over columns `[0, width)` (stride `ld_out`): OPT scales its
    /// projected queries, bias included.
    pub fn scale_f32(
        &self,
        shape: RowShape,
        value: f32,
        x: &mut impl DevicePtrMut<f32>,
    ) -> Result<()> {
        check_rows("scaled x", x.len(), shape.rows, shape.width, shape.ld_out)?;
        if shape.rows == 0 || shape.width == 0 {
            return Ok(());
        }
        #[cfg(zo_kernels)]
        {
            let mut a = super::kernel_args::KernelArgs::new(self.stream());
            a.write("scaled x", x, 4)?;
            self.launch_rows("zo_scale_f32", shape, 0, value, a)
        }
        #[cfg(not(zo_kernels))]
        {
            let _ = (value, x);
            Err(no_kernels())
        }
    }

    /// Shared tail of [`CudaDevice::norm`] and [`CudaDevice::norm_gather`]: `x` read only.
    #[allow(clippy::too_many_arguments)]
    fn norm_launch<W, S>(
        &self,
        dtype: DType,
        norm: &NormWeights<'_, W>,
        shape: RowShape,
        rows: Option<&dyn DevicePtr<u32>>,
        n_src: usize,
        x: &impl DevicePtr<f32>,
        out: &mut impl DevicePtrMut<S>,
    ) -> Result<()> {
        let p = norm_params::<W, S>(dtype, norm, shape, rows.is_some(), false, n_src, out.len())?;
        if shape.rows == 0 || shape.width == 0 {
            return Ok(());
        }
        #[cfg(zo_kernels)]
        {
            let mut a = super::kernel_args::KernelArgs::new(self.stream());
            a.read_opt("norm rows", rows, 4)?;
            a.read_opt("norm weight", norm.w, dtype.size())?;
            a.read_opt("norm bias", norm.b, dtype.size())?;
            a.read("norm input x", x, 4)?;
            a.write("norm output", out, dtype.size())?;
            let cfg = norm_launch_config(shape.rows, shape.width);
            self.launch_ops(typed!("zo_norm", dtype), &p, cfg, a)
        }
        #[cfg(not(zo_kernels))]
        {
            let _ = (p, x);
            Err(no_kernels())
        }
    }

    fn norm_launch_mut<W, S>(
        &self,
        dtype: DType,
        norm: &NormWeights<'_, W>,
        shape: RowShape,
        x: &mut impl DevicePtrMut<f32>,
        out: &mut impl DevicePtrMut<S>,
    ) -> Result<()> {
        let p = norm_params::<W, S>(dtype, norm, shape, false, true, shape.rows, out.len())?;
        if shape.rows == 0 || shape.width == 0 {
            return Ok(());
        }
        #[cfg(zo_kernels)]
        {
            let mut a = super::kernel_args::KernelArgs::new(self.stream());
            a.read_opt::<u32, dyn DevicePtr<u32>>("norm rows", None, 4)?;
            a.read_opt("norm weight", norm.w, dtype.size())?;
            a.read_opt("norm bias", norm.b, dtype.size())?;
            a.write("norm residual x", x, 4)?;
            a.write("norm output", out, dtype.size())?;
            let cfg = norm_launch_config(shape.rows, shape.width);
            self.launch_ops(typed!("zo_norm", dtype), &p, cfg, a)
        }
        #[cfg(not(zo_kernels))]
        {
            let _ = (p, x);
            Err(no_kernels())
        }
    }
}

/// Checks the weights and output of a norm and packs its parameters (csrc/params/ops.h).
#[allow(clippy::too_many_arguments)]
fn norm_params<W, S>(
    dtype: DType,
    norm: &NormWeights<'_, W>,
    shape: RowShape,
    gather: bool,
    in_place: bool,
    n_src: usize,
    out_len: usize,
) -> Result<ZoNormParams> {
    for (what, t) in [("norm weight", norm.w), ("norm bias", norm.b)] {
        if let Some(t) = t {
            let len = storage_len::<W>(what, t.len(), dtype)?;
            check_len(what, len, shape.width)?;
        }
    }
    let len = storage_len::<S>("norm output", out_len, dtype)?;
    check_rows("norm output", len, shape.rows, shape.width, shape.ld_out)?;
    check_u32("norm source rows", n_src)?;
    if !(norm.eps >= 0.0 && norm.eps.is_finite()) {
        return Err(Error::Data(format!(
            "norm eps {} is not a finite eps >= 0",
            norm.eps
        )));
    }
    let mut flags = 0;
    if norm.w.is_some() {
        flags |= ZO_NORM_HAS_W;
    }
    if norm.b.is_some() {
        flags |= ZO_NORM_HAS_B;
    }
    if gather {
        flags |= ZO_NORM_GATHER;
    }
    if in_place {
        flags |= ZO_NORM_IN_PLACE;
    }
    Ok(ZoNormParams {
        rows: shape.rows as u32,
        width: shape.width as u32,
        ld_in: shape.ld_in as u32,
        ld_out: shape.ld_out as u32,
        n_src_rows: n_src as u32,
        kind: match norm.kind {
            NormKind::Rms => ZO_NORM_RMS,
            NormKind::Layer => ZO_NORM_LAYER,
        },
        flags,
        eps: norm.eps,
    })
}

// SAFETY: plain #[repr(C)] structs of integers and floats, passed to kernels by value.
unsafe impl cudarc::driver::DeviceRepr for ZoEmbedParams {}
unsafe impl cudarc::driver::DeviceRepr for ZoNormParams {}
unsafe impl cudarc::driver::DeviceRepr for ZoActParams {}
unsafe impl cudarc::driver::DeviceRepr for ZoRowsParams {}

#[cfg(zo_kernels)]
impl CudaDevice {
    fn launch_ops<P: cudarc::driver::DeviceRepr>(
        &self,
        name: &'static str,
        params: &P,
        dims: LaunchDims,
        args: super::kernel_args::KernelArgs<'_>,
    ) -> Result<()> {
        let func = self.function(name)?;
        let cfg = dims.into();
        // SAFETY: every wrapper above collects exactly the pointers of its kernel's signature,
        // in order, after checking that the rows, strides and widths it passes stay inside
        // each buffer; indices read from device memory are bounds-checked by the kernels.
        unsafe { args.launch(&func, name, params, cfg) }
    }

    /// One of the ZoRowsParams kernels.
    fn launch_rows(
        &self,
        name: &'static str,
        shape: RowShape,
        n_src_rows: u32,
        value: f32,
        args: super::kernel_args::KernelArgs<'_>,
    ) -> Result<()> {
        let p = ZoRowsParams {
            rows: shape.rows as u32,
            width: shape.width as u32,
            ld_dst: shape.ld_out as u32,
            ld_src: shape.ld_in as u32,
            n_src_rows,
            value,
        };
        self.launch_ops(name, &p, row_launch_config(shape.rows, shape.width), args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_extents() {
        // 3 rows of 5 at stride 8: the last row ends at 2·8 + 5.
        assert!(check_rows("x", 21, 3, 5, 8).is_ok());
        let e = check_rows("x", 20, 3, 5, 8).unwrap_err();
        assert!(e.to_string().contains("need 21 elements"), "{e}");
        assert!(check_rows("x", 100, 3, 9, 8)
            .unwrap_err()
            .to_string()
            .contains("stride 8"));
        assert!(check_rows("x", 0, 0, 9, 9).is_ok());
        assert!(check_rows("x", usize::MAX, usize::MAX, 2, 2).is_err());
        assert_eq!(rows_in(21, 5, 8), 3);
        assert_eq!(rows_in(20, 5, 8), 2);
        assert_eq!(rows_in(4, 5, 8), 0);
    }

    #[test]
    fn storage_lengths_count_elements_of_the_dtype() {
        assert_eq!(storage_len::<u8>("w", 10, DType::Bf16).unwrap(), 5);
        assert_eq!(storage_len::<u16>("w", 10, DType::F16).unwrap(), 10);
        assert_eq!(storage_len::<f32>("w", 10, DType::F32).unwrap(), 10);
        let e = storage_len::<f32>("w", 10, DType::Bf16).unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e}");
    }
}
