//! CPU twin of the K-augmented GEMM's shrink and pack (csrc/adapter.cu; layout and the
//! segment → direction convention in csrc/params/adapter.h).
//!
//! The lowrank and lora perturbations are folded into a Linear's GEMM by widening its K
//! dimension: site `g` of a group of G sites sharing one input owns the columns
//! `[col0, col0 + (q+1)·r)` with `col0 = K + g·(q+1)·r` of both the input `x'` and the weight
//! `W'`. Sub-block 0 carries the trained state for every row, sub-block `1+d` direction d's
//! perturbation on the rows of d's segments, so `x'·W'ᵀ` is base + state + perturbation.
//!
//! [`shrink`] reproduces the kernel's summation order exactly (per-lane fma chains, then a
//! 16-lane xor butterfly; see csrc/adapter.cu), so kernel and twin agree bit for bit.
//! Buffers hold the f32 values of the storage type T; `round` rounds to T on store.
#![doc(hidden)]

use std::ops::Range;

use super::{role, Dist, Segment};
use crate::{Error, Result};

/// Half-warps of a shrink block; each chains every SHRINK_SPLIT-th 64-column chunk of the row
/// (csrc/params/adapter.h).
const SHRINK_SPLIT: usize = crate::backend::params::ZO_SHRINK_SPLIT as usize;
/// Lanes that split a tile's columns (half a warp).
const LANES: usize = 16;

/// Which family's factors a site's block carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AugFamily {
    /// `h = x·V` (factor `Vᵀ`, r×K); state `bankᵀ` (r×out); directions `Uᵀ_d`.
    LowRank,
    /// `h = x·(A + sc·Z_A)ᵀ` (factor A, r×K); state B (out×r); directions `Z_B,d`.
    Lora,
}

/// One site's block of the augmented GEMM.
#[derive(Debug, Clone, Copy)]
pub struct AugSite {
    pub family: AugFamily,
    /// Input width K (columns `[0, k)` of x' are the activation).
    pub k: usize,
    /// Row stride of x' and W' (K_aug).
    pub ld: usize,
    /// First column of the site's block.
    pub col0: usize,
    pub rank: usize,
    /// Directions of the plan (q).
    pub dirs: usize,
    /// The trained state is non-zero (LoZO bank dirty, LoRA B live): sub-block 0 is written.
    pub live: bool,
    /// lowrank `s` (1 or 1/√r), lora `α/r`.
    pub scale: f32,
    /// Power-of-two exponent e: sub-block 0 of x' is scaled by 2^-e, of W' by 2^e.
    pub scale_exp: i32,
    /// `Param::Weight(site).tensor_id()`.
    pub tensor_id: u32,
    pub dist: Dist,
}

impl AugSite {
    /// Columns of the site's block, `(q+1)·r`.
    pub fn width(&self) -> usize {
        (self.dirs + 1) * self.rank
    }
}

/// `K_aug = round_up(K + G·(q+1)·r, 8)` for a group of `sites` sites.
pub fn k_aug(k: usize, rank: usize, dirs: usize, sites: usize) -> usize {
    (k + sites * (dirs + 1) * rank).div_ceil(8) * 8
}

/// The padding columns `[K + G·(q+1)·r, K_aug)` of a group (zeroed by its last site's shrink).
pub fn padding(k: usize, rank: usize, dirs: usize, sites: usize) -> Range<usize> {
    k + sites * (dirs + 1) * rank..k_aug(k, rank, dirs, sites)
}

/// Direction index of every segment: the position of its seed in `dir_seeds` (the plan's
/// direction list, so the + and − segments of a direction share it).
pub fn segment_directions(segs: &[Segment], dir_seeds: &[u64]) -> Result<Vec<u32>> {
    segs.iter()
        .map(|s| {
            dir_seeds
                .iter()
                .position(|&d| d == s.seed)
                .map(|d| d as u32)
                .ok_or_else(|| {
                    Error::Data(format!(
                        "segment of rows {:?} has seed {:#x}, which is not among the plan's {} \
                         direction seeds",
                        s.rows,
                        s.seed,
                        dir_seeds.len()
                    ))
                })
        })
        .collect()
}

/// 2^e exactly (e in [-126, 127]).
pub fn exp2(e: i32) -> f32 {
    f32::from_bits(((e + 127) as u32) << 23)
}

/// `Σ_j x[j]·f[j]` in the kernel's order: lane l of half-warp w chains, with fma from 0, the
/// columns `64h + 4l + c` (c = 0..3, below K) of the chunks h = w, w + SHRINK_SPLIT, ...; each
/// half-warp's lanes are summed by an xor butterfly (strides 8, 4, 2, 1), then the half-warps'
/// sums are added in order.
pub fn shrink_dot(x: &[f32], f: &[f32]) -> f32 {
    let k = x.len();
    let chunks = k.div_ceil(64);
    let mut total = 0.0f32;
    for w in 0..SHRINK_SPLIT {
        let mut part = [0.0f32; LANES];
        for h in (w..chunks).step_by(SHRINK_SPLIT) {
            for (l, p) in part.iter_mut().enumerate() {
                for c in 0..4 {
                    let j = 64 * h + 4 * l + c;
                    if j < k {
                        *p = x[j].mul_add(f[j], *p);
                    }
                }
            }
        }
        let mut m = LANES / 2;
        while m > 0 {
            let prev = part;
            for (l, p) in part.iter_mut().enumerate() {
                *p = prev[l] + prev[l ^ m];
            }
            m /= 2;
        }
        total = if w == 0 { part[0] } else { total + part[0] };
    }
    total
}

/// The segment of row `t` and its index (segments sorted and disjoint).
fn segment_of(segs: &[Segment], t: usize) -> Option<(usize, &Segment)> {
    let i = segs.partition_point(|s| s.rows.end <= t);
    segs.get(i).filter(|s| s.rows.contains(&t)).map(|s| (i, s))
}

/// Writes the site's block of `x` (`[rows][ld]`, columns `[0, k)` read) and zeroes the columns
/// `pad` of every row, as `zo_adapter_shrink_<T>` does. `factor` is `Vᵀ` or A (r×k, fp32).
#[allow(clippy::too_many_arguments)]
pub fn shrink(
    site: &AugSite,
    rows: usize,
    x: &mut [f32],
    factor: &[f32],
    segs: &[Segment],
    seg_dir: &[u32],
    pad: Range<usize>,
    round: impl Fn(f32) -> f32,
) {
    let (k, r, ld) = (site.k, site.rank, site.ld);
    assert_eq!(x.len(), rows * ld, "x is not [{rows}][{ld}]");
    assert_eq!(factor.len(), r * k, "factor is not [{r}][{k}]");
    assert_eq!(segs.len(), seg_dir.len(), "one direction per segment");
    // Z_A of every direction a segment uses (lora).
    let mut za: Vec<Option<Vec<f32>>> = vec![None; site.dirs];
    if site.family == AugFamily::Lora {
        for (s, &d) in segs.iter().zip(seg_dir) {
            za[d as usize].get_or_insert_with(|| {
                let mut z = vec![0.0; r * k];
                site.dist
                    .fill(s.seed, site.tensor_id, role::LORA_A, 0, &mut z);
                z
            });
        }
    }
    let down = exp2(-site.scale_exp);
    for t in 0..rows {
        let seg = segment_of(segs, t).map(|(i, s)| (seg_dir[i] as usize, s.scale));
        let (xr, rest) = x[t * ld..(t + 1) * ld].split_at_mut(k);
        for kk in 0..r {
            let f = &factor[kk * k..(kk + 1) * k];
            let mut h = shrink_dot(xr, f);
            if let (Some((d, sc)), AugFamily::Lora) = (seg, site.family) {
                let z = za[d].as_ref().expect("generated above");
                h = sc.mul_add(shrink_dot(xr, &z[kk * k..(kk + 1) * k]), h);
            }
            let v = site.scale * h;
            for sb in 0..=site.dirs {
                let out = if sb == 0 {
                    if site.live {
                        v * down
                    } else {
                        0.0
                    }
                } else {
                    match seg {
                        Some((d, sc)) if d == sb - 1 => v * sc,
                        _ => 0.0,
                    }
                };
                rest[site.col0 - k + sb * r + kk] = round(out);
            }
        }
        for c in pad.clone() {
            rest[c - k] = round(0.0);
        }
    }
}

/// Writes rows `[row0, row0 + out)` × the site's columns of `w` (`[*][ld]`), as
/// `zo_adapter_pack_<T>` does. `state`: lowrank `bankᵀ` (r×out), lora B (out×r), fp32.
pub fn pack(
    site: &AugSite,
    out: usize,
    row0: usize,
    w: &mut [f32],
    state: &[f32],
    dir_seeds: &[u64],
    round: impl Fn(f32) -> f32,
) {
    let r = site.rank;
    assert_eq!(
        state.len(),
        r * out,
        "state has {} elements, expected {r}×{out}",
        state.len()
    );
    assert_eq!(dir_seeds.len(), site.dirs, "one seed per direction");
    let lora = site.family == AugFamily::Lora;
    let index = |i: usize, kk: usize| if lora { i * r + kk } else { kk * out + i };
    let up = exp2(site.scale_exp);
    let role = if lora { role::LORA_B } else { role::LOWRANK_U };
    let zs: Vec<Vec<f32>> = dir_seeds
        .iter()
        .map(|&seed| {
            let mut z = vec![0.0; r * out];
            site.dist.fill(seed, site.tensor_id, role, 0, &mut z);
            z
        })
        .collect();
    for i in 0..out {
        let row = &mut w[(row0 + i) * site.ld + site.col0..][..site.width()];
        for kk in 0..r {
            row[kk] = round(state[index(i, kk)] * up);
            for (d, z) in zs.iter().enumerate() {
                row[(d + 1) * r + kk] = round(z[index(i, kk)]);
            }
        }
    }
}
