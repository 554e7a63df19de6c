//! RoPE's host-side tables, which both backends need: the inverse frequencies of a config and
//! the cos/sin of every packed row's position (the GPU forward uploads them; the CPU twin of
//! the rotation is `cpu::ops::apply_rope`).

use crate::model::RopeScaling;

/// RoPE inverse frequencies, HF's `_compute_default_rope_parameters` in f32, then the
/// "llama3" band adjustment when `scaling` is set.
pub fn rope_inv_freq(head_dim: usize, theta: f32, scaling: Option<&RopeScaling>) -> Vec<f32> {
    let half = head_dim / 2;
    let base: Vec<f32> = (0..half)
        .map(|i| {
            let e = (2 * i) as f32 / head_dim as f32;
            1.0 / ((theta as f64).powf(e as f64) as f32)
        })
        .collect();
    let Some(s) = scaling else {
        return base;
    };
    let old = s.original_max_position_embeddings as f64;
    let low_wavelen = old / s.low_freq_factor as f64;
    let high_wavelen = old / s.high_freq_factor as f64;
    let factor = s.factor as f64;
    base.iter()
        .map(|&f| {
            let f = f as f64;
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let adjusted = if wavelen > low_wavelen {
                f / factor
            } else if wavelen < high_wavelen {
                f
            } else {
                let smooth = (old / wavelen - s.low_freq_factor as f64)
                    / (s.high_freq_factor as f64 - s.low_freq_factor as f64);
                (1.0 - smooth) * f / factor + smooth * f
            };
            adjusted as f32
        })
        .collect()
}

/// cos/sin of every (token, frequency): `[T][head_dim/2]` each. The angle is rounded to f32
/// as HF forms it (inv_freq · position in f32) before the trigonometry.
pub fn rope_tables(positions: &[u32], inv_freq: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut cos = Vec::with_capacity(positions.len() * inv_freq.len());
    let mut sin = Vec::with_capacity(positions.len() * inv_freq.len());
    for &p in positions {
        for &f in inv_freq {
            let a = (f * p as f32) as f64;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_high_lowers_low_and_blends_middle() {
        let s = RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64,
        };
        let base = rope_inv_freq(32, 500_000.0, None);
        let scaled = rope_inv_freq(32, 500_000.0, Some(&s));
        let mut bands = [0; 3];
        for (b, s) in base.iter().zip(&scaled) {
            let wavelen = 2.0 * std::f32::consts::PI / b;
            if wavelen < 16.0 {
                assert_eq!(b, s);
                bands[0] += 1;
            } else if wavelen > 64.0 {
                assert!((s * 8.0 - b).abs() <= 1e-6 * b);
                bands[2] += 1;
            } else {
                assert!(*s < *b && *s > b / 8.0);
                bands[1] += 1;
            }
        }
        assert!(bands.iter().all(|&n| n > 0), "{bands:?}");
    }
}
