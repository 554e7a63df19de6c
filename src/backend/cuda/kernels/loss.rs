//! The loss family (csrc/loss.cu, csrc/params/loss.h): log-softmax at the scoring rows and
//! each candidate query's log-prob, the only numbers a step brings back to the host, where
//! MeZO's classification loss is formed exactly as on the CPU. Twins: the scoring loop of
//! `CpuBackend::score` (`ops::log_sum_exp`, then `logit - lse`).

use super::{check_rows, check_u32, LaunchDims};
use crate::backend::cuda::params::*;
use crate::backend::cuda::{CudaDevice, DType, View};
use crate::{Error, Result};

/// One block per scoring row, one thread per four vocabulary entries (up to 1024).
pub fn logprob_launch_config(rows: usize, vocab: usize) -> LaunchDims {
    let threads = vocab.div_ceil(4).next_multiple_of(32).clamp(32, 1024);
    LaunchDims::linear(rows as u32, threads as u32)
}

/// Full-vocabulary fp32 logits `[rows][ld]` (vocab columns) on the device.
#[derive(Debug, Clone, Copy)]
pub struct Logits<'a> {
    pub data: View<'a>,
    pub rows: usize,
    pub vocab: usize,
    pub ld: usize,
}

/// Per scoring row, `lse = log Σ exp(logits[row])` (written to `lse` when given, `[rows]`), and
/// per query (`queries`: (index of its scoring row, token) pairs) `query_logprobs[q] =
/// logits[row][token] - lse[row]`. fp32 with fp32 block reductions. A query whose row or
/// token is out of range gets NaN.
pub fn candidate_logprobs(
    dev: &CudaDevice,
    logits: Logits<'_>,
    queries: View<'_>,
    lse: Option<View<'_>>,
    query_logprobs: View<'_>,
) -> Result<()> {
    logits.data.expect("logits", DType::F32)?;
    check_rows(
        "logits",
        logits.data.len,
        logits.rows,
        logits.vocab,
        logits.ld,
    )?;
    if !queries.len.is_multiple_of(2) {
        return Err(Error::Data(format!(
            "queries: {} entries; expected (row, token) pairs",
            queries.len
        )));
    }
    let n_q = queries.len / 2;
    query_logprobs
        .expect("query log-probs", DType::F32)?
        .need("query log-probs", n_q)?;
    if let Some(l) = &lse {
        l.expect("lse", DType::F32)?.need("lse", logits.rows)?;
    }
    if logits.rows == 0 {
        if n_q > 0 {
            return Err(Error::Data(format!("{n_q} queries but no logit rows")));
        }
        return Ok(());
    }
    if logits.vocab == 0 {
        return Err(Error::Data("logits with an empty vocabulary".into()));
    }
    let p = ZoLogprobParams {
        rows: logits.rows as u32,
        vocab: logits.vocab as u32,
        ld: logits.ld as u32,
        n_queries: check_u32("queries", n_q)?,
        write_lse: lse.is_some() as u32,
        reserved: 0,
    };
    let ptrs = [
        logits.data.ptr(),
        queries.ptr(),
        lse.map_or(0, |l| l.ptr()),
        query_logprobs.ptr(),
    ];
    // SAFETY: (ZoLogprobParams, const float* logits, const u32* queries, float* lse, float*
    // out); extents checked above, rows and tokens read from `queries` by the kernel.
    unsafe {
        dev.launch(
            "zo_candidate_logprobs",
            logprob_launch_config(logits.rows, logits.vocab),
            &p,
            &ptrs,
        )
    }
}
