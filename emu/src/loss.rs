//! The loss kernels (csrc/loss.cu) on the CPU.

use crate::ops::extent;
use crate::params::{ZoClassifyParams, ZoLogprobParams};
use crate::{check_len, Launch, ZoEmuDim};

extern "C" {
    fn zo_emu_candidate_logprobs(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        p: ZoLogprobParams,
        logits: *const f32,
        queries: *const u32,
        lse: *mut f32,
        query_logprobs: *mut f32,
    );
    fn zo_emu_classification_loss(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        p: ZoClassifyParams,
        query_logprobs: *const f32,
        candidates: *const u32,
        example_offsets: *const u32,
        gold: *const u32,
        loss: *mut f32,
        pred: *mut u32,
        candidate_scores: *mut f32,
    );
}

/// `zo_candidate_logprobs`: `lse` (`[rows]`, when `p.write_lse`) and `query_logprobs`
/// (`[n_queries]`) from logits `[rows][ld]` and (row, token) pairs.
pub fn candidate_logprobs(
    cfg: Launch,
    p: ZoLogprobParams,
    logits: &[f32],
    queries: &[u32],
    lse: Option<&mut [f32]>,
    query_logprobs: &mut [f32],
) {
    check_len("logits", logits, extent(p.rows, p.vocab, p.ld));
    check_len("queries", queries, 2 * p.n_queries as u64);
    check_len("query_logprobs", query_logprobs, p.n_queries as u64);
    let lse = match lse {
        Some(l) => {
            check_len("lse", l, p.rows as u64);
            l.as_mut_ptr()
        }
        None => {
            assert_eq!(p.write_lse, 0, "write_lse set without an lse buffer");
            std::ptr::null_mut()
        }
    };
    // SAFETY: extents checked above; query rows and tokens are bounds-checked by the kernel.
    unsafe {
        zo_emu_candidate_logprobs(
            cfg.grid,
            cfg.block,
            cfg.smem,
            p,
            logits.as_ptr(),
            queries.as_ptr(),
            lse,
            query_logprobs.as_mut_ptr(),
        )
    }
}

/// `zo_classification_loss`.
#[allow(clippy::too_many_arguments)]
pub fn classification_loss(
    cfg: Launch,
    p: ZoClassifyParams,
    query_logprobs: &[f32],
    candidates: &[u32],
    example_offsets: &[u32],
    gold: &[u32],
    loss: &mut [f32],
    pred: &mut [u32],
    candidate_scores: &mut [f32],
) {
    check_len("query_logprobs", query_logprobs, p.n_queries as u64);
    check_len("candidates", candidates, 2 * p.n_candidates as u64);
    check_len("example_offsets", example_offsets, p.n_examples as u64 + 1);
    check_len("gold", gold, p.n_examples as u64);
    check_len("loss", loss, p.n_examples as u64);
    check_len("pred", pred, p.n_examples as u64);
    check_len("candidate_scores", candidate_scores, p.n_candidates as u64);
    // SAFETY: extents checked above; offsets and ranges are bounds-checked by the kernel.
    unsafe {
        zo_emu_classification_loss(
            cfg.grid,
            cfg.block,
            cfg.smem,
            p,
            query_logprobs.as_ptr(),
            candidates.as_ptr(),
            example_offsets.as_ptr(),
            gold.as_ptr(),
            loss.as_mut_ptr(),
            pred.as_mut_ptr(),
            candidate_scores.as_mut_ptr(),
        )
    }
}
