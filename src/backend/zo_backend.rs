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
    /// The family's trained state outside the weights (LoRA factors, low-rank banks, the
    /// prefix), as named f32 tensors on the host; see [`crate::perturb::Family::state_tensors`].
    fn family_state(&self) -> Result<super::StateTensors>;
}

impl<B: Backend + ?Sized> Backend for Box<B> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn score(&self, plan: &crate::plan::Plan) -> Result<super::Scores> {
        (**self).score(plan)
    }

    fn decoder<'a>(
        &'a self,
        batch: super::decode::DecodeBatch,
    ) -> Result<Box<dyn super::decode::Decoder + 'a>> {
        (**self).decoder(batch)
    }
}

impl<B: ZoBackend + ?Sized> ZoBackend for Box<B> {
    fn begin_step(&mut self, step: u64, period_seed: Option<u64>) -> Result<()> {
        (**self).begin_step(step, period_seed)
    }

    fn update(&mut self, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        (**self).update(rec, cfg)
    }

    fn perturb_in_place(&mut self, seed: u64, scale: f32, dist: Dist) -> Result<()> {
        (**self).perturb_in_place(seed, scale, dist)
    }

    fn family_state(&self) -> Result<super::StateTensors> {
        (**self).family_state()
    }
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

    fn family_state(&self) -> Result<super::StateTensors> {
        Ok(self.family().map_or_else(Vec::new, |f| f.state_tensors()))
    }
}
