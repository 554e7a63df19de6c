//! Causal softmax attention over packed sequences: each sequence attends only to its own
//! earlier rows, so no padding or mask tensor exists. Work is split over (sequence, head).

use rayon::prelude::*;

#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// `q` is `[T][heads·head_dim]`, `k`/`v` are `[T][kv_heads·head_dim]`; returns
/// `[T][heads·head_dim]`. Query head `h` reads kv head `h / (heads / kv_heads)` (GQA).
/// Scores are `q·k · scale`, softmax in f32 with the row max subtracted.
pub fn causal_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    cu_seqlens: &[u32],
    shape: AttnShape,
    scale: f32,
) -> Vec<f32> {
    let AttnShape {
        heads,
        kv_heads,
        head_dim: hd,
    } = shape;
    let q_width = heads * hd;
    let kv_width = kv_heads * hd;
    let t = q.len() / q_width;
    let group = heads / kv_heads;

    // Head-major output makes every (sequence, head) block one contiguous slice, so the
    // tasks own disjoint memory and need no synchronisation.
    let mut by_head = vec![0.0f32; heads * t * hd];
    let mut tasks = Vec::with_capacity(heads * cu_seqlens.len());
    for (h, head_out) in by_head.chunks_mut(t * hd).enumerate() {
        let mut rest = head_out;
        for w in cu_seqlens.windows(2) {
            let (start, end) = (w[0] as usize, w[1] as usize);
            let (mine, tail) = rest.split_at_mut((end - start) * hd);
            rest = tail;
            tasks.push((h, start, mine));
        }
    }
    tasks.into_par_iter().for_each(|(h, start, out)| {
        let n = out.len() / hd;
        let g = h / group;
        let mut p = vec![0.0f32; n];
        for i in 0..n {
            let qi = &q[(start + i) * q_width + h * hd..][..hd];
            let mut max = f32::NEG_INFINITY;
            for (j, pj) in p[..=i].iter_mut().enumerate() {
                let kj = &k[(start + j) * kv_width + g * hd..][..hd];
                let s = dot(qi, kj) * scale;
                *pj = s;
                max = max.max(s);
            }
            let mut sum = 0.0f32;
            for pj in &mut p[..=i] {
                *pj = (*pj - max).exp();
                sum += *pj;
            }
            let inv = 1.0 / sum;
            let oi = &mut out[i * hd..][..hd];
            for (j, &pj) in p[..=i].iter().enumerate() {
                let w = pj * inv;
                let vj = &v[(start + j) * kv_width + g * hd..][..hd];
                oi.iter_mut().zip(vj).for_each(|(o, &x)| *o += w * x);
            }
        }
    });

    let mut y = vec![0.0f32; t * q_width];
    y.par_chunks_mut(q_width).enumerate().for_each(|(row, yr)| {
        for (h, dst) in yr.chunks_exact_mut(hd).enumerate() {
            dst.copy_from_slice(&by_head[(h * t + row) * hd..][..hd]);
        }
    });
    y
}

/// Eight independent partial sums so the compiler can vectorise (a single f32 accumulator
/// pins the summation order and forbids it).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_row_copies_its_value_and_sequences_are_isolated() {
        // Two sequences of 2 rows, one head of width 2.
        let q = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 5.0, 5.0];
        let k = [1.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 2.0];
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let shape = AttnShape {
            heads: 1,
            kv_heads: 1,
            head_dim: 2,
        };
        let y = causal_attention(&q, &k, &v, &[0, 2, 4], shape, 1.0);
        assert_eq!(&y[0..2], &[1.0, 2.0]);
        assert_eq!(&y[4..6], &[5.0, 6.0]);
        // Row 1: scores (0, 1) → softmax (1/(1+e), e/(1+e)).
        let a = 1.0 / (1.0 + std::f32::consts::E);
        assert!((y[2] - (a * 1.0 + (1.0 - a) * 3.0)).abs() < 1e-6);
        // Row 3 attends to rows 2 and 3 only: scores (10, 10) → the mean of their values.
        assert!((y[6] - 6.0).abs() < 1e-6 && (y[7] - 7.0).abs() < 1e-6);
    }

    #[test]
    fn grouped_heads_share_kv() {
        // Two query heads over one kv head: with identical queries both heads agree.
        let q = [0.3, -0.2, 0.3, -0.2, 0.1, 0.4, 0.1, 0.4];
        let k = [0.5, 0.1, -0.3, 0.9];
        let v = [1.0, 2.0, -1.0, 0.5];
        let shape = AttnShape {
            heads: 2,
            kv_heads: 1,
            head_dim: 2,
        };
        let y = causal_attention(&q, &k, &v, &[0, 2], shape, 0.7);
        assert_eq!(y[0..2], y[2..4]);
        assert_eq!(y[4..6], y[6..8]);
    }
}
