//! Tiny random models and a synthetic classification task built in-test.

use zo::model::{Model, ModelConfig};
use zo::plan::TokenizedExample;
use zo::train::TrainData;

/// A tiny Llama with weights large enough that attention and nonlinearities matter.
pub fn tiny_model() -> Model {
    Model::random_with_std(ModelConfig::tiny_llama(), 5, 0.2)
}

/// Label = parity of the first prompt token; candidates are tokens 5 and 6. `salt` picks
/// disjoint streams for train/dev/test.
pub fn parity_examples(n: usize, salt: u64) -> Vec<TokenizedExample> {
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let len = 3 + (next() % 3) as usize;
            let prompt: Vec<u32> = (0..len).map(|_| 10 + (next() % 80) as u32).collect();
            let gold = (prompt[0] % 2) as usize;
            TokenizedExample {
                prompt,
                candidates: vec![vec![5], vec![6]],
                gold,
                answers: Vec::new(),
            }
        })
        .collect()
}

pub fn parity_data(train: usize, dev: usize, test: usize) -> TrainData {
    TrainData {
        train: parity_examples(train, 1),
        dev: parity_examples(dev, 2),
        test: parity_examples(test, 3),
        judge: Default::default(),
    }
}
