//! Cases of the row-op and loss kernels (csrc/ops.cu, csrc/loss.cu) with their CPU twins and
//! tolerance rules, shared by tests/kernels_ops.rs and tests/kernels_loss.rs: each case makes
//! its inputs, and checks the outputs of whichever device ran the kernel.
//!
//! Rules:
//! - elementwise ops whose fp32 operations are the twin's, one for one (embedding, positions,
//!   ReLU): bit for bit;
//! - SiLU and GELU call expf/erff, which the GPU computes to within 2 ulp (and the host's libm
//!   to within 1): |kernel − twin| ≤ 4·ε·|twin| (+ 2·ε·|x|·|up| for GELU, whose 1 + erf
//!   cancels for negative x) + half an ulp of the storage type;
//! - norms and log-sum-exp reduce in fp32 where the twin (= the fp64 reference) uses fp64: over
//!   the whole output, max |kernel − ref64| ≤ 2·max |naive − ref64| + floor, where naive is a
//!   same-precision implementation (sequential fp32 sums, fp32 scalars, outputs rounded to the
//!   storage type) and floor = 8·ε_f32·max(1, max |ref64|);
//! - columns past the width of a strided output, and rows not written, keep a sentinel.
#![allow(dead_code)]

use zo::backend::cpu::ops;
use zo::backend::cuda::DType;
use zo::model::{Activation, Norm, NormKind};

/// Byte pattern the outputs are filled with before a kernel runs.
pub const SENTINEL: u8 = 0xa5;

pub const DTYPES: [DType; 3] = [DType::F32, DType::Bf16, DType::F16];

/// Deterministic standard normals (seeded Philox), scaled.
pub fn gaussian(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut v = vec![0.0; n];
    zo::rng::fill_gaussian(seed, 7, 0, 0, &mut v);
    v.iter_mut().for_each(|x| *x *= scale);
    v
}

/// Deterministic integers in `0..n`.
pub fn indices(seed: u64, count: usize, n: u32) -> Vec<u32> {
    let mut v = vec![0u32; count];
    zo::rng::Stream::new(seed, 8, 0).fill_raw(0, &mut v);
    v.iter_mut().for_each(|x| *x %= n.max(1));
    v
}

pub fn round(dtype: DType, v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| dtype.round(x)).collect()
}

/// Storage-type values as the device holds them (little-endian bytes).
pub fn encode(dtype: DType, v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * dtype.size());
    for &x in v {
        match dtype {
            DType::F32 => out.extend(x.to_le_bytes()),
            DType::Bf16 => out.extend(half::bf16::from_f32(x).to_bits().to_le_bytes()),
            DType::F16 => out.extend(half::f16::from_f32(x).to_bits().to_le_bytes()),
        }
    }
    out
}

pub fn decode(dtype: DType, b: &[u8]) -> Vec<f32> {
    match dtype {
        DType::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        DType::Bf16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        DType::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
    }
}

fn sentinel_f32() -> f32 {
    f32::from_le_bytes([SENTINEL; 4])
}

/// A `[rows][ld]` fp32 buffer of sentinels.
pub fn sentinel_f32s(n: usize) -> Vec<f32> {
    vec![sentinel_f32(); n]
}

/// Checks that the bytes of `[rows][ld]` elements of `size` bytes outside columns
/// `[0, width)` of the listed rows still hold the sentinel.
pub fn check_untouched(what: &str, buf: &[u8], size: usize, width: usize, ld: usize, rows: usize) {
    for (i, &b) in buf.iter().enumerate() {
        let e = i / size;
        let (r, c) = (e / ld, e % ld);
        if r >= rows || c >= width {
            assert_eq!(
                b, SENTINEL,
                "{what}: element {e} (row {r}, column {c}) outside the written region changed"
            );
        }
    }
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Bit-for-bit equality (NaN equal to NaN), with the first difference in the message.
pub fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
        assert!(same, "{what}: element {i}: kernel {g:e}, twin {w:e}");
    }
}

/// The max-norm rule: max |got − ref64| ≤ 2·max |naive − ref64| + 8·ε·max(1, max |ref64|).
/// NaN in the reference must be NaN in `got`.
pub fn assert_rule(what: &str, got: &[f32], naive: &[f32], ref64: &[f64]) {
    assert_eq!(got.len(), ref64.len(), "{what}: lengths");
    let (mut err, mut err_naive, mut big, mut at) = (0f64, 0f64, 1f64, 0);
    for i in 0..ref64.len() {
        if ref64[i].is_nan() {
            assert!(
                got[i].is_nan(),
                "{what}: element {i}: kernel {} for a NaN reference",
                got[i]
            );
            continue;
        }
        if ref64[i].is_infinite() {
            assert_eq!(got[i] as f64, ref64[i], "{what}: element {i}");
            continue;
        }
        let e = (got[i] as f64 - ref64[i]).abs();
        if e > err || e.is_nan() {
            err = e;
            at = i;
        }
        err_naive = err_naive.max((naive[i] as f64 - ref64[i]).abs());
        big = big.max(ref64[i].abs());
    }
    let bound = 2.0 * err_naive + 8.0 * f32::EPSILON as f64 * big;
    assert!(
        err <= bound,
        "{what}: max error {err:e} at {at} (kernel {}, ref64 {}) exceeds 2·{err_naive:e} + floor \
         = {bound:e}",
        got[at],
        ref64[at]
    );
}

// ---------------------------------------------------------------------------------------------
// Norms.

#[derive(Debug, Clone)]
pub struct NormCase {
    pub dtype: DType,
    pub kind: NormKind,
    pub eps: f32,
    /// Output rows.
    pub rows: usize,
    /// Rows of x.
    pub src_rows: usize,
    pub width: usize,
    pub ld_in: usize,
    pub ld_out: usize,
    /// Output row r normalises x row gather[r] (may be out of range: NaN row).
    pub gather: Option<Vec<u32>>,
    pub in_place: bool,
    /// Weight and bias as stored (rounded to the dtype).
    pub w: Option<Vec<f32>>,
    pub b: Option<Vec<f32>>,
    /// `[src_rows][ld_in]`, sentinels past the width.
    pub x: Vec<f32>,
}

impl NormCase {
    /// Rows with offsets and scales that differ per row (a mean far from 0 tests LayerNorm's
    /// two-pass variance).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        seed: u64,
        dtype: DType,
        kind: NormKind,
        rows: usize,
        width: usize,
        ld_in: usize,
        ld_out: usize,
        affine: (bool, bool),
    ) -> NormCase {
        let mut x = sentinel_f32s(rows * ld_in);
        let v = gaussian(seed, rows * width, 1.0);
        let shift = gaussian(seed ^ 1, rows, 3.0);
        for r in 0..rows {
            let scale = 0.05 * (1 + r % 7) as f32 * (1 + (r % 3) * 20) as f32;
            for c in 0..width {
                x[r * ld_in + c] = v[r * width + c] * scale + shift[r];
            }
        }
        let w = affine.0.then(|| {
            let w: Vec<f32> = gaussian(seed ^ 2, width, 0.5)
                .iter()
                .map(|v| v + 1.0)
                .collect();
            round(dtype, &w)
        });
        let b = affine
            .1
            .then(|| round(dtype, &gaussian(seed ^ 3, width, 0.3)));
        NormCase {
            dtype,
            kind,
            eps: 1e-5,
            rows,
            src_rows: rows,
            width,
            ld_in,
            ld_out,
            gather: None,
            in_place: false,
            w,
            b,
            x,
        }
    }

    /// Output rows gather x rows: a permutation with repeats, and one index past the end.
    pub fn gathered(mut self, seed: u64, out_rows: usize) -> NormCase {
        let mut g = indices(seed, out_rows, self.src_rows as u32);
        if out_rows > 1 {
            g[out_rows / 2] = self.src_rows as u32 + 5;
        }
        self.rows = out_rows;
        self.gather = Some(g);
        self
    }

    pub fn in_place(mut self) -> NormCase {
        self.in_place = true;
        self
    }

    /// `[rows][ld_out]` storage bytes of sentinels.
    pub fn out_init(&self) -> Vec<u8> {
        vec![SENTINEL; self.rows * self.ld_out * self.dtype.size()]
    }

    fn src(&self, r: usize) -> Option<usize> {
        let s = self.gather.as_ref().map_or(r, |g| g[r] as usize);
        (s < self.src_rows).then_some(s)
    }

    /// Checks the storage output and x after the kernel.
    pub fn check(&self, what: &str, out: &[u8], x_after: &[f32]) {
        let t = self.dtype;
        let what = format!(
            "{what}: {t} {:?} width {} rows {}",
            self.kind, self.width, self.rows
        );
        check_untouched(
            &format!("{what} output"),
            out,
            t.size(),
            self.width,
            self.ld_out,
            self.rows,
        );
        let got_all = decode(t, out);
        let (mut got, mut naive, mut ref64, mut twin) = (vec![], vec![], vec![], vec![]);
        let (mut got32, mut naive32) = (vec![], vec![]);
        for r in 0..self.rows {
            let g = &got_all[r * self.ld_out..][..self.width];
            let Some(s) = self.src(r) else {
                assert!(
                    g.iter().all(|v| v.is_nan()),
                    "{what}: out-of-range row {r} not NaN"
                );
                continue;
            };
            let row = &self.x[s * self.ld_in..][..self.width];
            got.extend_from_slice(g);
            let n = self.naive(row);
            naive.extend(round(t, &n));
            naive32.extend(n);
            ref64.extend(self.ref64(row));
            let mut tw = row.to_vec();
            ops::norm_row(&mut tw, &self.twin_norm());
            twin.extend(round(t, &tw));
            if self.in_place {
                let a = &x_after[s * self.ld_in..][..self.width];
                assert_bits(
                    &format!("{what}: output = rounded in-place x, row {r}"),
                    g,
                    &round(t, a),
                );
                got32.extend_from_slice(a);
            }
        }
        assert_rule(&what, &got, &naive, &ref64);
        assert_rule(&format!("{what} (twin)"), &twin, &naive, &ref64);
        if self.in_place {
            assert_rule(&format!("{what} in-place fp32"), &got32, &naive32, &ref64);
            for (i, (a, b)) in x_after.iter().zip(&self.x).enumerate() {
                if i % self.ld_in >= self.width {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{what}: x column past the width changed"
                    );
                }
            }
        } else {
            assert_bits(&format!("{what}: x unchanged"), x_after, &self.x);
        }
    }

    pub fn twin_norm(&self) -> Norm {
        Norm {
            w: self.w.clone(),
            b: self.b.clone(),
            eps: self.eps,
            kind: self.kind,
        }
    }

    fn ref64(&self, row: &[f32]) -> Vec<f64> {
        let n = row.len() as f64;
        let eps = self.eps as f64;
        let y: Vec<f64> = match self.kind {
            NormKind::Rms => {
                let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / n;
                row.iter().map(|&v| v as f64 / (ms + eps).sqrt()).collect()
            }
            NormKind::Layer => {
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                row.iter()
                    .map(|&v| (v as f64 - mean) / (var + eps).sqrt())
                    .collect()
            }
        };
        y.iter()
            .enumerate()
            .map(|(c, &v)| {
                let v = v * self.w.as_ref().map_or(1.0, |w| w[c] as f64);
                v + self.b.as_ref().map_or(0.0, |b| b[c] as f64)
            })
            .collect()
    }

    fn naive(&self, row: &[f32]) -> Vec<f32> {
        let n = row.len() as f32;
        let y: Vec<f32> = match self.kind {
            NormKind::Rms => {
                let mut s = 0f32;
                for &v in row {
                    s += v * v;
                }
                let r = 1.0 / (s / n + self.eps).sqrt();
                row.iter().map(|&v| v * r).collect()
            }
            NormKind::Layer => {
                let mut s = 0f32;
                for &v in row {
                    s += v;
                }
                let mean = s / n;
                let mut q = 0f32;
                for &v in row {
                    q += (v - mean) * (v - mean);
                }
                let r = 1.0 / (q / n + self.eps).sqrt();
                row.iter().map(|&v| (v - mean) * r).collect()
            }
        };
        y.iter()
            .enumerate()
            .map(|(c, &v)| {
                let v = v * self.w.as_ref().map_or(1.0, |w| w[c]);
                v + self.b.as_ref().map_or(0.0, |b| b[c])
            })
            .collect()
    }
}

/// The norm cases every device runs: every dtype, both kinds, odd widths, strided outputs,
/// gathered rows and in place, from one-column rows to 8192-wide ones.
pub fn norm_cases() -> Vec<NormCase> {
    let mut v = Vec::new();
    let mut widths = vec![(576, 3), (100, 5), (1, 4), (33, 2)];
    widths.extend([(4096, 17), (768, 64), (8192, 3)]);
    for (i, &t) in DTYPES.iter().enumerate() {
        for (j, &(w, rows)) in widths.iter().enumerate() {
            let seed = (i * 100 + j) as u64;
            v.push(NormCase::new(
                seed,
                t,
                NormKind::Rms,
                rows,
                w,
                w,
                w,
                (true, false),
            ));
            v.push(NormCase::new(
                seed + 1,
                t,
                NormKind::Layer,
                rows,
                w,
                w + 3,
                w + 8,
                (true, true),
            ));
            v.push(NormCase::new(
                seed + 2,
                t,
                NormKind::Rms,
                rows,
                w,
                w,
                w + 1,
                (false, false),
            ));
            v.push(
                NormCase::new(
                    seed + 3,
                    t,
                    NormKind::Layer,
                    rows,
                    w,
                    w + 1,
                    w + 5,
                    (true, true),
                )
                .gathered(seed, rows + 2),
            );
            v.push(
                NormCase::new(
                    seed + 4,
                    t,
                    NormKind::Layer,
                    rows,
                    w,
                    w + 2,
                    w + 3,
                    (true, true),
                )
                .in_place(),
            );
            v.push(
                NormCase::new(seed + 5, t, NormKind::Rms, rows, w, w, w, (true, false)).in_place(),
            );
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Activations.

#[derive(Debug, Clone)]
pub struct ActCase {
    pub dtype: DType,
    pub act: Activation,
    pub gated: bool,
    pub rows: usize,
    pub width: usize,
    pub ld_in: usize,
    pub ld_out: usize,
    /// `[rows][ld_in]` fp32 GEMM output (gate then up when gated).
    pub input: Vec<f32>,
}

impl ActCase {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        seed: u64,
        dtype: DType,
        act: Activation,
        gated: bool,
        rows: usize,
        width: usize,
        extra_in: usize,
        extra_out: usize,
    ) -> ActCase {
        let in_w = if gated { 2 * width } else { width };
        let ld_in = in_w + extra_in;
        let mut input = gaussian(seed, rows * ld_in, 3.0);
        // Large, tiny, zero and non-finite values where the functions saturate or branch.
        let specials = [
            0.0, -0.0, 30.0, -30.0, 100.0, -100.0, 1e-30, -1e-30, 88.0, -88.0,
        ];
        let n = input.len();
        for (i, &s) in specials.iter().enumerate() {
            if i < n {
                input[i * 7 % n] = s;
            }
        }
        ActCase {
            dtype,
            act,
            gated,
            rows,
            width,
            ld_in,
            ld_out: width + extra_out,
            input,
        }
    }

    pub fn out_init(&self) -> Vec<u8> {
        vec![SENTINEL; self.rows * self.ld_out * self.dtype.size()]
    }

    pub fn check(&self, what: &str, out: &[u8]) {
        let t = self.dtype;
        let what = format!(
            "{what}: {t} {:?} gated {} width {}",
            self.act, self.gated, self.width
        );
        check_untouched(&what, out, t.size(), self.width, self.ld_out, self.rows);
        let got = decode(t, out);
        let eps = f32::EPSILON as f64;
        for r in 0..self.rows {
            let row = &self.input[r * self.ld_in..];
            let mut twin = row[..self.width].to_vec();
            if self.gated {
                ops::gated_in_place(&mut twin, &row[self.width..2 * self.width], self.act);
            } else {
                ops::activate_in_place(&mut twin, self.act);
            }
            let g = &got[r * self.ld_out..][..self.width];
            if self.act == Activation::Relu {
                assert_bits(&format!("{what} row {r}"), g, &round(t, &twin));
                continue;
            }
            // Storage rounding: half an ulp of the type (relative), or its smallest step.
            let (eps_t, tiny_t) = match t {
                DType::F32 => (0.0, 0.0),
                DType::Bf16 => (2f64.powi(-8), 2f64.powi(-133)),
                DType::F16 => (2f64.powi(-11), 2f64.powi(-24)),
            };
            for c in 0..self.width {
                let (x, y) = (row[c] as f64, twin[c] as f64);
                let up = if self.gated {
                    (row[self.width + c] as f64).abs()
                } else {
                    1.0
                };
                // GELU's 1 + erf cancels for negative x: an erf that is off by an ulp of 1
                // moves the result by 0.5·|x|·ε.
                let gelu = if self.act == Activation::Gelu {
                    2.0 * eps * x.abs() * up
                } else {
                    0.0
                };
                let tol = 4.0 * eps * y.abs() + gelu + eps_t * y.abs() + tiny_t;
                let ok = (g[c] as f64 - y).abs() <= tol || (g[c].is_nan() && twin[c].is_nan());
                assert!(
                    ok,
                    "{what} row {r} column {c}: kernel {:e}, twin {:e} (input {:e}, tolerance {tol:e})",
                    g[c],
                    twin[c],
                    row[c]
                );
            }
        }
    }
}

pub fn act_cases() -> Vec<ActCase> {
    let mut v = Vec::new();
    let mut shapes = vec![(3, 576), (5, 100), (4, 1), (2, 37)];
    shapes.extend([(9, 14336), (33, 3072)]);
    for (i, &t) in DTYPES.iter().enumerate() {
        for (j, &(rows, w)) in shapes.iter().enumerate() {
            let seed = (1000 + i * 100 + j * 10) as u64;
            v.push(ActCase::new(seed, t, Activation::Silu, true, rows, w, 0, 0));
            v.push(ActCase::new(
                seed + 1,
                t,
                Activation::Silu,
                true,
                rows,
                w,
                5,
                3,
            ));
            v.push(ActCase::new(
                seed + 2,
                t,
                Activation::Relu,
                false,
                rows,
                w,
                0,
                0,
            ));
            v.push(ActCase::new(
                seed + 3,
                t,
                Activation::Relu,
                false,
                rows,
                w,
                3,
                8,
            ));
            v.push(ActCase::new(
                seed + 4,
                t,
                Activation::Gelu,
                false,
                rows,
                w,
                1,
                2,
            ));
            v.push(ActCase::new(
                seed + 5,
                t,
                Activation::Silu,
                false,
                rows,
                w,
                0,
                1,
            ));
            v.push(ActCase::new(
                seed + 6,
                t,
                Activation::Gelu,
                true,
                rows,
                w,
                0,
                0,
            ));
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Embedding.

#[derive(Debug, Clone)]
pub struct EmbedCase {
    pub dtype: DType,
    pub width: usize,
    pub vocab: usize,
    /// Token and position tables as stored (rounded).
    pub words: Vec<f32>,
    pub pos_table: Vec<f32>,
    pub n_pos: usize,
    pub offset: u32,
    pub tokens: Vec<u32>,
    pub positions: Vec<u32>,
}

impl EmbedCase {
    /// `n` tokens; token `bad_token` (if any) is out of the vocabulary and position
    /// `bad_pos` past the table.
    pub fn new(seed: u64, dtype: DType, width: usize, vocab: usize, n: usize) -> EmbedCase {
        let n_pos = 40;
        let mut tokens = indices(seed, n, vocab as u32);
        let mut positions = indices(seed ^ 9, n, n_pos as u32 - 2);
        if n > 3 {
            tokens[1] = vocab as u32;
            positions[2] = n_pos as u32 - 2; // + offset 2 = n_pos
        }
        EmbedCase {
            dtype,
            width,
            vocab,
            words: round(dtype, &gaussian(seed, vocab * width, 1.0)),
            pos_table: round(dtype, &gaussian(seed ^ 5, n_pos * width, 0.5)),
            n_pos,
            offset: 2,
            tokens,
            positions,
        }
    }

    /// x after embedding, with or without positions, as the CPU forms it (f32 adds).
    pub fn twin(&self, with_positions: bool) -> Vec<f32> {
        let w = self.width;
        let mut x = Vec::with_capacity(self.tokens.len() * w);
        for (t, &tok) in self.tokens.iter().enumerate() {
            let p = self.positions[t] as usize + self.offset as usize;
            let bad = tok as usize >= self.vocab || (with_positions && p >= self.n_pos);
            if bad {
                x.extend(std::iter::repeat_n(f32::NAN, w));
                continue;
            }
            let mut row = self.words[tok as usize * w..][..w].to_vec();
            if with_positions {
                let pe = &self.pos_table[p * w..][..w];
                row.iter_mut().zip(pe).for_each(|(a, b)| *a += b);
            }
            x.extend(row);
        }
        x
    }

    /// `x` after adding positions to `x0` (rows whose position is past the table: NaN).
    pub fn twin_add_positions(&self, x0: &[f32]) -> Vec<f32> {
        let w = self.width;
        let mut x = x0.to_vec();
        for (t, row) in x.chunks_exact_mut(w).enumerate() {
            let p = self.positions[t] as usize + self.offset as usize;
            if p >= self.n_pos {
                row.fill(f32::NAN);
                continue;
            }
            let pe = &self.pos_table[p * w..][..w];
            row.iter_mut().zip(pe).for_each(|(a, b)| *a += b);
        }
        x
    }
}

pub fn embed_cases() -> Vec<EmbedCase> {
    let mut v = Vec::new();
    for (i, &t) in DTYPES.iter().enumerate() {
        for (j, &(w, vocab, n)) in [(576, 50, 9), (100, 7, 5), (1, 3, 4), (37, 20, 2)]
            .iter()
            .enumerate()
        {
            v.push(EmbedCase::new((2000 + i * 10 + j) as u64, t, w, vocab, n));
        }
        v.push(EmbedCase::new(2100 + i as u64, t, 4096, 300, 200));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Candidate log-probs.

#[derive(Debug, Clone)]
pub struct LogprobCase {
    pub rows: usize,
    pub vocab: usize,
    pub ld: usize,
    /// `[rows][ld]`.
    pub logits: Vec<f32>,
    /// (row index, token) pairs, some out of range.
    pub queries: Vec<u32>,
}

impl LogprobCase {
    pub fn new(seed: u64, rows: usize, vocab: usize, ld: usize, scale: f32) -> LogprobCase {
        let mut logits = gaussian(seed, rows * ld, scale);
        // A peaked row, a row with masked (-inf) entries, a row with an inf, an all -inf row.
        if rows > 1 {
            logits[ld + (seed as usize % vocab)] = 40.0;
        }
        if rows > 2 {
            for c in (0..vocab).step_by(3) {
                logits[2 * ld + c] = f32::NEG_INFINITY;
            }
        }
        if rows > 4 {
            logits[4 * ld + vocab / 2] = f32::INFINITY;
            logits[3 * ld..3 * ld + vocab].fill(f32::NEG_INFINITY);
        }
        let n_q = 3 * rows + 2;
        let r = indices(seed ^ 1, n_q, rows as u32);
        let t = indices(seed ^ 2, n_q, vocab as u32);
        let mut queries: Vec<u32> = r.iter().zip(&t).flat_map(|(&r, &t)| [r, t]).collect();
        // Row 0's every query, the last row's, and two out of range.
        queries.extend([0, 0, rows as u32 - 1, vocab as u32 - 1]);
        queries.extend([rows as u32, 0, 0, vocab as u32]);
        LogprobCase {
            rows,
            vocab,
            ld,
            logits,
            queries,
        }
    }

    pub fn n_queries(&self) -> usize {
        self.queries.len() / 2
    }

    fn row(&self, r: usize) -> &[f32] {
        &self.logits[r * self.ld..][..self.vocab]
    }

    fn lse_naive(row: &[f32]) -> f32 {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        if !m.is_finite() {
            return m;
        }
        let mut s = 0f32;
        for &v in row {
            s += (v - m).exp();
        }
        m + s.ln()
    }

    pub fn check(&self, what: &str, lse: &[f32], lp: &[f32]) {
        let what = format!(
            "{what}: rows {} vocab {} ld {}",
            self.rows, self.vocab, self.ld
        );
        let ref64: Vec<f64> = (0..self.rows)
            .map(|r| ops::log_sum_exp(self.row(r)))
            .collect();
        let naive: Vec<f32> = (0..self.rows)
            .map(|r| Self::lse_naive(self.row(r)))
            .collect();
        assert_rule(&format!("{what} lse"), &lse[..self.rows], &naive, &ref64);
        let (mut r64, mut nv) = (vec![], vec![]);
        for q in self.queries.chunks_exact(2) {
            let (r, t) = (q[0] as usize, q[1] as usize);
            if r >= self.rows || t >= self.vocab {
                r64.push(f64::NAN);
                nv.push(f32::NAN);
                continue;
            }
            let x = self.row(r)[t];
            r64.push(x as f64 - ref64[r]);
            nv.push(x - naive[r]);
        }
        assert_rule(&format!("{what} query log-probs"), lp, &nv, &r64);
    }
}

pub fn logprob_cases() -> Vec<LogprobCase> {
    let mut v = vec![
        LogprobCase::new(1, 5, 100, 100, 2.0),
        LogprobCase::new(2, 3, 7, 7, 1.0),
        LogprobCase::new(3, 2, 1, 1, 1.0),
        LogprobCase::new(4, 6, 999, 1001, 5.0),
        LogprobCase::new(5, 1, 50272, 50272, 3.0),
    ];
    v.extend([
        LogprobCase::new(6, 64, 50272, 50272, 3.0),
        LogprobCase::new(7, 64, 49152, 49152, 8.0),
        LogprobCase::new(8, 17, 50272, 50275, 3.0),
        LogprobCase::new(9, 64, 32000, 32000, 1.0),
    ]);
    v
}
