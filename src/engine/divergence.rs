//! Detecting a run that diverges: its loss turns non-finite or climbs far above where it
//! started. ZO steps are noisy, so single bad losses are tolerated (a non-finite one is
//! skipped by the estimator); a sustained rise or a run of non-finite losses is not.

use std::collections::VecDeque;

/// Finite step losses averaged into the start level, and into the recent level.
const WINDOW: usize = 10;
/// Consecutive non-finite step losses that end the run.
const NON_FINITE_RUN: usize = 5;

/// Watches the training loss of each step, in step order.
#[derive(Debug, Clone, Default)]
pub struct DivergenceGuard {
    first: Vec<f64>,
    recent: VecDeque<f64>,
    non_finite: usize,
    /// The latest step whose loss was finite and within bounds: the state before its
    /// update is the last known good one.
    last_good: Option<u64>,
}

impl DivergenceGuard {
    /// The mean of the first finite step losses, once there are `WINDOW` of them.
    pub fn start(&self) -> Option<f64> {
        (self.first.len() == WINDOW).then(|| self.first.iter().sum::<f64>() / WINDOW as f64)
    }

    /// The loss above which a window of steps counts as diverged: twice the start level and
    /// at least one nat above it.
    pub fn limit(&self) -> Option<f64> {
        self.start().map(|s| s + s.abs().max(1.0))
    }

    /// The latest step scored at a good state (see the field).
    pub fn last_good(&self) -> Option<u64> {
        self.last_good
    }

    /// Records the loss of step `step`; returns why the run diverged, if it has.
    pub fn observe(&mut self, step: u64, loss: f64) -> Option<String> {
        if !loss.is_finite() {
            self.non_finite += 1;
            return (self.non_finite >= NON_FINITE_RUN).then(|| {
                format!("the training loss was non-finite for {NON_FINITE_RUN} steps in a row")
            });
        }
        self.non_finite = 0;
        if self.first.len() < WINDOW {
            self.first.push(loss);
        }
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(loss);
        let Some(limit) = self.limit() else {
            self.last_good = Some(step);
            return None;
        };
        if loss <= limit {
            self.last_good = Some(step);
        }
        let mean = self.recent.iter().sum::<f64>() / self.recent.len() as f64;
        (self.recent.len() == WINDOW && mean > limit).then(|| {
            format!(
                "the training loss rose to {mean:.4} (mean of the last {WINDOW} steps) from \
                 {:.4} at the start",
                self.start().unwrap_or(f64::NAN)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noisy_but_steady_losses_pass() {
        let mut g = DivergenceGuard::default();
        for s in 0..200u64 {
            let l = 0.8 + 0.3 * ((s * 7919) % 13) as f64 / 13.0;
            assert_eq!(g.observe(s, l), None, "step {s}");
        }
        assert_eq!(g.last_good(), Some(199));
        // Isolated non-finite losses are tolerated.
        assert_eq!(g.observe(200, f64::NAN), None);
        assert_eq!(g.observe(201, 0.9), None);
    }

    #[test]
    fn a_run_of_non_finite_losses_stops() {
        let mut g = DivergenceGuard::default();
        for s in 0..20 {
            g.observe(s, 0.7);
        }
        for s in 20..24 {
            assert_eq!(g.observe(s, f64::INFINITY), None);
        }
        assert!(g.observe(24, f64::NAN).unwrap().contains("non-finite"));
        assert_eq!(g.last_good(), Some(19));
    }

    #[test]
    fn a_sustained_rise_stops_and_names_the_levels() {
        let mut g = DivergenceGuard::default();
        for s in 0..10 {
            g.observe(s, 0.7);
        }
        assert!((g.limit().unwrap() - 1.7).abs() < 1e-12);
        let mut why = None;
        for s in 10..40 {
            why = g.observe(s, 0.75 + (s - 9) as f64 * 0.2);
            if why.is_some() {
                break;
            }
        }
        let why = why.expect("diverges");
        assert!(why.contains("from 0.7000"), "{why}");
        // Step 13's loss (1.55) is the last within the limit of 1.7.
        assert_eq!(g.last_good(), Some(13));
    }
}
