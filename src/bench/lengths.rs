//! Prompt lengths of the benchmarked steps and the synthetic batches built on them.
//!
//! Lengths come from the default task's real train prompts, tokenized with the assets
//! tokenizer and sampled `batch` per step with the training loop's own batch order, or are
//! fixed (`--seq-len`). Token ids are synthetic (seeded, inside the vocabulary): timings do
//! not depend on which ids a sequence holds, only on how long it is.

use std::path::Path;

use crate::engine::seeds::batch_indices;
use crate::plan::TokenizedExample;
use crate::rng::Stream;
use crate::{Error, Result};

/// RNG tensor id of the synthetic token ids (no model tensor uses it).
const TOKEN_STREAM: u32 = 0x7e57_0001;

#[derive(Debug, Clone, PartialEq)]
pub enum Lengths {
    /// Every prompt has this many tokens.
    Fixed(usize),
    /// Real prompt lengths to sample from, and where they came from.
    Task { lengths: Vec<usize>, source: String },
}

impl Lengths {
    /// Lengths of the train prompts of `task` under the tokenizer in `tokenizer_dir`; the
    /// error says what is missing and how to get it.
    pub fn from_task(task: &str, data: &Path, tokenizer_dir: &Path) -> Result<Lengths> {
        let tok_file = tokenizer_dir.join("tokenizer.json");
        let train_missing = !data.is_dir();
        if train_missing || !tok_file.is_file() {
            let what = if train_missing {
                data.display().to_string()
            } else {
                tok_file.display().to_string()
            };
            return Err(Error::Data(format!(
                "prompt lengths of the default task need {what}, which is missing: run \
                 tools/fetch-assets, or pass --seq-len N"
            )));
        }
        let tokenizer = crate::io::tokenizer::Tokenizer::from_dir(tokenizer_dir)?;
        let task_def = crate::data::resolve_task(task)?;
        let examples = crate::data::load_split(data, "train")?;
        let tokenized = crate::data::tokenize_examples(task_def.as_ref(), &examples, |t, s| {
            tokenizer.encode(t, s)
        })?;
        if tokenized.is_empty() {
            return Err(Error::Data(format!(
                "{}: the train split is empty",
                data.display()
            )));
        }
        Ok(Lengths::Task {
            lengths: tokenized.iter().map(|e| e.prompt.len()).collect(),
            source: format!(
                "{task} train prompts ({} examples in {}, tokenized with {})",
                tokenized.len(),
                data.display(),
                tok_file.display()
            ),
        })
    }

    /// The prompt lengths of step `step`: the training loop's batch of that step.
    pub fn step(&self, seed: u64, step: u64, batch: usize) -> Vec<usize> {
        match self {
            Lengths::Fixed(n) => vec![*n; batch],
            Lengths::Task { lengths, .. } => batch_indices(seed, step, batch, lengths.len())
                .into_iter()
                .map(|i| lengths[i])
                .collect(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Lengths::Fixed(n) => format!("fixed: {n} tokens per prompt (--seq-len)"),
            Lengths::Task { source, .. } => source.clone(),
        }
    }
}

/// A batch with the given prompt lengths: seeded ids in `0..vocab`, two single-token
/// candidates per example (like the sentiment task's label words).
pub fn synthetic_batch(
    lengths: &[usize],
    vocab: usize,
    seed: u64,
    step: u64,
) -> Vec<TokenizedExample> {
    let s = Stream::new(seed, TOKEN_STREAM, step as u32);
    let mut start = 0u64;
    lengths
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let mut ids = vec![0u32; len + 2];
            s.fill_raw(start, &mut ids);
            start += ids.len() as u64;
            let ids: Vec<u32> = ids.iter().map(|&x| x % vocab as u32).collect();
            TokenizedExample {
                prompt: ids[..len].to_vec(),
                candidates: vec![vec![ids[len]], vec![ids[len + 1]]],
                gold: i % 2,
                answers: Vec::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_batches_are_seeded_and_in_vocab() {
        let a = synthetic_batch(&[3, 7], 11, 5, 0);
        assert_eq!(a, synthetic_batch(&[3, 7], 11, 5, 0));
        assert_ne!(a, synthetic_batch(&[3, 7], 11, 5, 1));
        assert_eq!((a[0].prompt.len(), a[1].prompt.len()), (3, 7));
        assert!(a.iter().all(|e| e.prompt.iter().all(|&t| t < 11)));
    }

    #[test]
    fn task_lengths_follow_the_batch_order() {
        let l = Lengths::Task {
            lengths: vec![10, 20, 30, 40],
            source: String::new(),
        };
        let got = l.step(0, 0, 4);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![10, 20, 30, 40]);
        assert_eq!(Lengths::Fixed(9).step(0, 3, 2), vec![9, 9]);
    }
}
