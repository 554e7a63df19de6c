//! Linear layers: `y[rows][out] = x[rows][k] · W[out][k]ᵀ (+ bias) (+ y)`, with x and W in
//! the storage dtype, fp32 accumulation and y in fp32 (or the storage dtype with `store_y`).
//! [`linear`] is the checked entry point every caller uses; the device runs it with cuBLASLt
//! on a GPU and with its twin under emulation.

use super::buffer::View;
use super::device::CudaDevice;
use super::DType;
use crate::{Error, Result};

/// The shape of one GEMM; everything cuBLASLt's plan depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GemmShape {
    pub dtype: DType,
    /// Output rows (tokens).
    pub rows: usize,
    /// Output columns (the Linear's out features).
    pub out: usize,
    /// Reduction length (in features, including any augmented columns).
    pub k: usize,
    /// Row strides, in elements.
    pub ld_x: usize,
    pub ld_w: usize,
    pub ld_y: usize,
    pub bias: bool,
    /// y += x·Wᵀ (residual accumulation) instead of y = x·Wᵀ.
    pub accumulate: bool,
    /// y (and the bias) in the storage dtype instead of fp32: the plain library GEMM the
    /// benchmarks' compute floor runs. The forward always keeps y in fp32.
    pub store_y: bool,
}

impl GemmShape {
    pub fn flops(&self) -> f64 {
        2.0 * self.rows as f64 * self.out as f64 * self.k as f64
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.rows == 0 || self.out == 0 || self.k == 0 {
            return Err(Error::Data(format!("gemm: empty shape {self:?}")));
        }
        if self.ld_x < self.k || self.ld_w < self.k || self.ld_y < self.out {
            return Err(Error::Data(format!(
                "gemm: a row stride is shorter than its row in {self:?}"
            )));
        }
        Ok(())
    }
}

fn extent(rows: usize, width: usize, ld: usize) -> usize {
    if rows == 0 {
        0
    } else {
        (rows - 1) * ld + width
    }
}

/// Runs `shape` on the device after checking every operand's type and extent.
pub fn linear(
    dev: &CudaDevice,
    shape: &GemmShape,
    x: View<'_>,
    w: View<'_>,
    y: View<'_>,
    bias: Option<View<'_>>,
) -> Result<()> {
    shape.check()?;
    let y_type = if shape.store_y {
        shape.dtype
    } else {
        DType::F32
    };
    x.expect("gemm x", shape.dtype)?
        .need("gemm x", extent(shape.rows, shape.k, shape.ld_x))?;
    w.expect("gemm W", shape.dtype)?
        .need("gemm W", extent(shape.out, shape.k, shape.ld_w))?;
    y.expect("gemm y", y_type)?
        .need("gemm y", extent(shape.rows, shape.out, shape.ld_y))?;
    if let Some(b) = &bias {
        b.expect("gemm bias", y_type)?
            .need("gemm bias", shape.out)?;
    }
    if shape.bias != bias.is_some() {
        return Err(Error::Data(format!(
            "gemm: shape says bias={} but a bias was{} given",
            shape.bias,
            if bias.is_some() { "" } else { " not" }
        )));
    }
    // SAFETY: every operand was checked to hold what the shape reads and writes.
    unsafe { dev.gemm(shape, x.ptr(), w.ptr(), y.ptr(), bias.map(|b| b.ptr())) }
}
