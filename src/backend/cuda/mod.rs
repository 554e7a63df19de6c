//! The CUDA backend on cudarc.
//!
//! The kernels in `csrc/` are compiled by build.rs into one fatbin that is embedded in the
//! library (`cfg(zo_kernels)`); [`CudaDevice`] loads it once per device and looks kernels up by
//! name. Everything that can be missing at run time (kernels, the driver library, a GPU) comes
//! back as [`crate::Error::Cuda`], never as a panic.

mod adapter;
mod device;
mod dtype;
#[cfg(zo_kernels)]
mod params;
mod rng;
mod update;

pub use adapter::{pack_launch_config, shrink_launch_config, DeviceSegments, LaunchDims};
pub use device::{kernels_built, CudaDevice};
pub use dtype::DType;
pub use update::{
    axpy_launch_config, basis_launch_config, merge_launch_config, LeftFactor, Strided,
};
