//! Perturbation families and the variants of a step.
//!
//! A variant (seed, sign, ε) runs the model as θ + sign·ε·Z(seed). No family ever builds
//! θ ± εZ: the forward calls the hooks of [`Perturbation`] where a parameter is applied and the
//! family adds `sign·ε·P(x)` for the rows of each perturbed [`Segment`]. The same object holds
//! the family's trained state (low-rank bank, LoRA factors, prefix) and applies ZO updates by
//! regenerating Z from the seeds of a [`StepRecord`].
//!
//! | family  | trained                  | P(x) at a Linear                          |
//! |---------|--------------------------|-------------------------------------------|
//! | lowrank | every block Linear W     | (x·V)·Uᵀ, V per period seed, U per step   |
//! | lora    | LoRA A, B on targets     | shrink/expand with A+sεZ_A, B+sεZ_B       |
//! | dense   | every parameter          | x·Zᵀ (+ z_b); norms, embeddings, head too |
//! | prefix  | prefix K/V of each layer | none: K/V + sεZ as attention reads them   |

#[doc(hidden)]
pub mod adapter;
pub mod dense;
pub mod lora;
pub mod lowrank;
pub mod prefix;
pub mod step_rule;

use std::ops::Range;

use crate::model::{Linear, Model, Norm, NormSite, Site, Slot};
use crate::plan::Plan;
use crate::{Error, Result};

/// RNG roles: which use of a tensor a random stream serves (the counter's 4th word).
pub mod role {
    /// Dense Z of a parameter (dense family).
    pub const DENSE: u32 = 0;
    /// Low-rank Uᵀ (r × out), from the step's direction seed.
    pub const LOWRANK_U: u32 = 1;
    /// Low-rank Vᵀ (r × in), from the period seed.
    pub const LOWRANK_V: u32 = 2;
    /// Perturbation of LoRA A (r × in) and B (out × r).
    pub const LORA_A: u32 = 3;
    pub const LORA_B: u32 = 4;
    /// Initial values of LoRA A (B starts at zero), from the run seed.
    pub const LORA_INIT: u32 = 5;
    /// Perturbation of prefix keys / values.
    pub const PREFIX: u32 = 6;
    /// Initial prefix keys / values, from the run seed.
    pub const PREFIX_INIT: u32 = 7;
}

/// Distribution of the random directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dist {
    Gaussian,
    Rademacher,
}

impl Dist {
    /// Element `start..start+out.len()` of the stream (seed, tensor, role).
    pub fn fill(self, seed: u64, tensor: u32, role: u32, start: u64, out: &mut [f32]) {
        match self {
            Dist::Gaussian => crate::rng::fill_gaussian(seed, tensor, role, start, out),
            Dist::Rademacher => crate::rng::fill_rademacher(seed, tensor, role, start, out),
        }
    }
}

/// How the low-rank perturbation UVᵀ is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LowRankScale {
    /// Z = U·Vᵀ as LoZO writes it.
    Plain,
    /// Z = U·Vᵀ/√r: unit-variance entries, the MeZO-style factorized run at high rank.
    InvSqrtRank,
}

/// A family and its hyper-parameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum FamilyConfig {
    /// LoZO (momentum None) and LoZO-M (momentum Some(β)).
    LowRank {
        rank: usize,
        /// ν: steps between refreshes of V (and merges of the bank into W).
        period: u64,
        scale: LowRankScale,
        momentum: Option<f32>,
    },
    /// MeZO-LoRA on the target slots of every layer.
    Lora {
        rank: usize,
        alpha: f32,
        targets: Vec<Slot>,
    },
    /// MeZO on every parameter. `in_place`: perturb θ itself (+ε, −2ε, +ε) as MeZO's trainer
    /// does, for exact parity with it, instead of fused variants.
    Dense { in_place: bool },
    /// MeZO-prefix: `tokens` trainable key/value positions per layer.
    Prefix { tokens: usize },
}

impl FamilyConfig {
    pub fn name(&self) -> &'static str {
        match self {
            FamilyConfig::LowRank { .. } => "lowrank",
            FamilyConfig::Lora { .. } => "lora",
            FamilyConfig::Dense { .. } => "dense",
            FamilyConfig::Prefix { .. } => "prefix",
        }
    }
}

/// Rows of the packed buffer that run under one perturbed variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub rows: Range<usize>,
    pub variant: usize,
    /// Direction seed: segments with equal seeds share Z (the + and − of one direction).
    pub seed: u64,
    /// sign·ε.
    pub scale: f32,
}

/// Maximal runs of consecutive sequences under the same perturbed variant. Sequences of
/// sign-0 variants (and plans without `seq_variant`) produce no segment.
pub fn segments(plan: &Plan) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for (s, &v) in plan.seq_variant.iter().enumerate() {
        let var = plan.variants[v as usize];
        if var.sign == 0 || var.eps == 0.0 {
            continue;
        }
        let rows = plan.seq_range(s);
        match out.last_mut() {
            Some(last) if last.variant == v as usize && last.rows.end == rows.start => {
                last.rows.end = rows.end
            }
            _ => out.push(Segment {
                rows,
                variant: v as usize,
                seed: var.seed,
                scale: var.sign as f32 * var.eps,
            }),
        }
    }
    out
}

/// One ZO step as the seed log records it. Replaying the records in order reproduces the
/// trained state bit for bit.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    pub step: u64,
    /// Direction seeds, one per direction d.
    pub seeds: Vec<u64>,
    /// The coefficient of each direction in the update: g_d, or the optimizer's transform
    /// of it (sign-ZO, FZOO; see `zo::estimator`).
    pub grads: Vec<f32>,
    pub lr: f32,
    /// Low-rank families: the seed of V for this step's period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seed: Option<u64>,
}

/// Settings of the update that are not part of a step's record.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UpdateConfig {
    pub dist: Dist,
    /// Decoupled weight decay, θ ← θ − lr·wd·θ, on weights only (not biases, norms).
    pub weight_decay: f32,
    /// Plain ZO-SGD, or momentum / Adam moments kept on the trained state.
    #[serde(default)]
    pub rule: step_rule::StepRule,
}

/// Forward-pass hooks. Defaults do nothing, so a family implements only the places it
/// touches. `x`/`y` are packed `[T][width]` buffers; segments index their rows.
pub trait Perturbation: Send + Sync {
    /// After `y = x·Wᵀ + b`: add the family's trained adapter term (every row) and
    /// `seg.scale·P_seed(x)` for the rows of each segment.
    fn linear(&self, _site: Site, _lin: &Linear, _x: &[f32], _y: &mut [f32], _segs: &[Segment]) {}

    /// The norm to use for the rows of `seg`, if the family perturbs norm parameters.
    fn norm(&self, _site: NormSite, _norm: &Norm, _seg: &Segment) -> Option<Norm> {
        None
    }

    /// After the embedding gather: `x[row] += scale·Z_E[token]` (dense).
    fn embed(&self, _tokens: &[u32], _x: &mut [f32], _segs: &[Segment]) {}

    /// After adding learned positions (OPT): `x[row] += scale·Z_P[pos + 2]` (dense).
    fn pos_embed(&self, _positions: &[u32], _x: &mut [f32], _segs: &[Segment]) {}

    /// After `logits = h·Headᵀ` at packed `rows` (`h` is `[rows][embed_dim]`): the head's
    /// perturbation for rows inside segments (dense).
    fn head(
        &self,
        _model: &Model,
        _h: &[f32],
        _rows: &[u32],
        _logits: &mut [f32],
        _segs: &[Segment],
    ) {
    }

    /// Keys and values (`[tokens][kv_heads·head_dim]` each) every sequence of `seg` (or of
    /// the unperturbed rows, `None`) attends to before its own tokens (prefix).
    fn prefix(&self, _layer: usize, _seg: Option<&Segment>) -> Option<(Vec<f32>, Vec<f32>)> {
        None
    }
}

/// A family with its trained state: forward hooks plus the update routine.
pub trait Family: Perturbation + std::any::Any {
    fn config(&self) -> &FamilyConfig;

    /// Called before step `step` scores anything (low-rank: merge the bank and switch V at a
    /// period boundary).
    fn begin_step(&mut self, _model: &mut Model, _step: u64, _period_seed: Option<u64>) {}

    /// θ ← θ − lr·Σ_d g_d·Z_d/q (and weight decay), each element as fma(c, z, θ) in fp32.
    fn update(&mut self, model: &mut Model, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()>;

    /// The weights with all trained state folded in (exports). Prefix cannot be merged.
    fn merged(&self, model: &Model) -> Result<Model>;

    /// The trained state outside the model's weights, as named f32 tensors (checkpoint
    /// digests, exports, tests).
    fn state_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)>;

    fn clone_box(&self) -> Box<dyn Family>;
}

/// Builds a family for `model`. `seed` initialises trained state where a family needs it
/// (LoRA A, the prefix).
pub fn build(cfg: &FamilyConfig, dist: Dist, model: &Model, seed: u64) -> Result<Box<dyn Family>> {
    match cfg {
        FamilyConfig::LowRank { .. } => {
            Ok(Box::new(lowrank::LowRank::new(cfg.clone(), dist, model)?))
        }
        FamilyConfig::Lora { .. } => Ok(Box::new(lora::Lora::new(cfg.clone(), dist, model, seed)?)),
        FamilyConfig::Dense { .. } => Ok(Box::new(dense::Dense::new(cfg.clone(), dist, model)?)),
        FamilyConfig::Prefix { .. } => Ok(Box::new(prefix::Prefix::new(
            cfg.clone(),
            dist,
            model,
            seed,
        )?)),
    }
}

/// Parses a family name with default hyper-parameters (the `--family` flag).
pub fn family_from_name(name: &str) -> Result<FamilyConfig> {
    Ok(match name {
        "lowrank" | "lozo" => FamilyConfig::LowRank {
            rank: 2,
            period: 50,
            scale: LowRankScale::Plain,
            momentum: None,
        },
        "lozo-m" => FamilyConfig::LowRank {
            rank: 2,
            period: 50,
            scale: LowRankScale::Plain,
            momentum: Some(0.9),
        },
        "lora" => FamilyConfig::Lora {
            rank: 8,
            alpha: 16.0,
            targets: vec![Slot::Q, Slot::V],
        },
        "dense" | "mezo" => FamilyConfig::Dense { in_place: false },
        "prefix" => FamilyConfig::Prefix { tokens: 5 },
        other => {
            return Err(Error::Config(format!(
                "unknown perturbation family {other:?}; expected one of lowrank, lozo, lozo-m, lora, dense, mezo, prefix"
            )))
        }
    })
}
