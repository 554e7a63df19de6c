//! Causal softmax attention over packed sequences: each sequence attends only to its own
//! earlier rows, so no padding or mask tensor exists. Work is split over (sequence, head).

use std::ops::Range;

use rayon::prelude::*;

use crate::perturb::{Perturbation, Segment};

#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// Keys and values (`[len][kv_heads·head_dim]` each) that one sequence attends to before
/// its own rows: every query of the sequence sees all of them.
#[derive(Debug, Clone, Copy)]
pub struct PrefixKv<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
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
    attend(q, k, v, cu_seqlens, shape, scale, |_| None)
}

/// [`causal_attention`] where sequence `s` first attends to `prefix(s)` (if Some), then
/// causally to its own rows. The prefix keys are used as given (no rotary embedding is applied
/// here). Scores, max, exponentials, their sum and the weighted values all run over the prefix
/// positions first, then the sequence's own rows, exactly as if the prefix were the first rows
/// of the sequence.
pub fn causal_attention_with_prefix<'p>(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    cu_seqlens: &[u32],
    shape: AttnShape,
    scale: f32,
    prefix: impl Fn(usize) -> Option<PrefixKv<'p>> + Sync,
) -> Vec<f32> {
    attend(q, k, v, cu_seqlens, shape, scale, prefix)
}

/// One layer's prefixes as a family's [`Perturbation::prefix`] hook gives them: one for the
/// unperturbed sequences and one per perturbed segment (segments hold whole sequences).
pub struct LayerPrefixes {
    base: Option<(Vec<f32>, Vec<f32>)>,
    segs: Vec<(Range<usize>, Option<(Vec<f32>, Vec<f32>)>)>,
}

impl LayerPrefixes {
    /// None when the family gives this layer no prefix at all (the plain attention path).
    pub fn new(p: &dyn Perturbation, layer: usize, segs: &[Segment]) -> Option<LayerPrefixes> {
        let base = p.prefix(layer, None);
        let segs: Vec<_> = segs
            .iter()
            .map(|s| (s.rows.clone(), p.prefix(layer, Some(s))))
            .collect();
        (base.is_some() || segs.iter().any(|(_, kv)| kv.is_some()))
            .then_some(LayerPrefixes { base, segs })
    }

    /// The prefix of the sequence that starts at packed row `row`.
    pub fn at_row(&self, row: usize) -> Option<PrefixKv<'_>> {
        let k = self.segs.partition_point(|(r, _)| r.end <= row);
        let kv = match self.segs.get(k) {
            Some((r, kv)) if r.contains(&row) => kv,
            _ => &self.base,
        };
        kv.as_ref().map(|(k, v)| PrefixKv { k, v })
    }
}

fn attend<'p>(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    cu_seqlens: &[u32],
    shape: AttnShape,
    scale: f32,
    prefix: impl Fn(usize) -> Option<PrefixKv<'p>> + Sync,
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
        for (s, w) in cu_seqlens.windows(2).enumerate() {
            let (start, end) = (w[0] as usize, w[1] as usize);
            let (mine, tail) = rest.split_at_mut((end - start) * hd);
            rest = tail;
            tasks.push((h, s, start, mine));
        }
    }
    tasks.into_par_iter().for_each(|(h, s, start, out)| {
        let n = out.len() / hd;
        let g = h / group;
        let pre = prefix(s);
        let (pk, pv) = pre.map_or((&[][..], &[][..]), |p| (p.k, p.v));
        assert!(
            pk.len() == pv.len() && pk.len() % kv_width == 0,
            "prefix of sequence {s}: {} keys and {} values; expected equal multiples of {kv_width}",
            pk.len(),
            pv.len()
        );
        let np = pk.len() / kv_width;
        let key = |j: usize| match j.checked_sub(np) {
            None => &pk[j * kv_width + g * hd..][..hd],
            Some(j) => &k[(start + j) * kv_width + g * hd..][..hd],
        };
        let value = |j: usize| match j.checked_sub(np) {
            None => &pv[j * kv_width + g * hd..][..hd],
            Some(j) => &v[(start + j) * kv_width + g * hd..][..hd],
        };
        let mut p = vec![0.0f32; np + n];
        for i in 0..n {
            let qi = &q[(start + i) * q_width + h * hd..][..hd];
            let seen = np + i + 1;
            let mut max = f32::NEG_INFINITY;
            for (j, pj) in p[..seen].iter_mut().enumerate() {
                let s = dot(qi, key(j)) * scale;
                *pj = s;
                max = max.max(s);
            }
            let mut sum = 0.0f32;
            for pj in &mut p[..seen] {
                *pj = (*pj - max).exp();
                sum += *pj;
            }
            let inv = 1.0 / sum;
            let oi = &mut out[i * hd..][..hd];
            for (j, &pj) in p[..seen].iter().enumerate() {
                let w = pj * inv;
                oi.iter_mut().zip(value(j)).for_each(|(o, &x)| *o += w * x);
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

    fn vals(n: usize, salt: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) ^ salt) % 997) as f32 / 498.0 - 1.0)
            .collect()
    }

    #[test]
    fn prefix_acts_as_leading_rows_of_each_sequence() {
        // GQA shape; sequence 0 gets prefix A (3 positions), sequence 1 none, sequence 2
        // prefix B (1 position). Each must equal plain causal attention over [prefix; seq],
        // bit for bit, since the operation order is the same.
        let shape = AttnShape {
            heads: 4,
            kv_heads: 2,
            head_dim: 4,
        };
        let (qw, kw) = (16, 8);
        let lens = [3usize, 2, 4];
        let cu = [0u32, 3, 5, 9];
        let (q, k, v) = (vals(9 * qw, 1), vals(9 * kw, 2), vals(9 * kw, 3));
        let (ak, av) = (vals(3 * kw, 4), vals(3 * kw, 5));
        let (bk, bv) = (vals(kw, 6), vals(kw, 7));
        let prefixes = [Some((&ak, &av)), None, Some((&bk, &bv))];
        let y = causal_attention_with_prefix(&q, &k, &v, &cu, shape, 0.4, |s| {
            prefixes[s].map(|(k, v)| PrefixKv { k, v })
        });
        for (s, pre) in prefixes.iter().enumerate() {
            let (r0, n) = (cu[s] as usize, lens[s]);
            let (pk, pv) = pre.map_or((vec![], vec![]), |(k, v)| (k.clone(), v.clone()));
            let np = pk.len() / kw;
            let mut qq = vec![0.0; np * qw];
            qq.extend_from_slice(&q[r0 * qw..(r0 + n) * qw]);
            let kk = [pk, k[r0 * kw..(r0 + n) * kw].to_vec()].concat();
            let vv = [pv, v[r0 * kw..(r0 + n) * kw].to_vec()].concat();
            let want = causal_attention(&qq, &kk, &vv, &[0, (np + n) as u32], shape, 0.4);
            assert_eq!(&y[r0 * qw..(r0 + n) * qw], &want[np * qw..], "sequence {s}");
        }
        // Without prefixes the two entry points agree.
        let plain = causal_attention(&q, &k, &v, &cu, shape, 0.4);
        let none = causal_attention_with_prefix(&q, &k, &v, &cu, shape, 0.4, |_| None);
        assert_eq!(plain, none);
        assert_ne!(plain[..3 * qw], y[..3 * qw]);
    }
}
