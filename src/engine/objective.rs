//! Objectives: the scalar loss a ZO step differences.
//!
//! - `classification`: MeZO's loss, cross-entropy over the candidates' mean token log-probs
//!   (label and choice tasks).
//! - `lm`: the negative mean log-prob of the target tokens given the prompt (teacher forced):
//!   SFT on prompt/response pairs, or the answer of a QA example. Plans express it as an
//!   example with one candidate, the target (see [`crate::plan::classification_scores`]).
//! - `em`, `f1`, `accuracy`: non-differentiable, on greedily generated text. Each example's
//!   loss is 1 − its metric, so g is the difference of the metric under θ+εZ and θ−εZ over
//!   2ε; ZO needs nothing more. `em` and `f1` (SQuAD's normalization) judge a generation
//!   task's reference answers; `accuracy` judges a generated label against a label or choice
//!   task's gold candidate.

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::data::{answer_metrics, TaskKind};
use crate::generate::{generate, Completion, GenerateOptions, GenerateStats};
use crate::io::tokenizer::Tokenizer;
use crate::plan::TokenizedExample;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// `classification` for label and choice tasks, `lm` for generation tasks.
    #[default]
    Auto,
    Classification,
    Lm,
    Em,
    F1,
    Accuracy,
}

pub const OBJECTIVES: [&str; 6] = ["auto", "classification", "lm", "em", "f1", "accuracy"];

impl Objective {
    pub fn parse(s: &str) -> Result<Objective> {
        Ok(match s {
            "auto" => Objective::Auto,
            "classification" => Objective::Classification,
            "lm" => Objective::Lm,
            "em" => Objective::Em,
            "f1" => Objective::F1,
            "accuracy" => Objective::Accuracy,
            other => {
                return Err(Error::Config(format!(
                    "unknown objective {other:?}; expected one of {}",
                    OBJECTIVES.join(", ")
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Objective::Auto => "auto",
            Objective::Classification => "classification",
            Objective::Lm => "lm",
            Objective::Em => "em",
            Objective::F1 => "f1",
            Objective::Accuracy => "accuracy",
        }
    }

    /// The objective a run on a task of `kind` optimizes; an objective the task cannot judge
    /// is an error that says which would do.
    pub fn resolve(self, kind: TaskKind, task: &str) -> Result<Objective> {
        let refuse = |why: &str| {
            Err(Error::Config(format!(
                "--objective {}: task {task:?} is a {} task; {why}",
                self.name(),
                kind.name()
            )))
        };
        match (self, kind) {
            (Objective::Auto, TaskKind::Generation) => Ok(Objective::Lm),
            (Objective::Auto, _) => Ok(Objective::Classification),
            (Objective::Classification, TaskKind::Generation) => {
                refuse("it has no candidates to classify (use lm, em or f1)")
            }
            (Objective::Em | Objective::F1, TaskKind::Classification | TaskKind::Choice) => refuse(
                "it has no reference answers to compare with (use accuracy for a generated label)",
            ),
            (Objective::Accuracy, TaskKind::Generation) => {
                refuse("accuracy judges a generated label; for reference answers use em or f1")
            }
            (o, _) => Ok(o),
        }
    }

    /// Whether the loss comes from generated text rather than from scored candidates.
    pub fn generates(self) -> bool {
        matches!(self, Objective::Em | Objective::F1 | Objective::Accuracy)
    }

    /// A training example as this objective scores it: the LM loss keeps only the target (the
    /// gold candidate), every other objective the example as it is.
    pub fn prepare(self, mut ex: TokenizedExample) -> TokenizedExample {
        if self == Objective::Lm {
            ex.candidates = vec![ex.candidates.swap_remove(ex.gold)];
            ex.gold = 0;
        }
        ex
    }

    /// The metric of one generated text against an example's answers, in [0, 1].
    pub fn metric(self, text: &str, answers: &[String]) -> f64 {
        match self {
            Objective::F1 => answer_metrics::token_f1(text, answers),
            _ => answer_metrics::exact_match(text, answers),
        }
    }
}

/// What generating and judging text needs: the options and the tokenizer that decodes.
#[derive(Debug, Clone)]
pub struct Generator {
    pub options: GenerateOptions,
    pub tokenizer: Tokenizer,
}

impl Generator {
    /// Greedy completions of `examples` under the backend's current weights, in order.
    pub fn complete(
        &self,
        backend: &dyn Backend,
        examples: &[&TokenizedExample],
        seq_variant: &[u32],
        variants: &[crate::plan::Variant],
    ) -> Result<(Vec<Completion>, GenerateStats)> {
        let prompts: Vec<Vec<u32>> = examples.iter().map(|e| e.prompt.clone()).collect();
        let tok = &self.tokenizer;
        generate(
            backend,
            &prompts,
            seq_variant,
            variants,
            &self.options,
            &|ids| tok.decode(ids, true),
        )
    }
}

/// How a run's task is judged: its kind, the objective it trains (resolved), and the
/// generator for generation tasks and generated objectives.
#[derive(Debug, Clone)]
pub struct Judge {
    pub kind: TaskKind,
    pub objective: Objective,
    pub generator: Option<Generator>,
}

impl Default for Judge {
    /// A label task trained and judged by its candidates (no text is generated).
    fn default() -> Judge {
        Judge {
            kind: TaskKind::Classification,
            objective: Objective::Classification,
            generator: None,
        }
    }
}

impl Judge {
    /// The judge of `task` under `objective`: a generator (greedy, the task's stop strings and
    /// token budget unless `max_new_tokens` overrides it) when anything is generated.
    pub fn new(
        task: &dyn crate::data::Task,
        objective: Objective,
        tokenizer: &Tokenizer,
        model: &crate::model::ModelConfig,
        max_new_tokens: Option<usize>,
    ) -> Result<Judge> {
        let kind = task.kind();
        let objective = objective.resolve(kind, task.name())?;
        let needs_text = kind == TaskKind::Generation || objective.generates();
        let generator = needs_text.then(|| {
            let d = task.generation();
            Generator {
                options: GenerateOptions {
                    max_new_tokens: max_new_tokens.unwrap_or(d.max_new_tokens),
                    stop: d.stop,
                    eos: model.eos_token_id.into_iter().collect(),
                    sampling: crate::backend::decode::Sampling::Greedy,
                    context: model.max_position_embeddings,
                },
                tokenizer: tokenizer.clone(),
            }
        });
        Ok(Judge {
            kind,
            objective,
            generator,
        })
    }

    /// The task's own metric: `f1` for generation tasks, `accuracy` otherwise.
    pub fn metric_name(&self) -> &'static str {
        if self.kind == TaskKind::Generation {
            "f1"
        } else {
            "accuracy"
        }
    }

    /// The generator, or an error saying the run has none.
    pub fn generator(&self) -> Result<&Generator> {
        self.generator.as_ref().ok_or_else(|| {
            Error::Config(format!(
                "objective {} on a {} task generates no text",
                self.objective.name(),
                self.kind.name()
            ))
        })
    }
}

/// Per-example losses (1 − metric) of a step's (variant, example) `pairs`, in their order, all
/// decoded in one batch.
pub fn generated_losses(
    backend: &dyn Backend,
    objective: Objective,
    generator: &Generator,
    batch: &[TokenizedExample],
    variants: &[crate::plan::Variant],
    pairs: &[crate::plan::Pair],
) -> Result<(Vec<f32>, GenerateStats)> {
    let refs: Vec<&TokenizedExample> = pairs.iter().map(|p| &batch[p.example]).collect();
    let seq_variant: Vec<u32> = pairs.iter().map(|p| p.variant as u32).collect();
    let (done, stats) = generator.complete(backend, &refs, &seq_variant, variants)?;
    let losses = done
        .iter()
        .zip(&refs)
        .map(|(c, ex)| (1.0 - objective.metric(&c.text, &ex.answers)) as f32)
        .collect();
    Ok((losses, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objectives_fit_their_tasks() {
        let r = |o: Objective, k| o.resolve(k, "t");
        assert_eq!(
            r(Objective::Auto, TaskKind::Generation).unwrap(),
            Objective::Lm
        );
        assert_eq!(
            r(Objective::Auto, TaskKind::Choice).unwrap(),
            Objective::Classification
        );
        assert_eq!(
            r(Objective::F1, TaskKind::Generation).unwrap(),
            Objective::F1
        );
        let e = r(Objective::F1, TaskKind::Classification)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no reference answers"), "{e}");
        assert!(r(Objective::Classification, TaskKind::Generation).is_err());
        assert!(r(Objective::Accuracy, TaskKind::Generation).is_err());
        assert_eq!(Objective::parse("em").unwrap(), Objective::Em);
        assert!(Objective::parse("bleu").is_err());
    }

    #[test]
    fn lm_keeps_only_the_target() {
        let ex = TokenizedExample {
            prompt: vec![1],
            candidates: vec![vec![2], vec![3, 4]],
            gold: 1,
            answers: vec![],
        };
        let p = Objective::Lm.prepare(ex.clone());
        assert_eq!((p.candidates, p.gold), (vec![vec![3, 4]], 0));
        assert_eq!(Objective::Classification.prepare(ex.clone()), ex);
    }
}
