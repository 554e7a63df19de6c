//! The scheduler level of the C ABI: the caller's engine runs the forward.
//!
//! A step is `zo_step_begin` (the step's variants and its packed plan), the caller's forward
//! over the plan (with zo's perturbation kernels, its own adapters fed by
//! `zo_session_lora_factors` / `zo_session_lowrank_factors`, or `zo_session_score`, zo's own
//! forward), then `zo_step_end` with the per-query log-probs or per-example losses: zo
//! estimates g, updates the state it holds, logs the step and returns the update's
//! coefficients. `zo_apply_update` applies that update to a tensor the caller owns, bit for
//! bit as zo updates its own.

use std::ffi::c_char;

use super::args;
use super::kernels::dist;
use super::session::{
    fill_step_result, lock, step_result, zo_session, zo_step_result, SessionState,
};
use super::status::*;
use crate::engine::estimator::StepPlan;
use crate::perturb::dense::{seeded_axpy_flat, update_terms};
use crate::perturb::step_rule::StepRule;
use crate::perturb::{StepRecord, UpdateConfig};
use crate::plan::Variant;
use crate::session::{first_non_finite, Session, StepLosses};

/// A perturbation variant: the model runs as θ + sign·ε·Z(seed). Sign 0 is the unperturbed
/// model.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct zo_variant {
    pub seed: u64,
    pub sign: i32,
    pub eps: f32,
}

/// log p(token | the sequence up to and including packed row `row`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct zo_query {
    pub row: u32,
    pub token: u32,
}

/// One example scored under one variant: its candidates are
/// `candidates[first_candidate .. first_candidate + n_candidates]`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct zo_group {
    pub variant: u32,
    /// Index of the correct candidate within the group.
    pub gold: u32,
    pub first_candidate: u32,
    pub n_candidates: u32,
}

/// A candidate's queries, `queries[query_start .. query_end]`: its score is their mean
/// log-prob.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct zo_candidate {
    pub query_start: u32,
    pub query_end: u32,
}

/// A begun step: every (example, variant) sequence packed into one token buffer with no
/// padding, variant-major, and what to score. The arrays belong to the session and stay
/// valid until the step ends or is skipped, or the session is freed.
///
/// MeZO's classification loss of a group is the cross-entropy over its candidates' scores
/// with the gold candidate as the label.
#[repr(C)]
pub struct zo_plan {
    /// `sizeof(zo_plan)`, set by the caller (`zo_plan_default()`).
    pub struct_size: usize,
    pub step: u64,
    pub lr: f32,
    /// Examples per variant.
    pub batch: usize,
    pub n_tokens: usize,
    pub tokens: *const u32,
    /// Position of each token within its own sequence, from 0 (architectures add their own
    /// offset: OPT +2).
    pub positions: *const u32,
    pub n_seqs: usize,
    /// `n_seqs + 1` sequence boundaries into `tokens`, from 0.
    pub cu_seqlens: *const u32,
    /// Variant of each sequence.
    pub seq_variant: *const u32,
    pub n_variants: usize,
    /// In zo's order: for each direction d, (seed_d, +1, ε) then (seed_d, −1, ε); one-sided:
    /// (seed_d, +1, ε) for each d, then the unperturbed variant.
    pub variants: *const zo_variant,
    pub n_queries: usize,
    pub queries: *const zo_query,
    /// Example groups, `batch` per variant in variant order.
    pub n_groups: usize,
    pub groups: *const zo_group,
    pub n_candidates: usize,
    pub candidates: *const zo_candidate,
}

/// An empty plan view with `struct_size` set.
#[no_mangle]
pub extern "C" fn zo_plan_default() -> zo_plan {
    zo_plan {
        struct_size: std::mem::size_of::<zo_plan>(),
        step: 0,
        lr: 0.0,
        batch: 0,
        n_tokens: 0,
        tokens: std::ptr::null(),
        positions: std::ptr::null(),
        n_seqs: 0,
        cu_seqlens: std::ptr::null(),
        seq_variant: std::ptr::null(),
        n_variants: 0,
        variants: std::ptr::null(),
        n_queries: 0,
        queries: std::ptr::null(),
        n_groups: 0,
        groups: std::ptr::null(),
        n_candidates: 0,
        candidates: std::ptr::null(),
    }
}

/// The C layout of a begun step's plan; the token arrays are the plan's own.
pub(crate) struct PlanArrays {
    variants: Vec<zo_variant>,
    queries: Vec<zo_query>,
    groups: Vec<zo_group>,
    candidates: Vec<zo_candidate>,
}

impl PlanArrays {
    fn new(sp: &StepPlan) -> PlanArrays {
        let p = &sp.plan;
        let mut groups = Vec::with_capacity(p.examples.len());
        let mut candidates = Vec::new();
        for g in &p.examples {
            groups.push(zo_group {
                variant: g.variant,
                gold: g.gold,
                first_candidate: candidates.len() as u32,
                n_candidates: g.candidates.len() as u32,
            });
            candidates.extend(g.candidates.iter().map(|r| zo_candidate {
                query_start: r.start,
                query_end: r.end,
            }));
        }
        PlanArrays {
            variants: p.variants.iter().map(|&v| c_variant(v)).collect(),
            queries: p
                .queries
                .iter()
                .map(|q| zo_query {
                    row: q.row,
                    token: q.token,
                })
                .collect(),
            groups,
            candidates,
        }
    }

    fn view(&self, sp: &StepPlan) -> zo_plan {
        let p = &sp.plan;
        zo_plan {
            struct_size: std::mem::size_of::<zo_plan>(),
            step: sp.step,
            lr: sp.lr,
            batch: sp.batch,
            n_tokens: p.tokens.len(),
            tokens: p.tokens.as_ptr(),
            positions: p.positions.as_ptr(),
            n_seqs: p.n_seqs(),
            cu_seqlens: p.cu_seqlens.as_ptr(),
            seq_variant: p.seq_variant.as_ptr(),
            n_variants: self.variants.len(),
            variants: self.variants.as_ptr(),
            n_queries: self.queries.len(),
            queries: self.queries.as_ptr(),
            n_groups: self.groups.len(),
            groups: self.groups.as_ptr(),
            n_candidates: self.candidates.len(),
            candidates: self.candidates.as_ptr(),
        }
    }
}

fn c_variant(v: Variant) -> zo_variant {
    zo_variant {
        seed: v.seed,
        sign: v.sign as i32,
        eps: v.eps,
    }
}

fn rust_variant(v: &zo_variant) -> FfiResult<Variant> {
    if !matches!(v.sign, -1..=1) || !v.eps.is_finite() {
        return Err(FfiError::new(
            ZO_ERR_ARGUMENT,
            format!(
                "variant (seed {}, sign {}, eps {}): expected a sign in -1, 0, 1 and a finite eps",
                v.seed, v.sign, v.eps
            ),
        ));
    }
    Ok(Variant {
        seed: v.seed,
        sign: v.sign as i8,
        eps: v.eps,
    })
}

/// A whole step or a begin while a step is begun is a call out of order.
pub(crate) fn check_no_pending(s: &Session) -> FfiResult<()> {
    if s.pending().is_some() {
        return Err(FfiError::new(
            ZO_ERR_STATE,
            format!(
                "step {} was begun and not ended; end or skip it first",
                s.log().completed
            ),
        ));
    }
    if s.log().completed >= s.config().steps {
        return Err(FfiError::new(
            ZO_ERR_STATE,
            format!(
                "all {} steps of the run are done; open a session with more steps to go on",
                s.config().steps
            ),
        ));
    }
    Ok(())
}

fn pending(st: &SessionState, what: &str) -> FfiResult<()> {
    if st.session.pending().is_none() || st.plan.is_none() {
        return Err(FfiError::new(
            ZO_ERR_STATE,
            format!(
                "{what}: no step is begun (step {} is next); call zo_step_begin first",
                st.session.log().completed
            ),
        ));
    }
    Ok(())
}

/// Begins the next step: starts it on the session's state (low-rank: the period switch)
/// and fills `*plan` with the step's variants and packed plan, for the caller's forward.
/// End it with `zo_step_end` or `zo_step_skip`.
///
/// # Safety
/// `s` is a live session; `plan` points at a `zo_plan` with `struct_size` set.
#[no_mangle]
pub unsafe extern "C" fn zo_step_begin(s: *mut zo_session, plan: *mut zo_plan) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { args::params(plan, "zo_plan") }?;
        // SAFETY: checked above.
        let out = unsafe { args::out(plan, "plan") }?;
        // SAFETY: the caller's contract.
        let mut st = unsafe { lock(s) }?;
        check_no_pending(&st.session)?;
        let sp = st.session.begin()?.clone();
        let arrays = PlanArrays::new(&sp);
        let st = &mut *st;
        let arrays = st.plan.insert(arrays);
        let sp = st.session.pending().expect("begun above");
        *out = arrays.view(sp);
        Ok(())
    })
}

/// zo's own forward over the begun step's plan: writes the `n_queries` per-query log-probs
/// into `out` (`n` floats), ready for `zo_step_end`.
///
/// # Safety
/// `s` is a live session; `out` holds `n` writable floats.
#[no_mangle]
pub unsafe extern "C" fn zo_session_score(
    s: *const zo_session,
    out: *mut f32,
    n: usize,
) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let st = unsafe { lock(s) }?;
        pending(&st, "zo_session_score")?;
        let need = st.session.pending().expect("checked").plan.queries.len();
        if n < need {
            return Err(FfiError::new(
                ZO_ERR_BUFFER_TOO_SMALL,
                format!("out holds {n} floats but the plan has {need} queries"),
            ));
        }
        // SAFETY: the caller's contract.
        let out = unsafe { args::slice_mut(out, need, "out") }?;
        out.copy_from_slice(&st.session.score_pending()?);
        Ok(())
    })
}

/// What the caller's forward scored: exactly one of the two arrays.
#[repr(C)]
pub struct zo_step_scores {
    /// `sizeof(zo_step_scores)` (`zo_step_scores_default()`).
    pub struct_size: usize,
    /// log p(query.token | row) for each of the plan's `n_queries` queries, in plan order.
    pub query_logprobs: *const f32,
    pub n_query_logprobs: usize,
    /// Or MeZO's classification loss of each of the plan's `n_groups` groups, in plan order.
    pub example_losses: *const f32,
    pub n_example_losses: usize,
}

/// No scores, `struct_size` set.
#[no_mangle]
pub extern "C" fn zo_step_scores_default() -> zo_step_scores {
    zo_step_scores {
        struct_size: std::mem::size_of::<zo_step_scores>(),
        query_logprobs: std::ptr::null(),
        n_query_logprobs: 0,
        example_losses: std::ptr::null(),
        n_example_losses: 0,
    }
}

/// Ends the begun step with the caller's scores: estimates g, applies the update to the
/// session's state, logs the step and fills `*out` (the update's seeds and coefficients, for
/// `zo_apply_update`). Scores of the wrong length are `ZO_ERR_SHAPE`; a NaN or infinite score
/// is `ZO_ERR_NOT_FINITE`. In both cases the step stays begun: score it again, or skip it.
///
/// # Safety
/// `s` is a live session; `scores` points at a `zo_step_scores` whose array holds its stated
/// length; `out` is a `zo_step_result` whose arrays hold `capacity` elements.
#[no_mangle]
pub unsafe extern "C" fn zo_step_end(
    s: *mut zo_session,
    scores: *const zo_step_scores,
    out: *mut zo_step_result,
) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let sc = unsafe { args::params(scores, "zo_step_scores") }?;
        // SAFETY: as above.
        let mut st = unsafe { lock(s) }?;
        pending(&st, "zo_step_end")?;
        // SAFETY: as above.
        let r = unsafe { step_result(out, st.session.config().q) }?;
        let sp = st.session.pending().expect("checked");
        let (values, want, what, logprobs): (&[f32], usize, &str, bool) =
            match (sc.query_logprobs.is_null(), sc.example_losses.is_null()) {
                (false, true) => (
                    // SAFETY: the caller's contract.
                    unsafe {
                        args::slice(sc.query_logprobs, sc.n_query_logprobs, "query_logprobs")
                    }?,
                    sp.plan.queries.len(),
                    "query log-prob",
                    true,
                ),
                (true, false) => (
                    // SAFETY: the caller's contract.
                    unsafe {
                        args::slice(sc.example_losses, sc.n_example_losses, "example_losses")
                    }?,
                    sp.plan.examples.len(),
                    "example loss",
                    false,
                ),
                _ => {
                    return Err(FfiError::new(
                        ZO_ERR_ARGUMENT,
                        "zo_step_scores: give exactly one of query_logprobs and example_losses",
                    ))
                }
            };
        if values.len() != want {
            return Err(FfiError::new(
                ZO_ERR_SHAPE,
                format!(
                    "step {}: {} {what}s, but the plan has {want}",
                    sp.step,
                    values.len()
                ),
            ));
        }
        if let Some(i) = first_non_finite(values) {
            return Err(FfiError::new(
                ZO_ERR_NOT_FINITE,
                format!(
                    "step {}: {what} {i} is {}; the step stays begun: score it again, or skip \
                     it with zo_step_skip",
                    sp.step, values[i]
                ),
            ));
        }
        let losses = match logprobs {
            true => StepLosses::QueryLogprobs(values),
            false => StepLosses::ExampleLosses(values),
        };
        let est = st.session.end(losses)?;
        st.plan = None;
        fill_step_result(r, &est)
    })
}

/// Logs the begun step as skipped (nothing applied), as training does with a non-finite
/// estimate; `reason` (may be NULL) goes into the log.
///
/// # Safety
/// `s` is a live session; `reason` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn zo_step_skip(s: *mut zo_session, reason: *const c_char) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let reason =
            unsafe { args::opt_string(reason, "reason") }?.unwrap_or("skipped by the caller");
        // SAFETY: as above.
        let mut st = unsafe { lock(s) }?;
        pending(&st, "zo_step_skip")?;
        st.session.skip_pending(reason)?;
        st.plan = None;
        Ok(())
    })
}

/// A seeded ZO-SGD update of one f32 tensor on the host, owned by the caller.
#[repr(C)]
pub struct zo_update_params {
    /// `sizeof(zo_update_params)` (`zo_update_default_params()`).
    pub struct_size: usize,
    /// The tensor, updated in place.
    pub data: *mut f32,
    pub n: usize,
    /// The RNG stream of the tensor: its id and role (zo's ids for zo's tensors, see
    /// `zo_adapter_site.tensor_id`; any fixed ids for the caller's own).
    pub tensor_id: u32,
    pub role: u32,
    /// `ZO_DIST_*`, the config's distribution.
    pub dist: i32,
    /// The step's direction seeds and coefficients (`zo_step_result`'s `seeds`, `coefs`).
    pub seeds: *const u64,
    pub coefs: *const f32,
    pub n_directions: usize,
    pub lr: f32,
    pub weight_decay: f32,
    /// 1: weight decay applies to this tensor (weights), 0: it does not (biases, norms).
    pub decayed: i32,
}

/// No tensor, Gaussian directions, no weight decay.
#[no_mangle]
pub extern "C" fn zo_update_default_params() -> zo_update_params {
    zo_update_params {
        struct_size: std::mem::size_of::<zo_update_params>(),
        data: std::ptr::null_mut(),
        n: 0,
        tensor_id: 0,
        role: 0,
        dist: super::kernels::ZO_DIST_GAUSSIAN,
        seeds: std::ptr::null(),
        coefs: std::ptr::null(),
        n_directions: 0,
        lr: 0.0,
        weight_decay: 0.0,
        decayed: 1,
    }
}

/// Applies a step's update to a host tensor the caller owns, element i as zo updates its
/// own: with weight decay (and `decayed`) first θ = fma(−lr·wd, θ, θ); then for each
/// direction d in order θ = fma(c_d, z_d, θ) with c_d = −(lr·coef_d)/q and z_d element i of
/// the stream (seed_d, tensor_id, role). Bit for bit the update zo applies to the dense
/// family's weights and to LoRA factors (role 3 for A, 4 for B), and that of the kernel
/// level's `zo_kernel_seeded_axpy`.
///
/// # Safety
/// `p` points at a `zo_update_params` whose arrays hold their stated lengths.
#[no_mangle]
pub unsafe extern "C" fn zo_apply_update(p: *const zo_update_params) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let p = unsafe { args::params(p, "zo_update_params") }?;
        // SAFETY: as above.
        let seeds = unsafe { args::slice(p.seeds, p.n_directions, "seeds") }?;
        // SAFETY: as above.
        let coefs = unsafe { args::slice(p.coefs, p.n_directions, "coefs") }?;
        // SAFETY: as above.
        let data = unsafe { args::slice_mut(p.data, p.n, "data") }?;
        let dist = dist(p.dist)?;
        let rec = StepRecord {
            step: 0,
            seeds: seeds.to_vec(),
            grads: coefs.to_vec(),
            lr: p.lr,
            period_seed: None,
        };
        let cfg = UpdateConfig {
            dist,
            weight_decay: p.weight_decay,
            rule: StepRule::Sgd,
        };
        let t = update_terms("zo_apply_update", &rec, &cfg, dist)?;
        seeded_axpy_flat(
            vec![(p.tensor_id, p.decayed != 0, data)],
            p.role,
            dist,
            &t.terms,
            t.decay,
        );
        Ok(())
    })
}

/// Elements `start .. start + n` of the random stream (seed, tensor_id, role) in `dist`
/// (`ZO_DIST_*`): the Z every perturbation and update of zo regenerates, bit-exact with the
/// device's.
///
/// # Safety
/// `out` holds `n` writable floats.
#[no_mangle]
pub unsafe extern "C" fn zo_rng_fill(
    seed: u64,
    tensor_id: u32,
    role: u32,
    start: u64,
    dist: i32,
    out: *mut f32,
    n: usize,
) -> zo_status {
    guard(|| {
        let d = self::dist(dist)?;
        if start.checked_add(n as u64).is_none() {
            return Err(FfiError::new(
                ZO_ERR_ARGUMENT,
                format!("elements {start} + {n} overflow the stream's 64-bit index"),
            ));
        }
        // SAFETY: the caller's contract.
        let out = unsafe { args::slice_mut(out, n, "out") }?;
        d.fill(seed, tensor_id, role, start, out);
        Ok(())
    })
}

/// A Linear the family perturbs through factors (lora: its targets; lowrank: every block
/// Linear).
#[repr(C)]
pub struct zo_adapter_site {
    /// The layer, or −1 for a model-level Linear.
    pub layer: i32,
    /// The module's HF name, NUL-terminated: "model.layers.0.self_attn.q_proj".
    pub hf_module: [c_char; 128],
    /// The weight's shape, out × in.
    pub out_dim: usize,
    pub in_dim: usize,
    pub rank: usize,
    /// lora: α/r, the scale of B·A; lowrank: the scale s of U·Vᵀ (1 or 1/√r).
    pub scale: f32,
    /// The RNG tensor id of the site's weight (for `zo_apply_update` on LoRA factors).
    pub tensor_id: u32,
}

/// The family's adapter sites: `*n` gets their number; the first `min(*n, cap)` are written
/// to `out` (NULL with `cap` 0 to ask for the number only).
///
/// # Safety
/// `s` is a live session; `out` holds `cap` writable sites; `n` is writable.
#[no_mangle]
pub unsafe extern "C" fn zo_session_adapter_sites(
    s: *const zo_session,
    out: *mut zo_adapter_site,
    cap: usize,
    n: *mut usize,
) -> zo_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let n = unsafe { args::out(n, "n") }?;
        // SAFETY: as above.
        let st = unsafe { lock(s) }?;
        let sites = st.session.adapter_sites();
        *n = sites.len();
        let k = cap.min(sites.len());
        // SAFETY: as above.
        let dst = unsafe { args::slice_mut(out, k, "out") }?;
        let scale = site_scale(st.session.config());
        for (d, site) in dst.iter_mut().zip(&sites) {
            let mut name = [0 as c_char; 128];
            for (c, &b) in name
                .iter_mut()
                .zip(site.hf_module.as_bytes().iter().take(127))
            {
                *c = b as c_char;
            }
            *d = zo_adapter_site {
                layer: site.site.layer.map_or(-1, |l| l as i32),
                hf_module: name,
                out_dim: site.out_dim,
                in_dim: site.in_dim,
                rank: site.rank,
                scale,
                tensor_id: site.tensor_id,
            };
        }
        Ok(())
    })
}

fn site_scale(cfg: &crate::engine::config::TrainConfig) -> f32 {
    use crate::perturb::{FamilyConfig, LowRankScale};
    match cfg.family {
        FamilyConfig::Lora { rank, alpha, .. } => alpha / rank as f32,
        FamilyConfig::LowRank {
            scale: LowRankScale::InvSqrtRank,
            rank,
            ..
        } => 1.0 / (rank as f32).sqrt(),
        _ => 1.0,
    }
}

/// Copies two factors into the caller's buffers after checking both lengths.
///
/// # Safety
/// `a` and `b` hold `a_len` and `b_len` writable floats.
unsafe fn put_factors(
    (x, y): (Vec<f32>, Vec<f32>),
    a: *mut f32,
    a_len: usize,
    b: *mut f32,
    b_len: usize,
    names: [&str; 2],
) -> FfiResult<()> {
    for (v, len, name) in [(&x, a_len, names[0]), (&y, b_len, names[1])] {
        if len != v.len() {
            return Err(FfiError::new(
                ZO_ERR_SHAPE,
                format!("{name} holds {len} floats but the factor has {}", v.len()),
            ));
        }
    }
    // SAFETY: the caller's contract.
    unsafe { args::slice_mut(a, a_len, names[0]) }?.copy_from_slice(&x);
    // SAFETY: as above.
    unsafe { args::slice_mut(b, b_len, names[1]) }?.copy_from_slice(&y);
    Ok(())
}

/// The LoRA factors `variant` runs with at adapter site `site` (lora family): `a` gets
/// A + sign·ε·Z_A (rank × in, row-major) and `b` gets B + sign·ε·Z_B (out × rank), each
/// element one fma, so the variant's Linear is y = x·Wᵀ + scale·(x·aᵀ)·bᵀ. A NULL `variant`
/// gives the current factors.
///
/// # Safety
/// `s` is a live session; `variant` is NULL or valid; `a`/`b` hold `a_len`/`b_len` floats.
#[no_mangle]
pub unsafe extern "C" fn zo_session_lora_factors(
    s: *const zo_session,
    variant: *const zo_variant,
    site: usize,
    a: *mut f32,
    a_len: usize,
    b: *mut f32,
    b_len: usize,
) -> zo_status {
    guard(|| {
        let v = match variant.is_null() {
            true => Variant::BASE,
            // SAFETY: the caller's contract.
            false => rust_variant(unsafe { &*variant })?,
        };
        // SAFETY: as above.
        let st = unsafe { lock(s) }?;
        let f = st.session.lora_factors(v, site)?;
        // SAFETY: as above.
        unsafe { put_factors(f, a, a_len, b, b_len, ["a", "b"]) }
    })
}

/// The low-rank perturbation `variant` adds at adapter site `site` (lowrank family), as
/// factors of the begun step: `u` gets sign·ε·s·U (out × rank, row-major) and `v` gets V
/// (in × rank), so the variant's weight is W + u·vᵀ, W being the session's trained weight.
///
/// # Safety
/// `s` is a live session; `variant` is valid; `u`/`v` hold `u_len`/`v_len` floats.
#[no_mangle]
pub unsafe extern "C" fn zo_session_lowrank_factors(
    s: *const zo_session,
    variant: *const zo_variant,
    site: usize,
    u: *mut f32,
    u_len: usize,
    v: *mut f32,
    v_len: usize,
) -> zo_status {
    guard(|| {
        if variant.is_null() {
            return Err(FfiError::new(ZO_ERR_NULL, "variant is NULL"));
        }
        // SAFETY: the caller's contract.
        let var = rust_variant(unsafe { &*variant })?;
        // SAFETY: as above.
        let st = unsafe { lock(s) }?;
        pending(&st, "zo_session_lowrank_factors")?;
        let f = st.session.lowrank_factors(var, site)?;
        // SAFETY: as above.
        unsafe { put_factors(f, u, u_len, v, v_len, ["u", "v"]) }
    })
}
