//! The CUDA backend on cudarc.
//!
//! The kernels in `csrc/` are compiled by build.rs into one fatbin that is embedded in the
//! library (`cfg(zo_kernels)`); [`CudaDevice`] loads it once per device and looks kernels up by
//! name. Everything that can be missing at run time (kernels, the driver library, a GPU) comes
//! back as [`crate::Error::Cuda`], never as a panic.

mod adapter;
mod attention;
mod backend;
mod buffer;
mod dense;
mod device;
mod dtype;
mod forward;
mod gemm;
mod loss;
mod lowrank;
mod ops;
mod update;
mod weights;
mod params;
mod rng;

pub use device::{kernels_built, CudaDevice};
pub use backend::{CudaBackend, CudaOptions};
pub use buffer::{DBuf, Init};
pub use dtype::DType;
pub use gemm::{Gemm, GemmShape};
pub use weights::{AugSpec, DeviceModel, GroupLinear, Source};
