//! The CUDA backend on cudarc.
//!
//! The kernels in `csrc/` are compiled by build.rs into one fatbin that is embedded in the
//! library (`cfg(zo_kernels)`); [`CudaDevice`] loads it once per device and looks kernels up by
//! name. Everything that can be missing at run time (kernels, the driver library, a GPU) comes
//! back as [`crate::Error::Cuda`], never as a panic.

mod adapter;
mod attention;
#[cfg(zo_kernels)]
mod backend;
mod buffer;
#[cfg(zo_kernels)]
mod dense;
mod device;
mod dtype;
#[cfg(zo_kernels)]
mod forward;
mod gemm;
#[cfg(zo_kernels)]
mod kernel_args;
#[cfg(zo_kernels)]
mod lora;
mod loss;
#[cfg(zo_kernels)]
mod lowrank;
mod ops;
mod params;
pub mod profile;
mod rng;
mod update;
mod weights;

pub use adapter::{pack_launch_config, shrink_launch_config, DeviceSegments, LaunchDims};
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
#[cfg(zo_kernels)]
pub use backend::{CudaBackend, CudaOptions, StateTensors};
pub use buffer::{live_device_bytes, peak_device_bytes, reset_peak_device_bytes, DBuf, Init};
pub use device::{kernels_built, CudaDevice};
pub use dtype::DType;
pub use gemm::{Gemm, GemmShape};
pub use loss::{Logits, LossLayout};
pub use ops::{NormWeights, Positions, RowShape, Table};
/// A perturbed segment as the kernels read it (csrc/zo_params.h); build it with
/// `ZoSegment::from(&Segment)`.
pub use params::ZoSegment;
#[doc(hidden)]
pub use params::{ZoAttnParams, ZoKvWriteParams, ZoRopeParams};
pub use update::{
    axpy_launch_config, basis_launch_config, merge_launch_config, LeftFactor, Strided,
};
pub use weights::{AugSpec, DeviceModel, GroupLinear, Source};
