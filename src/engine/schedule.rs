//! Learning-rate schedules. The lr of each step is written into its record, so replay never
//! recomputes it.

use super::config::{LrSchedule, TrainConfig};

/// The learning rate of step `step` (0-based) of a `cfg.steps`-step run: a linear warm-up
/// over the first `cfg.warmup` steps (lr·(s+1)/warmup), then the schedule's decay over the
/// steps that remain, reaching 0 at step `cfg.steps`.
pub fn lr_at(cfg: &TrainConfig, step: u64) -> f32 {
    // f64 so the factors are exact enough for long runs.
    let lr = cfg.lr as f64;
    if step < cfg.warmup {
        return (lr * (step + 1) as f64 / cfg.warmup as f64) as f32;
    }
    let span = cfg.steps.saturating_sub(cfg.warmup).max(1) as f64;
    let left = (cfg.steps.saturating_sub(step) as f64 / span).min(1.0);
    let factor = match cfg.schedule {
        LrSchedule::Constant => 1.0,
        LrSchedule::Linear => left,
        LrSchedule::Cosine => 0.5 * (1.0 - (std::f64::consts::PI * left).cos()),
    };
    (lr * factor) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(steps: u64, warmup: u64, schedule: LrSchedule) -> TrainConfig {
        let mut c = TrainConfig::preset("mezo").unwrap();
        c.steps = steps;
        c.warmup = warmup;
        c.schedule = schedule;
        c.lr = 1.0;
        c
    }

    #[test]
    fn linear_decays_to_zero() {
        let c = cfg(4, 0, LrSchedule::Constant);
        assert_eq!(lr_at(&c, 0), 1.0);
        assert_eq!(lr_at(&c, 3), 1.0);
        let c = cfg(4, 0, LrSchedule::Linear);
        let lrs: Vec<f32> = (0..5).map(|s| lr_at(&c, s)).collect();
        assert_eq!(lrs, vec![1.0, 0.75, 0.5, 0.25, 0.0]);
    }

    #[test]
    fn warmup_rises_then_cosine_falls_to_zero() {
        let c = cfg(6, 2, LrSchedule::Cosine);
        let lrs: Vec<f32> = (0..7).map(|s| lr_at(&c, s)).collect();
        assert_eq!(&lrs[..3], &[0.5, 1.0, 1.0]);
        // After the warm-up the cosine falls strictly, through half-way at the midpoint.
        assert!(lrs[2..].windows(2).all(|w| w[1] < w[0]), "{lrs:?}");
        assert!((lrs[4] - 0.5).abs() < 1e-6, "{lrs:?}");
        assert_eq!(lrs[6], 0.0);
        let c = cfg(6, 2, LrSchedule::Constant);
        let lrs: Vec<f32> = (0..6).map(|s| lr_at(&c, s)).collect();
        assert_eq!(lrs, vec![0.5, 1.0, 1.0, 1.0, 1.0, 1.0]);
    }
}
