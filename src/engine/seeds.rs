//! Every seed of a run, as pure functions of the run's seeds and the step number.
//!
//! All are splitmix64 finalizers ("mix") chained over the inputs, each kind of seed with its
//! own domain tag so that, e.g., the direction seed of (step 3, d 0) never equals the period
//! seed of period 3:
//!
//! - direction seed of (run seed, step, d) = `mix(mix(mix(run ^ DIRECTION) ^ step) ^ d)`
//! - period seed of (run seed, step, ν) = `mix(mix(run ^ PERIOD) ^ (step / ν))`
//! - batch of (data seed, step): the positions `step·B .. step·B + B` of the endless sequence
//!   of epochs, epoch `e` being the train split shuffled with `mix(mix(data ^ EPOCH) ^ e)`
//!   (HF-Trainer style: every example once per epoch).
//!
//! Seeds are never 0: the variant with seed 0 is, by convention, the unperturbed model.

const DIRECTION: u64 = 0x6469_7265_6374_696f; // "directio"
const PERIOD: u64 = 0x7065_7269_6f64_5f76; // "period_v"
const EPOCH: u64 = 0x6570_6f63_685f_7368; // "epoch_sh"

/// The splitmix64 output function: a bijection on u64 with full avalanche.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn nonzero(x: u64) -> u64 {
    if x == 0 {
        1
    } else {
        x
    }
}

/// Seed of direction `d` of step `step`.
pub fn direction_seed(run_seed: u64, step: u64, d: usize) -> u64 {
    nonzero(mix(mix(mix(run_seed ^ DIRECTION) ^ step) ^ d as u64))
}

/// Seed of V for the period holding `step` (low-rank families), ν = `period` ≥ 1.
pub fn period_seed(run_seed: u64, step: u64, period: u64) -> u64 {
    nonzero(mix(mix(run_seed ^ PERIOD) ^ (step / period.max(1))))
}

/// Indices into a train split of `n` examples for step `step`, `batch` of them.
///
/// A batch larger than the split wraps into the next epoch, so every step sees exactly
/// `batch` examples.
pub fn batch_indices(data_seed: u64, step: u64, batch: usize, n: usize) -> Vec<usize> {
    assert!(n > 0, "batch_indices needs a non-empty split");
    let start = step as u128 * batch as u128;
    let mut out = Vec::with_capacity(batch);
    let mut epoch = u64::MAX;
    let mut perm: Vec<usize> = Vec::new();
    for k in 0..batch as u128 {
        let pos = start + k;
        let e = (pos / n as u128) as u64;
        if e != epoch {
            epoch = e;
            perm = (0..n).collect();
            crate::data::shuffle(&mut perm, mix(mix(data_seed ^ EPOCH) ^ e));
        }
        out.push(perm[(pos % n as u128) as usize]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_across_steps_directions_and_kinds() {
        let a = direction_seed(7, 3, 0);
        assert_ne!(a, direction_seed(7, 3, 1));
        assert_ne!(a, direction_seed(7, 4, 0));
        assert_ne!(a, direction_seed(8, 3, 0));
        assert_ne!(period_seed(7, 3, 1), a);
        assert_eq!(period_seed(7, 0, 50), period_seed(7, 49, 50));
        assert_ne!(period_seed(7, 49, 50), period_seed(7, 50, 50));
    }

    #[test]
    fn epochs_cover_every_example_once() {
        let n = 10;
        let mut seen: Vec<usize> = (0..5).flat_map(|s| batch_indices(3, s, 2, n)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        // The next epoch is a different order.
        let e0: Vec<usize> = (0..5).flat_map(|s| batch_indices(3, s, 2, n)).collect();
        let e1: Vec<usize> = (5..10).flat_map(|s| batch_indices(3, s, 2, n)).collect();
        assert_ne!(e0, e1);
        // Batches larger than the split wrap.
        assert_eq!(batch_indices(3, 0, 25, n).len(), 25);
    }
}
