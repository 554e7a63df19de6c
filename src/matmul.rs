//! Dense products over the packed token matrix, on the `gemm` crate (runtime-dispatched SIMD
//! kernels, rayon-parallel): it matches BLAS-class throughput without a system BLAS, and reads
//! PyTorch's [out][in] weight layout through strides with no transpose copy.

use gemm::Parallelism;

/// `y[m][n] = x[m][k] · w[n][k]ᵀ (+ bias[n])`, all row-major.
pub fn matmul_wt(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "lhs is not [{m}][{k}]");
    assert_eq!(w.len(), n * k, "weight is not [{n}][{k}]");
    let mut y = match bias {
        Some(b) => {
            assert_eq!(b.len(), n, "bias is not [{n}]");
            let mut y = Vec::with_capacity(m * n);
            for _ in 0..m {
                y.extend_from_slice(b);
            }
            y
        }
        None => vec![0.0; m * n],
    };
    if m == 0 || n == 0 || k == 0 {
        return y;
    }
    // SAFETY: the asserts above bound every access: dst is m×n with row stride n, lhs m×k
    // with row stride k, and rhs(kk, j) = w[j * k + kk] stays inside the n×k weight.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            n as isize,
            bias.is_some(),
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::Rayon(0),
        );
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut y = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = b.map_or(0.0, |b| b[j] as f64);
                for kk in 0..k {
                    s += x[i * k + kk] as f64 * w[j * k + kk] as f64;
                }
                y[i * n + j] = s;
            }
        }
        y
    }

    fn vals(n: usize, salt: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| ((i.wrapping_mul(2654435761) ^ salt) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn matches_naive_with_and_without_bias() {
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 7), (37, 64, 19), (130, 96, 70)] {
            let x = vals(m * k, 1);
            let w = vals(n * k, 2);
            let b = vals(n, 3);
            for bias in [None, Some(&b[..])] {
                let got = matmul_wt(&x, &w, bias, m, k, n);
                let want = naive(&x, &w, bias, m, k, n);
                for (g, w) in got.iter().zip(&want) {
                    assert!((*g as f64 - w).abs() < 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn empty_rows_give_empty_output() {
        assert!(matmul_wt(&[], &[1.0, 2.0], None, 0, 2, 1).is_empty());
    }
}
