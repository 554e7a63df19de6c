//! Row-wise operations: norms, activations, rotary embeddings, log-sum-exp. Rows are
//! independent, so each is processed alone and the result never depends on packing.

use rayon::prelude::*;

pub use crate::backend::rope::{rope_inv_freq, rope_tables};
use crate::model::{Activation, Norm, NormKind};

/// Rows per rayon task: enough work to amortise scheduling on short rows.
fn rows_per_task(dim: usize) -> usize {
    (16_384 / dim.max(1)).max(1)
}

pub fn norm_rows_in_place(x: &mut [f32], dim: usize, norm: &Norm) {
    let per = rows_per_task(dim);
    x.par_chunks_mut(dim * per).for_each(|chunk| {
        for row in chunk.chunks_exact_mut(dim) {
            norm_row(row, norm);
        }
    });
}

/// HF order: RMSNorm is `w * (x * rsqrt(mean(x²) + eps))`; LayerNorm is
/// `(x - mean) / sqrt(var + eps) * w + b` with the biased variance. Statistics are
/// accumulated in f64 so they carry no summation-order noise.
pub fn norm_row(row: &mut [f32], norm: &Norm) {
    let n = row.len() as f64;
    match norm.kind {
        NormKind::Rms => {
            let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / n;
            let r = (1.0 / (ms + norm.eps as f64).sqrt()) as f32;
            row.iter_mut().for_each(|v| *v *= r);
        }
        NormKind::Layer => {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let r = 1.0 / (var + norm.eps as f64).sqrt();
            row.iter_mut()
                .for_each(|v| *v = ((*v as f64 - mean) * r) as f32);
        }
    }
    if let Some(w) = &norm.w {
        row.iter_mut().zip(w).for_each(|(v, w)| *v *= w);
    }
    if let Some(b) = &norm.b {
        row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
    }
}

/// HF's activation functions ("gelu" is the exact erf form).
pub fn activate(x: f32, act: Activation) -> f32 {
    match act {
        Activation::Silu => x / (1.0 + (-x).exp()),
        Activation::Relu => x.max(0.0),
        Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
    }
}

pub fn activate_in_place(x: &mut [f32], act: Activation) {
    x.par_chunks_mut(16_384)
        .for_each(|c| c.iter_mut().for_each(|v| *v = activate(*v, act)));
}

/// `gate = act(gate) * up`, elementwise: the gated MLP's middle.
pub fn gated_in_place(gate: &mut [f32], up: &[f32], act: Activation) {
    gate.par_chunks_mut(16_384)
        .zip(up.par_chunks(16_384))
        .for_each(|(g, u)| {
            g.iter_mut()
                .zip(u)
                .for_each(|(g, &u)| *g = activate(*g, act) * u)
        });
}

/// `x += y`, elementwise (residual adds).
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    assert_eq!(x.len(), y.len());
    x.par_chunks_mut(16_384)
        .zip(y.par_chunks(16_384))
        .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
}

/// Rotates every head of every row in place, HF's `rotate_half` convention: element `i` pairs
/// with `i + head_dim/2`.
pub fn apply_rope(x: &mut [f32], width: usize, head_dim: usize, cos: &[f32], sin: &[f32]) {
    let half = head_dim / 2;
    x.par_chunks_mut(width)
        .zip(cos.par_chunks(half).zip(sin.par_chunks(half)))
        .for_each(|(row, (c, s))| {
            for head in row.chunks_exact_mut(head_dim) {
                let (a, b) = head.split_at_mut(half);
                for i in 0..half {
                    let (x1, x2) = (a[i], b[i]);
                    a[i] = x1 * c[i] - x2 * s[i];
                    b[i] = x2 * c[i] + x1 * s[i];
                }
            }
        });
}

/// log Σ exp(row), max-subtracted, summed in f64.
pub fn log_sum_exp(row: &[f32]) -> f64 {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    if !m.is_finite() {
        return m;
    }
    m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(kind: NormKind, w: Option<Vec<f32>>, b: Option<Vec<f32>>) -> Norm {
        Norm {
            w,
            b,
            eps: 1e-5,
            kind,
        }
    }

    #[test]
    fn rms_and_layer_norm_values() {
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let mut y = x;
        norm_rows_in_place(&mut y, 4, &norm(NormKind::Rms, Some(vec![2.0; 4]), None));
        let r = 1.0 / (7.5f64 + 1e-5).sqrt();
        for (g, v) in y.iter().zip(x) {
            assert!((*g as f64 - 2.0 * v as f64 * r).abs() < 1e-6);
        }
        let mut y = x;
        norm_rows_in_place(&mut y, 4, &norm(NormKind::Layer, None, Some(vec![1.0; 4])));
        // mean 2.5, var 1.25.
        let r = 1.0 / (1.25f64 + 1e-5).sqrt();
        for (g, v) in y.iter().zip(x) {
            assert!((*g as f64 - ((v as f64 - 2.5) * r + 1.0)).abs() < 1e-6);
        }
    }

    #[test]
    fn activations() {
        assert_eq!(activate(-2.0, Activation::Relu), 0.0);
        assert!((activate(1.0, Activation::Silu) - 0.731_058_6).abs() < 1e-6);
        // gelu(1) = 0.5 (1 + erf(1/√2)) = 0.841344746...
        assert!((activate(1.0, Activation::Gelu) - 0.841_344_7).abs() < 1e-6);
    }

    #[test]
    fn rope_rotates_pairs_by_position_angle() {
        let inv = rope_inv_freq(4, 10_000.0, None);
        assert_eq!(inv[0], 1.0);
        let (c, s) = rope_tables(&[3], &inv);
        let mut x = [1.0f32, 0.0, 0.0, 1.0];
        apply_rope(&mut x, 4, 4, &c, &s);
        // Pair (x0, x2) = (1, 0) rotated by 3 rad.
        assert!((x[0] - 3f32.cos()).abs() < 1e-6 && (x[2] - 3f32.sin()).abs() < 1e-6);
        // Pair (x1, x3) = (0, 1) rotated by 3·0.01 rad.
        assert!((x[1] + 0.03f32.sin()).abs() < 1e-6 && (x[3] - 0.03f32.cos()).abs() < 1e-6);
    }

    #[test]
    fn lse_is_stable() {
        let v = log_sum_exp(&[1000.0, 1000.0]);
        assert!((v - (1000.0 + 2f64.ln())).abs() < 1e-9);
    }
}
