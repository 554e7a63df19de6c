//! The training loop: sample → plan → score → loss differences → update → log/eval.
//!
//! MeZO's protocol: the batch of step `s` is a pure function of (data seed, s) (see
//! [`crate::zo::seeds::batch_indices`]); dev accuracy every `eval_every` steps selects the
//! best state, which is recovered at the end by replaying the seed log up to it (no weight
//! snapshots), and the test accuracy reported is that of the best state.
//!
//! Checkpoints are seed logs ([`Checkpoint`]); resuming replays the log onto fresh base
//! weights and continues, so a resumed run ends bit for bit where an uninterrupted one does.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use crate::eval::evaluate;
use crate::plan::TokenizedExample;
use crate::zo::checkpoint::{Checkpoint, DevPoint, SkippedStep};
use crate::zo::config::TrainConfig;
use crate::zo::estimator::estimate;
use crate::zo::replay::{replay, ZoBackend};
use crate::zo::schedule::lr_at;
use crate::zo::seeds::{batch_indices, period_seed};
use crate::{Error, Result};

/// Tokenized splits of a run.
#[derive(Debug, Clone)]
pub struct TrainData {
    pub train: Vec<TokenizedExample>,
    pub dev: Vec<TokenizedExample>,
    pub test: Vec<TokenizedExample>,
}

/// How a run is carried out; none of this changes the trained state.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Seed-log checkpoint path (also read by `--resume` when it is the same file).
    pub checkpoint: Option<PathBuf>,
    /// Write the checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// JSONL metrics: one line per step, one per evaluation.
    pub metrics: Option<PathBuf>,
    /// SVG loss/accuracy curve written at the end.
    pub plot: Option<PathBuf>,
    pub progress: bool,
    /// Stop (with a checkpoint) once this many steps are done, as an interruption would.
    pub stop_after: Option<u64>,
    /// Skip the final test evaluation.
    pub skip_test: bool,
}

/// What a run produced.
pub struct TrainOutcome<B> {
    /// The backend holding the state after the last completed step.
    pub backend: B,
    pub log: Checkpoint,
    /// Test accuracy of the best dev state (None when skipped or interrupted).
    pub test_accuracy: Option<f64>,
    /// Whether every configured step ran.
    pub finished: bool,
}

/// Per-step line of the metrics file.
fn step_line(est: &crate::zo::estimator::StepEstimate, steps_per_s: f64) -> serde_json::Value {
    let mut v = json!({
        "type": "step",
        "step": est.record.step,
        "loss": est.loss(),
        "loss_plus": est.loss_plus,
        "g": est.record.grads,
        "lr": est.record.lr,
        "skipped": est.skipped.is_some(),
        "steps_per_s": steps_per_s,
        "tokens": est.tokens,
    });
    let o = v.as_object_mut().expect("object");
    match est.loss0 {
        Some(l0) => o.insert("loss0".into(), json!(l0)),
        None => o.insert("loss_minus".into(), json!(est.loss_minus)),
    };
    if let Some(r) = &est.skipped {
        o.insert("skip_reason".into(), json!(r));
    }
    v
}

struct Metrics {
    path: PathBuf,
    out: Option<BufWriter<File>>,
}

impl Metrics {
    fn open(path: Option<&Path>, append: bool) -> Result<Metrics> {
        let out = match path {
            None => None,
            Some(p) => {
                let f = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(append)
                    .truncate(!append)
                    .open(p)
                    .map_err(|e| Error::io(p, e))?;
                Some(BufWriter::new(f))
            }
        };
        Ok(Metrics {
            path: path.map(Path::to_path_buf).unwrap_or_default(),
            out,
        })
    }

    fn line(&mut self, v: &serde_json::Value) -> Result<()> {
        if let Some(w) = self.out.as_mut() {
            writeln!(w, "{v}").map_err(|e| Error::io(&self.path, e))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if let Some(w) = self.out.as_mut() {
            w.flush().map_err(|e| Error::io(&self.path, e))?;
        }
        Ok(())
    }
}

fn progress_bar(steps: u64, done: u64, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps, ETA {eta} | {msg}",
        )
        .expect("progress template is valid")
        .progress_chars("=> "),
    );
    bar.set_position(done);
    bar
}

/// Dev accuracy and loss of the backend's current state.
pub fn dev_eval<B: ZoBackend>(
    backend: &B,
    examples: &[TokenizedExample],
    batch: usize,
) -> Result<(f64, f64)> {
    let r = evaluate(backend, examples, batch, &mut |_| {})?;
    Ok((r.accuracy, r.mean_loss))
}

/// Runs (or resumes) training. `make` builds a backend holding the base weights and a fresh
/// family; it is called once to train and once more if the best dev state is not the last.
pub fn train<B: ZoBackend>(
    make: &dyn Fn() -> Result<B>,
    data: &TrainData,
    cfg: &TrainConfig,
    base_hash: &str,
    resume: Option<Checkpoint>,
    opts: &RunOptions,
) -> Result<TrainOutcome<B>> {
    cfg.validate()?;
    if data.train.is_empty() || data.dev.is_empty() {
        return Err(Error::Data(
            "training needs non-empty train and dev splits".into(),
        ));
    }
    let mut backend = make()?;
    let resumed = resume.is_some();
    let mut log = match resume {
        Some(ck) => {
            ck.check_compatible(base_hash, cfg)?;
            replay(&mut backend, cfg, &ck.records, &ck.skipped, ck.completed)?;
            Checkpoint {
                config: cfg.clone(),
                ..ck
            }
        }
        None => Checkpoint::new(base_hash.to_string(), cfg.clone()),
    };
    let mut metrics = Metrics::open(opts.metrics.as_deref(), resumed)?;
    let ucfg = cfg.update_config();
    let bar = progress_bar(cfg.steps, log.completed, opts.progress);
    let mut last_dev = log.evals.last().map(|d| d.accuracy);

    let record_eval = |log: &mut Checkpoint, after: u64, acc: f64, loss: f64| {
        let p = DevPoint {
            after,
            accuracy: acc,
            loss,
        };
        if log.best.as_ref().is_none_or(|b| acc > b.accuracy) {
            log.best = Some(p.clone());
        }
        log.evals.push(p);
        json!({"type": "eval", "split": "dev", "after": after, "accuracy": acc, "loss": loss})
    };

    if log.completed == 0 && log.evals.is_empty() {
        let (acc, loss) = dev_eval(&backend, &data.dev, cfg.eval_batch)?;
        let line = record_eval(&mut log, 0, acc, loss);
        metrics.line(&line)?;
        last_dev = Some(acc);
    }

    let start = Instant::now();
    let first = log.completed;
    let stop = opts.stop_after.unwrap_or(u64::MAX).min(cfg.steps);
    while log.completed < stop {
        let step = log.completed;
        let ps = cfg.period().map(|nu| period_seed(cfg.seed, step, nu));
        backend.begin_step(step, ps);
        let batch: Vec<TokenizedExample> =
            batch_indices(cfg.data_seed, step, cfg.batch, data.train.len())
                .into_iter()
                .map(|i| data.train[i].clone())
                .collect();
        let est = estimate(&mut backend, cfg, step, ps, lr_at(cfg, step), &batch)?;
        match &est.skipped {
            None => {
                backend.update(&est.record, &ucfg)?;
                log.records.push(est.record.clone());
            }
            Some(reason) => {
                bar.suspend(|| eprintln!("step {step}: skipped, {reason}"));
                log.skipped.push(SkippedStep {
                    step,
                    seeds: est.record.seeds.clone(),
                    period_seed: ps,
                    reason: reason.clone(),
                });
            }
        }
        log.completed += 1;
        let rate = (log.completed - first) as f64 / start.elapsed().as_secs_f64().max(1e-9);
        metrics.line(&step_line(&est, rate))?;

        let done = log.completed;
        if (cfg.eval_every > 0 && done % cfg.eval_every == 0) || done == cfg.steps {
            let (acc, loss) = dev_eval(&backend, &data.dev, cfg.eval_batch)?;
            let line = record_eval(&mut log, done, acc, loss);
            metrics.line(&line)?;
            last_dev = Some(acc);
        }
        if let Some(path) = &opts.checkpoint {
            let every = opts.checkpoint_every > 0 && done % opts.checkpoint_every == 0;
            if every || done == stop {
                metrics.flush()?;
                log.save(path)?;
            }
        }
        bar.set_position(done);
        bar.set_message(format!(
            "loss {:.4} | dev acc {} | {rate:.2} steps/s",
            est.loss(),
            last_dev.map_or("-".into(), |a| format!("{a:.3}"))
        ));
    }
    bar.finish_and_clear();
    let finished = log.completed == cfg.steps;
    if let Some(path) = &opts.checkpoint {
        log.save(path)?;
    }

    let mut test_accuracy = None;
    if finished && !opts.skip_test && !data.test.is_empty() {
        let best_after = log.best.as_ref().map_or(log.completed, |b| b.after);
        let acc = if best_after == log.completed {
            evaluate(&backend, &data.test, cfg.eval_batch, &mut |_| {})?.accuracy
        } else {
            let mut best = make()?;
            replay(&mut best, cfg, &log.records, &log.skipped, best_after)?;
            evaluate(&best, &data.test, cfg.eval_batch, &mut |_| {})?.accuracy
        };
        metrics.line(&json!({"type": "test", "after": best_after, "accuracy": acc}))?;
        test_accuracy = Some(acc);
    }
    metrics.flush()?;
    if let (Some(svg), Some(m)) = (&opts.plot, &opts.metrics) {
        crate::zo::plot::write_curve(m, svg)?;
    }
    Ok(TrainOutcome {
        backend,
        log,
        test_accuracy,
        finished,
    })
}
