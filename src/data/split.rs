//! MeZO's data protocol: from a labelled training pool draw k training examples (k in total,
//! or k per label as in its few-shot runs) and a disjoint dev set, and from the held-out pool a
//! test set, all with a seeded shuffle so a seed names the exact split.

use std::collections::BTreeMap;

use super::example::Example;
use crate::{Error, Result};

/// SplitMix64: a tiny, well-mixed generator. Splits only need a reproducible permutation per
/// seed, not the direction RNG's cross-device guarantees.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n by rejection, so every permutation is equally likely.
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next();
            if x < zone {
                return x % n;
            }
        }
    }
}

/// Fisher–Yates shuffle driven by `seed`: same seed and length, same permutation.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = SplitMix64(seed);
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// `n` examples drawn without replacement.
pub fn sample(examples: &[Example], n: usize, seed: u64) -> Result<Vec<Example>> {
    let mut idx = take_indices(examples.len(), n, seed, "examples")?;
    idx.truncate(n);
    Ok(idx.into_iter().map(|i| examples[i].clone()).collect())
}

/// `k` examples of every label (MeZO's k-shot sampling), in shuffled order.
pub fn sample_per_label(examples: &[Example], k: usize, seed: u64) -> Result<Vec<Example>> {
    Ok(per_label_indices(examples, k, seed)?
        .into_iter()
        .map(|i| examples[i].clone())
        .collect())
}

fn take_indices(len: usize, n: usize, seed: u64, what: &str) -> Result<Vec<usize>> {
    if n > len {
        return Err(Error::Data(format!(
            "asked for {n} {what} but only {len} are available"
        )));
    }
    let mut idx: Vec<usize> = (0..len).collect();
    shuffle(&mut idx, seed);
    Ok(idx)
}

fn per_label_indices(examples: &[Example], k: usize, seed: u64) -> Result<Vec<usize>> {
    let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, ex) in examples.iter().enumerate() {
        by_label.entry(&ex.label).or_default().push(i);
    }
    if by_label.is_empty() {
        return Err(Error::Data(
            "cannot sample from an empty set of examples".into(),
        ));
    }
    let mut out = Vec::with_capacity(k * by_label.len());
    for (li, (label, mut idx)) in by_label.into_iter().enumerate() {
        if idx.len() < k {
            return Err(Error::Data(format!(
                "asked for {k} examples of label {label:?} but only {} exist",
                idx.len()
            )));
        }
        // Each label gets its own stream so adding a label does not reshuffle the others.
        shuffle(
            &mut idx,
            seed ^ (li as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F),
        );
        out.extend_from_slice(&idx[..k]);
    }
    shuffle(&mut out, seed);
    Ok(out)
}

/// How many training examples to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainSize {
    Total(usize),
    PerLabel(usize),
}

/// MeZO's sizes for its OPT/LLM runs are 1000 train, 500 dev, 1000 test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitSpec {
    pub train: TrainSize,
    pub dev: usize,
    pub test: usize,
    pub seed: u64,
}

impl Default for SplitSpec {
    fn default() -> Self {
        SplitSpec {
            train: TrainSize::Total(1000),
            dev: 500,
            test: 1000,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splits {
    pub train: Vec<Example>,
    pub dev: Vec<Example>,
    pub test: Vec<Example>,
}

/// Train and dev come disjointly from `train_pool`, test from `test_pool` (the benchmark's own
/// held-out split, so it never overlaps training data).
pub fn mezo_splits(
    train_pool: &[Example],
    test_pool: &[Example],
    spec: &SplitSpec,
) -> Result<Splits> {
    let ctx = |e: Error, pool: &str| match e {
        Error::Data(m) => Error::Data(format!("{pool}: {m}")),
        other => other,
    };
    let train_idx = match spec.train {
        TrainSize::Total(n) => {
            let mut idx = take_indices(train_pool.len(), n, spec.seed, "examples")
                .map_err(|e| ctx(e, "training pool"))?;
            idx.truncate(n);
            idx
        }
        TrainSize::PerLabel(k) => {
            per_label_indices(train_pool, k, spec.seed).map_err(|e| ctx(e, "training pool"))?
        }
    };
    let mut used = vec![false; train_pool.len()];
    for &i in &train_idx {
        used[i] = true;
    }
    let rest: Vec<usize> = (0..train_pool.len()).filter(|&i| !used[i]).collect();
    let mut dev_idx = take_indices(
        rest.len(),
        spec.dev,
        spec.seed.wrapping_add(1),
        "dev examples",
    )
    .map_err(|e| ctx(e, "training pool after the train draw"))?;
    dev_idx.truncate(spec.dev);
    let test =
        sample(test_pool, spec.test, spec.seed.wrapping_add(2)).map_err(|e| ctx(e, "test pool"))?;
    let pick =
        |idx: &[usize]| -> Vec<Example> { idx.iter().map(|&i| train_pool[i].clone()).collect() };
    let splits = Splits {
        train: pick(&train_idx),
        dev: dev_idx
            .iter()
            .map(|&j| train_pool[rest[j]].clone())
            .collect(),
        test,
    };
    for (name, s) in [
        ("train", &splits.train),
        ("dev", &splits.dev),
        ("test", &splits.test),
    ] {
        if s.is_empty() {
            return Err(Error::Data(format!("the {name} split would be empty")));
        }
    }
    Ok(splits)
}
