use super::LaunchDims;

/// `zo_candidate_logprobs`: one block per scoring row; 1024 threads for a large vocabulary (a
/// row of 50k logits is read twice, four floats per load).
#[doc(hidden)]
pub fn logprob_launch_config(rows: usize, vocab: usize) -> LaunchDims {
    let threads = vocab.div_ceil(4).next_multiple_of(32).clamp(32, 1024);
    LaunchDims::linear(rows as u32, threads as u32)
}

/// `zo_classification_loss`: one thread per example.
#[doc(hidden)]
pub fn classification_launch_config(n_examples: usize) -> LaunchDims {
    const THREADS: usize = 128;
    LaunchDims::linear(n_examples.div_ceil(THREADS) as u32, THREADS as u32)
}
