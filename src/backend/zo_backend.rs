//! What the training loop asks of a backend beyond scoring: the start of a step, the ZO
//! update of a step record and MeZO's in-place perturbation.

use super::cpu::CpuBackend;
use super::Backend;
use crate::perturb::{Dist, StepRecord, UpdateConfig};
use crate::Result;

/// A backend the training loop can drive.
pub trait ZoBackend: Backend {
    /// Start of step `step` (low-rank: merge and switch V at a period boundary).
    fn begin_step(&mut self, step: u64, period_seed: Option<u64>) -> Result<()>;
    /// The ZO update of one record.
    fn update(&mut self, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()>;
    /// θ ← θ + scale·Z(seed) on the weights themselves (the in-place dense estimator).
    fn perturb_in_place(&mut self, seed: u64, scale: f32, dist: Dist) -> Result<()>;
}

impl ZoBackend for CpuBackend {
    fn begin_step(&mut self, step: u64, period_seed: Option<u64>) -> Result<()> {
        CpuBackend::begin_step(self, step, period_seed);
        Ok(())
    }

    fn update(&mut self, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        CpuBackend::update(self, rec, cfg)
    }

    fn perturb_in_place(&mut self, seed: u64, scale: f32, dist: Dist) -> Result<()> {
        let (model, _) = self.parts_mut();
        crate::perturb::dense::perturb_in_place(model, seed, scale, dist);
        Ok(())
    }
}
