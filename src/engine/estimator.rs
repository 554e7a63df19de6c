//! SPSA estimators: q directions per step, two-sided (2q variants) or one-sided (q + 1).
//!
//! Variants are laid out as the families expect (see `perturb`): for d in 0..q,
//! (seed_d, +1, ε), (seed_d, −1, ε); one-sided: (seed_d, +1, ε) for each d, then the
//! unperturbed variant. `Plan::build` packs variant-major, so the example groups of the
//! scores come in the same order, `batch` per variant.
//!
//! g_d = (mean L₊ − mean L₋)/(2ε), or (mean L₊ − mean L₀)/ε one-sided: the means and the
//! difference are taken in f64 over the fp32 per-example losses and g is rounded once to f32.
//!
//! The record carries the coefficients the update applies, which the optimizer derives from
//! g: g itself (sgd, momentum, adam), sign(g) (sign-ZO), or FZOO's (L_d − L₀)/σ with σ the
//! population standard deviation of the q perturbed means, in f64 and rounded once.

use super::config::{Optimizer, TrainConfig};
use super::replay::{in_place_scales, ZoBackend};
use super::seeds::direction_seed;
use crate::dist::{shard, shard_counts, Comm, Local};
use crate::perturb::StepRecord;
use crate::plan::{cross_pairs, Pair, Plan, Sharing, TokenizedExample, Variant};
use crate::{Error, Result};

/// One step's estimate: the record to apply (when not skipped) and the losses behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepEstimate {
    /// The record to apply: its `grads` are the optimizer's coefficients (see the module).
    pub record: StepRecord,
    /// The projected gradients g_d, before the optimizer's transform.
    pub g: Vec<f32>,
    /// Mean loss under +εZ_d, per direction.
    pub loss_plus: Vec<f64>,
    /// Mean loss under −εZ_d, per direction (two-sided).
    pub loss_minus: Vec<f64>,
    /// Mean loss of the unperturbed model (one-sided).
    pub loss0: Option<f64>,
    /// Why the step must not be applied (a non-finite loss or g).
    pub skipped: Option<String>,
    /// Packed tokens scored.
    pub tokens: usize,
}

impl StepEstimate {
    /// The step's training-loss estimate: the mean over all scored variants.
    pub fn loss(&self) -> f64 {
        let all: Vec<f64> = self
            .loss_plus
            .iter()
            .chain(&self.loss_minus)
            .chain(self.loss0.iter())
            .copied()
            .collect();
        all.iter().sum::<f64>() / all.len().max(1) as f64
    }
}

/// The variants of one step in the conventional order.
pub fn variants(seeds: &[u64], eps: f32, one_sided: bool) -> Vec<Variant> {
    let mut out = Vec::with_capacity(2 * seeds.len());
    for &seed in seeds {
        out.push(Variant { seed, sign: 1, eps });
        if !one_sided {
            out.push(Variant {
                seed,
                sign: -1,
                eps,
            });
        }
    }
    if one_sided {
        out.push(Variant::BASE);
    }
    out
}

/// Mean loss of each variant's block of `per_variant` example groups.
fn variant_means(losses: &[f32], per_variant: usize, n_variants: usize) -> Result<Vec<f64>> {
    if losses.len() != per_variant * n_variants {
        return Err(Error::Data(format!(
            "estimator: backend returned {} example losses, expected {} ({} variants × {} examples)",
            losses.len(),
            per_variant * n_variants,
            n_variants,
            per_variant
        )));
    }
    Ok(losses
        .chunks(per_variant)
        .map(|c| c.iter().map(|&l| l as f64).sum::<f64>() / per_variant as f64)
        .collect())
}

/// A step whose variants are scored in one packed plan (every estimator but MeZO's in-place
/// schedule): what the forward must score, and what [`finish`] needs to turn the scores into
/// the step's estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    pub step: u64,
    pub period_seed: Option<u64>,
    pub lr: f32,
    /// Direction seeds, one per direction.
    pub seeds: Vec<u64>,
    /// The batch under every variant, variant-major.
    pub plan: Plan,
    /// Examples per variant.
    pub batch: usize,
}

/// Packs step `step` of `cfg` on `batch`. Refuses MeZO's in-place schedule, whose forwards
/// run between changes of the weights and so cannot share one plan.
pub fn plan_step(
    cfg: &TrainConfig,
    step: u64,
    period_seed: Option<u64>,
    lr: f32,
    batch: &[TokenizedExample],
) -> Result<StepPlan> {
    plan_step_with(cfg, step, period_seed, lr, batch, Sharing::SharedPrompt)
}

/// [`plan_step`] with the layout of multi-token candidates chosen: an engine that runs the
/// plan itself and has no shared KV pages takes [`Sharing::PerCandidate`].
pub fn plan_step_with(
    cfg: &TrainConfig,
    step: u64,
    period_seed: Option<u64>,
    lr: f32,
    batch: &[TokenizedExample],
    sharing: Sharing,
) -> Result<StepPlan> {
    if cfg.in_place() {
        return Err(Error::Unsupported(
            "the in-place dense estimator perturbs the weights between its forwards, so its \
             variants cannot be packed into one plan; use the fused dense family"
                .into(),
        ));
    }
    let seeds = step_seeds(cfg, step);
    let vars = variants(&seeds, cfg.eps, cfg.one_sided);
    Ok(StepPlan {
        step,
        period_seed,
        lr,
        plan: Plan::build_with(batch, &vars, sharing)?,
        seeds,
        batch: batch.len(),
    })
}

/// The estimate of a packed step from its per-example losses (`plan.examples` order).
pub fn finish(cfg: &TrainConfig, sp: &StepPlan, losses: &[f32]) -> Result<StepEstimate> {
    let record = StepRecord {
        step: sp.step,
        seeds: sp.seeds.clone(),
        grads: Vec::new(),
        lr: sp.lr,
        period_seed: sp.period_seed,
    };
    let n_variants = sp.plan.variants.len();
    finish_losses(
        cfg,
        record,
        n_variants,
        sp.batch,
        losses,
        sp.plan.n_tokens(),
    )
}

/// The estimate from a whole step's per-example losses, variant-major over `n_variants`
/// variants of `batch` examples each (the order of [`cross_pairs`]).
fn finish_losses(
    cfg: &TrainConfig,
    record: StepRecord,
    n_variants: usize,
    batch: usize,
    losses: &[f32],
    tokens: usize,
) -> Result<StepEstimate> {
    let means = variant_means(losses, batch, n_variants)?;
    let (plus, minus, loss0) = if cfg.one_sided {
        (means[..cfg.q].to_vec(), Vec::new(), Some(means[cfg.q]))
    } else {
        let plus = means.iter().step_by(2).copied().collect();
        let minus = means.iter().skip(1).step_by(2).copied().collect();
        (plus, minus, None)
    };
    Ok(from_means(cfg, record, plus, minus, loss0, tokens))
}

/// The direction seeds of step `step`, one per direction.
pub fn step_seeds(cfg: &TrainConfig, step: u64) -> Vec<u64> {
    (0..cfg.q)
        .map(|d| direction_seed(cfg.seed, step, d))
        .collect()
}

/// What one rank computes of a step: the per-example losses of `pairs` (in their order) and
/// the tokens it ran, for the step's `variants` of `batch`.
pub type ScorePart<'a, B> =
    dyn FnMut(&mut B, &[Variant], &[Pair]) -> Result<(Vec<f32>, usize)> + 'a;

/// Scores step `step` on `batch` and computes its projected gradients, with the step's
/// (variant, example) pairs split among `comm`'s ranks: this rank runs `part` on its
/// contiguous share (see [`crate::dist::shard`]), the ranks gather every loss, and each
/// forms the estimate from all of them in the one-rank order. One rank runs every pair.
/// Does not touch the trained state, does not call `begin_step` and does not update.
#[allow(clippy::too_many_arguments)]
pub fn estimate_on<B: ?Sized>(
    backend: &mut B,
    cfg: &TrainConfig,
    step: u64,
    period_seed: Option<u64>,
    lr: f32,
    batch: &[TokenizedExample],
    comm: &dyn Comm,
    part: &mut ScorePart<'_, B>,
) -> Result<StepEstimate> {
    let seeds = step_seeds(cfg, step);
    // MeZO's in-place schedule is two-sided only (the config refuses one-sided).
    let vars = variants(&seeds, cfg.eps, cfg.one_sided && !cfg.in_place());
    let pairs = cross_pairs(vars.len(), batch.len());
    let (rank, size) = (comm.rank(), comm.size());
    if size > 1 && size > batch.len() {
        return Err(Error::Distributed(format!(
            "{size} ranks but a batch of {} examples: each rank needs at least one example of              every step; run at most {} ranks or raise --batch",
            batch.len(),
            batch.len()
        )));
    }
    let mine = &pairs[shard(pairs.len(), rank, size)];
    let (local, tokens) = part(backend, &vars, mine)?;
    if local.len() != mine.len() {
        return Err(Error::Data(format!(
            "estimator: {} losses for {} (variant, example) pairs",
            local.len(),
            mine.len()
        )));
    }
    let (losses, tokens) = if size == 1 {
        (local, tokens)
    } else {
        gather_losses(comm, local, tokens, &shard_counts(pairs.len(), size), step)?
    };
    let record = StepRecord {
        step,
        seeds,
        grads: Vec::new(),
        lr,
        period_seed,
    };
    finish_losses(cfg, record, vars.len(), batch.len(), &losses, tokens)
}

/// Every rank's losses in rank order, and the tokens of all ranks. Each rank appends its token
/// count as one more value (its bits: exact whatever the count).
fn gather_losses(
    comm: &dyn Comm,
    mut local: Vec<f32>,
    tokens: usize,
    counts: &[usize],
    step: u64,
) -> Result<(Vec<f32>, usize)> {
    local.push(f32::from_bits(tokens.min(u32::MAX as usize) as u32));
    let with_tokens: Vec<usize> = counts.iter().map(|c| c + 1).collect();
    let all = comm.all_gather(&local, &with_tokens, &format!("losses of step {step}"))?;
    let (mut losses, mut total) = (Vec::with_capacity(all.len()), 0usize);
    let mut at = 0;
    for &c in counts {
        losses.extend_from_slice(&all[at..at + c]);
        total += all[at + c].to_bits() as usize;
        at += c + 1;
    }
    Ok((losses, total))
}

/// [`ScorePart`] for scored objectives: one packed plan of the pairs, or MeZO's in-place
/// schedule, which perturbs the weights for every direction (so every rank's weights follow
/// the same sequence of changes) and scores this rank's examples of each variant.
pub fn score_part<B: ZoBackend + ?Sized>(
    backend: &mut B,
    cfg: &TrainConfig,
    batch: &[TokenizedExample],
    vars: &[Variant],
    pairs: &[Pair],
) -> Result<(Vec<f32>, usize)> {
    if !cfg.in_place() {
        let plan = Plan::build_pairs(batch, vars, pairs, Sharing::SharedPrompt)?;
        let scores = backend.score(&plan)?;
        let l: Vec<f32> = scores.examples.iter().map(|e| e.loss).collect();
        return Ok((l, plan.n_tokens()));
    }
    // θ+εZ, score, θ−εZ, score, back to θ, one direction at a time.
    let [up, down, back] = in_place_scales(cfg.eps);
    let (mut losses, mut tokens) = (Vec::with_capacity(pairs.len()), 0);
    let mut score_variant = |backend: &mut B, v: usize| -> Result<()> {
        let mine: Vec<TokenizedExample> = pairs
            .iter()
            .filter(|p| p.variant == v)
            .map(|p| batch[p.example].clone())
            .collect();
        if mine.is_empty() {
            return Ok(());
        }
        let plan = Plan::build(&mine, &[Variant::BASE])?;
        let s = backend.score(&plan)?;
        losses.extend(s.examples.iter().map(|e| e.loss));
        tokens += plan.n_tokens();
        Ok(())
    };
    for (d, v) in vars.iter().step_by(2).enumerate() {
        backend.perturb_in_place(v.seed, up, cfg.dist)?;
        score_variant(backend, 2 * d)?;
        backend.perturb_in_place(v.seed, down, cfg.dist)?;
        score_variant(backend, 2 * d + 1)?;
        backend.perturb_in_place(v.seed, back, cfg.dist)?;
    }
    Ok((losses, tokens))
}

/// Scores step `step` on `batch` and computes its projected gradients, on one rank. Does not
/// touch the trained state (in-place perturbations are undone by their own schedule), does
/// not call `begin_step` and does not update.
pub fn estimate<B: ZoBackend + ?Sized>(
    backend: &mut B,
    cfg: &TrainConfig,
    step: u64,
    period_seed: Option<u64>,
    lr: f32,
    batch: &[TokenizedExample],
) -> Result<StepEstimate> {
    estimate_on(
        backend,
        cfg,
        step,
        period_seed,
        lr,
        batch,
        &Local,
        &mut |b, vars, pairs| score_part(b, cfg, batch, vars, pairs),
    )
}

/// g from the per-variant mean losses, the optimizer's coefficients into `record.grads`, and
/// why the step must be skipped, if it must.
fn from_means(
    cfg: &TrainConfig,
    mut record: StepRecord,
    plus: Vec<f64>,
    minus: Vec<f64>,
    loss0: Option<f64>,
    tokens: usize,
) -> StepEstimate {
    let eps = cfg.eps;
    let grads: Vec<f32> = match loss0 {
        Some(l0) => plus
            .iter()
            .map(|p| ((p - l0) / eps as f64) as f32)
            .collect(),
        None => plus
            .iter()
            .zip(&minus)
            .map(|(p, m)| ((p - m) / (2.0 * eps as f64)) as f32)
            .collect(),
    };
    let coefficients = match cfg.optimizer {
        Optimizer::Sign => grads
            .iter()
            .map(|&g| if g == 0.0 { 0.0 } else { g.signum() })
            .collect(),
        Optimizer::Fzoo => fzoo_coefficients(&plus, loss0),
        _ => grads.clone(),
    };
    let skipped = if let Some(d) = plus
        .iter()
        .chain(&minus)
        .chain(loss0.iter())
        .position(|l| !l.is_finite())
    {
        Some(format!("non-finite loss (variant {d})"))
    } else {
        grads
            .iter()
            .chain(&coefficients)
            .position(|g| !g.is_finite())
            .map(|d| format!("non-finite g for direction {}", d % cfg.q))
    };
    record.grads = coefficients;
    StepEstimate {
        record,
        g: grads,
        loss_plus: plus,
        loss_minus: minus,
        loss0,
        skipped,
        tokens,
    }
}

/// FZOO's normalized one-sided coefficients; all zero when the perturbed losses do not
/// spread (σ = 0 carries no direction information) or the base loss is missing.
fn fzoo_coefficients(plus: &[f64], loss0: Option<f64>) -> Vec<f32> {
    let Some(l0) = loss0 else {
        return vec![0.0; plus.len()];
    };
    let n = plus.len() as f64;
    let mean = plus.iter().sum::<f64>() / n;
    let sigma = (plus.iter().map(|l| (l - mean) * (l - mean)).sum::<f64>() / n).sqrt();
    if sigma.is_nan() || sigma <= 0.0 {
        // NaN losses keep their NaN so the step is skipped and logged.
        let fill = if sigma.is_nan() { f32::NAN } else { 0.0 };
        return vec![fill; plus.len()];
    }
    plus.iter().map(|l| ((l - l0) / sigma) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_order_follows_the_convention() {
        let v = variants(&[5, 9], 0.1, false);
        let got: Vec<(u64, i8)> = v.iter().map(|v| (v.seed, v.sign)).collect();
        assert_eq!(got, vec![(5, 1), (5, -1), (9, 1), (9, -1)]);
        let v = variants(&[5, 9], 0.1, true);
        let got: Vec<(u64, i8)> = v.iter().map(|v| (v.seed, v.sign)).collect();
        assert_eq!(got, vec![(5, 1), (9, 1), (0, 0)]);
    }

    #[test]
    fn fzoo_normalizes_by_the_spread_of_the_losses() {
        // Perturbed means 1 and 3 around a base of 2: σ = 1, so the coefficients are ∓1.
        assert_eq!(fzoo_coefficients(&[1.0, 3.0], Some(2.0)), vec![-1.0, 1.0]);
        // Scaling every loss difference leaves the normalized step unchanged.
        assert_eq!(fzoo_coefficients(&[1.5, 2.5], Some(2.0)), vec![-1.0, 1.0]);
        assert_eq!(fzoo_coefficients(&[2.0, 2.0], Some(1.0)), vec![0.0, 0.0]);
        assert!(fzoo_coefficients(&[f64::NAN, 2.0], Some(1.0))[0].is_nan());
    }

    #[test]
    fn means_are_per_variant_blocks() {
        let m = variant_means(&[1.0, 3.0, 10.0, 20.0], 2, 2).unwrap();
        assert_eq!(m, vec![2.0, 15.0]);
        assert!(variant_means(&[1.0, 3.0, 10.0], 2, 2).is_err());
    }
}
