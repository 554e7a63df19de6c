//! The token pick of generation on the caller's logits (`kernels::decode`).

use super::*;

/// How `zo_kernel_pick` scores a token.
pub const ZO_KERNEL_PICK_GREEDY: i32 = 0;
pub const ZO_KERNEL_PICK_SEEDED: i32 = 1;

/// Shapes and sampling of `zo_kernel_pick`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct zo_kernel_pick_params {
    /// `sizeof(zo_kernel_pick_params)`.
    pub struct_size: usize,
    /// The logits are f32 `[rows][ld]`, of which the first `vocab` columns are read (`ld` 0,
    /// the default, means `vocab`).
    pub rows: usize,
    pub vocab: usize,
    pub ld: usize,
    /// `ZO_KERNEL_PICK_*` (default `ZO_KERNEL_PICK_GREEDY`).
    pub sampling: i32,
    /// Seeded sampling: Gumbel-max at `temperature` (finite, > 0) with noise from `seed`.
    pub temperature: f32,
    pub seed: u64,
}

/// Defaults of `zo_kernel_pick_params`: no rows, greedy.
#[no_mangle]
pub extern "C" fn zo_kernel_pick_default_params() -> zo_kernel_pick_params {
    zo_kernel_pick_params {
        struct_size: std::mem::size_of::<zo_kernel_pick_params>(),
        rows: 0,
        vocab: 0,
        ld: 0,
        sampling: ZO_KERNEL_PICK_GREEDY,
        temperature: 1.0,
        seed: 0,
    }
}

/// The token of each row of `logits` into `tokens` (uint32 `[rows]`, `tokens_len` ≥ rows),
/// exactly zo's CPU pick: the argmax over the vocabulary (ties to the lowest id, NaN never
/// wins, a row without a number picks 0), of `fma(logit, 1/T, G)` when seeded, with `G` the
/// Gumbel noise of token t at position `pos[r]` of sequence `seq[r]` (uint32 `[rows]` each,
/// `n_rows` ≥ rows; read only when seeded, else may be NULL). All on the target's device.
/// `ZO_ERR_SHAPE` when an extent exceeds its count, the vocabulary is empty or the
/// temperature is not a finite value > 0.
///
/// # Safety
/// The pointers hold what their counts say on the target's device (see `zo_kernel_target`);
/// `target` and `params` point at valid structs.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn zo_kernel_pick(
    target: *const zo_kernel_target,
    params: *const zo_kernel_pick_params,
    logits: *const f32,
    logits_len: usize,
    seq: *const u32,
    pos: *const u32,
    n_rows: usize,
    tokens: *mut u32,
    tokens_len: usize,
) -> zo_status {
    guard(|| {
        with_cuda!({
            use crate::backend::cuda::kernels::decode::{pick_tokens, NoiseRows};
            use crate::backend::cuda::kernels::loss::Logits;
            use crate::backend::decode::Sampling;
            use crate::backend::DType;
            use call::{launched, open, view};
            // SAFETY: the caller's contract (for every unsafe call below).
            let p = unsafe { crate::ffi::args::params(params, "zo_kernel_pick_params") }?;
            let sampling = match p.sampling {
                ZO_KERNEL_PICK_GREEDY => Sampling::Greedy,
                ZO_KERNEL_PICK_SEEDED => Sampling::Seeded {
                    seed: p.seed,
                    temperature: p.temperature,
                },
                other => {
                    return Err(FfiError::new(
                        ZO_ERR_ARGUMENT,
                        format!(
                            "zo_kernel_pick_params.sampling is {other}: expected \
                             ZO_KERNEL_PICK_GREEDY ({ZO_KERNEL_PICK_GREEDY}) or ZO_KERNEL_PICK_SEEDED \
                             ({ZO_KERNEL_PICK_SEEDED})"
                        ),
                    ))
                }
            };
            let dev = unsafe { open(target) }?;
            let data = unsafe { view(logits.cast(), DType::F32, logits_len, "logits") }?;
            // Index words ride in 4-byte F32-tagged views, as everywhere in the backend.
            let noise = match sampling {
                Sampling::Greedy => None,
                Sampling::Seeded { .. } => Some(NoiseRows {
                    seq: unsafe { view(seq.cast(), DType::F32, n_rows, "seq") }?,
                    pos: unsafe { view(pos.cast(), DType::F32, n_rows, "pos") }?,
                }),
            };
            let out = unsafe { view(tokens.cast(), DType::F32, tokens_len, "tokens") }?;
            let ld = if p.ld == 0 { p.vocab } else { p.ld };
            let logits = Logits {
                data,
                rows: p.rows,
                vocab: p.vocab,
                ld,
            };
            launched(pick_tokens(&dev, logits, sampling, noise, out))
        })
    })
}
