//! The session level of the C ABI: zo as a library ([`crate::session::Session`]).
//!
//! Thread safety: a `zo_session` may be used from any thread. Calls on one session are
//! serialized by a lock inside it (a second thread waits), and different sessions run in
//! parallel. Pointers a session hands out (the plan of a begun step) stay valid until the
//! step ends or is skipped, or the session is freed.

use std::ffi::c_char;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use super::args::{self, Handle};
use super::kernels::{dtype, ZO_DTYPE_BF16};
use super::scheduler::PlanArrays;
use super::status::*;
use crate::engine::config::TrainConfig;
use crate::engine::estimator::StepEstimate;
use crate::engine::export::ExportState;
use crate::io::gguf::ImportDtype;
use crate::plan::TokenizedExample;
use crate::session::{Session, Split};
use crate::train::Device;

/// `device`: where the session runs the model.
/// The GPU when this build has the CUDA backend, a GPU answers and the family runs there;
/// else the CPU (as `zo-run train --device auto`).
pub const ZO_DEVICE_AUTO: i32 = 0;
/// The CPU backend (the f32 reference).
pub const ZO_DEVICE_CPU: i32 = 1;
/// GPU 0 through the CUDA backend, weights stored as `dtype`.
pub const ZO_DEVICE_CUDA: i32 = 2;
/// The CUDA backend on its CPU emulation of a GPU: GPU numerics without a GPU, slowly.
pub const ZO_DEVICE_EMULATED: i32 = 3;

/// `split` arguments.
pub const ZO_SPLIT_TRAIN: i32 = 0;
pub const ZO_SPLIT_DEV: i32 = 1;
pub const ZO_SPLIT_TEST: i32 = 2;

/// `zo_session_export` states: the best dev evaluation's state (the last state when there
/// was none), or the state after the last step.
pub const ZO_EXPORT_BEST: i32 = 0;
pub const ZO_EXPORT_LAST: i32 = 1;

/// How to open a session. Start from `zo_session_default_params()`.
#[repr(C)]
pub struct zo_session_params {
    /// `sizeof(zo_session_params)`, set by `zo_session_default_params()`.
    pub struct_size: usize,
    /// An HF model directory (config.json, safetensors, tokenizer.json) or a `.gguf` file.
    pub model_path: *const c_char,
    /// A whole training config as JSON, as stored in a checkpoint's `config` object. NULL:
    /// `preset` with its learning rate scaled to the model's size, as `zo-run train` does.
    pub config_json: *const c_char,
    /// The preset used when `config_json` is NULL: mezo, mezo-lora, mezo-prefix, lozo,
    /// lozo-m. NULL: lozo.
    pub preset: *const c_char,
    /// `ZO_DEVICE_*`.
    pub device: i32,
    /// GPU weight storage, `ZO_DTYPE_*` (arithmetic is fp32 in every case).
    pub dtype: i32,
}

/// Defaults: no model (it must be set), the lozo preset, `ZO_DEVICE_AUTO`, bf16 storage.
#[no_mangle]
pub extern "C" fn zo_session_default_params() -> zo_session_params {
    zo_session_params {
        struct_size: std::mem::size_of::<zo_session_params>(),
        model_path: std::ptr::null(),
        config_json: std::ptr::null(),
        preset: std::ptr::null(),
        device: ZO_DEVICE_AUTO,
        dtype: ZO_DTYPE_BF16,
    }
}

/// One tokenized classification example, as the caller's arrays.
#[repr(C)]
pub struct zo_example {
    /// The rendered prompt's token ids (with the model's BOS if it uses one).
    pub prompt: *const u32,
    pub prompt_len: usize,
    /// Every candidate's tokens back to back.
    pub candidate_tokens: *const u32,
    /// `n_candidates + 1` offsets into `candidate_tokens`, from 0: candidate c is
    /// `candidate_tokens[candidate_offsets[c] .. candidate_offsets[c + 1]]`.
    pub candidate_offsets: *const usize,
    pub n_candidates: usize,
    /// Index of the correct candidate.
    pub gold: usize,
}

/// What one ZO step produced. The caller sets `struct_size` (`zo_step_result_default()`),
/// `capacity` and the array pointers (any may be NULL when not wanted); zo fills the rest.
#[repr(C)]
pub struct zo_step_result {
    pub struct_size: usize,
    /// Length of each array below; at least the config's q.
    pub capacity: usize,
    /// Mean loss under +εZ_d, per direction d.
    pub loss_plus: *mut f64,
    /// Mean loss under −εZ_d, per direction (two-sided estimators; NaN one-sided).
    pub loss_minus: *mut f64,
    /// The projected gradients g_d.
    pub g: *mut f32,
    /// The coefficient of each direction in the update: g_d, or the optimizer's transform of
    /// it (sign, FZOO).
    pub coefs: *mut f32,
    /// The direction seeds.
    pub seeds: *mut u64,
    /// The step's index (from 0).
    pub step: u64,
    /// q, the directions filled in the arrays.
    pub n_directions: usize,
    /// The learning rate of the step.
    pub lr: f32,
    /// The unperturbed mean loss (one-sided estimators; NaN two-sided).
    pub loss0: f64,
    /// The mean over every scored variant (the training-loss estimate).
    pub loss: f64,
    /// 1 when the estimate was not finite and the step was logged as skipped (nothing
    /// applied), as `zo-run train` does.
    pub skipped: i32,
    /// Low-rank runs: the period's seed of V (`has_period_seed` = 1).
    pub period_seed: u64,
    pub has_period_seed: i32,
    /// Packed tokens scored.
    pub tokens: usize,
}

/// An empty result: `struct_size` set, no arrays.
#[no_mangle]
pub extern "C" fn zo_step_result_default() -> zo_step_result {
    zo_step_result {
        struct_size: std::mem::size_of::<zo_step_result>(),
        capacity: 0,
        loss_plus: std::ptr::null_mut(),
        loss_minus: std::ptr::null_mut(),
        g: std::ptr::null_mut(),
        coefs: std::ptr::null_mut(),
        seeds: std::ptr::null_mut(),
        step: 0,
        n_directions: 0,
        lr: 0.0,
        loss0: f64::NAN,
        loss: f64::NAN,
        skipped: 0,
        period_seed: 0,
        has_period_seed: 0,
        tokens: 0,
    }
}

/// An evaluation's result.
#[repr(C)]
pub struct zo_eval_result {
    pub accuracy: f64,
    /// Mean classification loss.
    pub mean_loss: f64,
    pub n_examples: usize,
}

/// An open session (`zo_session_open`, `zo_session_free`): a model, a training config, the
/// examples and the trained state.
///
/// Thread safety: a session may be called from any thread. Calls on one session are
/// serialized by a lock inside it (a second caller waits); different sessions run in
/// parallel. Pointers it hands out (a begun step's plan) stay valid until the step ends or
/// is skipped, or the session is freed.
pub struct zo_session {
    /// Tells a session handle from anything else.
    magic: u64,
    inner: Mutex<SessionState>,
}

/// What the lock guards: the session, and the C view of its begun step's plan.
pub(crate) struct SessionState {
    pub(crate) session: Session,
    pub(crate) plan: Option<PlanArrays>,
}

impl Handle for zo_session {
    const MAGIC: u64 = 0x7a6f_5f73_6573_7331; // "zo_sess1"
    const NAME: &'static str = "session";
    fn magic(&self) -> u64 {
        self.magic
    }
}

/// The session behind `s`, locked for this call.
///
/// # Safety
/// `s` is NULL or a live session handle.
pub(crate) unsafe fn lock<'a>(s: *const zo_session) -> FfiResult<MutexGuard<'a, SessionState>> {
    // SAFETY: the caller's contract.
    let h = unsafe { args::handle(s) }?;
    h.inner.lock().map_err(|_| {
        FfiError::new(
            ZO_ERR_INTERNAL,
            "the session was left inconsistent by an earlier internal error; free it",
        )
    })
}

fn device(code: i32, dt: i32) -> FfiResult<Device> {
    let dt = dtype(dt)?;
    Ok(match code {
        ZO_DEVICE_AUTO => Device::Auto,
        ZO_DEVICE_CPU => Device::Cpu,
        ZO_DEVICE_CUDA => Device::Cuda(dt),
        ZO_DEVICE_EMULATED => Device::Emulated(dt),
        other => {
            return Err(FfiError::new(
                ZO_ERR_ARGUMENT,
                format!("device {other}: expected one of ZO_DEVICE_AUTO, _CPU, _CUDA, _EMULATED"),
            ))
        }
    })
}

pub(crate) fn split(code: i32) -> FfiResult<Split> {
    match code {
        ZO_SPLIT_TRAIN => Ok(Split::Train),
        ZO_SPLIT_DEV => Ok(Split::Dev),
        ZO_SPLIT_TEST => Ok(Split::Test),
        other => Err(FfiError::new(
            ZO_ERR_ARGUMENT,
            format!("split {other}: expected ZO_SPLIT_TRAIN, ZO_SPLIT_DEV or ZO_SPLIT_TEST"),
        )),
    }
}

/// The config a session opens with: the caller's JSON, or the preset sized to the model.
fn config(p: &zo_session_params, model: &Path) -> FfiResult<TrainConfig> {
    // SAFETY: the caller's contract on the params' strings.
    if let Some(json) = unsafe { args::opt_string(p.config_json, "config_json") }? {
        let cfg: TrainConfig = serde_json::from_str(json).map_err(|e| {
            FfiError::new(
                ZO_ERR_CONFIG,
                format!("config_json is not a zo training config: {e}"),
            )
        })?;
        return Ok(cfg);
    }
    // SAFETY: as above.
    let preset = unsafe { args::opt_string(p.preset, "preset") }?.unwrap_or("lozo");
    let cfg = match crate::model::ModelConfig::from_file(model.join("config.json")) {
        Ok(m) => TrainConfig::preset_for(preset, m.n_params())?,
        Err(_) => TrainConfig::preset(preset)?,
    };
    Ok(cfg)
}

/// Opens a session: loads the model and its tokenizer, checks the config and builds the
/// family's fresh state on the device. On success `*out` holds the new handle (free it with
/// `zo_session_free`); on failure `*out` is NULL.
///
/// # Safety
/// `params` points at a `zo_session_params` whose strings are NUL-terminated; `out` is
/// writable.
#[no_mangle]
pub unsafe extern "C" fn zo_session_open(
    params: *const zo_session_params,
    out: *mut *mut zo_session,
) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out, "out") }?;
        *out = std::ptr::null_mut();
        // SAFETY: the caller's contract.
        let p = unsafe { args::params(params, "zo_session_params") }?;
        // SAFETY: as above.
        let model = Path::new(unsafe { args::string(p.model_path, "model_path") }?);
        if !model.exists() {
            return Err(FfiError::new(
                ZO_ERR_IO,
                format!("{}: no such model directory or GGUF file", model.display()),
            ));
        }
        let cfg = config(p, model)?;
        let session = Session::open(model, cfg, device(p.device, p.dtype)?)?;
        let h = Box::new(zo_session {
            magic: zo_session::MAGIC,
            inner: Mutex::new(SessionState {
                session,
                plan: None,
            }),
        });
        *out = Box::into_raw(h);
        Ok(())
    })
}

/// Frees a session and everything it holds. NULL is ignored.
///
/// # Safety
/// `s` is NULL or a live session handle, not used again after this call.
#[no_mangle]
pub unsafe extern "C" fn zo_session_free(s: *mut zo_session) {
    let _ = guard(|| {
        if s.is_null() {
            return Ok(());
        }
        // SAFETY: the caller's contract.
        unsafe { args::handle(s) }?;
        // SAFETY: a live handle from zo_session_open; the magic is cleared so that a second
        // free of a not-yet-reused block is caught.
        let mut h = unsafe { Box::from_raw(s) };
        h.magic = 0;
        drop(h);
        Ok(())
    });
}

/// Copies `text` and its NUL into `buf` (`cap` bytes); `*needed` gets the bytes needed.
///
/// # Safety
/// `buf` holds `cap` writable bytes; `needed` is NULL or writable.
pub(crate) unsafe fn copy_string(
    text: &str,
    buf: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> FfiResult<()> {
    let n = text.len() + 1;
    if !needed.is_null() {
        // SAFETY: the caller's contract.
        *unsafe { args::out(needed, "needed") }? = n;
    }
    if cap < n {
        return Err(FfiError::new(
            ZO_ERR_BUFFER_TOO_SMALL,
            format!("the buffer holds {cap} bytes but {n} are needed"),
        ));
    }
    // SAFETY: the caller's contract.
    let dst = unsafe { args::slice_mut(buf.cast::<u8>(), cap, "buf") }?;
    dst[..text.len()].copy_from_slice(text.as_bytes());
    dst[text.len()] = 0;
    Ok(())
}

/// The session's whole training config as JSON (what its checkpoints store). `*needed` (if
/// not NULL) gets the size with the NUL; a smaller `cap` is `ZO_ERR_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `s` is a live session; `buf` holds `cap` writable bytes; `needed` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn zo_session_config_json(
    s: *const zo_session,
    buf: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let st = unsafe { lock(s) }?;
        let json = serde_json::to_string(st.session.config()).expect("configs serialize");
        // SAFETY: the caller's contract.
        unsafe { copy_string(&json, buf, cap, needed) }
    })
}

/// Replaces the train, dev and test examples with the config's task read from the split
/// files in `data_dir` (train/dev/test .jsonl or .tsv), as `zo-run train --data` does.
/// Refused once training has started.
///
/// # Safety
/// `s` is a live session; `data_dir` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn zo_session_load_task(
    s: *mut zo_session,
    data_dir: *const c_char,
) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let mut st = unsafe { lock(s) }?;
        // SAFETY: as above.
        let dir = unsafe { args::string(data_dir, "data_dir") }?;
        check_train_open(&st.session, Split::Train)?;
        Ok(st.session.load_task(Path::new(dir))?)
    })
}

/// Changing the train split after training started is a call out of order.
fn check_train_open(session: &Session, which: Split) -> FfiResult<()> {
    if which == Split::Train && session.training_started() {
        return Err(FfiError::new(
            ZO_ERR_STATE,
            format!(
                "the train split is fixed once training has started ({} step(s) done); open a \
                 new session to train on other data",
                session.log().completed
            ),
        ));
    }
    Ok(())
}

/// Appends `n` tokenized examples to `split`. Token ids must be inside the model's
/// vocabulary; every example needs a prompt, two or more non-empty candidates and a `gold`
/// among them. Train examples are refused once training has started. Nothing is added when
/// any example is refused.
///
/// # Safety
/// `s` is a live session; `examples` points at `n` examples whose arrays hold the lengths
/// they state.
#[no_mangle]
pub unsafe extern "C" fn zo_session_add_examples(
    s: *mut zo_session,
    split: i32,
    examples: *const zo_example,
    n: usize,
) -> zo_status {
    guard(|| {
        let which = self::split(split)?;
        // SAFETY: the caller's contract.
        let exs = unsafe { args::slice(examples, n, "examples") }?;
        let mut owned = Vec::with_capacity(n);
        for (i, e) in exs.iter().enumerate() {
            let at = |what: &str| format!("examples[{i}].{what}");
            // SAFETY: the caller's contract on each example's arrays.
            let prompt = unsafe { args::slice(e.prompt, e.prompt_len, &at("prompt")) }?;
            let offsets = unsafe {
                args::slice(
                    e.candidate_offsets,
                    e.n_candidates + 1,
                    &at("candidate_offsets"),
                )
            }?;
            if offsets[0] != 0 || offsets.windows(2).any(|w| w[1] < w[0]) {
                return Err(FfiError::new(
                    ZO_ERR_ARGUMENT,
                    format!(
                        "{}: expected ascending offsets from 0",
                        at("candidate_offsets")
                    ),
                ));
            }
            let total = offsets[e.n_candidates];
            // SAFETY: the caller's contract: the offsets index candidate_tokens.
            let toks = unsafe { args::slice(e.candidate_tokens, total, &at("candidate_tokens")) }?;
            owned.push(TokenizedExample {
                prompt: prompt.to_vec(),
                candidates: offsets
                    .windows(2)
                    .map(|w| toks[w[0]..w[1]].to_vec())
                    .collect(),
                gold: e.gold,
                answers: Vec::new(),
            });
        }
        // SAFETY: the caller's contract.
        let mut st = unsafe { lock(s) }?;
        check_train_open(&st.session, which)?;
        Ok(st.session.add_examples(which, owned)?)
    })
}

/// Tokenizes one example with the session's tokenizer, as the data pipeline does (the
/// prompt with the tokenizer's special tokens, each candidate alone without them, so label
/// words keep their leading space: " great"), and appends it to `split`.
///
/// # Safety
/// `s` is a live session; `prompt` and the `n_candidates` strings of `candidates` are
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn zo_session_add_text_example(
    s: *mut zo_session,
    split: i32,
    prompt: *const c_char,
    candidates: *const *const c_char,
    n_candidates: usize,
    gold: usize,
) -> zo_status {
    guard(|| {
        let which = self::split(split)?;
        // SAFETY: the caller's contract.
        let prompt = unsafe { args::string(prompt, "prompt") }?;
        // SAFETY: as above.
        let ptrs = unsafe { args::slice(candidates, n_candidates, "candidates") }?;
        let cands = ptrs
            .iter()
            .enumerate()
            // SAFETY: as above.
            .map(|(i, &c)| unsafe { args::string(c, &format!("candidates[{i}]")) })
            .collect::<FfiResult<Vec<&str>>>()?;
        // SAFETY: the caller's contract.
        let mut st = unsafe { lock(s) }?;
        check_train_open(&st.session, which)?;
        let ex = st.session.encode_example(prompt, &cands, gold)?;
        Ok(st.session.add_examples(which, vec![ex])?)
    })
}

/// How many examples `split` holds.
///
/// # Safety
/// `s` is a live session; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn zo_session_n_examples(
    s: *const zo_session,
    split: i32,
    out: *mut usize,
) -> zo_status {
    guard(|| {
        let which = self::split(split)?;
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out, "out") }?;
        // SAFETY: as above.
        let st = unsafe { lock(s) }?;
        *out = st.session.examples(which).len();
        Ok(())
    })
}

/// Steps completed so far (applied or skipped); the next step's index.
///
/// # Safety
/// `s` is a live session; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn zo_session_steps_done(s: *const zo_session, out: *mut u64) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out, "out") }?;
        // SAFETY: as above.
        let st = unsafe { lock(s) }?;
        *out = st.session.log().completed;
        Ok(())
    })
}

/// Checks a caller's result struct before anything is computed, so a bad one changes
/// nothing.
///
/// # Safety
/// `out` points at a `zo_step_result`.
pub(crate) unsafe fn step_result<'a>(
    out: *mut zo_step_result,
    q: usize,
) -> FfiResult<&'a mut zo_step_result> {
    // SAFETY: the caller's contract.
    unsafe { args::params(out, "zo_step_result") }?;
    // SAFETY: checked above.
    let r = unsafe { args::out(out, "out") }?;
    let any = !(r.loss_plus.is_null()
        && r.loss_minus.is_null()
        && r.g.is_null()
        && r.coefs.is_null()
        && r.seeds.is_null());
    if any && r.capacity < q {
        return Err(FfiError::new(
            ZO_ERR_BUFFER_TOO_SMALL,
            format!(
                "zo_step_result.capacity is {} but the step has {q} directions",
                r.capacity
            ),
        ));
    }
    Ok(r)
}

/// Writes an estimate into a checked result.
pub(crate) fn fill_step_result(r: &mut zo_step_result, est: &StepEstimate) -> FfiResult<()> {
    let q = est.record.seeds.len();
    /// Copies `src` into the caller's array when it gave one.
    fn put<T: Copy>(dst: *mut T, src: &[T], what: &str) -> FfiResult<()> {
        if dst.is_null() {
            return Ok(());
        }
        // SAFETY: checked by `step_result`: `capacity` ≥ q elements.
        let d = unsafe { args::slice_mut(dst, src.len(), what) }?;
        d.copy_from_slice(src);
        Ok(())
    }
    put(r.loss_plus, &est.loss_plus, "loss_plus")?;
    let minus = if est.loss_minus.is_empty() {
        vec![f64::NAN; q]
    } else {
        est.loss_minus.clone()
    };
    put(r.loss_minus, &minus, "loss_minus")?;
    put(r.g, &est.g, "g")?;
    put(r.coefs, &est.record.grads, "coefs")?;
    put(r.seeds, &est.record.seeds, "seeds")?;
    r.step = est.record.step;
    r.n_directions = q;
    r.lr = est.record.lr;
    r.loss0 = est.loss0.unwrap_or(f64::NAN);
    r.loss = est.loss();
    r.skipped = est.skipped.is_some() as i32;
    r.period_seed = est.record.period_seed.unwrap_or(0);
    r.has_period_seed = est.record.period_seed.is_some() as i32;
    r.tokens = est.tokens;
    Ok(())
}

/// Runs the next ZO step whole, as `zo-run train` does: scores the step's batch under every
/// variant, estimates g, applies the update and logs the step. A non-finite estimate is
/// logged as skipped (`out->skipped` = 1) and is not an error.
///
/// # Safety
/// `s` is a live session; `out` is a `zo_step_result` whose arrays hold `capacity` elements.
#[no_mangle]
pub unsafe extern "C" fn zo_session_step(
    s: *mut zo_session,
    out: *mut zo_step_result,
) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let mut st = unsafe { lock(s) }?;
        // SAFETY: as above.
        let r = unsafe { step_result(out, st.session.config().q) }?;
        super::scheduler::check_no_pending(&st.session)?;
        let est = st.session.step()?;
        fill_step_result(r, &est)
    })
}

/// Accuracy and mean loss of the current state on `split` (unperturbed). A dev evaluation is
/// recorded in the session's log, as the training loop records its evaluations (model
/// selection, `ZO_EXPORT_BEST`).
///
/// # Safety
/// `s` is a live session; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn zo_session_evaluate(
    s: *mut zo_session,
    split: i32,
    out: *mut zo_eval_result,
) -> zo_status {
    guard(|| {
        let which = self::split(split)?;
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out, "out") }?;
        // SAFETY: as above.
        let mut st = unsafe { lock(s) }?;
        let r = st.session.evaluate(which)?;
        *out = zo_eval_result {
            accuracy: r.accuracy,
            mean_loss: r.mean_loss,
            n_examples: r.n,
        };
        Ok(())
    })
}

/// Writes the seed-log checkpoint to `path`, atomically (a crash or a full disk keeps the
/// previous file). It is the file `zo-run train` writes, and `zo-run export` reads it.
///
/// # Safety
/// `s` is a live session; `path` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn zo_session_save(s: *const zo_session, path: *const c_char) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let st = unsafe { lock(s) }?;
        // SAFETY: as above.
        let path = unsafe { args::string(path, "path") }?;
        Ok(st.session.save(Path::new(path))?)
    })
}

/// Continues from a checkpoint of the same base model and config: replays its seed log
/// onto the session's fresh state. Only before the session's first step.
///
/// # Safety
/// `s` is a live session; `path` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn zo_session_resume(s: *mut zo_session, path: *const c_char) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let mut st = unsafe { lock(s) }?;
        // SAFETY: as above.
        let path = unsafe { args::string(path, "path") }?;
        if st.session.log().completed > 0 || st.session.pending().is_some() {
            return Err(FfiError::new(
                ZO_ERR_STATE,
                "resume: the session has already trained; resume into a fresh session",
            ));
        }
        Ok(st.session.resume(Path::new(path))?)
    })
}

/// Replays the log onto the base weights and writes an HF directory to `out_dir`: merged
/// weights as safetensors in `dtype` (`ZO_DTYPE_*`), the config and tokenizer files, and for
/// the lora family a PEFT adapter in `out_dir/adapter/`. `state` is `ZO_EXPORT_BEST` or
/// `ZO_EXPORT_LAST`.
///
/// # Safety
/// `s` is a live session; `out_dir` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn zo_session_export(
    s: *const zo_session,
    out_dir: *const c_char,
    state: i32,
    dtype: i32,
) -> zo_status {
    guard(|| {
        let state = match state {
            ZO_EXPORT_BEST => ExportState::Best,
            ZO_EXPORT_LAST => ExportState::Last,
            other => {
                return Err(FfiError::new(
                    ZO_ERR_ARGUMENT,
                    format!("state {other}: expected ZO_EXPORT_BEST or ZO_EXPORT_LAST"),
                ))
            }
        };
        let dtype = match super::kernels::dtype(dtype)? {
            crate::backend::DType::F32 => ImportDtype::F32,
            crate::backend::DType::Bf16 => ImportDtype::BF16,
            crate::backend::DType::F16 => ImportDtype::F16,
        };
        // SAFETY: the caller's contract.
        let st = unsafe { lock(s) }?;
        // SAFETY: as above.
        let dir = unsafe { args::string(out_dir, "out_dir") }?;
        st.session.export(Path::new(dir), state, dtype)?;
        Ok(())
    })
}
