//! Decoding: the next token of many sequences at once, each under its own variant, over a KV
//! cache the backend keeps between calls.
//!
//! A [`DecodeBatch`] names the prompts, the variant of each sequence and how a token is
//! picked. A backend's [`Decoder`] feeds every live sequence's pending tokens (the prompt on
//! the first call, the token it picked last on the later ones) in one packed forward and picks
//! each sequence's next token from its last row's full-vocabulary logits. Stopping (end of
//! sequence, stop strings, a token budget) is the caller's business: it passes the sequences
//! still live, and those left out are dropped for good.
//!
//! Picking is [`pick`] on every backend: greedy is the argmax over the vocabulary (ties to the
//! lowest id); seeded sampling is Gumbel-max, the argmax of `logit / T + G` with `G` Gumbel
//! noise that is a pure function of (seed, sequence, position, token id), so a run replays bit
//! for bit and a sequence's draws do not depend on which other sequences share its batch.

use crate::plan::Variant;
use crate::rng::{log_unit, uniform_open0, Stream};
use crate::{Error, Result};

/// RNG tensor id of the sampling noise (no weight tensor uses it).
pub const SAMPLE_TENSOR: u32 = 0xFFFF_FF00;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    Greedy,
    /// Gumbel-max at temperature `temperature` (> 0) with noise drawn from `seed`.
    Seeded {
        seed: u64,
        temperature: f32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecodeBatch {
    pub prompts: Vec<Vec<u32>>,
    /// Variant of each sequence, non-decreasing, so each variant's sequences stay contiguous
    /// (the segments the perturbation families expect).
    pub seq_variant: Vec<u32>,
    pub variants: Vec<Variant>,
    pub sampling: Sampling,
}

impl DecodeBatch {
    /// Every sequence under the unperturbed model.
    pub fn base(prompts: Vec<Vec<u32>>, sampling: Sampling) -> DecodeBatch {
        DecodeBatch {
            seq_variant: vec![0; prompts.len()],
            prompts,
            variants: vec![Variant::BASE],
            sampling,
        }
    }

    /// Checks what every backend relies on; `vocab` and `max_positions` are the model's.
    pub fn check(&self, vocab: usize, max_positions: usize) -> Result<()> {
        let bad = |m: String| Err(Error::Data(format!("decode: {m}")));
        if self.prompts.is_empty() {
            return bad("no sequences".into());
        }
        if self.seq_variant.len() != self.prompts.len() {
            return bad(format!(
                "{} variants for {} sequences",
                self.seq_variant.len(),
                self.prompts.len()
            ));
        }
        if self.seq_variant.windows(2).any(|w| w[1] < w[0]) {
            return bad("sequences must be ordered by variant".into());
        }
        if let Some(&v) = self
            .seq_variant
            .iter()
            .find(|&&v| v as usize >= self.variants.len())
        {
            return bad(format!(
                "a sequence uses variant {v} of {}",
                self.variants.len()
            ));
        }
        for (i, p) in self.prompts.iter().enumerate() {
            if p.is_empty() {
                return bad(format!("sequence {i} has an empty prompt"));
            }
            if p.len() >= max_positions {
                return bad(format!(
                    "sequence {i}: a prompt of {} tokens leaves no room to generate in the \
                     model's context of {max_positions}",
                    p.len()
                ));
            }
            if let Some(&t) = p.iter().find(|&&t| t as usize >= vocab) {
                return bad(format!(
                    "sequence {i}: token {t} is outside the vocabulary of {vocab}"
                ));
            }
        }
        if let Sampling::Seeded { temperature, .. } = self.sampling {
            if !(temperature.is_finite() && temperature > 0.0) {
                return bad(format!(
                    "sampling temperature {temperature}; expected a finite value > 0"
                ));
            }
        }
        Ok(())
    }
}

/// A backend's decoding state for one [`DecodeBatch`].
pub trait Decoder {
    /// Feeds each sequence of `live` (batch indices, ascending) its pending tokens and returns
    /// its next token, in `live` order. A sequence missing from `live` is dropped: its cache
    /// is freed and it cannot be continued.
    fn next(&mut self, live: &[usize]) -> Result<Vec<u32>>;
}

/// Gumbel noise `−ln(−ln u)` of token `token` at position `pos` of sequence `seq`, with `u`
/// uniform in (0, 1] and both logs the project's portable one (so the GPU draws the same).
pub fn gumbel(seed: u64, seq: u32, pos: u32, token: u32, vocab: u32) -> f32 {
    let index = pos as u64 * vocab as u64 + token as u64;
    let u = uniform_open0(Stream::new(seed, SAMPLE_TENSOR, seq).raw(index));
    // u = 1 gives −ln u = 0; the smallest normal keeps the second log finite.
    let e = (-log_unit(u)).max(f32::MIN_POSITIVE);
    -log_unit(e)
}

/// The token picked from one row of logits: the argmax (lowest id on ties), of
/// `fma(logit, 1/T, G)` when sampling. `seq` and `pos` address the noise (see [`gumbel`]).
pub fn pick(logits: &[f32], sampling: Sampling, seq: u32, pos: u32) -> u32 {
    let vocab = logits.len() as u32;
    let mut best = 0u32;
    let mut best_x = f32::NEG_INFINITY;
    for (t, &l) in logits.iter().enumerate() {
        let x = match sampling {
            Sampling::Greedy => l,
            Sampling::Seeded { seed, temperature } => {
                l.mul_add(1.0 / temperature, gumbel(seed, seq, pos, t as u32, vocab))
            }
        };
        // NaN never wins; a row of NaN picks token 0.
        if x > best_x {
            best_x = x;
            best = t as u32;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_the_first_argmax() {
        assert_eq!(pick(&[0.5, 2.0, 2.0, -1.0], Sampling::Greedy, 0, 0), 1);
        assert_eq!(pick(&[f32::NAN, 1.0], Sampling::Greedy, 0, 0), 1);
    }

    #[test]
    fn sampling_follows_the_softmax_and_replays() {
        // Two tokens with logits ln 3 and 0: p = (0.75, 0.25) at T = 1.
        let logits = [3f32.ln(), 0.0];
        let s = Sampling::Seeded {
            seed: 7,
            temperature: 1.0,
        };
        let n = 20_000;
        let zeros = (0..n).filter(|&pos| pick(&logits, s, 3, pos) == 0).count();
        let p = zeros as f64 / n as f64;
        // Binomial standard deviation at n = 20000 is 0.003; 5σ.
        assert!((p - 0.75).abs() < 0.016, "p(token 0) = {p}");
        let again: Vec<u32> = (0..50).map(|pos| pick(&logits, s, 3, pos)).collect();
        let first: Vec<u32> = (0..50).map(|pos| pick(&logits, s, 3, pos)).collect();
        assert_eq!(again, first);
        // Another sequence draws other noise.
        let other: Vec<u32> = (0..50).map(|pos| pick(&logits, s, 4, pos)).collect();
        assert_ne!(other, first);
    }

    #[test]
    fn bad_batches_are_refused() {
        let ok = DecodeBatch::base(vec![vec![1, 2]], Sampling::Greedy);
        assert!(ok.check(10, 8).is_ok());
        let e = ok.check(2, 8).unwrap_err().to_string();
        assert!(e.contains("token 2 is outside"), "{e}");
        let e = ok.check(10, 2).unwrap_err().to_string();
        assert!(e.contains("no room to generate"), "{e}");
        let mut unordered = DecodeBatch::base(vec![vec![1], vec![1]], Sampling::Greedy);
        unordered.variants.push(Variant::BASE);
        unordered.seq_variant = vec![1, 0];
        assert!(unordered.check(10, 8).is_err());
        let hot = DecodeBatch::base(
            vec![vec![1]],
            Sampling::Seeded {
                seed: 1,
                temperature: 0.0,
            },
        );
        assert!(hot.check(10, 8).is_err());
    }
}
