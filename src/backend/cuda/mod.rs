//! The CUDA backend on cudarc.
//!
//! The kernels in `csrc/` are compiled by build.rs into one fatbin that is embedded in the
//! library (`cfg(zo_kernels)`); [`CudaDevice`] loads it once per device and looks kernels up by
//! name. Everything that can be missing at run time (kernels, the driver library, a GPU) comes
//! back as [`crate::Error::Cuda`], never as a panic.

mod device;
mod dtype;
#[cfg(zo_kernels)]
mod kernel_args;
mod loss;
mod ops;
#[cfg(zo_kernels)]
mod params;
mod rng;

pub use device::{kernels_built, CudaDevice};
pub use dtype::DType;
pub use loss::{classification_launch_config, logprob_launch_config, Logits, LossLayout};
pub use ops::{norm_launch_config, row_launch_config, NormWeights, Positions, RowShape, Table};
