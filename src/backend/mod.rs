//! Backends score a [`Plan`]. `cpu` is the f32 reference; `cuda` is the product and is
//! checked against `cpu`.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod decode;
pub mod device_plan;
mod dtype;
pub mod gpu_support;
pub mod params;
pub mod rope;
pub mod validate;
mod zo_backend;

pub use dtype::DType;
pub use zo_backend::ZoBackend;

use crate::plan::{ExampleScore, Plan};
use crate::Result;

/// A family's trained state as named f32 tensors with their shapes (see
/// [`crate::perturb::Family::state_tensors`]).
pub type StateTensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// What scoring a plan yields.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// log p(query.token | row) for every query of the plan, fp32.
    pub query_logprobs: Vec<f32>,
    pub examples: Vec<ExampleScore>,
}

pub trait Backend {
    fn name(&self) -> &'static str;
    fn score(&self, plan: &Plan) -> Result<Scores>;
    /// A decoder over this backend's current weights (see [`decode`]).
    fn decoder<'a>(&'a self, batch: decode::DecodeBatch) -> Result<Box<dyn decode::Decoder + 'a>> {
        let _ = batch;
        Err(crate::Error::Unsupported(format!(
            "the {} backend does not decode",
            self.name()
        )))
    }
}
