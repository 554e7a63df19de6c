//! Stateful update rules on a family's trained tensors: ZO-SGD with momentum and ZO-Adam.
//!
//! Plain ZO-SGD (θ ← θ − lr·Σ_d g_d·Z_d/q) keeps no state and every family applies it with its
//! own seeded fma chain, bit-exact with the CUDA kernels. The rules here keep per-element
//! moments of the direction estimate ĝ = Σ_d (g_d/q)·Z_d, so they need memory the size of the
//! trained state (one buffer for momentum, two for Adam). The moments are not checkpointed:
//! every update is a pure function of its record and of the moments before it, so replaying
//! the seed log rebuilds them bit for bit, and a resumed run equals an uninterrupted one.
//!
//! Per element, in fp32 with one rounding per operation:
//! - ĝ = fma(g_d/q, z_d, ĝ) over the directions in order, from ĝ = 0;
//! - momentum β: m = fma(β, m, ĝ); θ = fma(−lr, m, θ) (heavy ball, no dampening);
//! - Adam (β₁, β₂, ε̂), update t = 1, 2, …: m = fma(β₁, m, (1−β₁)·ĝ),
//!   v = fma(β₂, v, (1−β₂)·ĝ·ĝ), θ = fma(−lr·c₁, m/(√(v·c₂) + ε̂), θ) with the bias corrections
//!   c₁ = 1/(1−β₁ᵗ), c₂ = 1/(1−β₂ᵗ) computed in f64 and rounded once.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::dense::Tensor;
use super::{Dist, StepRecord};
use crate::{Error, Result};

/// How an update turns a step's direction estimate into a change of the trained state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "rule", rename_all = "lowercase")]
pub enum StepRule {
    /// θ ← θ − lr·ĝ: no state.
    #[default]
    Sgd,
    /// Heavy-ball momentum on ĝ.
    Momentum { beta: f32 },
    /// Adam on ĝ with bias correction.
    Adam { beta1: f32, beta2: f32, eps: f32 },
}

impl StepRule {
    pub fn is_stateless(&self) -> bool {
        matches!(self, StepRule::Sgd)
    }

    /// Rejects coefficients outside the ranges the rules are defined on.
    pub fn validate(&self) -> Result<()> {
        let in01 = |name: &str, b: f32| {
            if (0.0..1.0).contains(&b) {
                Ok(())
            } else {
                Err(Error::Config(format!("{name} must be in [0, 1), got {b}")))
            }
        };
        match *self {
            StepRule::Sgd => Ok(()),
            StepRule::Momentum { beta } => in01("momentum β", beta),
            StepRule::Adam { beta1, beta2, eps } => {
                in01("adam β1", beta1)?;
                in01("adam β2", beta2)?;
                if eps.is_finite() && eps > 0.0 {
                    Ok(())
                } else {
                    Err(Error::Config(format!(
                        "adam ε must be a positive number, got {eps}"
                    )))
                }
            }
        }
    }
}

/// `(seed_d, g_d/q)` in direction order: the terms of ĝ.
pub fn direction_coefs(rec: &StepRecord) -> Vec<(u64, f32)> {
    let q = rec.seeds.len() as f32;
    rec.seeds
        .iter()
        .zip(&rec.grads)
        .map(|(&s, &g)| (s, g / q))
        .collect()
}

/// Every scalar of one update of a stateful rule, computed once on the host with the
/// expressions of the module's formulas, for the CPU loop, the GPU kernel and the C ABI alike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleCoefs {
    pub adam: bool,
    /// Momentum's β or Adam's β₁.
    pub beta1: f32,
    pub beta2: f32,
    pub adam_eps: f32,
    pub one_m_b1: f32,
    pub one_m_b2: f32,
    /// Adam's second-moment bias correction 1/(1−β₂ᵗ).
    pub c2: f32,
    /// −lr (momentum).
    pub neg_lr: f32,
    /// −lr·c₁ (Adam).
    pub neg_lr_c1: f32,
}

impl RuleCoefs {
    /// The scalars of an update at learning rate `lr` under `rule` after `updates` earlier
    /// updates.
    pub fn new(rule: StepRule, lr: f32, updates: u64) -> Result<RuleCoefs> {
        let adam = matches!(rule, StepRule::Adam { .. });
        let (beta1, beta2, adam_eps) = match rule {
            StepRule::Sgd => {
                return Err(Error::Config(
                    "plain ZO-SGD keeps no moments; the family applies it directly".into(),
                ))
            }
            StepRule::Momentum { beta } => (beta, 0.0, 0.0),
            StepRule::Adam { beta1, beta2, eps } => (beta1, beta2, eps),
        };
        let t = updates.saturating_add(1).min(i32::MAX as u64) as i32;
        let c1 = (1.0 / (1.0 - (beta1 as f64).powi(t))) as f32;
        let c2 = (1.0 / (1.0 - (beta2 as f64).powi(t))) as f32;
        Ok(RuleCoefs {
            adam,
            beta1,
            beta2,
            adam_eps,
            one_m_b1: 1.0 - beta1,
            one_m_b2: 1.0 - beta2,
            c2,
            neg_lr: -lr,
            neg_lr_c1: -(lr * c1),
        })
    }
}

/// The moments of one trained tensor, keyed by its RNG (role, tensor id).
#[derive(Debug, Clone)]
struct TensorMoments {
    key: (u32, u32),
    m: Vec<f32>,
    /// Adam's second moment (empty for momentum).
    v: Vec<f32>,
}

/// A family's optimizer state: the moments of each trained tensor and the update count.
#[derive(Debug, Clone, Default)]
pub struct Moments {
    /// Updates applied so far (Adam's t before the next update).
    updates: u64,
    tensors: Vec<TensorMoments>,
}

/// Elements per parallel work item; the per-element sequence does not depend on it.
const CHUNK: usize = 1 << 14;

/// One chunk of one tensor: (tensor id, decayed, first element, θ, m, v).
type WorkItem<'a> = (u32, bool, u64, &'a mut [f32], &'a mut [f32], &'a mut [f32]);

impl Moments {
    /// Applies one update of `rule` to `tensors` (all drawn under `role`), after the decoupled
    /// weight decay `θ = fma(−λ, θ, θ)` on tensors marked for decay when `decay` is Some(λ).
    /// Call [`Moments::finish_update`] once after all of a step's calls.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &mut self,
        rule: StepRule,
        tensors: Vec<Tensor<'_>>,
        role: u32,
        dist: Dist,
        rec: &StepRecord,
        decay: Option<f32>,
    ) -> Result<()> {
        let k = RuleCoefs::new(rule, rec.lr, self.updates)?;
        let RuleCoefs {
            adam,
            beta1,
            beta2,
            adam_eps,
            one_m_b1,
            one_m_b2,
            c2,
            neg_lr,
            neg_lr_c1,
            ..
        } = k;
        let coefs = &direction_coefs(rec);

        // Moments for every tensor of this call, created at zero on first use.
        for t in &tensors {
            let key = (role, t.tensor_id);
            match self.tensors.iter().find(|m| m.key == key) {
                Some(m) if m.m.len() != t.data.len() => {
                    return Err(Error::tensor(
                        format!("{:?}", t.param),
                        format!(
                            "optimizer moments hold {} elements but the tensor has {}",
                            m.m.len(),
                            t.data.len()
                        ),
                    ))
                }
                Some(_) => {}
                None => self.tensors.push(TensorMoments {
                    key,
                    m: vec![0.0; t.data.len()],
                    v: if adam {
                        vec![0.0; t.data.len()]
                    } else {
                        Vec::new()
                    },
                }),
            }
        }
        let mut by_key: Vec<(&mut TensorMoments, Tensor<'_>)> = Vec::new();
        let mut pending = tensors;
        for m in self.tensors.iter_mut().filter(|m| m.key.0 == role) {
            if let Some(i) = pending.iter().position(|t| t.tensor_id == m.key.1) {
                by_key.push((m, pending.swap_remove(i)));
            }
        }
        let mut items: Vec<WorkItem<'_>> = Vec::new();
        for (mom, t) in by_key {
            let (id, decayed) = (t.tensor_id, t.decay);
            let vs: Vec<&mut [f32]> = if adam {
                mom.v.chunks_mut(CHUNK).collect()
            } else {
                mom.m
                    .chunks(CHUNK)
                    .map(|_| <&mut [f32]>::default())
                    .collect()
            };
            for (i, ((th, m), v)) in t
                .data
                .chunks_mut(CHUNK)
                .zip(mom.m.chunks_mut(CHUNK))
                .zip(vs)
                .enumerate()
            {
                items.push((id, decayed, (i * CHUNK) as u64, th, m, v));
            }
        }
        items
            .into_par_iter()
            .for_each(|(id, decayed, start, theta, m, v)| {
                if let (Some(lambda), true) = (decay, decayed) {
                    let neg = -lambda;
                    theta.iter_mut().for_each(|t| *t = neg.mul_add(*t, *t));
                }
                let mut ghat = vec![0.0f32; theta.len()];
                let mut z = vec![0.0f32; theta.len()];
                for &(seed, c) in coefs {
                    dist.fill(seed, id, role, start, &mut z);
                    ghat.iter_mut()
                        .zip(&z)
                        .for_each(|(g, &z)| *g = c.mul_add(z, *g));
                }
                if adam {
                    for (((th, m), v), &g) in theta.iter_mut().zip(m).zip(v).zip(&ghat) {
                        *m = beta1.mul_add(*m, one_m_b1 * g);
                        *v = beta2.mul_add(*v, one_m_b2 * (g * g));
                        let denom = (*v * c2).sqrt() + adam_eps;
                        *th = neg_lr_c1.mul_add(*m / denom, *th);
                    }
                } else {
                    for ((th, m), &g) in theta.iter_mut().zip(m).zip(&ghat) {
                        *m = beta1.mul_add(*m, g);
                        *th = neg_lr.mul_add(*m, *th);
                    }
                }
            });
        Ok(())
    }

    /// Ends a step's update: Adam's t advances.
    pub fn finish_update(&mut self) {
        self.updates += 1;
    }
}
