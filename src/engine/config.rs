//! The full description of a training run (serialized into every checkpoint) and the
//! presets that mirror the papers' settings.

use serde::{Deserialize, Serialize};

use crate::model::Slot;
use crate::perturb::step_rule::StepRule;
use crate::perturb::{Dist, FamilyConfig, LowRankScale, UpdateConfig};
use crate::{Error, Result};

/// How the learning rate moves over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    Constant,
    /// Linear decay from `lr` after the warm-up to 0 at step `steps`.
    Linear,
    /// Half-cosine decay from `lr` after the warm-up to 0 at step `steps`.
    Cosine,
}

/// Names accepted by `--schedule`.
pub const SCHEDULES: [&str; 3] = ["constant", "linear", "cosine"];

impl LrSchedule {
    pub fn parse(name: &str) -> Result<LrSchedule> {
        match name {
            "constant" => Ok(LrSchedule::Constant),
            "linear" => Ok(LrSchedule::Linear),
            "cosine" => Ok(LrSchedule::Cosine),
            other => Err(Error::Config(format!(
                "unknown schedule {other:?}; expected one of {}",
                SCHEDULES.join(", ")
            ))),
        }
    }
}

/// How the projected gradients of a step become the update. Every choice is a pure function
/// of the seed log (and, for the stateful ones, of the updates before it), so runs replay
/// and resume exactly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Optimizer {
    /// ZO-SGD: θ ← θ − lr·Σ_d g_d·Z_d/q.
    #[default]
    Sgd,
    /// ZO-SGD with heavy-ball momentum on the trained state.
    Momentum { beta: f32 },
    /// ZO-Adam: Adam moments of the direction estimate on the trained state.
    Adam { beta1: f32, beta2: f32, eps: f32 },
    /// sign-ZO: each g_d is replaced by its sign.
    Sign,
    /// FZOO: one-sided estimates over q ≥ 2 directions, each g_d = (L_d − L₀)/σ where σ is
    /// the standard deviation of the q perturbed losses (a step normalized by their spread).
    Fzoo,
}

/// Names accepted by `--optimizer`.
pub const OPTIMIZERS: [&str; 5] = ["sgd", "momentum", "adam", "sign", "fzoo"];

impl Optimizer {
    /// The optimizer called `name`; `beta` sets momentum's β and Adam's β₁ when given.
    pub fn parse(name: &str, beta: Option<f32>) -> Result<Optimizer> {
        if beta.is_some() && matches!(name, "sgd" | "sign" | "fzoo") {
            return Err(Error::Config(format!(
                "--beta applies to the momentum and adam optimizers, not {name}"
            )));
        }
        Ok(match name {
            "sgd" => Optimizer::Sgd,
            "momentum" => Optimizer::Momentum {
                beta: beta.unwrap_or(0.9),
            },
            "adam" => Optimizer::Adam {
                beta1: beta.unwrap_or(0.9),
                beta2: 0.999,
                eps: 1e-8,
            },
            "sign" => Optimizer::Sign,
            "fzoo" => Optimizer::Fzoo,
            other => {
                return Err(Error::Config(format!(
                    "unknown optimizer {other:?}; expected one of {}",
                    OPTIMIZERS.join(", ")
                )))
            }
        })
    }

    /// The state-keeping rule the families apply (sign and FZOO only rescale g).
    pub fn step_rule(&self) -> StepRule {
        match *self {
            Optimizer::Momentum { beta } => StepRule::Momentum { beta },
            Optimizer::Adam { beta1, beta2, eps } => StepRule::Adam { beta1, beta2, eps },
            Optimizer::Sgd | Optimizer::Sign | Optimizer::Fzoo => StepRule::Sgd,
        }
    }
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
    /// Steps of linear warm-up from lr/warmup to lr before the schedule's decay.
    #[serde(default)]
    pub warmup: u64,
    /// How g becomes the update.
    #[serde(default)]
    pub optimizer: Optimizer,
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
    /// The loss each step differences (resolved against the task's kind at load time).
    #[serde(default)]
    pub objective: super::objective::Objective,
    /// Token budget of generated text (generated objectives, generation tasks' evaluation);
    /// None takes the task's.
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
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

/// The default run's learning rate and CPU length, chosen on dev (BENCHMARKS.md).
const DEFAULT_RUN_LR: f32 = 2e-5;
const DEFAULT_RUN_CPU_STEPS: u64 = 100;

/// Parameters of the model the papers tuned their presets on (OPT-13B).
const PRESET_PARAMS: f64 = 13e9;

/// How much larger a learning rate a model of `n_params` takes than the presets' OPT-13B:
/// √(13e9/n), between 1 and 10. Two dev measurements fix it: the papers' 1e-6 on OPT-13B and,
/// for LoZO on SmolLM2-135M, a best dev learning rate of 1e-5 to 2e-5 (BENCHMARKS.md). A
/// square root is the gentlest rule through both; it is a starting point for a sweep, not a
/// substitute for one.
pub fn lr_scale(n_params: u64) -> f64 {
    (PRESET_PARAMS / n_params.max(1) as f64)
        .sqrt()
        .clamp(1.0, 10.0)
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
            warmup: 0,
            optimizer: Optimizer::Sgd,
            objective: Default::default(),
            max_new_tokens: None,
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

    /// A preset with its learning rate sized for a model of `n_params` parameters (see
    /// [`lr_scale`]); ε and every other field stay as the preset has them.
    pub fn preset_for(name: &str, n_params: u64) -> Result<TrainConfig> {
        let mut c = TrainConfig::preset(name)?;
        c.lr = (c.lr as f64 * lr_scale(n_params)) as f32;
        Ok(c)
    }

    /// What `zo-run` runs without arguments: LoZO on the default model and task with the
    /// learning rate the dev sweep chose for it (BENCHMARKS.md, "Accuracy"). On the CPU it is
    /// sized to finish in minutes on two cores and still move dev accuracy; on a GPU it runs
    /// MeZO's protocol on the full dev and test splits.
    pub fn default_run(gpu: bool) -> TrainConfig {
        let mut c = TrainConfig::preset("lozo").expect("lozo is a preset");
        c.lr = DEFAULT_RUN_LR;
        if gpu {
            c.steps = 4000;
            c.eval_every = 500;
        } else {
            c.steps = DEFAULT_RUN_CPU_STEPS;
            c.eval_every = 50;
            c.dev_limit = Some(200);
            c.test_limit = Some(200);
        }
        c
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
        self.optimizer.step_rule().validate()?;
        if self.in_place() && self.objective.generates() {
            return Err(Error::Config(format!(
                "objective {} generates text under each variant, which needs the variants in \
                 one batch; the in-place dense estimator has them one at a time (use the fused \
                 dense family or another one)",
                self.objective.name()
            )));
        }
        match self.optimizer {
            Optimizer::Fzoo if !self.one_sided || self.q < 2 => {
                return bad(format!(
                    "optimizer fzoo needs one-sided estimates over q ≥ 2 directions \
                     (got one_sided {}, q {}): add --one-sided --q 8",
                    self.one_sided, self.q
                ));
            }
            Optimizer::Momentum { .. } | Optimizer::Adam { .. }
                if matches!(self.family, FamilyConfig::LowRank { .. }) =>
            {
                return bad(
                    "optimizer momentum/adam keeps moments of the trained state, which the \
                     lowrank family does not have; use lowrank's own momentum (preset lozo-m)"
                        .into(),
                );
            }
            Optimizer::Momentum { .. } | Optimizer::Adam { .. } if self.in_place() => {
                return bad(
                    "optimizer momentum/adam needs the fused dense family, not the \
                     in-place one"
                        .into(),
                );
            }
            _ => {}
        }
        if self.warmup > 0 && self.warmup >= self.steps {
            return bad(format!(
                "warmup ({}) must be shorter than the run ({} steps)",
                self.warmup, self.steps
            ));
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
            rule: self.optimizer.step_rule(),
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
    /// Fields added after a checkpoint was written compare at their defaults.
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
            // A constant-lr run can be extended; a decay depends on the total.
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
    fn preset_lr_grows_for_small_models_only() {
        let big = TrainConfig::preset_for("lozo", 13_000_000_000).unwrap();
        assert_eq!(big, TrainConfig::preset("lozo").unwrap());
        let small = TrainConfig::preset_for("lozo", 134_515_008).unwrap();
        assert!((small.lr / 1e-6 - 9.83).abs() < 0.01, "{}", small.lr);
        assert_eq!(small.eps, 1e-3);
        let tiny = TrainConfig::preset_for("mezo-lora", 1_000_000).unwrap();
        assert!((tiny.lr - 1e-3).abs() < 1e-9, "{}", tiny.lr);
        let huge = TrainConfig::preset_for("mezo", 70_000_000_000).unwrap();
        assert_eq!(huge.lr, 1e-6);
    }

    #[test]
    fn default_run_is_valid_on_both_devices() {
        for gpu in [false, true] {
            TrainConfig::default_run(gpu).validate().unwrap();
        }
        assert!(TrainConfig::default_run(false).dev_limit.unwrap() >= 200);
        assert!(TrainConfig::default_run(true).steps >= 1000);
    }

    #[test]
    fn unknown_optimizer_and_schedule_list_the_valid_names() {
        let e = Optimizer::parse("lion", None).unwrap_err().to_string();
        assert!(
            OPTIMIZERS.iter().all(|n| e.contains(n)) && e.contains("lion"),
            "{e}"
        );
        let e = LrSchedule::parse("step").unwrap_err().to_string();
        assert!(SCHEDULES.iter().all(|n| e.contains(n)), "{e}");
        assert_eq!(LrSchedule::parse("cosine").unwrap(), LrSchedule::Cosine);
        assert!(Optimizer::parse("sign", Some(0.9)).is_err());
        assert_eq!(
            Optimizer::parse("momentum", Some(0.5)).unwrap(),
            Optimizer::Momentum { beta: 0.5 }
        );
    }

    #[test]
    fn optimizers_check_what_they_need() {
        let mut c = TrainConfig::preset("mezo-lora").unwrap();
        c.optimizer = Optimizer::Fzoo;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("--one-sided"), "{e}");
        c.one_sided = true;
        c.q = 4;
        c.validate().unwrap();
        c.optimizer = Optimizer::Adam {
            beta1: 1.5,
            beta2: 0.999,
            eps: 1e-8,
        };
        assert!(c.validate().unwrap_err().to_string().contains("β1"));
        let mut l = TrainConfig::preset("lozo").unwrap();
        l.optimizer = Optimizer::Momentum { beta: 0.9 };
        assert!(l.validate().unwrap_err().to_string().contains("lozo-m"));
        let mut w = TrainConfig::preset("lozo").unwrap();
        w.warmup = w.steps;
        assert!(w.validate().unwrap_err().to_string().contains("warmup"));
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
