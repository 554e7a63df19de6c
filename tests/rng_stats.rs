//! Distribution checks of the portable Gaussian and Rademacher draws. Bounds are 6 standard
//! errors of each statistic under the ideal distribution, so a correct generator fails with
//! probability ~1e-9 per check while a wrong transform (bad log, bad angle, lane mix-up) fails.

use zo::rng::{box_muller, Stream};

const N: usize = 1 << 22;

fn within(name: &str, got: f64, want: f64, se: f64) {
    assert!(
        (got - want).abs() <= 6.0 * se,
        "{name}: got {got}, want {want} +- 6 x {se}"
    );
}

#[test]
fn gaussian_moments_and_tails() {
    let mut z = vec![0f32; N];
    Stream::new(0x5eed_0001_dead_beef, 17, 2).fill_gaussian(0, &mut z);
    assert!(z.iter().all(|v| v.is_finite()));
    let n = N as f64;
    let mean = z.iter().map(|&v| v as f64).sum::<f64>() / n;
    let m = |k: i32| z.iter().map(|&v| (v as f64 - mean).powi(k)).sum::<f64>() / n;
    let (var, m3, m4) = (m(2), m(3), m(4));
    within("mean", mean, 0.0, (1.0 / n).sqrt());
    within("variance", var, 1.0, (2.0 / n).sqrt());
    within("skewness", m3 / var.powf(1.5), 0.0, (6.0 / n).sqrt());
    within("kurtosis", m4 / (var * var), 3.0, (24.0 / n).sqrt());
    // P(|Z| < k) for k = 1, 2, 3.
    for (k, p) in [
        (1.0f32, 0.682_689_492_137_085_9),
        (2.0, 0.954_499_736_103_641_6),
        (3.0, 0.997_300_203_936_739_8),
    ] {
        let frac = z.iter().filter(|v| v.abs() < k).count() as f64 / n;
        within(&format!("P(|Z|<{k})"), frac, p, (p * (1.0 - p) / n).sqrt());
    }
}

#[test]
fn gaussian_lanes_and_neighbouring_blocks_are_uncorrelated() {
    let mut z = vec![0f32; N];
    Stream::new(42, 3, 0).fill_gaussian(0, &mut z);
    let blocks = z.chunks_exact(4).collect::<Vec<_>>();
    let nb = blocks.len() as f64;
    // Pairs (lane i, lane j) in one block, and lane 0 with lane 0 of the next block.
    for (i, j) in [(0, 1), (2, 3), (0, 2), (1, 3)] {
        let c = blocks
            .iter()
            .map(|b| b[i] as f64 * b[j] as f64)
            .sum::<f64>()
            / nb;
        within(
            &format!("corr(lane {i}, lane {j})"),
            c,
            0.0,
            (1.0 / nb).sqrt(),
        );
    }
    let c = blocks
        .windows(2)
        .map(|w| w[0][0] as f64 * w[1][0] as f64)
        .sum::<f64>()
        / (nb - 1.0);
    within("corr(block b, block b+1)", c, 0.0, (1.0 / nb).sqrt());
}

#[test]
fn gaussian_matches_f64_box_muller_on_the_same_bits() {
    // An independent f64 evaluation with the standard library's ln/cos/sin: the f32 transform
    // must agree to f32 precision (the radius is at most ~5.8).
    let s = Stream::new(7, 1, 1);
    let mut worst = 0f64;
    for b in 0..200_000u64 {
        let x = s.raw_block(b);
        let g = s.gaussian_block(b);
        for (pair, (a, t)) in [(x[0], x[1]), (x[2], x[3])].into_iter().enumerate() {
            let u = ((a >> 8) + 1) as f64 / 16_777_216.0;
            let th = 2.0 * std::f64::consts::PI * (t >> 8) as f64 / 16_777_216.0;
            let r = (-2.0 * u.ln()).sqrt();
            worst = worst.max((g[2 * pair] as f64 - r * th.cos()).abs());
            worst = worst.max((g[2 * pair + 1] as f64 - r * th.sin()).abs());
        }
        assert_eq!(box_muller(x[0], x[1]), (g[0], g[1]));
    }
    assert!(worst < 4e-6, "worst absolute deviation {worst}");
}

#[test]
fn rademacher_is_balanced_per_lane() {
    let mut r = vec![0f32; N];
    Stream::new(99, 5, 4).fill_rademacher(0, &mut r);
    assert!(r.iter().all(|&v| v == 1.0 || v == -1.0));
    let n = N as f64;
    within(
        "mean",
        r.iter().map(|&v| v as f64).sum::<f64>() / n,
        0.0,
        (1.0 / n).sqrt(),
    );
    for lane in 0..4 {
        let m = r
            .iter()
            .skip(lane)
            .step_by(4)
            .map(|&v| v as f64)
            .sum::<f64>()
            / (n / 4.0);
        within(&format!("lane {lane} mean"), m, 0.0, (4.0 / n).sqrt());
    }
}

#[test]
fn raw_bits_are_balanced() {
    let mut x = vec![0u32; 1 << 20];
    Stream::new(0, 0, 0).fill_raw(0, &mut x);
    let n = x.len() as f64;
    for bit in 0..32 {
        let ones = x.iter().filter(|&&v| v >> bit & 1 == 1).count() as f64;
        within(&format!("bit {bit}"), ones / n, 0.5, (0.25 / n).sqrt());
    }
}
