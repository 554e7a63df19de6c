//! The candidate log-prob loss on the caller's logits (`kernels::loss`).

use super::*;

/// The logits of `zo_kernel_candidate_logprobs`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct zo_kernel_logprob_params {
    /// `sizeof(zo_kernel_logprob_params)`.
    pub struct_size: usize,
    /// The logits are f32 `[rows][ld]`, of which the first `vocab` columns are read (`ld` 0,
    /// the default, means `vocab`): the head GEMM's output at the scoring rows.
    pub rows: usize,
    pub vocab: usize,
    pub ld: usize,
}

/// Defaults of `zo_kernel_logprob_params`: no rows.
#[no_mangle]
pub extern "C" fn zo_kernel_logprob_default_params() -> zo_kernel_logprob_params {
    zo_kernel_logprob_params {
        struct_size: std::mem::size_of::<zo_kernel_logprob_params>(),
        rows: 0,
        vocab: 0,
        ld: 0,
    }
}

/// Log-softmax at the scoring rows, read at the candidates' tokens: `lse[r] = log Σ_v
/// exp(logits[r][v])` and, for each query q, `logprobs[q] = logits[row_q][token_q] -
/// lse[row_q]`, in f32 with f32 block reductions (within a few ulp of a double-precision
/// evaluation). `queries` holds `n_queries` pairs `(row_q, token_q)` of uint32 (2·n_queries
/// words); a query whose row or token is out of range gets NaN. `lse` is optional (NULL: not
/// written; else `lse_len` ≥ rows floats). `logits` holds `logits_len` floats, `logprobs`
/// `logprobs_len` ≥ n_queries. All on the target's device. `ZO_ERR_SHAPE` when an extent
/// exceeds its count or the vocabulary is empty.
///
/// # Safety
/// The pointers hold what their counts say on the target's device (see `zo_kernel_target`);
/// `target` and `params` point at valid structs.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn zo_kernel_candidate_logprobs(
    target: *const zo_kernel_target,
    params: *const zo_kernel_logprob_params,
    logits: *const f32,
    logits_len: usize,
    queries: *const u32,
    n_queries: usize,
    lse: *mut f32,
    lse_len: usize,
    logprobs: *mut f32,
    logprobs_len: usize,
) -> zo_status {
    guard(|| {
        with_cuda!({
            use crate::backend::cuda::kernels::loss::{candidate_logprobs, Logits};
            use crate::backend::DType;
            use call::{launched, open, opt_view, view};
            // SAFETY: the caller's contract (for every unsafe call below).
            let p = unsafe { crate::ffi::args::params(params, "zo_kernel_logprob_params") }?;
            let dev = unsafe { open(target) }?;
            let data = unsafe { view(logits.cast(), DType::F32, logits_len, "logits") }?;
            let words = n_queries
                .checked_mul(2)
                .ok_or_else(|| FfiError::new(ZO_ERR_ARGUMENT, format!("{n_queries} queries")))?;
            // Index words ride in 4-byte F32-tagged views, as everywhere in the backend.
            let queries = unsafe { view(queries.cast(), DType::F32, words, "queries") }?;
            let lse = unsafe { opt_view(lse.cast(), DType::F32, lse_len, "lse") }?;
            let out = unsafe { view(logprobs.cast(), DType::F32, logprobs_len, "logprobs") }?;
            let ld = if p.ld == 0 { p.vocab } else { p.ld };
            let logits = Logits {
                data,
                rows: p.rows,
                vocab: p.vocab,
                ld,
            };
            launched(candidate_logprobs(&dev, logits, queries, lse, out))
        })
    })
}
