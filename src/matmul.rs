//! Dense products over the packed token matrix, on the `gemm` crate (runtime-dispatched SIMD
//! kernels, rayon-parallel): it matches BLAS-class throughput without a system BLAS, and reads
//! PyTorch's [out][in] weight layout through strides with no transpose copy.

use gemm::Parallelism;

/// K is cut into chunks of at most this many terms, each one `gemm` call that runs as a single
/// k-block. `gemm` picks its k-blocking from the row count (small products take another path),
/// and a k-block boundary is a rounding point; with one block per call every output element
/// sums its products in the same order whatever the row count. So a row's result does not
/// depend on the other rows packed with it, which is what lets a step be split across ranks
/// (or batched differently) and still give every example the same loss bit for bit.
const K_CHUNK: usize = 512;

/// At most this many outputs, `gemm` computes with dot products along k instead of its matrix
/// kernel (and a single row with a matrix-vector kernel).
const SMALL_PRODUCT: usize = 256;

/// A strided f32 matrix: element (row, col) at `data[row·rs + col·cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        let last = (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs;
        assert!(
            rows == 0 || cols == 0 || last < data.len(),
            "{rows}×{cols} view (strides {rs}, {cs}) overruns {} elements",
            data.len()
        );
        Mat {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }
}

/// `dst[m][n] = (read_dst ? dst : 0) + beta · lhs[m][k] · rhs`, with `dst` and `lhs` row-major
/// and `rhs` a `[k][n]` view. Each row's result is independent of `m` (see [`K_CHUNK`]).
pub fn gemm_rows(dst: &mut [f32], read_dst: bool, lhs: &[f32], rhs: Mat, beta: f32) {
    let (k, n) = (rhs.rows, rhs.cols);
    if n == 0 {
        return;
    }
    let m = dst.len() / n;
    assert_eq!(dst.len(), m * n, "dst is not [{m}][{n}]");
    assert_eq!(lhs.len(), m * k, "lhs is not [{m}][{k}]");
    if m == 0 {
        return;
    }
    if k == 0 {
        if !read_dst {
            dst.fill(0.0);
        }
        return;
    }
    if m * n <= SMALL_PRODUCT || m == 1 {
        // Tiny products take gemm's vector paths, whose summation order differs from the
        // matrix kernel's; zero rows appended keep them on the matrix kernel.
        let mp = (SMALL_PRODUCT / n + 1).max(2);
        let mut d = vec![0.0; mp * n];
        d[..m * n].copy_from_slice(dst);
        let mut l = vec![0.0; mp * k];
        l[..m * k].copy_from_slice(lhs);
        gemm_rows(&mut d, read_dst, &l, rhs, beta);
        dst.copy_from_slice(&d[..m * n]);
        return;
    }
    let mut read = read_dst;
    let mut k0 = 0;
    while k0 < k {
        let kc = K_CHUNK.min(k - k0);
        // SAFETY: the asserts above and in `Mat::new` bound every access: dst is m×n with row
        // stride n, lhs m×k with row stride k (columns k0..k0 + kc), and rhs rows k0..k0 + kc
        // of its k×n view.
        unsafe {
            gemm::gemm(
                m,
                n,
                kc,
                dst.as_mut_ptr(),
                1,
                n as isize,
                read,
                lhs.as_ptr().add(k0),
                1,
                k as isize,
                rhs.data.as_ptr().add(k0 * rhs.rs),
                rhs.cs as isize,
                rhs.rs as isize,
                1.0,
                beta,
                false,
                false,
                false,
                Parallelism::Rayon(0),
            );
        }
        read = true;
        k0 += kc;
    }
}

/// `y[m][n] = x[m][k] · w[n][k]ᵀ (+ bias[n])`, all row-major. Each row's result is independent
/// of `m` (see [`K_CHUNK`]).
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
    // rhs(kk, j) = w[j * k + kk]: PyTorch's [out][in] layout read through strides.
    gemm_rows(&mut y, bias.is_some(), x, Mat::new(w, k, n, 1, k), 1.0);
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

    /// A row's output is bit-identical whether it is computed alone, in any sub-range, or in
    /// the whole batch, on the shapes where gemm changes paths (one row, n ≤ 64 with k > 512,
    /// k ≤ 2, n = 1) and on model-sized ones.
    #[test]
    fn rows_do_not_depend_on_the_batch() {
        for &(m, k, n) in &[
            (70, 576, 2),
            (70, 576, 16),
            (66, 1536, 64),
            (90, 576, 576),
            (40, 2, 300),
            (40, 700, 1),
            (129, 1100, 65),
        ] {
            let x = vals(m * k, 4);
            let w = vals(n * k, 5);
            let b = vals(n, 6);
            let full = matmul_wt(&x, &w, Some(&b), m, k, n);
            for (lo, hi) in [(0, 1), (3, 4), (m - 1, m), (0, 2), (5, 37), (1, m)] {
                let part = matmul_wt(&x[lo * k..hi * k], &w, Some(&b), hi - lo, k, n);
                assert!(
                    part.iter()
                        .zip(&full[lo * n..hi * n])
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "m {m} k {k} n {n}: rows {lo}..{hi} alone differ from the batch"
                );
            }
        }
    }

    #[test]
    fn empty_rows_give_empty_output() {
        assert!(matmul_wt(&[], &[1.0, 2.0], None, 0, 2, 1).is_empty());
    }
}
