//! Zero-shot evaluation of a model on a task split.
//!
//! [`evaluate`] is the core: it packs tokenized examples into plans of `batch` examples,
//! scores them on any [`Backend`], and accumulates accuracy and MeZO's classification loss.
//! [`run`] wires it to files on disk: model directory, task, data split, CPU backend.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backend::Backend;
use crate::data::{answer_metrics, load_split, resolve_task, tokenize_within, TaskKind};
use crate::engine::objective::{Generator, Judge, Objective};
use crate::generate::{Completion, Ended, GenerateStats};
use crate::plan::{Plan, TokenizedExample, Variant};
use crate::{Error, Result};

/// Running totals, reported after every batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalProgress {
    pub done: usize,
    pub total: usize,
    pub correct: usize,
    /// Packed tokens fed to the backend so far.
    pub tokens: usize,
    pub elapsed: Duration,
}

impl EvalProgress {
    pub fn accuracy(&self) -> f64 {
        if self.done == 0 {
            0.0
        } else {
            self.correct as f64 / self.done as f64
        }
    }

    pub fn tokens_per_s(&self) -> f64 {
        per_second(self.tokens, self.elapsed)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub mean_loss: f64,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
    /// Predicted candidate of each example, in input order.
    pub predictions: Vec<usize>,
    /// Classification loss of each example, in input order.
    pub losses: Vec<f32>,
}

fn per_second(n: usize, t: Duration) -> f64 {
    let s = t.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// Scores `examples` on `backend` in plans of at most `batch` examples, unperturbed.
pub fn evaluate(
    backend: &dyn Backend,
    examples: &[TokenizedExample],
    batch: usize,
    progress: &mut dyn FnMut(&EvalProgress),
) -> Result<EvalResult> {
    if batch == 0 {
        return Err(Error::Data("eval: batch size must be at least 1".into()));
    }
    if examples.is_empty() {
        return Err(Error::Data("eval: no examples to evaluate".into()));
    }
    let start = Instant::now();
    let mut state = EvalProgress {
        done: 0,
        total: examples.len(),
        correct: 0,
        tokens: 0,
        elapsed: Duration::ZERO,
    };
    let mut predictions = Vec::with_capacity(examples.len());
    let mut losses = Vec::with_capacity(examples.len());
    let mut loss_sum = 0f64;
    for chunk in examples.chunks(batch) {
        let plan = Plan::build(chunk, &[Variant::BASE]).map_err(|e| match e {
            // Plan errors count examples within the chunk; point at the whole input instead.
            Error::Data(m) => Error::Data(format!(
                "eval batch starting at example {}: {m}",
                state.done
            )),
            other => other,
        })?;
        let scores = backend.score(&plan)?;
        if scores.examples.len() != chunk.len() {
            return Err(Error::Data(format!(
                "backend {} returned {} example scores for a plan of {} examples",
                backend.name(),
                scores.examples.len(),
                chunk.len()
            )));
        }
        for (ex, s) in chunk.iter().zip(&scores.examples) {
            state.correct += usize::from(s.pred == ex.gold);
            loss_sum += s.loss as f64;
            predictions.push(s.pred);
            losses.push(s.loss);
        }
        state.done += chunk.len();
        state.tokens += plan.n_tokens();
        state.elapsed = start.elapsed();
        progress(&state);
    }
    let n = examples.len();
    Ok(EvalResult {
        n,
        correct: state.correct,
        accuracy: state.correct as f64 / n as f64,
        mean_loss: loss_sum / n as f64,
        tokens: state.tokens,
        seconds: state.elapsed.as_secs_f64(),
        tokens_per_s: state.tokens_per_s(),
        predictions,
        losses,
    })
}

/// Exact match and F1 of greedy generations against each example's reference answers.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationEval {
    pub n: usize,
    pub exact_match: f64,
    pub f1: f64,
    /// How many generations ended each way (eos, stop, max_tokens, context).
    pub ended: std::collections::BTreeMap<&'static str, usize>,
    pub stats: GenerateStats,
    pub completions: Vec<Completion>,
}

/// Generates a completion of every example, `batch` prompts per decode batch, unperturbed.
pub fn evaluate_generation(
    backend: &dyn Backend,
    examples: &[TokenizedExample],
    batch: usize,
    generator: &Generator,
) -> Result<GenerationEval> {
    if batch == 0 {
        return Err(Error::Data("eval: batch size must be at least 1".into()));
    }
    if examples.is_empty() {
        return Err(Error::Data("eval: no examples to evaluate".into()));
    }
    let mut stats = GenerateStats::default();
    let mut completions = Vec::with_capacity(examples.len());
    let (mut em, mut f1) = (0f64, 0f64);
    let mut ended = std::collections::BTreeMap::new();
    for chunk in examples.chunks(batch) {
        let refs: Vec<&TokenizedExample> = chunk.iter().collect();
        let (done, st) =
            generator.complete(backend, &refs, &vec![0; refs.len()], &[Variant::BASE])?;
        for (c, ex) in done.iter().zip(chunk) {
            em += answer_metrics::exact_match(&c.text, &ex.answers);
            f1 += answer_metrics::token_f1(&c.text, &ex.answers);
            *ended.entry(c.ended.name()).or_insert(0) += 1;
        }
        completions.extend(done);
        stats.add(&st);
    }
    let n = examples.len();
    Ok(GenerationEval {
        n,
        exact_match: em / n as f64,
        f1: f1 / n as f64,
        ended,
        stats,
        completions,
    })
}

/// A task's own score of the backend's current state: accuracy over the candidates for label
/// and choice tasks; F1 of greedy generations for generation tasks (with exact match beside
/// it), whose loss is the LM loss of the first reference answer.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskScore {
    /// `accuracy` or `f1`.
    pub metric_name: &'static str,
    pub metric: f64,
    pub loss: f64,
    pub generation: Option<GenerationEval>,
}

pub fn evaluate_task(
    backend: &dyn Backend,
    examples: &[TokenizedExample],
    batch: usize,
    judge: &Judge,
) -> Result<TaskScore> {
    let scored = evaluate(backend, examples, batch, &mut |_| {})?;
    if judge.kind != TaskKind::Generation {
        return Ok(TaskScore {
            metric_name: judge.metric_name(),
            metric: scored.accuracy,
            loss: scored.mean_loss,
            generation: None,
        });
    }
    let g = evaluate_generation(backend, examples, batch, judge.generator()?)?;
    Ok(TaskScore {
        metric_name: judge.metric_name(),
        metric: g.f1,
        loss: scored.mean_loss,
        generation: Some(g),
    })
}

/// [`evaluate_task`] with `examples` split among `comm`'s ranks: each rank evaluates its
/// contiguous share, the ranks gather every example's loss, correctness, exact match and F1,
/// and each aggregates them in the one-rank order, so every rank gets the score of one rank
/// bit for bit. The generation's timing stats are this rank's own.
pub fn evaluate_task_on(
    backend: &dyn Backend,
    examples: &[TokenizedExample],
    batch: usize,
    judge: &Judge,
    comm: &dyn crate::dist::Comm,
) -> Result<TaskScore> {
    let size = comm.size();
    if size == 1 {
        return evaluate_task(backend, examples, batch, judge);
    }
    if examples.len() < size {
        return Err(Error::Distributed(format!(
            "{size} ranks but {} examples to evaluate: each rank needs at least one; use a              larger split or fewer ranks",
            examples.len()
        )));
    }
    let mine = &examples[crate::dist::shard(examples.len(), comm.rank(), size)];
    let scored = evaluate(backend, mine, batch, &mut |_| {})?;
    let generated = if judge.kind == TaskKind::Generation {
        Some(evaluate_generation(
            backend,
            mine,
            batch,
            judge.generator()?,
        )?)
    } else {
        None
    };
    let mut local = Vec::with_capacity(mine.len() * PER_EXAMPLE);
    for (i, ex) in mine.iter().enumerate() {
        let (em, f1, ended) = match &generated {
            Some(g) => {
                let c = &g.completions[i];
                (
                    answer_metrics::exact_match(&c.text, &ex.answers),
                    answer_metrics::token_f1(&c.text, &ex.answers),
                    ENDED.iter().position(|e| *e == c.ended).unwrap_or(0) as f32,
                )
            }
            None => (0.0, 0.0, 0.0),
        };
        local.push(scored.losses[i]);
        local.push(f32::from(u8::from(scored.predictions[i] == ex.gold)));
        local.extend(f64_bits(em));
        local.extend(f64_bits(f1));
        local.push(ended);
    }
    let counts: Vec<usize> = crate::dist::shard_counts(examples.len(), size)
        .iter()
        .map(|c| c * PER_EXAMPLE)
        .collect();
    let all = comm.all_gather(&local, &counts, "evaluation scores")?;
    let n = examples.len();
    let (mut loss, mut correct, mut em, mut f1) = (0f64, 0usize, 0f64, 0f64);
    let mut ended = std::collections::BTreeMap::new();
    for e in all.chunks(PER_EXAMPLE) {
        loss += e[0] as f64;
        correct += usize::from(e[1] == 1.0);
        em += f64_from_bits(e[2], e[3]);
        f1 += f64_from_bits(e[4], e[5]);
        *ended.entry(ENDED[e[6] as usize].name()).or_insert(0) += 1;
    }
    let mean_loss = loss / n as f64;
    Ok(match generated {
        None => TaskScore {
            metric_name: judge.metric_name(),
            metric: correct as f64 / n as f64,
            loss: mean_loss,
            generation: None,
        },
        Some(g) => TaskScore {
            metric_name: judge.metric_name(),
            metric: f1 / n as f64,
            loss: mean_loss,
            generation: Some(GenerationEval {
                n,
                exact_match: em / n as f64,
                f1: f1 / n as f64,
                ended,
                ..g
            }),
        },
    })
}

/// Values each example contributes to a distributed evaluation: loss, correct, exact match
/// and F1 (two values each, their bits) and how its generation ended.
const PER_EXAMPLE: usize = 7;

const ENDED: [Ended; 4] = [Ended::Eos, Ended::Stop, Ended::MaxTokens, Ended::Context];

/// An f64 carried exactly as two f32 bit patterns.
fn f64_bits(x: f64) -> [f32; 2] {
    let b = x.to_bits();
    [f32::from_bits((b >> 32) as u32), f32::from_bits(b as u32)]
}

fn f64_from_bits(hi: f32, lo: f32) -> f64 {
    f64::from_bits(((hi.to_bits() as u64) << 32) | lo.to_bits() as u64)
}

/// What `zo-run eval` was asked to do.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub model: PathBuf,
    /// `sentiment` or a task spec JSON file.
    pub task: String,
    pub data: PathBuf,
    pub split: String,
    pub limit: Option<usize>,
    pub batch: usize,
    /// Generation tasks: the token budget instead of the task's.
    pub max_new_tokens: Option<usize>,
}

/// The one JSON line `zo-run eval` prints.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub task: String,
    pub split: String,
    pub n: usize,
    /// Label and choice tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// The task's loss: classification loss, or a generation task's LM loss on its first
    /// reference answer.
    pub mean_loss: f64,
    /// Generation tasks: exact match and F1 of greedy generations, how they ended, and the
    /// decode rate (generated tokens per second, prefill included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_match: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<std::collections::BTreeMap<&'static str, usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_tokens_per_s: Option<f64>,
    /// Generated tokens per second of the decode calls after the prefill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_tokens_per_s: Option<f64>,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
}

const FETCH_HINT: &str = "run tools/fetch-assets to download the default model and data";

/// Loads model, tokenizer, task and split from disk and evaluates on the CPU backend, with a
/// progress bar on stderr when `show_progress` is set.
pub fn run(opts: &EvalOptions, show_progress: bool) -> Result<EvalReport> {
    let missing = |path: &Path, what: &str, flag: &str| {
        Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{what} not found: {FETCH_HINT}, or pass {flag}"),
            ),
        )
    };
    let config = opts.model.join("config.json");
    if !config.is_file() {
        return Err(missing(&config, "model", "--model DIR"));
    }
    if !opts.data.is_dir() {
        return Err(missing(&opts.data, "data directory", "--data DIR"));
    }
    let task = resolve_task(&opts.task)?;
    let mut examples = load_split(&opts.data, &opts.split).map_err(|e| match e {
        Error::Data(m) if m.contains("not found") => Error::Data(format!("{m}: {FETCH_HINT}")),
        other => other,
    })?;
    if let Some(limit) = opts.limit {
        if limit == 0 {
            return Err(Error::Data("--limit must be at least 1".into()));
        }
        examples.truncate(limit);
    }

    let (backend, tokenizer) = load_cpu(&opts.model)?;
    let config = backend.model().config.clone();
    let tokenized = tokenize_within(
        task.as_ref(),
        &examples,
        config.max_position_embeddings,
        |text, special| tokenizer.encode(text, special),
    )?;

    let bar = progress_bar(tokenized.len() as u64, show_progress);
    let result = evaluate(&backend, &tokenized, opts.batch, &mut |p| {
        bar.set_position(p.done as u64);
        bar.set_message(format!(
            "acc {:.3} | {:.0} tok/s",
            p.accuracy(),
            p.tokens_per_s()
        ));
    })?;
    bar.finish_and_clear();
    let generated = if task.kind() == TaskKind::Generation {
        let judge = Judge::new(
            task.as_ref(),
            Objective::Auto,
            &tokenizer,
            &config,
            opts.max_new_tokens,
        )?;
        Some(evaluate_generation(
            &backend,
            &tokenized,
            opts.batch,
            judge.generator()?,
        )?)
    } else {
        None
    };

    Ok(EvalReport {
        model: opts.model.display().to_string(),
        task: task.name().to_string(),
        split: opts.split.clone(),
        n: result.n,
        // A generation task's one candidate is its target: accuracy over it means nothing.
        accuracy: generated.is_none().then_some(result.accuracy),
        mean_loss: result.mean_loss,
        exact_match: generated.as_ref().map(|g| g.exact_match),
        f1: generated.as_ref().map(|g| g.f1),
        ended: generated.as_ref().map(|g| g.ended.clone()),
        generated_tokens_per_s: generated.as_ref().map(|g| g.stats.tokens_per_s()),
        decode_tokens_per_s: generated.as_ref().map(|g| g.stats.decode_tokens_per_s()),
        tokens: result.tokens,
        seconds: result.seconds,
        tokens_per_s: result.tokens_per_s,
    })
}

/// The model and tokenizer calls, kept in one place.
fn load_cpu(
    dir: &Path,
) -> Result<(
    crate::backend::cpu::CpuBackend,
    crate::io::tokenizer::Tokenizer,
)> {
    let tokenizer = crate::io::tokenizer::Tokenizer::from_dir(dir)?;
    let model = crate::model::load::load_model(dir)?;
    tokenizer.check_model(&model.config)?;
    Ok((crate::backend::cpu::CpuBackend::new(model), tokenizer))
}

fn progress_bar(len: u64, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} examples | {msg}",
        )
        .expect("progress template is valid")
        .progress_chars("=> "),
    );
    bar
}
