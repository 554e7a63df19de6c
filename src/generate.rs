//! Generation on any backend: batched decoding of many prompts, each under its own variant,
//! until end of sequence, a stop string or the token budget.
//!
//! The backend's [`Decoder`] picks one token per live sequence per call; this loop decides
//! who is still live. Stop strings are found in the decoded text of what each sequence
//! generated, and the completion is cut before the stop string. A generation that never meets
//! a stop string ends at `max_new_tokens` and says so in [`Completion::ended`]: that is a
//! normal outcome, reported in the metrics, not an error.

use std::time::Instant;

use crate::backend::decode::{DecodeBatch, Sampling};
use crate::backend::Backend;
use crate::plan::Variant;
use crate::{Error, Result};

/// Why a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ended {
    /// The model produced an end-of-sequence token (not part of the completion).
    Eos,
    /// A stop string appeared; the completion is cut before it.
    Stop,
    /// `max_new_tokens` were generated.
    MaxTokens,
    /// The model's context is full.
    Context,
}

impl Ended {
    pub fn name(self) -> &'static str {
        match self {
            Ended::Eos => "eos",
            Ended::Stop => "stop",
            Ended::MaxTokens => "max_tokens",
            Ended::Context => "context",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Generated tokens, the end-of-sequence token excluded (a stop string's tokens included).
    pub tokens: Vec<u32>,
    /// The decoded text, cut before the first stop string.
    pub text: String,
    pub ended: Ended,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub stop: Vec<String>,
    /// Tokens that end a sequence (the model's end-of-sequence id).
    pub eos: Vec<u32>,
    pub sampling: Sampling,
    /// The model's context in positions: a sequence that fills it ends.
    pub context: usize,
}

/// Counts of a generation run: sequences, tokens decoded, decode calls and wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GenerateStats {
    pub sequences: usize,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub decode_calls: usize,
    pub seconds: f64,
}

impl GenerateStats {
    /// Generated tokens per second of wall time (prefill included).
    pub fn tokens_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.new_tokens as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The first byte offset where any stop string starts in `text`.
fn stop_at(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter().filter_map(|s| text.find(s.as_str())).min()
}

/// Generates a completion of every prompt; sequence `i` runs under
/// `variants[seq_variant[i]]` (non-decreasing). `decode` turns token ids into text. The
/// completions come back in prompt order.
pub fn generate(
    backend: &dyn Backend,
    prompts: &[Vec<u32>],
    seq_variant: &[u32],
    variants: &[Variant],
    opts: &GenerateOptions,
    decode: &dyn Fn(&[u32]) -> Result<String>,
) -> Result<(Vec<Completion>, GenerateStats)> {
    if opts.max_new_tokens == 0 {
        return Err(Error::Config(
            "generate: max_new_tokens must be at least 1".into(),
        ));
    }
    let start = Instant::now();
    let batch = DecodeBatch {
        prompts: prompts.to_vec(),
        seq_variant: seq_variant.to_vec(),
        variants: variants.to_vec(),
        sampling: opts.sampling,
    };
    let mut dec = backend.decoder(batch)?;
    let n = prompts.len();
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut ended: Vec<Option<Ended>> = vec![None; n];
    let mut text: Vec<String> = vec![String::new(); n];
    let mut live: Vec<usize> = (0..n).collect();
    let mut stats = GenerateStats {
        sequences: n,
        prompt_tokens: prompts.iter().map(Vec::len).sum(),
        ..Default::default()
    };
    while !live.is_empty() {
        let next = dec.next(&live)?;
        stats.decode_calls += 1;
        let mut still = Vec::with_capacity(live.len());
        for (&i, &t) in live.iter().zip(&next) {
            if opts.eos.contains(&t) {
                ended[i] = Some(Ended::Eos);
                continue;
            }
            out[i].push(t);
            stats.new_tokens += 1;
            if !opts.stop.is_empty() {
                let s = decode(&out[i])?;
                if let Some(at) = stop_at(&s, &opts.stop) {
                    text[i] = s[..at].to_string();
                    ended[i] = Some(Ended::Stop);
                    continue;
                }
            }
            if out[i].len() >= opts.max_new_tokens {
                ended[i] = Some(Ended::MaxTokens);
            } else if prompts[i].len() + out[i].len() >= opts.context {
                ended[i] = Some(Ended::Context);
            } else {
                still.push(i);
            }
        }
        live = still;
    }
    let mut completions = Vec::with_capacity(n);
    for i in 0..n {
        let e = ended[i].expect("every sequence ends");
        let t = if e == Ended::Stop {
            std::mem::take(&mut text[i])
        } else {
            decode(&out[i])?
        };
        completions.push(Completion {
            tokens: std::mem::take(&mut out[i]),
            text: t,
            ended: e,
        });
    }
    stats.seconds = start.elapsed().as_secs_f64();
    Ok((completions, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_cut_at_the_earliest() {
        let stop = vec!["\n".to_string(), ".".to_string()];
        assert_eq!(stop_at("Paris. More\n", &stop), Some(5));
        assert_eq!(stop_at("Paris", &stop), None);
    }
}
