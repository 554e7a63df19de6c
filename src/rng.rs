//! Philox4x32-10 counter-based RNG and the portable Gaussian/Rademacher transforms: the host twin
//! of `csrc/philox.cuh`.
//!
//! Every random element is a pure function of `(seed, tensor, role, index)`:
//!
//! - key = the 64-bit direction seed as `(lo, hi)` words;
//! - counter = `(block lo, block hi, tensor, role)` with `block = index / 4`;
//! - the element takes output lane `index % 4` of that Philox block.
//!
//! So a GPU kernel, a rayon worker or a single lookup all see the same value whatever the tiling.
//!
//! The Gaussian is Box–Muller over a lane pair of one block (lanes 0,1 give elements 4b, 4b+1 as
//! `r·cos θ`, `r·sin θ`; lanes 2,3 give 4b+2, 4b+3). It uses only correctly rounded operations
//! (`mul_add`, `*`, `+`, `/`, `sqrt`) and its own polynomial log and sin/cos, never libm: libm
//! and CUDA's math library differ in the last bits, and the host/device contract is bit-exact.
//! Each function below has a same-named twin in `csrc/philox.cuh` with the same operation
//! sequence; keep them in step.

use rayon::prelude::*;

/// Philox multipliers and Weyl key increments (Salmon et al., SC'11).
pub const PHILOX_M0: u32 = 0xD251_1F53;
pub const PHILOX_M1: u32 = 0xCD9E_8D57;
pub const PHILOX_W0: u32 = 0x9E37_79B9;
pub const PHILOX_W1: u32 = 0xBB67_AE85;

/// Fills shorter than this run on the calling thread: below it, rayon's fork/join costs more
/// than the draws.
pub const PAR_MIN_LEN: usize = 1 << 15;
/// Default elements per rayon task (a multiple of 4, so tasks start on block boundaries when
/// `start` is aligned; correctness does not depend on it).
pub const PAR_CHUNK: usize = 1 << 14;

#[inline(always)]
fn philox_round(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let p0 = PHILOX_M0 as u64 * ctr[0] as u64;
    let p1 = PHILOX_M1 as u64 * ctr[2] as u64;
    [
        (p1 >> 32) as u32 ^ ctr[1] ^ key[0],
        p1 as u32,
        (p0 >> 32) as u32 ^ ctr[3] ^ key[1],
        p0 as u32,
    ]
}

/// The Philox4x32-10 block function: ten rounds, the key bumped by the Weyl constants between
/// rounds.
#[inline(always)]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut ctr = counter;
    let mut k = key;
    ctr = philox_round(ctr, k);
    for _ in 1..10 {
        k = [k[0].wrapping_add(PHILOX_W0), k[1].wrapping_add(PHILOX_W1)];
        ctr = philox_round(ctr, k);
    }
    ctr
}

/// Uniform in (0, 1] from the top 24 bits: `(x >> 8) + 1` is exact in f32 and never 0, so the
/// log in Box–Muller is always finite.
#[inline(always)]
pub fn uniform_open0(x: u32) -> f32 {
    ((x >> 8) + 1) as f32 * (1.0 / 16_777_216.0)
}

// Coefficients fitted (relative-error minimax, Lawson iterations) on the reduced ranges below,
// then rounded to f32. Model error is under 4e-9 relative, far below one f32 ulp; what remains
// is the rounding of the f32 evaluation (about 1 ulp).
const LOG_P0: f32 = 0.666_667_76;
const LOG_P1: f32 = 0.399_775_74;
const LOG_P2: f32 = 0.298_709_36;
const LN2_HI: f32 = 0.693_145_75; // 0x3f317200: e * LN2_HI is exact for |e| < 2^9
const LN2_LO: f32 = 1.428_606_8e-6;
const SQRT2: f32 = std::f32::consts::SQRT_2;

/// Natural log of a positive normal f32 (the Box–Muller radius input, in (0, 1]).
///
/// `u = 2^e · f` with `f` in [√½, √2) by exponent surgery (exact), then
/// `ln f = 2·atanh(s) = 2s + s³·P(s²)` with `s = (f-1)/(f+1)`, |s| ≤ 0.1716.
#[inline(always)]
pub fn log_unit(u: f32) -> f32 {
    let bits = u.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut f = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    if f > SQRT2 {
        f *= 0.5;
        e += 1;
    }
    let s = (f - 1.0) / (f + 1.0);
    let w = s * s;
    let p = w.mul_add(w.mul_add(LOG_P2, LOG_P1), LOG_P0);
    let lnf = (s * w).mul_add(p, s + s);
    let ef = e as f32;
    ef.mul_add(LN2_HI, ef.mul_add(LN2_LO, lnf))
}

const SIN_P0: f32 = -0.166_666_55;
const SIN_P1: f32 = 0.008_332_16;
const SIN_P2: f32 = -1.951_528_4e-4;
const COS_P0: f32 = 0.041_666_646;
const COS_P1: f32 = -0.001_388_731_6;
const COS_P2: f32 = 2.443_315_7e-5;
/// 2π / 2^24: one step of the 24-bit angle.
const TURN_STEP: f32 = (2.0 * std::f64::consts::PI / 16_777_216.0) as f32;

/// `(cos θ, sin θ)` for θ = 2π·k/2^24 with `k` a 24-bit integer.
///
/// Range reduction happens on the integer, so it is exact: `q` = nearest quarter turn,
/// `d = k - q·2^22` in [-2^21, 2^21), and the residual angle `r = d·2π/2^24` lies in
/// [-π/4, π/4] where short odd/even polynomials are accurate. Rotating `(cos r, sin r)` by `q`
/// quarter turns is swaps and sign flips.
#[inline(always)]
pub fn sincos_turn24(k: u32) -> (f32, f32) {
    let q = (k + (1 << 21)) >> 22;
    let d = k as i32 - (q << 22) as i32;
    let r = d as f32 * TURN_STEP;
    let z = r * r;
    let sp = z.mul_add(z.mul_add(SIN_P2, SIN_P1), SIN_P0);
    let s = (r * z).mul_add(sp, r);
    let cp = z.mul_add(z.mul_add(COS_P2, COS_P1), COS_P0);
    let c = z.mul_add(z.mul_add(cp, -0.5), 1.0);
    match q & 3 {
        0 => (c, s),
        1 => (-s, c),
        2 => (-c, -s),
        _ => (s, -c),
    }
}

/// Box–Muller on two raw lanes: `a` gives the radius, `b` the angle.
/// Returns `(r·cos θ, r·sin θ)`.
#[inline(always)]
pub fn box_muller(a: u32, b: u32) -> (f32, f32) {
    let r = (-2.0 * log_unit(uniform_open0(a))).sqrt();
    let (c, s) = sincos_turn24(b >> 8);
    (r * c, r * s)
}

/// ±1 from the top bit of a raw lane.
#[inline(always)]
pub fn rademacher_bits(x: u32) -> f32 {
    if x & 0x8000_0000 != 0 {
        -1.0
    } else {
        1.0
    }
}

/// One random stream: a direction seed, a tensor id and a role (which factor / use of the
/// tensor). Elements are addressed by a 64-bit index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stream {
    pub seed: u64,
    pub tensor: u32,
    pub role: u32,
}

impl Stream {
    pub const fn new(seed: u64, tensor: u32, role: u32) -> Self {
        Stream { seed, tensor, role }
    }

    /// Philox key: the seed as `(lo, hi)`.
    #[inline(always)]
    pub fn key(&self) -> [u32; 2] {
        [self.seed as u32, (self.seed >> 32) as u32]
    }

    /// Philox counter of a block: `(block lo, block hi, tensor, role)`.
    #[inline(always)]
    pub fn counter(&self, block: u64) -> [u32; 4] {
        [block as u32, (block >> 32) as u32, self.tensor, self.role]
    }

    /// The four raw lanes of a block (elements `4·block .. 4·block+4`).
    #[inline(always)]
    pub fn raw_block(&self, block: u64) -> [u32; 4] {
        philox4x32_10(self.counter(block), self.key())
    }

    /// Raw 32 bits of one element.
    #[inline(always)]
    pub fn raw(&self, index: u64) -> u32 {
        self.raw_block(index / 4)[(index % 4) as usize]
    }

    /// Uniform in (0, 1] of one element (24 bits).
    #[inline(always)]
    pub fn uniform(&self, index: u64) -> f32 {
        uniform_open0(self.raw(index))
    }

    /// The four standard normals of a block.
    #[inline(always)]
    pub fn gaussian_block(&self, block: u64) -> [f32; 4] {
        let x = self.raw_block(block);
        let (g0, g1) = box_muller(x[0], x[1]);
        let (g2, g3) = box_muller(x[2], x[3]);
        [g0, g1, g2, g3]
    }

    /// Standard normal of one element.
    #[inline(always)]
    pub fn gaussian(&self, index: u64) -> f32 {
        self.gaussian_block(index / 4)[(index % 4) as usize]
    }

    /// ±1 of one element.
    #[inline(always)]
    pub fn rademacher(&self, index: u64) -> f32 {
        rademacher_bits(self.raw(index))
    }

    /// Raw bits of elements `start .. start + out.len()`.
    pub fn fill_raw(&self, start: u64, out: &mut [u32]) {
        self.fill_with(start, out, PAR_CHUNK, |s, b| s.raw_block(b));
    }

    /// Standard normals of elements `start .. start + out.len()`.
    pub fn fill_gaussian(&self, start: u64, out: &mut [f32]) {
        self.fill_gaussian_chunked(start, out, PAR_CHUNK);
    }

    /// [`Stream::fill_gaussian`] with an explicit rayon task size (elements); the values do not
    /// depend on it.
    pub fn fill_gaussian_chunked(&self, start: u64, out: &mut [f32], chunk: usize) {
        self.fill_with(start, out, chunk, gaussian_block_dispatch);
    }

    /// ±1 of elements `start .. start + out.len()`.
    pub fn fill_rademacher(&self, start: u64, out: &mut [f32]) {
        self.fill_with(start, out, PAR_CHUNK, |s, b| {
            s.raw_block(b).map(rademacher_bits)
        });
    }

    /// Splits `out` into rayon tasks of `chunk` elements when it is long enough; each task
    /// fills its own index range, so the split cannot change any value.
    fn fill_with<T, F>(&self, start: u64, out: &mut [T], chunk: usize, block: F)
    where
        T: Copy + Send,
        F: Fn(&Stream, u64) -> [T; 4] + Sync,
    {
        let chunk = chunk.max(1);
        if out.len() < PAR_MIN_LEN || chunk >= out.len() {
            fill_serial(self, start, out, &block);
            return;
        }
        out.par_chunks_mut(chunk).enumerate().for_each(|(i, part)| {
            fill_serial(self, start + (i * chunk) as u64, part, &block);
        });
    }
}

/// Fills `out` with elements `start ..` from whole blocks; partial blocks at either end are
/// computed whole and sliced.
#[inline(always)]
fn fill_serial<T: Copy>(
    s: &Stream,
    start: u64,
    out: &mut [T],
    block: &impl Fn(&Stream, u64) -> [T; 4],
) {
    let mut pos = 0usize;
    let mut b = start / 4;
    let head = (start % 4) as usize;
    if head != 0 && !out.is_empty() {
        let v = block(s, b);
        let take = (4 - head).min(out.len());
        out[..take].copy_from_slice(&v[head..head + take]);
        pos = take;
        b += 1;
    }
    let mut quads = out[pos..].chunks_exact_mut(4);
    for q in &mut quads {
        q.copy_from_slice(&block(s, b));
        b += 1;
    }
    let tail = quads.into_remainder();
    if !tail.is_empty() {
        let n = tail.len();
        tail.copy_from_slice(&block(s, b)[..n]);
    }
}

/// Gaussian block, through an FMA-enabled copy of the code when the CPU has FMA: without the
/// target feature every `mul_add` is a library call. Results are identical either way because
/// fused multiply-add is correctly rounded.
#[inline(always)]
fn gaussian_block_dispatch(s: &Stream, b: u64) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS_FMA: OnceLock<bool> = OnceLock::new();
        if *HAS_FMA.get_or_init(|| std::arch::is_x86_feature_detected!("fma")) {
            // SAFETY: the CPU supports FMA (checked above).
            return unsafe { gaussian_block_fma(s, b) };
        }
    }
    s.gaussian_block(b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn gaussian_block_fma(s: &Stream, b: u64) -> [f32; 4] {
    s.gaussian_block(b)
}

/// Raw bits of element `index` of stream `(seed, tensor, role)`.
pub fn raw(seed: u64, tensor: u32, role: u32, index: u64) -> u32 {
    Stream::new(seed, tensor, role).raw(index)
}

/// Standard normal of element `index` of stream `(seed, tensor, role)`.
pub fn gaussian(seed: u64, tensor: u32, role: u32, index: u64) -> f32 {
    Stream::new(seed, tensor, role).gaussian(index)
}

/// ±1 of element `index` of stream `(seed, tensor, role)`.
pub fn rademacher(seed: u64, tensor: u32, role: u32, index: u64) -> f32 {
    Stream::new(seed, tensor, role).rademacher(index)
}

/// Standard normals of elements `start .. start + out.len()` of stream `(seed, tensor, role)`.
pub fn fill_gaussian(seed: u64, tensor: u32, role: u32, start: u64, out: &mut [f32]) {
    Stream::new(seed, tensor, role).fill_gaussian(start, out)
}

/// ±1 of elements `start .. start + out.len()` of stream `(seed, tensor, role)`.
pub fn fill_rademacher(seed: u64, tensor: u32, role: u32, start: u64, out: &mut [f32]) {
    Stream::new(seed, tensor, role).fill_rademacher(start, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers from the Random123 distribution (kat_vectors), as listed in the design.
    #[test]
    fn philox_known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    /// The device twin must use the same constants: parse them out of the CUDA header.
    #[test]
    fn constants_match_the_cuda_header() {
        let header = include_str!("../csrc/philox.cuh");
        let float = |name: &str| -> f32 {
            let decl = format!("static constexpr float ZO_{name} = ");
            let line = header
                .lines()
                .find(|l| l.starts_with(&decl))
                .unwrap_or_else(|| panic!("ZO_{name} not declared in philox.cuh"));
            let lit = line[decl.len()..].split('f').next().unwrap();
            lit.parse().unwrap()
        };
        let int = |name: &str| -> u32 {
            let decl = format!("#define ZO_{name} 0x");
            let line = header.lines().find(|l| l.starts_with(&decl)).unwrap();
            u32::from_str_radix(line[decl.len()..].trim_end_matches('u'), 16).unwrap()
        };
        for (name, value) in [
            ("LOG_P0", LOG_P0),
            ("LOG_P1", LOG_P1),
            ("LOG_P2", LOG_P2),
            ("LN2_HI", LN2_HI),
            ("LN2_LO", LN2_LO),
            ("SQRT2", SQRT2),
            ("SIN_P0", SIN_P0),
            ("SIN_P1", SIN_P1),
            ("SIN_P2", SIN_P2),
            ("COS_P0", COS_P0),
            ("COS_P1", COS_P1),
            ("COS_P2", COS_P2),
            ("TURN_STEP", TURN_STEP),
            ("TWO_M24", 1.0 / 16_777_216.0),
        ] {
            assert_eq!(float(name).to_bits(), value.to_bits(), "ZO_{name}");
        }
        assert_eq!(int("PHILOX_M0"), PHILOX_M0);
        assert_eq!(int("PHILOX_M1"), PHILOX_M1);
        assert_eq!(int("PHILOX_W0"), PHILOX_W0);
        assert_eq!(int("PHILOX_W1"), PHILOX_W1);
    }

    #[test]
    fn addressing_maps_seed_and_index_to_key_and_counter() {
        let s = Stream::new(0x0123_4567_89ab_cdef, 7, 3);
        assert_eq!(s.key(), [0x89ab_cdef, 0x0123_4567]);
        let idx = (5u64 << 32 | 9) * 4 + 2;
        assert_eq!(s.counter(idx / 4), [9, 5, 7, 3]);
        let expect = philox4x32_10([9, 5, 7, 3], [0x89ab_cdef, 0x0123_4567])[2];
        assert_eq!(s.raw(idx), expect);
    }

    #[test]
    fn uniform_is_in_open_zero_closed_one() {
        assert_eq!(uniform_open0(0), 1.0 / 16_777_216.0);
        assert_eq!(uniform_open0(u32::MAX), 1.0);
        assert_eq!(uniform_open0(0xff), uniform_open0(0));
    }

    /// Error of `a` in ulps of the reference `b`'s binade.
    fn ulps(a: f32, b: f64) -> f64 {
        let ulp = 2f64.powi(b.abs().log2().floor() as i32 - 23);
        (a as f64 - b).abs() / ulp
    }

    #[test]
    fn log_is_within_two_ulp_on_every_uniform() {
        // Exhaustive over the 2^24 values `uniform_open0` can return.
        let mut worst = 0f64;
        for m in 1u32..=1 << 24 {
            let u = m as f32 / 16_777_216.0;
            let got = log_unit(u);
            let want = (u as f64).ln();
            if want != 0.0 {
                worst = worst.max(ulps(got, want));
            } else {
                assert_eq!(got, 0.0);
            }
        }
        assert!(worst <= 2.0, "log_unit worst error {worst} ulp");
    }

    #[test]
    fn sincos_is_within_two_steps_and_exact_at_quarter_turns() {
        let mut worst = 0f64;
        // Exhaustive over every 24-bit angle.
        for k in 0u32..1 << 24 {
            let (c, s) = sincos_turn24(k);
            let t = 2.0 * std::f64::consts::PI * k as f64 / 16_777_216.0;
            // Absolute error in units of 2^-24: sin/cos near their zeros are judged against the
            // size of the output range, which is what the Gaussian's distribution sees.
            worst = worst.max((c as f64 - t.cos()).abs() * 16_777_216.0);
            worst = worst.max((s as f64 - t.sin()).abs() * 16_777_216.0);
        }
        assert!(worst <= 2.0, "sincos worst error {worst} x 2^-24");
        assert_eq!(sincos_turn24(0), (1.0, 0.0));
        assert_eq!(sincos_turn24(1 << 22), (-0.0, 1.0));
        assert_eq!(sincos_turn24(2 << 22), (-1.0, -0.0));
        assert_eq!(sincos_turn24(3 << 22), (0.0, -1.0));
    }

    #[test]
    fn box_muller_radius_extremes_are_finite() {
        let (a, b) = box_muller(0, 0);
        let rmax = (-2.0 * (1.0f64 / 16_777_216.0).ln()).sqrt();
        assert!((a as f64 - rmax).abs() < 1e-5 && b == 0.0);
        assert_eq!(box_muller(u32::MAX, 0x1234_5678), (0.0, 0.0));
    }
}
