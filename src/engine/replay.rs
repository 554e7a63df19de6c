//! Replay of a seed log.
//!
//! Replay runs exactly the state-changing calls of training, in the same order, without
//! scoring: for each step `begin_step`, the in-place perturbation schedule (dense in-place
//! only), then `update` unless the step was skipped. Since every update is a pure function
//! of its record, the result equals the trained state bit for bit.

use super::checkpoint::SkippedStep;
use super::config::TrainConfig;
pub use crate::backend::ZoBackend;
use crate::perturb::StepRecord;
use crate::{Error, Result};

/// The three scales of MeZO's in-place schedule: +ε, −2ε, +ε. The restore is not exact in
/// floating point, which is why replay repeats it rather than skipping it.
pub fn in_place_scales(eps: f32) -> [f32; 3] {
    [eps, -2.0 * eps, eps]
}

/// One step of a seed log.
#[derive(Debug, Clone, Copy)]
pub enum LogStep<'a> {
    Applied(&'a StepRecord),
    Skipped(&'a SkippedStep),
}

impl LogStep<'_> {
    pub fn step(&self) -> u64 {
        match self {
            LogStep::Applied(r) => r.step,
            LogStep::Skipped(s) => s.step,
        }
    }

    fn period_seed(&self) -> Option<u64> {
        match self {
            LogStep::Applied(r) => r.period_seed,
            LogStep::Skipped(s) => s.period_seed,
        }
    }

    fn seeds(&self) -> &[u64] {
        match self {
            LogStep::Applied(r) => &r.seeds,
            LogStep::Skipped(s) => &s.seeds,
        }
    }
}

/// The log's steps 0..`upto` in order; errors if any step is missing or listed twice.
pub fn log_steps<'a>(
    records: &'a [StepRecord],
    skipped: &'a [SkippedStep],
    upto: u64,
) -> Result<Vec<LogStep<'a>>> {
    let mut all: Vec<LogStep<'a>> = records
        .iter()
        .map(LogStep::Applied)
        .chain(skipped.iter().map(LogStep::Skipped))
        .collect();
    all.sort_by_key(LogStep::step);
    for (i, s) in all.iter().enumerate() {
        if s.step() != i as u64 {
            return Err(Error::Config(format!(
                "seed log: expected step {i} but found step {} (steps must run 0, 1, 2, … with none missing or repeated)",
                s.step()
            )));
        }
    }
    if (all.len() as u64) < upto {
        return Err(Error::Config(format!(
            "seed log: holds steps 0..{} but {upto} were asked for",
            all.len()
        )));
    }
    all.truncate(upto as usize);
    Ok(all)
}

/// Rebuilds the state after the first `upto` steps of the log on a backend holding the base
/// weights and a freshly built family.
pub fn replay<B: ZoBackend + ?Sized>(
    backend: &mut B,
    cfg: &TrainConfig,
    records: &[StepRecord],
    skipped: &[SkippedStep],
    upto: u64,
) -> Result<()> {
    let ucfg = cfg.update_config();
    for s in log_steps(records, skipped, upto)? {
        backend.begin_step(s.step(), s.period_seed())?;
        if cfg.in_place() {
            let scales = in_place_scales(cfg.eps);
            for &seed in s.seeds() {
                for scale in scales {
                    backend.perturb_in_place(seed, scale, cfg.dist)?;
                }
            }
        }
        if let LogStep::Applied(r) = s {
            backend.update(r, &ucfg)?;
        }
    }
    Ok(())
}
