//! Learning-rate schedules. The lr of each step is written into its record, so replay never
//! recomputes it.

use super::config::{LrSchedule, TrainConfig};

/// The learning rate of step `step` (0-based) of a `cfg.steps`-step run.
pub fn lr_at(cfg: &TrainConfig, step: u64) -> f32 {
    match cfg.schedule {
        LrSchedule::Constant => cfg.lr,
        LrSchedule::Linear => {
            // f64 so the factor is exact enough for long runs; 0 at and after the last step.
            let left = cfg.steps.saturating_sub(step) as f64 / cfg.steps.max(1) as f64;
            (cfg.lr as f64 * left) as f32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_decays_to_zero() {
        let mut c = TrainConfig::preset("mezo").unwrap();
        c.steps = 4;
        c.lr = 1.0;
        assert_eq!(lr_at(&c, 0), 1.0);
        c.schedule = LrSchedule::Linear;
        let lrs: Vec<f32> = (0..5).map(|s| lr_at(&c, s)).collect();
        assert_eq!(lrs, vec![1.0, 0.75, 0.5, 0.25, 0.0]);
    }
}
