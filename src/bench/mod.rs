//! `zo-run bench`: timed ZO steps on synthetic weights, against floors measured in the same
//! run.
//!
//! A bench builds a backend with seeded random weights for an architecture ([`backend`]),
//! runs `warmup` then `steps` real ZO steps through the training path (`begin_step`,
//! [`crate::engine::estimator::estimate`], `update`) on synthetic token ids whose prompt lengths
//! come from the default task ([`lengths`]), and reports the step time with its split, the
//! throughput, the FLOP rate ([`flops`]), the peak memory and the ratios to a compute floor
//! (the step's GEMMs alone) and a memory floor (one read of every weight). See
//! [`BenchReport`] for the JSON it prints.

pub mod backend;
pub mod cpu;
pub mod cuda;
pub mod flops;
pub mod lengths;
mod report;

use std::cell::Cell;
use std::time::Instant;

pub use backend::{BenchBackend, BenchDevice, BenchSpec, DType, GemmShape, ScoreTiming};
pub use lengths::Lengths;
pub use report::{BenchReport, Spread, StreamReport};

use crate::backend::{Backend, Scores};
use crate::engine::config::TrainConfig;
use crate::engine::estimator::{estimate, variants};
use crate::engine::replay::ZoBackend;
use crate::engine::schedule::lr_at;
use crate::engine::seeds::period_seed;
use crate::perturb::{Dist, StepRecord, UpdateConfig};
use crate::plan::{Plan, Variant};
use crate::{Error, Result};

/// Steps of the run the estimate in hours is for (MeZO's protocol).
pub const RUN_STEPS: u64 = 20_000;

/// A bench to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Name of the architecture (built-in name or config path), for the report.
    pub arch: String,
    pub spec: BenchSpec,
    pub device: BenchDevice,
    pub lengths: Lengths,
    pub steps: usize,
    pub warmup: usize,
    /// Skip the floor measurements (tests; the report then has no floors).
    pub skip_floors: bool,
}

impl BenchOptions {
    /// The prompt lengths of every step the bench runs (warm-up first), `batch` per step.
    pub fn all_lengths(&self) -> Vec<Vec<usize>> {
        let t = &self.spec.train;
        (0..self.warmup + self.steps)
            .map(|i| self.lengths.step(t.data_seed, i as u64, t.batch))
            .collect()
    }
}

/// A [`ZoBackend`] over a bench backend that accumulates the time of every `score` (split)
/// and every in-place perturbation the estimator asks for.
struct Timed<'a> {
    inner: &'a mut dyn BenchBackend,
    forward_s: Cell<f64>,
    loss_s: Cell<Option<f64>>,
    perturb_s: f64,
}

impl Backend for Timed<'_> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn score(&self, plan: &Plan) -> Result<Scores> {
        let (scores, t) = self.inner.score_timed(plan)?;
        self.forward_s.set(self.forward_s.get() + t.forward_s);
        let loss = match (self.loss_s.get(), t.loss_s) {
            (Some(a), Some(b)) => Some(a + b),
            (None, b) => b,
            (Some(_), None) => None,
        };
        self.loss_s.set(loss);
        Ok(scores)
    }
}

impl ZoBackend for Timed<'_> {
    fn begin_step(&mut self, step: u64, period_seed: Option<u64>) -> Result<()> {
        self.inner.begin_step(step, period_seed)
    }

    fn update(&mut self, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        self.inner.update(rec, cfg)
    }

    fn perturb_in_place(&mut self, seed: u64, scale: f32, dist: Dist) -> Result<()> {
        let t = Instant::now();
        self.inner.perturb_in_place(seed, scale, dist)?;
        self.inner.synchronize()?;
        self.perturb_s += t.elapsed().as_secs_f64();
        Ok(())
    }

    fn family_state(&self) -> Result<crate::backend::StateTensors> {
        self.inner.family_state()
    }
}

/// Timings of one step, seconds.
#[derive(Debug, Clone, Copy, Default)]
struct StepTime {
    total: f64,
    forward: f64,
    loss: Option<f64>,
    perturb: f64,
    update: f64,
}

/// The plans one step scores (the in-place estimator scores the base plan 2q times) and how
/// many forwards each gets.
fn step_passes(
    cfg: &TrainConfig,
    batch: &[crate::plan::TokenizedExample],
) -> Result<(Plan, usize)> {
    if cfg.in_place() {
        Ok((Plan::build(batch, &[Variant::BASE])?, 2 * cfg.q))
    } else {
        let seeds: Vec<u64> = (0..cfg.q as u64).collect();
        Ok((
            Plan::build(batch, &variants(&seeds, cfg.eps, cfg.one_sided))?,
            1,
        ))
    }
}

/// Runs the bench; `progress` gets one line per phase.
pub fn run(opts: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<BenchReport> {
    let spec = &opts.spec;
    let cfg = &spec.train;
    cfg.validate()?;
    if opts.steps == 0 {
        return Err(Error::Config(
            "bench needs at least one measured step".into(),
        ));
    }
    let all_lengths = opts.all_lengths();
    let max_len = all_lengths.iter().flatten().copied().max().unwrap_or(0);
    if max_len > spec.config.max_position_embeddings {
        return Err(Error::Config(format!(
            "prompts of up to {max_len} tokens exceed the architecture's {} positions",
            spec.config.max_position_embeddings
        )));
    }
    if max_len == 0 {
        return Err(Error::Config("prompt length must be at least 1".into()));
    }
    progress(&format!(
        "building {} ({} parameters) on {} with synthetic {} weights",
        opts.arch,
        spec.config.n_params(),
        opts.device.name(),
        spec.dtype.suffix()
    ));
    let t0 = Instant::now();
    let mut backend = backend::open(opts.device, spec)?;
    backend.synchronize()?;
    let setup_s = t0.elapsed().as_secs_f64();

    let ucfg = cfg.update_config();
    let vocab = spec.config.vocab_size;
    let mut times = Vec::with_capacity(opts.steps);
    let (mut flops_sum, mut tokens_sum, mut rows_sum, mut seqs_sum) = (0.0, 0usize, 0usize, 0usize);
    let mut pass_tokens_sum = 0usize;
    let mut passes = 1;
    let mut skipped = 0usize;
    let mut last_loss = f64::NAN;
    for (i, lens) in all_lengths.iter().enumerate() {
        let step = i as u64;
        let measured = i >= opts.warmup;
        if i == 0 || i == opts.warmup {
            progress(if measured { "measuring" } else { "warming up" });
            #[cfg(feature = "cuda")]
            crate::backend::cuda::profile::reset();
        }
        let batch = lengths::synthetic_batch(lens, vocab, spec.weight_seed, step);
        let ps = cfg.period().map(|nu| period_seed(cfg.seed, step, nu));
        let mut timed = Timed {
            inner: backend.as_mut(),
            forward_s: Cell::new(0.0),
            loss_s: Cell::new(None),
            perturb_s: 0.0,
        };
        timed.inner.synchronize()?;
        let start = Instant::now();
        timed.begin_step(step, ps)?;
        timed.inner.synchronize()?;
        let begin = start.elapsed().as_secs_f64();
        let est = estimate(&mut timed, cfg, step, ps, lr_at(cfg, step), &batch)?;
        let t_update = Instant::now();
        if est.skipped.is_none() {
            timed.update(&est.record, &ucfg)?;
        }
        timed.inner.synchronize()?;
        let update = begin + t_update.elapsed().as_secs_f64();
        let total = start.elapsed().as_secs_f64();
        last_loss = est.loss();
        if !measured {
            continue;
        }
        skipped += est.skipped.is_some() as usize;
        times.push(StepTime {
            total,
            forward: timed.forward_s.get(),
            loss: timed.loss_s.get(),
            perturb: timed.perturb_s,
            update,
        });
        let (plan, n) = step_passes(cfg, &batch)?;
        let work = flops::PassWork::of(&plan);
        flops_sum += n as f64 * flops::pass_flops(&spec.config, &work);
        tokens_sum += n * work.tokens();
        pass_tokens_sum += work.tokens();
        rows_sum += work.scoring_rows;
        seqs_sum += n * work.seq_lens.len();
        passes = n;
    }
    let peak_memory_bytes = backend.peak_memory_bytes()?;
    #[cfg(feature = "cuda")]
    if let Some(table) = crate::backend::cuda::profile::report() {
        progress(&format!(
            "per-op time over the measured steps (ZO_PROFILE=1):\n{table}"
        ));
    }

    let steps = times.len() as f64;
    let mean = |x: usize| x as f64 / steps;
    let step_s: Vec<f64> = times.iter().map(|t| t.total).collect();
    let step_ms = Spread::of_seconds(&step_s);
    let median_s = step_ms.median / 1e3;
    let flops_per_step = flops_sum / steps;
    let tokens_per_step = mean(tokens_sum);

    let (mut compute_floor_ms, mut memory_floor_ms, mut bandwidth) = (None, None, None);
    let gemms = flops::gemm_shapes(
        &spec.config,
        mean(pass_tokens_sum).round() as usize,
        mean(rows_sum).round() as usize,
        passes,
    );
    let weight_bytes = spec.config.n_params() * spec.dtype.size() as u64;
    if !opts.skip_floors {
        progress("measuring the compute floor (GEMMs of the step's shapes)");
        compute_floor_ms = Some(backend.compute_floor_s(&gemms)? * 1e3);
        progress("measuring the memory floor (copy bandwidth)");
        let bw = backend.memory_bandwidth()?;
        bandwidth = Some(bw);
        memory_floor_ms = Some(weight_bytes as f64 / bw * 1e3);
    }
    let streaming = match opts.skip_floors {
        true => None,
        false => backend.stream_floor()?.map(|f| {
            progress("measured the host-to-device bandwidth of the streamed layers");
            let bytes = (f.streamed_bytes * passes) as f64;
            let floor_ms = bytes / f.h2d_bandwidth * 1e3;
            StreamReport {
                resident_layers: f.resident_layers,
                streamed_layers: f.streamed_layers,
                device_weight_bytes: f.device_weight_bytes as u64,
                streamed_bytes_per_step: bytes as u64,
                h2d_bandwidth_gbs: f.h2d_bandwidth / 1e9,
                pcie_floor_ms: floor_ms,
                ratio_to_pcie_floor: step_ms.median / floor_ms,
            }
        }),
    };
    let loss_ms = times
        .iter()
        .map(|t| t.loss)
        .collect::<Option<Vec<f64>>>()
        .map(|v| Spread::of_seconds(&v));
    let seconds = |f: fn(&StepTime) -> f64| -> Vec<f64> { times.iter().map(f).collect() };
    Ok(BenchReport {
        schema: report::SCHEMA.into(),
        arch: opts.arch.clone(),
        model_type: spec.config.model_type.clone(),
        params: spec.config.n_params(),
        linear_params: spec.config.token_linear_params(),
        device: opts.device.name().into(),
        device_name: backend.device_name(),
        dtype: spec.dtype.suffix().into(),
        family: cfg.family.name().into(),
        preset: cfg.preset.clone(),
        family_config: serde_json::to_value(&cfg.family).expect("family serializes"),
        q: cfg.q,
        one_sided: cfg.one_sided,
        in_place: cfg.in_place(),
        batch: cfg.batch,
        steps: opts.steps,
        warmup: opts.warmup,
        seed: spec.weight_seed,
        lengths: opts.lengths.describe(),
        prompt_len_mean: all_lengths[opts.warmup..].iter().flatten().sum::<usize>() as f64
            / (steps * cfg.batch as f64),
        sequences_per_step: mean(seqs_sum),
        tokens_per_step,
        forwards_per_step: passes,
        setup_s,
        step_ms,
        scoring_ms: Spread::of_seconds(&seconds(|t| t.forward)),
        loss_ms,
        loss_separate: times.iter().all(|t| t.loss.is_some()),
        perturb_ms: Spread::of_seconds(&seconds(|t| t.perturb)),
        update_ms: Spread::of_seconds(&seconds(|t| t.update)),
        tokens_per_s: tokens_per_step / median_s,
        flops_per_step,
        tflops: flops_per_step / median_s / 1e12,
        flop_model: flops::FLOP_MODEL.into(),
        peak_memory_bytes,
        compute_floor_ms,
        compute_floor_gemms: gemms,
        memory_floor_ms,
        memory_floor_bytes: weight_bytes,
        memory_bandwidth_gbs: bandwidth.map(|b| b / 1e9),
        ratio_to_compute_floor: compute_floor_ms.map(|f| step_ms.median / f),
        ratio_to_memory_floor: memory_floor_ms.map(|f| step_ms.median / f),
        run_steps: RUN_STEPS,
        est_hours_run: median_s * RUN_STEPS as f64 / 3600.0,
        skipped_steps: skipped,
        last_loss,
        gpu_memory_budget: spec.gpu_memory_budget.map(|b| b as u64),
        streaming,
    })
}
