//! The training loop: sample → plan → score → loss differences → update → log/eval.
//!
//! MeZO's protocol: the batch of step `s` is a pure function of (data seed, s) (see
//! [`crate::engine::seeds::batch_indices`]); the dev metric every `eval_every` steps selects the
//! best state, which is recovered at the end by replaying the seed log up to it (no weight
//! snapshots), and the test accuracy reported is that of the best state.
//!
//! Checkpoints are seed logs ([`Checkpoint`]); resuming replays the log onto fresh base
//! weights and continues, so a resumed run ends bit for bit where an uninterrupted one does.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use crate::backend::DType;
use crate::dist::{Comm, Local};
use crate::engine::checkpoint::{Checkpoint, DevPoint, SkippedStep};
use crate::engine::config::TrainConfig;
use crate::engine::divergence::DivergenceGuard;
use crate::engine::estimator::{estimate_on, score_part, ScorePart, StepEstimate};
use crate::engine::objective::{generated_losses, Judge};
use crate::engine::replay::{replay, ZoBackend};
use crate::engine::schedule::lr_at;
use crate::engine::seeds::{batch_indices, period_seed};
use crate::eval::{evaluate, evaluate_task_on};
use crate::plan::{Pair, TokenizedExample, Variant};
use crate::{Error, Result};

/// Tokenized splits of a run.
#[derive(Debug, Clone)]
pub struct TrainData {
    /// Prepared for the objective (the LM loss keeps only each example's target).
    pub train: Vec<TokenizedExample>,
    pub dev: Vec<TokenizedExample>,
    pub test: Vec<TokenizedExample>,
    /// How the task is judged: dev and test report its metric.
    pub judge: Judge,
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
    /// Also measure the test accuracy of the untrained state (zero-shot) at the start of a
    /// fresh run, so a report can show the gain on test.
    pub test_before: bool,
    /// The ranks of a data-parallel run (None: this process alone). Every rank trains; rank 0
    /// alone writes the metrics, the curve and the checkpoint, and shows progress.
    pub comm: Option<std::rc::Rc<dyn Comm>>,
}

/// What a run produced.
pub struct TrainOutcome<B> {
    /// The backend holding the state after the last completed step.
    pub backend: B,
    pub log: Checkpoint,
    /// Test accuracy of the best dev state (None when skipped or interrupted).
    pub test_accuracy: Option<f64>,
    /// Test accuracy before training (with [`RunOptions::test_before`] on a fresh run).
    pub test_accuracy_before: Option<f64>,
    /// Whether every configured step ran.
    pub finished: bool,
}

/// Per-step line of the metrics file.
fn step_line(est: &StepEstimate, steps_per_s: f64) -> serde_json::Value {
    let mut v = json!({
        "type": "step",
        "step": est.record.step,
        "loss": est.loss(),
        "loss_plus": est.loss_plus,
        "g": est.g,
        "lr": est.record.lr,
        "skipped": est.skipped.is_some(),
        "steps_per_s": steps_per_s,
        "tokens": est.tokens,
    });
    let o = v.as_object_mut().expect("object");
    if est.g != est.record.grads {
        o.insert("coef".into(), json!(est.record.grads));
    }
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

/// A metrics line of an evaluation: the task's metric under its own name (and as
/// `accuracy`, which the checkpoint's dev points hold), the loss, and a generation's counts.
fn eval_line(split: &str, after: u64, s: &crate::eval::TaskScore) -> serde_json::Value {
    let mut v = json!({"type": split_type(split), "split": split, "after": after,
        "metric": s.metric_name, "accuracy": s.metric, "loss": s.loss});
    if let Some(g) = &s.generation {
        v["exact_match"] = json!(g.exact_match);
        v["f1"] = json!(g.f1);
        v["ended"] = json!(g.ended);
        v["generated_tokens_per_s"] = json!(g.stats.tokens_per_s());
        v["decode_tokens_per_s"] = json!(g.stats.decode_tokens_per_s());
    }
    v
}

fn split_type(split: &str) -> &'static str {
    if split == "test" {
        "test"
    } else {
        "eval"
    }
}

/// Step `step`'s estimate under the run's objective (scored candidates, or generated text),
/// with the step's pairs split among `comm`'s ranks.
#[allow(clippy::too_many_arguments)]
pub fn estimate_step<B: ZoBackend>(
    backend: &mut B,
    cfg: &TrainConfig,
    judge: &Judge,
    step: u64,
    period_seed: Option<u64>,
    lr: f32,
    batch: &[TokenizedExample],
    comm: &dyn Comm,
) -> Result<StepEstimate> {
    let mut part: Box<ScorePart<'_, B>> = if judge.objective.generates() {
        // Every pair greedily decoded in one batch, each loss 1 − metric; g as for scored
        // losses.
        let generator = judge.generator()?;
        Box::new(move |b: &mut B, vars: &[Variant], pairs: &[Pair]| {
            let (losses, stats) =
                generated_losses(&*b, judge.objective, generator, batch, vars, pairs)?;
            Ok((losses, stats.prompt_tokens + stats.new_tokens))
        })
    } else {
        Box::new(|b: &mut B, vars: &[Variant], pairs: &[Pair]| {
            score_part(b, cfg, batch, vars, pairs)
        })
    };
    estimate_on(backend, cfg, step, period_seed, lr, batch, comm, &mut *part)
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

/// Runs training from `log`: a fresh [`Checkpoint::new`] or a loaded checkpoint to resume.
/// `make` builds a backend holding the base weights and a fresh family; it is called once to
/// train and once more if the best dev state is not the last.
pub fn train<B: ZoBackend>(
    make: &dyn Fn() -> Result<B>,
    data: &TrainData,
    cfg: &TrainConfig,
    base_hash: &str,
    log: Checkpoint,
    opts: &RunOptions,
) -> Result<TrainOutcome<B>> {
    cfg.validate()?;
    if data.train.is_empty() || data.dev.is_empty() {
        return Err(Error::Data(
            "training needs non-empty train and dev splits".into(),
        ));
    }
    log.check()?;
    log.check_compatible(base_hash, cfg)?;
    let comm: &dyn Comm = opts.comm.as_deref().unwrap_or(&Local);
    let follower;
    let opts = if comm.rank() == 0 {
        opts
    } else {
        // The ranks hold the same state; only rank 0 writes it down.
        follower = RunOptions {
            checkpoint: None,
            metrics: None,
            plot: None,
            progress: false,
            ..opts.clone()
        };
        &follower
    };
    let resumed = log.completed > 0 || !log.evals.is_empty();
    let mut backend = make()?;
    replay(&mut backend, cfg, &log.records, &log.skipped, log.completed)?;
    // A constant-lr run may be extended: the log takes this run's step count.
    let mut log = Checkpoint {
        config: cfg.clone(),
        ..log
    };
    let mut metrics = Metrics::open(opts.metrics.as_deref(), resumed)?;
    let ucfg = cfg.update_config();
    let bar = progress_bar(cfg.steps, log.completed, opts.progress);
    let plain_progress = opts.progress && !std::io::stderr().is_terminal();
    let plain_every = (cfg.steps / 20).max(1);
    let mut last_dev = log.evals.last().map(|d| d.accuracy);

    // The checkpoint's dev points keep the task's metric in `accuracy` (F1 for generation
    // tasks); the metrics line names it.
    let judge = &data.judge;
    let metric = judge.metric_name();
    let record_eval = |log: &mut Checkpoint, after: u64, s: &crate::eval::TaskScore| {
        log.record_dev(after, s.metric, s.loss);
        eval_line("dev", after, s)
    };

    let mut test_accuracy_before = None;
    if log.completed == 0 && log.evals.is_empty() {
        if opts.test_before && !data.test.is_empty() {
            let s = evaluate_task_on(&backend, &data.test, cfg.eval_batch, judge, comm)?;
            metrics.line(&eval_line("test", 0, &s))?;
            test_accuracy_before = Some(s.metric);
        }
        let s = evaluate_task_on(&backend, &data.dev, cfg.eval_batch, judge, comm)?;
        let line = record_eval(&mut log, 0, &s);
        metrics.line(&line)?;
        last_dev = Some(s.metric);
        if opts.progress {
            bar.suspend(|| {
                eprintln!(
                    "dev {} before training: {:.4} ({} examples)",
                    s.metric_name,
                    s.metric,
                    data.dev.len()
                )
            });
        }
    }

    let start = Instant::now();
    let first = log.completed;
    // On resume the guard learns its start level from the first steps of this session.
    let mut guard = DivergenceGuard::default();
    let stop = opts.stop_after.unwrap_or(u64::MAX).min(cfg.steps);
    while log.completed < stop {
        let step = log.completed;
        let ps = cfg.period().map(|nu| period_seed(cfg.seed, step, nu));
        backend.begin_step(step, ps)?;
        let batch = step_batch(cfg, &data.train, step);
        let lr = lr_at(cfg, step);
        let est = estimate_step(&mut backend, cfg, judge, step, ps, lr, &batch, comm)?;
        if let Some(reason) = &est.skipped {
            bar.suspend(|| eprintln!("step {step}: skipped, {reason}"));
        }
        commit_step(&mut backend, &mut log, &est, &ucfg)?;
        let rate = (log.completed - first) as f64 / start.elapsed().as_secs_f64().max(1e-9);
        metrics.line(&step_line(&est, rate))?;
        if let Some(why) = guard.observe(step, est.loss()) {
            bar.abandon();
            metrics.flush()?;
            return Err(diverged(&mut log, &guard, first, opts, step, &why));
        }

        let done = log.completed;
        if (cfg.eval_every > 0 && done.is_multiple_of(cfg.eval_every)) || done == cfg.steps {
            let s = evaluate_task_on(&backend, &data.dev, cfg.eval_batch, judge, comm)?;
            let line = record_eval(&mut log, done, &s);
            metrics.line(&line)?;
            last_dev = Some(s.metric);
        }
        if let Some(path) = &opts.checkpoint {
            let every = opts.checkpoint_every > 0 && done.is_multiple_of(opts.checkpoint_every);
            if every || done == stop {
                metrics.flush()?;
                log.save(path)?;
            }
        }
        let status = format!(
            "loss {:.4} | dev {metric} {} | {rate:.2} steps/s",
            est.loss(),
            last_dev.map_or("-".into(), |a| format!("{a:.3}"))
        );
        if plain_progress && (done.is_multiple_of(plain_every) || done == stop) {
            // No terminal to draw the bar on (a log file, CI): a line every 5% instead.
            let eta = (stop - done) as f64 / rate.max(1e-9);
            eprintln!("step {done}/{} | {status} | ETA {eta:.0} s", cfg.steps);
        }
        bar.set_position(done);
        bar.set_message(status);
    }
    bar.finish_and_clear();
    let finished = log.completed == cfg.steps;
    if let Some(path) = &opts.checkpoint {
        log.save(path)?;
    }

    let mut test_accuracy = None;
    if finished && !opts.skip_test && !data.test.is_empty() {
        let best_after = log.best.as_ref().map_or(log.completed, |b| b.after);
        let s = if best_after == log.completed {
            evaluate_task_on(&backend, &data.test, cfg.eval_batch, judge, comm)?
        } else {
            let mut best = make()?;
            replay(&mut best, cfg, &log.records, &log.skipped, best_after)?;
            evaluate_task_on(&best, &data.test, cfg.eval_batch, judge, comm)?
        };
        metrics.line(&eval_line("test", best_after, &s))?;
        test_accuracy = Some(s.metric);
    }
    metrics.flush()?;
    if let (Some(svg), Some(m)) = (&opts.plot, &opts.metrics) {
        crate::engine::plot::write_curve(m, svg)?;
    }
    Ok(TrainOutcome {
        backend,
        log,
        test_accuracy,
        test_accuracy_before,
        finished,
    })
}

/// The training batch of step `step`: a pure function of (data seed, step), so a resumed or
/// replayed run sees the same batches.
pub fn step_batch(
    cfg: &TrainConfig,
    train: &[TokenizedExample],
    step: u64,
) -> Vec<TokenizedExample> {
    batch_indices(cfg.data_seed, step, cfg.batch, train.len())
        .into_iter()
        .map(|i| train[i].clone())
        .collect()
}

/// Ends a scored step as training does: the update and its record, or (for a non-finite
/// estimate) the logged skip; either way the step counts as completed.
pub fn commit_step<B: ZoBackend + ?Sized>(
    backend: &mut B,
    log: &mut Checkpoint,
    est: &StepEstimate,
    ucfg: &crate::perturb::UpdateConfig,
) -> Result<()> {
    match &est.skipped {
        None => {
            backend.update(&est.record, ucfg)?;
            log.records.push(est.record.clone());
        }
        Some(reason) => log.skipped.push(SkippedStep {
            step: est.record.step,
            seeds: est.record.seeds.clone(),
            period_seed: est.record.period_seed,
            reason: reason.clone(),
        }),
    }
    log.completed += 1;
    Ok(())
}

/// Rolls `log` back to the guard's last good step, saves it where the run checkpoints, and
/// builds the error that tells the user what happened and what to do.
fn diverged(
    log: &mut Checkpoint,
    guard: &DivergenceGuard,
    first: u64,
    opts: &RunOptions,
    step: u64,
    why: &str,
) -> Error {
    let good = guard.last_good().unwrap_or(first);
    log.truncate(good);
    let lr = lr_at(&log.config, step);
    let saved = match &opts.checkpoint {
        None => "no checkpoint path was set, so nothing was saved".to_string(),
        Some(p) => match log.save(p) {
            Ok(()) => format!(
                "the state before step {good} is saved in {0} (export it with `zo-run export \
                 {0} OUT_DIR --last`)",
                p.display()
            ),
            Err(e) => format!("saving the last good state failed: {e}"),
        },
    };
    Error::Diverged(format!(
        "at step {step} with lr {lr:e}, {why}; rerun with a lower --lr (try {:e}); {saved}",
        lr / 10.0
    ))
}

/// Where a run reads its inputs and writes its outputs (`zo-run train`).
#[derive(Debug, Clone)]
pub struct DiskRun {
    pub model: PathBuf,
    pub data: PathBuf,
    /// Output directory: metrics.jsonl, curve.svg, checkpoint.json, summary.json.
    pub out: PathBuf,
    /// Checkpoint path (default `out/checkpoint.json`).
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_every: u64,
    pub resume: Option<PathBuf>,
    pub progress: bool,
    pub stop_after: Option<u64>,
    pub device: Device,
    /// See [`RunOptions::test_before`].
    pub test_before: bool,
    /// See [`RunOptions::comm`].
    pub comm: Option<std::rc::Rc<dyn Comm>>,
    /// CUDA devices: bytes of GPU memory the weights may take; the layers past it stream from
    /// host memory (None: the whole model resident).
    pub gpu_memory_budget: Option<usize>,
}

/// Parses a byte count: a plain number, or one with a binary suffix (`8GiB`, `8G`, `512MiB`,
/// `64K`; case does not matter).
pub fn parse_bytes(s: &str) -> Result<usize> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (num, shift) = match t.char_indices().last() {
        Some((i, 'k')) => (&t[..i], 10),
        Some((i, 'm')) => (&t[..i], 20),
        Some((i, 'g')) => (&t[..i], 30),
        Some((i, 't')) => (&t[..i], 40),
        _ => (t, 0),
    };
    let bad = || {
        Error::Config(format!(
            "{s:?}: expected bytes, e.g. 8589934592, 8GiB or 512MiB"
        ))
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !(v.is_finite() && v > 0.0) {
        return Err(bad());
    }
    Ok((v * (1u64 << shift) as f64) as usize)
}

/// Where `zo-run` runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The GPU when one is usable and the family runs there, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// GPU 0 with weights stored in this dtype.
    Cuda(DType),
    /// The CUDA backend on its CPU emulation of a GPU (zo-emu): GPU numerics without a GPU,
    /// slowly (tiny models).
    Emulated(DType),
}

impl Device {
    /// Parses `--device` and `--dtype`.
    pub fn parse(device: &str, dtype: &str) -> Result<Device> {
        let dt = DType::parse(dtype)
            .map_err(|_| Error::Config(format!("--dtype {dtype:?}: expected f32, bf16 or f16")))?;
        match device {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda(dt)),
            "emu" => Ok(Device::Emulated(dt)),
            other => Err(Error::Config(format!(
                "--device {other:?}: expected auto, cpu, cuda or emu"
            ))),
        }
    }
}

/// Why the CUDA backend cannot train `cfg`, or None when it can (see
/// [`crate::backend::gpu_support::refusal`]).
pub fn gpu_refusal(cfg: &TrainConfig) -> Option<String> {
    crate::backend::gpu_support::refusal(Some(&cfg.family), None)
}

/// Resolves `Auto`: the GPU if this build has the CUDA backend, a GPU answers and the family
/// runs there; otherwise the CPU, saying why on stderr when `progress`.
pub fn resolve_device(d: Device, cfg: &TrainConfig, progress: bool) -> Result<Device> {
    match d {
        Device::Cpu => Ok(Device::Cpu),
        Device::Cuda(_) | Device::Emulated(_) => match gpu_refusal(cfg) {
            Some(why) => Err(Error::Unsupported(format!("{why}; use --device cpu"))),
            None => Ok(d),
        },
        Device::Auto => {
            #[cfg(feature = "cuda")]
            {
                if crate::backend::cuda::CudaDevice::new(0).is_ok() {
                    match gpu_refusal(cfg) {
                        None => return Ok(Device::Cuda(DType::Bf16)),
                        Some(why) if progress => eprintln!("running on the CPU: {why}"),
                        Some(_) => {}
                    }
                }
            }
            let _ = progress;
            Ok(Device::Cpu)
        }
    }
}

/// The one JSON line `zo-run train` prints at the end.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainSummary {
    /// What the `*_accuracy*` fields and the dev points hold: `accuracy`, or `f1` for a
    /// generation task.
    pub metric: &'static str,
    pub steps: u64,
    pub applied: usize,
    pub skipped: usize,
    pub dev_accuracy_before: Option<f64>,
    pub dev_accuracy_last: Option<f64>,
    pub dev_loss_before: Option<f64>,
    pub dev_loss_last: Option<f64>,
    pub best: Option<DevPoint>,
    /// Zero-shot test accuracy (when the run measured it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_accuracy_before: Option<f64>,
    pub test_accuracy: Option<f64>,
    /// Where the run trained.
    pub device: String,
    pub wall_s: f64,
    pub checkpoint: String,
    pub metrics: String,
    pub curve: Option<String>,
}

fn limit(mut v: Vec<crate::data::Example>, n: Option<usize>) -> Vec<crate::data::Example> {
    if let Some(n) = n {
        v.truncate(n);
    }
    v
}

/// Loads the task's train/dev/test splits from `data` and tokenizes them for a model of
/// config `model`: examples that do not fit its context are errors naming them, and the train
/// split is prepared for the run's objective.
pub fn load_data(
    cfg: &TrainConfig,
    data: &Path,
    tokenizer: &crate::io::tokenizer::Tokenizer,
    model: &crate::model::ModelConfig,
) -> Result<TrainData> {
    let task = crate::data::resolve_task(&cfg.task)?;
    let judge = Judge::new(
        task.as_ref(),
        cfg.objective,
        tokenizer,
        model,
        cfg.max_new_tokens,
    )?;
    let context = model.max_position_embeddings;
    let tok = |split: &str, n: Option<usize>| -> Result<Vec<TokenizedExample>> {
        let ex = limit(crate::data::load_split(data, split)?, n);
        crate::data::tokenize_within(task.as_ref(), &ex, context, |t, s| tokenizer.encode(t, s))
    };
    let objective = judge.objective;
    Ok(TrainData {
        train: tok("train", cfg.train_limit)?
            .into_iter()
            .map(|e| objective.prepare(e))
            .collect(),
        dev: tok("dev", cfg.dev_limit)?,
        test: tok("test", cfg.test_limit)?,
        judge,
    })
}

/// Loads a base model and its tokenizer, checking they fit each other.
pub fn load_base(dir: &Path) -> Result<(crate::model::Model, crate::io::tokenizer::Tokenizer)> {
    let config = dir.join("config.json");
    if !config.is_file() {
        return Err(Error::io(
            &config,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "model not found: run tools/fetch-assets, or pass --model DIR",
            ),
        ));
    }
    let tokenizer = crate::io::tokenizer::Tokenizer::from_dir(dir)?;
    let model = crate::model::load::load_model(dir)?;
    tokenizer.check_model(&model.config)?;
    Ok((model, tokenizer))
}

/// A CPU backend on a copy of `base` with a freshly built family.
pub fn cpu_backend(
    base: &crate::model::Model,
    cfg: &TrainConfig,
) -> Result<crate::backend::cpu::CpuBackend> {
    let family = crate::perturb::build(&cfg.family, cfg.dist, base, cfg.seed)?;
    Ok(crate::backend::cpu::CpuBackend::with_family(
        base.clone(),
        family,
    ))
}

/// A backend on `device` (resolved: not `Auto`) holding `base` and a freshly built family:
/// the backend of a run, as a trait object for callers that pick the device at run time.
pub fn open_backend(
    base: &crate::model::Model,
    cfg: &TrainConfig,
    device: Device,
) -> Result<Box<dyn ZoBackend + Send>> {
    open_backend_on(base, cfg, device, 0, None)
}

/// [`open_backend`] on GPU `gpu` when the device is `Cuda`, its weights under
/// `gpu_memory_budget` bytes (see [`DiskRun::gpu_memory_budget`]).
pub fn open_backend_on(
    base: &crate::model::Model,
    cfg: &TrainConfig,
    device: Device,
    gpu: usize,
    gpu_memory_budget: Option<usize>,
) -> Result<Box<dyn ZoBackend + Send>> {
    let _ = gpu;
    match device {
        Device::Cpu if gpu_memory_budget.is_some() => Err(Error::Config(
            "--gpu-memory-budget limits the CUDA backend's GPU memory; the CPU backend keeps \
             the model in host memory: drop the flag or use --device cuda"
                .into(),
        )),
        Device::Cpu => Ok(Box::new(cpu_backend(base, cfg)?)),
        Device::Auto => Err(Error::Config(
            "open_backend needs a resolved device (see resolve_device)".into(),
        )),
        #[cfg(feature = "cuda")]
        Device::Cuda(dtype) | Device::Emulated(dtype) => {
            use crate::backend::cuda::{CudaBackend, CudaOptions, Target};
            let o = CudaOptions {
                target: if matches!(device, Device::Emulated(_)) {
                    Target::Emulated
                } else {
                    Target::Gpu(gpu)
                },
                dtype,
                directions: cfg.q,
                memory_budget: gpu_memory_budget,
            };
            // The run seed initialises LoRA A as on the CPU, so the seed log replays there.
            let b = CudaBackend::new_seeded(base, Some((&cfg.family, cfg.dist)), cfg.seed, &o)?;
            let r = b.residency();
            if r.streamed() > 0 {
                eprintln!(
                    "zo: --gpu-memory-budget: {} of {} layers on the GPU, {} stream from host \
                     memory ({} per forward)",
                    r.resident,
                    r.layers,
                    r.streamed(),
                    crate::backend::cuda::gib(b.streamed_bytes())
                );
            }
            Ok(Box::new(b))
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) | Device::Emulated(_) => Err(no_cuda()),
    }
}

#[cfg(not(feature = "cuda"))]
fn no_cuda() -> Error {
    Error::Unsupported("this build of zo has no CUDA backend; rebuild with --features cuda".into())
}

/// Refuses to start a data-parallel run whose ranks were not given the same job: the config,
/// the base weights, the train split, the checkpoint resumed from and the device must agree,
/// or their bit-exact agreement would be lost at the first step. Names every rank that differs.
fn check_same_job(
    comm: &dyn Comm,
    cfg: &TrainConfig,
    base_hash: &str,
    data_hash: &str,
    resume: Option<&Checkpoint>,
    device: Device,
) -> Result<()> {
    let resumed = match resume {
        None => b"none".to_vec(),
        Some(ck) => {
            let bytes = serde_json::to_vec(ck).map_err(|e| Error::Config(e.to_string()))?;
            let digest = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes()
        }
    };
    let config = serde_json::to_vec(cfg).map_err(|e| Error::Config(e.to_string()))?;
    let items = [
        ("config", config),
        ("model (weights hash)", base_hash.as_bytes().to_vec()),
        ("train split (hash)", data_hash.as_bytes().to_vec()),
        ("checkpoint to resume (hash)", resumed),
        ("device", format!("{device:?}").into_bytes()),
        ("zo version", env!("CARGO_PKG_VERSION").as_bytes().to_vec()),
    ];
    crate::dist::check_agreement(comm, &items, &|name, a, b| {
        if name == "config" {
            json_differences(a, b)
        } else {
            format!(
                "{} vs {}",
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b)
            )
        }
    })
}

/// The top-level fields where two JSON objects differ, as `field: A vs B`.
fn json_differences(a: &[u8], b: &[u8]) -> String {
    let parse = |x: &[u8]| serde_json::from_slice::<serde_json::Value>(x).unwrap_or_default();
    let (a, b) = (parse(a), parse(b));
    let (Some(oa), Some(ob)) = (a.as_object(), b.as_object()) else {
        return "unreadable".into();
    };
    let mut keys: Vec<&String> = oa.keys().chain(ob.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| oa.get(*k) != ob.get(*k))
        .map(|k| {
            let show =
                |v: Option<&serde_json::Value>| v.map_or("missing".into(), |v| v.to_string());
            format!("{k}: {} vs {}", show(oa.get(k)), show(ob.get(k)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `zo-run train`: everything from files on disk to files on disk, on the CPU backend.
pub fn run_on_disk(cfg: &TrainConfig, run: &DiskRun) -> Result<TrainSummary> {
    cfg.validate()?;
    if !run.data.is_dir() {
        return Err(Error::io(
            &run.data,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "data directory not found: run tools/fetch-assets, or pass --data DIR",
            ),
        ));
    }
    let resume = run.resume.as_deref().map(Checkpoint::load).transpose()?;
    let (base, tokenizer) = load_base(&run.model)?;
    let data = load_data(cfg, &run.data, &tokenizer, &base.config)?;
    let base_hash = crate::engine::hash::model_hash(&base);
    let data_hash = crate::engine::hash::examples_hash(&data.train);
    if let Some(ck) = &resume {
        if let Some(h) = &ck.data_hash {
            if *h != data_hash {
                return Err(Error::Config(format!(
                    "checkpoint was trained on a train split hashing to {h}, but {} gives {data_hash}",
                    run.data.display()
                )));
            }
        }
    }
    // Fail on a family that cannot be built before any file is written (the family alone:
    // the weights are not copied for this).
    crate::perturb::build(&cfg.family, cfg.dist, &base, cfg.seed)?;
    let device = resolve_device(run.device, cfg, run.progress)?;
    if let Some(comm) = &run.comm {
        check_same_job(
            comm.as_ref(),
            cfg,
            &base_hash,
            &data_hash,
            resume.as_ref(),
            device,
        )?;
        if cfg.batch < comm.size() {
            return Err(Error::Distributed(format!(
                "{} ranks but --batch {}: each rank needs at least one example of every step; \
                 run at most {} ranks or raise --batch",
                comm.size(),
                cfg.batch,
                cfg.batch
            )));
        }
    }
    let lead = run.comm.as_ref().is_none_or(|c| c.rank() == 0);
    if lead {
        std::fs::create_dir_all(&run.out).map_err(|e| Error::io(&run.out, e))?;
    }
    let checkpoint = run
        .checkpoint
        .clone()
        .unwrap_or_else(|| run.out.join("checkpoint.json"));
    let metrics = run.out.join("metrics.jsonl");
    let curve = run.out.join("curve.svg");
    let opts = RunOptions {
        checkpoint: Some(checkpoint.clone()),
        checkpoint_every: run.checkpoint_every,
        metrics: Some(metrics.clone()),
        plot: Some(curve.clone()),
        progress: run.progress,
        stop_after: run.stop_after,
        skip_test: false,
        test_before: run.test_before,
        comm: run.comm.clone(),
    };
    let log = resume.unwrap_or_else(|| {
        let mut ck = Checkpoint::new(base_hash.clone(), cfg.clone());
        ck.model_dir = Some(run.model.display().to_string());
        ck.data_dir = Some(run.data.display().to_string());
        ck
    });
    let log = Checkpoint {
        data_hash: Some(data_hash),
        ..log
    };
    let started = Instant::now();
    let gpu = match (&run.comm, device) {
        // One GPU per rank of a machine, shared round-robin when ranks outnumber them.
        #[cfg(feature = "cuda")]
        (Some(c), Device::Cuda(_)) => {
            crate::dist::local_rank(c.rank()) % crate::backend::cuda::gpu_count().max(1)
        }
        _ => 0,
    };
    let make = || open_backend_on(&base, cfg, device, gpu, run.gpu_memory_budget);
    let o = train(&make, &data, cfg, &base_hash, log, &opts)?;
    let (log, test_accuracy_before, test_accuracy) =
        (&o.log, o.test_accuracy_before, o.test_accuracy);
    let before = log.evals.first().filter(|e| e.after == 0);
    let last = log.evals.last();
    Ok(TrainSummary {
        metric: data.judge.metric_name(),
        steps: log.completed,
        applied: log.records.len(),
        skipped: log.skipped.len(),
        dev_accuracy_before: before.map(|e| e.accuracy),
        dev_accuracy_last: last.map(|e| e.accuracy),
        dev_loss_before: before.map(|e| e.loss),
        dev_loss_last: last.map(|e| e.loss),
        best: log.best.clone(),
        test_accuracy_before,
        test_accuracy,
        device: match device {
            Device::Cuda(_) => "cuda".into(),
            Device::Emulated(_) => "emu".into(),
            _ => "cpu".into(),
        },
        wall_s: started.elapsed().as_secs_f64(),
        checkpoint: checkpoint.display().to_string(),
        metrics: metrics.display().to_string(),
        curve: curve.is_file().then(|| curve.display().to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn byte_counts_take_binary_suffixes() {
        for (s, want) in [
            ("8589934592", 8usize << 30),
            ("8GiB", 8 << 30),
            ("8g", 8 << 30),
            ("8GB", 8 << 30),
            ("512MiB", 512 << 20),
            ("1.5G", 3 << 29),
            (" 64K ", 64 << 10),
            ("1t", 1 << 40),
        ] {
            assert_eq!(parse_bytes(s).unwrap(), want, "{s}");
        }
        for s in ["", "G", "-1G", "0", "lots", "8 GiB of it"] {
            let e = parse_bytes(s).unwrap_err().to_string();
            assert!(e.contains("expected bytes"), "{s}: {e}");
        }
    }
}
