//! The CUDA backend on cudarc.
//!
//! The kernels in `csrc/` are compiled by build.rs into one fatbin that is embedded in the
//! library (`cfg(zo_kernels)`); [`CudaDevice`] loads it once per device and looks kernels up by
//! name. Everything that can be missing at run time (kernels, the driver library, a GPU) comes
//! back as [`crate::Error::Cuda`], never as a panic.

mod attention;
mod device;
mod dtype;
#[cfg(zo_kernels)]
mod params;
mod rng;

#[doc(hidden)]
pub use attention::{
    attention_kernel_name, attention_launch_config, attention_tiling, check_attention,
    check_kv_write, check_rope, kv_write_launch_config, rope_launch_config, AttentionLens,
};
#[cfg(zo_kernels)]
#[doc(hidden)]
pub use attention::{attention_params, kv_write_params, rope_params};
pub use attention::{
    DevicePrefix, LaunchGeometry, PrefillAttention, QkvLayout, SeqTables, MAX_HEAD_DIM, PAGE,
};
pub use device::{kernels_built, CudaDevice};
pub use dtype::DType;
/// A perturbed segment as the kernels read it (csrc/zo_params.h); build it with
/// `ZoSegment::from(&Segment)`.
#[cfg(zo_kernels)]
pub use params::ZoSegment;
#[cfg(zo_kernels)]
#[doc(hidden)]
pub use params::{ZoAttnParams, ZoKvWriteParams, ZoRopeParams};

/// Stands in for the kernels' segment struct in a build without kernels, where no device
/// buffer of segments can exist.
#[cfg(not(zo_kernels))]
#[derive(Debug, Clone, Copy)]
pub enum ZoSegment {}
