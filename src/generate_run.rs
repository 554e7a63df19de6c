//! `zo-run generate`: completions of a model, or of a trained checkpoint's state, for prompts
//! given on the command line or for a task split, with the task's metric where it has one.

use std::path::PathBuf;

use serde::Serialize;

use crate::backend::decode::Sampling;
use crate::data::{load_split, resolve_task, tokenize_within, TaskKind};
use crate::engine::checkpoint::Checkpoint;
use crate::engine::hash::model_hash;
use crate::engine::objective::{Generator, Judge, Objective};
use crate::engine::replay::replay;
use crate::eval::evaluate_generation;
use crate::generate::{generate, Completion, GenerateStats};
use crate::plan::{TokenizedExample, Variant};
use crate::train::{load_base, open_backend, resolve_device, Device};
use crate::{Error, Result};

/// What `zo-run generate` was asked to do.
#[derive(Debug, Clone)]
pub struct GenerateRun {
    /// Base model directory (default: the checkpoint's).
    pub model: Option<PathBuf>,
    /// Generate from this checkpoint's state (best dev state, or the last with `last`).
    pub checkpoint: Option<PathBuf>,
    pub last: bool,
    /// Prompts to complete; when empty, the task split is completed.
    pub prompts: Vec<String>,
    pub task: String,
    pub data: PathBuf,
    pub split: String,
    pub limit: Option<usize>,
    pub batch: usize,
    /// Overrides of the task's generation settings.
    pub max_new_tokens: Option<usize>,
    pub stop: Option<Vec<String>>,
    pub sampling: Sampling,
    pub device: Device,
}

/// One completion as printed.
#[derive(Debug, Clone, Serialize)]
pub struct CompletionLine {
    pub index: usize,
    pub prompt: String,
    pub completion: String,
    pub ended: &'static str,
    pub new_tokens: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answers: Option<Vec<String>>,
}

/// The summary line.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateSummary {
    pub n: usize,
    pub device: String,
    pub new_tokens: usize,
    pub decode_calls: usize,
    pub seconds: f64,
    /// Generated tokens per second, prefill included.
    pub tokens_per_s: f64,
    pub prompt_tokens: usize,
    pub prefill_tokens_per_s: f64,
    /// Generated tokens per second of the decode calls after the prefill.
    pub decode_tokens_per_s: f64,
    pub ended: std::collections::BTreeMap<&'static str, usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_match: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
}

/// Runs the generation; `each` receives every completion line as it is ready.
pub fn run(r: &GenerateRun, each: &mut dyn FnMut(&CompletionLine)) -> Result<GenerateSummary> {
    if r.batch == 0 {
        return Err(Error::Config("--batch must be at least 1".into()));
    }
    let log = r.checkpoint.as_deref().map(Checkpoint::load).transpose()?;
    let model_dir = match (&r.model, log.as_ref().and_then(|l| l.model_dir.clone())) {
        (Some(m), _) => m.clone(),
        (None, Some(m)) => PathBuf::from(m),
        (None, None) => PathBuf::from("assets/smollm2-135m"),
    };
    let (base, tokenizer) = load_base(&model_dir)?;
    let cfg = match &log {
        Some(l) => {
            let hash = model_hash(&base);
            if hash != l.base_hash {
                return Err(Error::Config(format!(
                    "the checkpoint was trained from base weights {} but {} hashes to {hash}",
                    l.base_hash,
                    model_dir.display()
                )));
            }
            l.config.clone()
        }
        None => crate::engine::TrainConfig::preset("mezo-lora")?,
    };
    let device = resolve_device(r.device, &cfg, false)?;
    let mut backend = open_backend(&base, &cfg, device)?;
    if let Some(l) = &log {
        let upto = match (&l.best, r.last) {
            (Some(b), false) => b.after,
            _ => l.completed,
        };
        replay(&mut backend, &cfg, &l.records, &l.skipped, upto)?;
    }
    let task = resolve_task(&r.task)?;
    let context = base.config.max_position_embeddings;
    let (examples, prompts): (Vec<TokenizedExample>, Vec<String>) = if r.prompts.is_empty() {
        let mut ex = load_split(&r.data, &r.split)?;
        if let Some(n) = r.limit {
            ex.truncate(n);
        }
        let prompts = ex
            .iter()
            .map(|e| task.render(e).map(|x| x.prompt))
            .collect::<Result<Vec<_>>>()?;
        let t = tokenize_within(task.as_ref(), &ex, context, |s, sp| tokenizer.encode(s, sp))?;
        (t, prompts)
    } else {
        let t = r
            .prompts
            .iter()
            .map(|p| {
                Ok(TokenizedExample {
                    prompt: tokenizer.encode(p, true)?,
                    candidates: Vec::new(),
                    gold: 0,
                    answers: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        (t, r.prompts.clone())
    };
    let judge = Judge::new(
        task.as_ref(),
        Objective::Auto,
        &tokenizer,
        &base.config,
        r.max_new_tokens,
    )?;
    let d = task.generation();
    let mut generator = judge.generator.clone().unwrap_or(Generator {
        options: crate::generate::GenerateOptions {
            max_new_tokens: r.max_new_tokens.unwrap_or(d.max_new_tokens),
            stop: d.stop,
            eos: base.config.eos_token_id.into_iter().collect(),
            sampling: Sampling::Greedy,
            context,
        },
        tokenizer: tokenizer.clone(),
    });
    if let Some(s) = &r.stop {
        generator.options.stop = s.clone();
    }
    generator.options.sampling = r.sampling;
    let judged = r.prompts.is_empty() && task.kind() == TaskKind::Generation;
    let mut stats = GenerateStats::default();
    let mut ended = std::collections::BTreeMap::new();
    let (mut em, mut f1) = (None, None);
    let mut report = |i: usize, c: &Completion, ex: &TokenizedExample| {
        *ended.entry(c.ended.name()).or_insert(0) += 1;
        each(&CompletionLine {
            index: i,
            prompt: prompts[i].clone(),
            completion: c.text.clone(),
            ended: c.ended.name(),
            new_tokens: c.tokens.len(),
            answers: (!ex.answers.is_empty()).then(|| ex.answers.clone()),
        });
    };
    if judged {
        let g = evaluate_generation(&backend, &examples, r.batch, &generator)?;
        for (i, (c, ex)) in g.completions.iter().zip(&examples).enumerate() {
            report(i, c, ex);
        }
        stats = g.stats;
        em = Some(g.exact_match);
        f1 = Some(g.f1);
    } else {
        for (k, chunk) in examples.chunks(r.batch).enumerate() {
            let p: Vec<Vec<u32>> = chunk.iter().map(|e| e.prompt.clone()).collect();
            let tok = &generator.tokenizer;
            let (done, st) = generate(
                &backend,
                &p,
                &vec![0; p.len()],
                &[Variant::BASE],
                &generator.options,
                &|ids| tok.decode(ids, true),
            )?;
            for (j, (c, ex)) in done.iter().zip(chunk).enumerate() {
                report(k * r.batch + j, c, ex);
            }
            stats.add(&st);
        }
    }
    Ok(GenerateSummary {
        n: examples.len(),
        device: match device {
            Device::Cuda(_) => "cuda".into(),
            Device::Emulated(_) => "emu".into(),
            _ => "cpu".into(),
        },
        new_tokens: stats.new_tokens,
        decode_calls: stats.decode_calls,
        seconds: stats.seconds,
        tokens_per_s: stats.tokens_per_s(),
        prompt_tokens: stats.prompt_tokens,
        prefill_tokens_per_s: stats.prefill_tokens_per_s(),
        decode_tokens_per_s: stats.decode_tokens_per_s(),
        ended,
        exact_match: em,
        f1,
    })
}
