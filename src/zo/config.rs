//! The full description of a training run (serialized into every checkpoint) and the
//! presets that mirror the papers' settings.

use serde::{Deserialize, Serialize};

use crate::model::Slot;
use crate::perturb::{Dist, FamilyConfig, LowRankScale, UpdateConfig};
use crate::{Error, Result};

/// How the learning rate moves over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    Constant,
    /// Linear decay from `lr` at step 0 to 0 at step `steps`.
    Linear,
}

/// Everything that determines the trained state, given the base weights and the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The preset the run started from (informational: every field below is explicit).
    pub preset: Option<String>,
    pub family: FamilyConfig,
    pub dist: Dist,
    pub steps: u64,
    /// Training examples scored per step (under every variant).
    pub batch: usize,
    pub eps: f32,
    pub lr: f32,
    pub schedule: LrSchedule,
    /// Directions per step.
    pub q: usize,
    /// One-sided estimator: (L(θ+εZ) − L(θ))/ε, q + 1 variants, instead of two-sided SPSA.
    pub one_sided: bool,
    pub weight_decay: f32,
    /// Seeds the directions, the low-rank periods and the family's initial state.
    pub seed: u64,
    /// Seeds the train/dev/test split and the order of training examples.
    pub data_seed: u64,
    /// Task name or task spec file.
    pub task: String,
    /// Use only the first N examples of the train split (the split files already follow
    /// MeZO's protocol: 1000 train, 500 dev, 1000 test).
    pub train_limit: Option<usize>,
    /// Use only the first N dev examples for model selection.
    pub dev_limit: Option<usize>,
    /// Use only the first N test examples for the final accuracy.
    pub test_limit: Option<usize>,
    /// Evaluate on dev every this many steps (0: only at the end).
    pub eval_every: u64,
    /// Examples per plan when evaluating.
    pub eval_batch: usize,
}

/// Names accepted by `--preset`.
pub const PRESETS: [&str; 5] = ["mezo", "mezo-lora", "mezo-prefix", "lozo", "lozo-m"];

impl TrainConfig {
    /// A preset's settings. Learning rates and ε follow the papers' SST-2 settings:
    /// - mezo (MeZO, full parameter): batch 16, ε 1e-3, lr 1e-6 (the OPT grid is {1e-6, 1e-7}).
    /// - mezo-lora: ε 1e-2, lr 1e-4 (grid {1e-4, 5e-5}), r 8, α 16 on q and v.
    /// - mezo-prefix: ε 1e-1, lr 1e-2, 5 prefix tokens.
    /// - lozo: rank 2, ν 50, ε 1e-3, lr 1e-6 (grid {1e-6, 1e-7}).
    /// - lozo-m: lozo with momentum β 0.9.
    ///
    /// All use MeZO's protocol: 20 000 steps, constant lr, dev every 500 steps, Gaussian
    /// directions, q = 1, two-sided.
    pub fn preset(name: &str) -> Result<TrainConfig> {
        let lowrank = |momentum| FamilyConfig::LowRank {
            rank: 2,
            period: 50,
            scale: LowRankScale::Plain,
            momentum,
        };
        let (family, eps, lr) = match name {
            "mezo" => (FamilyConfig::Dense { in_place: false }, 1e-3, 1e-6),
            "mezo-lora" => (
                FamilyConfig::Lora {
                    rank: 8,
                    alpha: 16.0,
                    targets: vec![Slot::Q, Slot::V],
                },
                1e-2,
                1e-4,
            ),
            "mezo-prefix" => (FamilyConfig::Prefix { tokens: 5 }, 1e-1, 1e-2),
            "lozo" => (lowrank(None), 1e-3, 1e-6),
            "lozo-m" => (lowrank(Some(0.9)), 1e-3, 1e-6),
            other => {
                return Err(Error::Config(format!(
                    "unknown preset {other:?}; expected one of {}",
                    PRESETS.join(", ")
                )))
            }
        };
        Ok(TrainConfig {
            preset: Some(name.to_string()),
            family,
            dist: Dist::Gaussian,
            steps: 20_000,
            batch: 16,
            eps,
            lr,
            schedule: LrSchedule::Constant,
            q: 1,
            one_sided: false,
            weight_decay: 0.0,
            seed: 0,
            data_seed: 0,
            task: "sentiment".into(),
            train_limit: None,
            dev_limit: None,
            test_limit: None,
            eval_every: 500,
            eval_batch: 16,
        })
    }

    /// Rejects settings no run can use; the message names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(format!("eps must be a positive number, got {}", self.eps));
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad(format!("lr must be a finite number ≥ 0, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight_decay must be a finite number ≥ 0, got {}",
                self.weight_decay
            ));
        }
        if self.q == 0 {
            return bad("q (directions per step) must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("batch must be at least 1".into());
        }
        if self.eval_batch == 0 {
            return bad("eval_batch must be at least 1".into());
        }
        for (name, v) in [
            ("train_limit", self.train_limit),
            ("dev_limit", self.dev_limit),
            ("test_limit", self.test_limit),
        ] {
            if v == Some(0) {
                return bad(format!("{name} must be at least 1"));
            }
        }
        match &self.family {
            FamilyConfig::LowRank {
                rank,
                period,
                momentum,
                ..
            } => {
                if *rank == 0 {
                    return bad("lowrank rank must be at least 1".into());
                }
                if *period == 0 {
                    return bad("lowrank period (ν) must be at least 1".into());
                }
                if let Some(b) = momentum {
                    if !(0.0..1.0).contains(b) {
                        return bad(format!("lowrank momentum β must be in [0, 1), got {b}"));
                    }
                }
            }
            FamilyConfig::Lora { rank, .. } if *rank == 0 => {
                return bad("lora rank must be at least 1".into())
            }
            FamilyConfig::Prefix { tokens } if *tokens == 0 => {
                return bad("prefix tokens must be at least 1".into())
            }
            FamilyConfig::Dense { in_place: true } if self.one_sided => {
                return bad("the in-place dense estimator is two-sided only".into())
            }
            _ => {}
        }
        Ok(())
    }

    pub fn update_config(&self) -> UpdateConfig {
        UpdateConfig {
            dist: self.dist,
            weight_decay: self.weight_decay,
        }
    }

    /// ν for families that refresh a subspace per period.
    pub fn period(&self) -> Option<u64> {
        match self.family {
            FamilyConfig::LowRank { period, .. } => Some(period),
            _ => None,
        }
    }

    /// Whether the dense family perturbs θ in place (+ε, −2ε, +ε) instead of fused variants.
    pub fn in_place(&self) -> bool {
        matches!(self.family, FamilyConfig::Dense { in_place: true })
    }

    /// Fields of `self` and `other` whose values differ (by their JSON names). `steps` may
    /// differ under a constant lr (a resumed run may be extended), and `preset` always.
    pub fn differences(&self, other: &TrainConfig) -> Vec<String> {
        let a = serde_json::to_value(self).expect("configs serialize");
        let b = serde_json::to_value(other).expect("configs serialize");
        let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
        let mut out = Vec::new();
        for (k, va) in a {
            let vb = &b[k];
            if va == vb {
                continue;
            }
            // A constant-lr run can be extended; linear decay depends on the total.
            if k == "steps" && self.schedule == LrSchedule::Constant {
                continue;
            }
            // Which preset a run started from does not change any setting.
            if k == "preset" {
                continue;
            }
            out.push(format!("{k}: checkpoint has {vb}, this run has {va}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_unknown_ones_are_named() {
        for p in PRESETS {
            TrainConfig::preset(p).unwrap().validate().unwrap();
        }
        let e = TrainConfig::preset("adam").unwrap_err().to_string();
        assert!(e.contains("\"adam\"") && e.contains("lozo-m"), "{e}");
    }

    #[test]
    fn bad_values_are_rejected() {
        let base = TrainConfig::preset("lozo").unwrap();
        for (cfg, field) in [
            (
                TrainConfig {
                    eps: 0.0,
                    ..base.clone()
                },
                "eps",
            ),
            (
                TrainConfig {
                    eps: -1e-3,
                    ..base.clone()
                },
                "eps",
            ),
            (
                TrainConfig {
                    eps: f32::NAN,
                    ..base.clone()
                },
                "eps",
            ),
            (
                TrainConfig {
                    q: 0,
                    ..base.clone()
                },
                "q",
            ),
            (
                TrainConfig {
                    batch: 0,
                    ..base.clone()
                },
                "batch",
            ),
            (
                TrainConfig {
                    lr: -1.0,
                    ..base.clone()
                },
                "lr",
            ),
        ] {
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn config_round_trips_through_json() {
        for p in PRESETS {
            let c = TrainConfig::preset(p).unwrap();
            let s = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<TrainConfig>(&s).unwrap(), c);
        }
    }

    #[test]
    fn differences_name_the_field() {
        let a = TrainConfig::preset("lozo").unwrap();
        let b = TrainConfig {
            lr: 1e-7,
            ..a.clone()
        };
        let d = a.differences(&b);
        assert_eq!(d.len(), 1);
        assert!(d[0].starts_with("lr:"), "{d:?}");
        let c = TrainConfig {
            steps: 5,
            ..a.clone()
        };
        assert!(a.differences(&c).is_empty());
    }
}
