//! zo: zeroth-order fine-tuning of language models, run as an inference workload.
//!
//! See README.md for the layout. The CPU backend (`backend::cpu`) is the f32 reference every
//! GPU kernel is checked against.

pub mod backend;
pub mod bench;
pub mod data;
pub mod dist;
pub mod engine;
pub mod error;
pub mod eval;
pub mod ffi;
pub mod generate;
pub mod generate_run;
pub mod io;
mod matmul;
pub mod model;
pub mod perturb;
pub mod plan;
pub mod rng;
pub mod session;
pub mod train;

pub use error::{Error, Result};
