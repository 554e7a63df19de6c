//! The ZO engine around the perturbation families: seeds, estimators, learning-rate
//! schedules, the seed log (checkpoints) and its replay.
//!
//! A run is fully described by the base weights, a [`config::TrainConfig`] and the log of
//! [`crate::perturb::StepRecord`]s: every random quantity (direction seeds, period seeds,
//! training batches) is a pure function of the config's seeds and the step number, see
//! [`seeds`].

pub mod checkpoint;
pub mod config;
pub mod divergence;
pub mod estimator;
pub mod hash;
pub mod objective;
pub mod replay;
pub mod schedule;
pub mod seeds;

pub use checkpoint::{Checkpoint, SkippedStep};
pub use config::TrainConfig;
pub use estimator::{estimate, StepEstimate};
pub use objective::Objective;
pub use replay::{replay, ZoBackend};
pub mod export;
pub mod plot;
