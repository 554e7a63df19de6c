//! The CUDA backend, written once against the device seam ([`CudaDevice`]): a GPU through the
//! CUDA driver (the kernels in `csrc/` compiled by build.rs into one embedded fatbin,
//! `cfg(zo_kernels)`, and cuBLASLt), or zo-emu's CPU emulation of one, which runs the same
//! kernels from the same launchers. Everything that can be missing at run time (kernels, the
//! driver library, a GPU) comes back as [`crate::Error::Cuda`], never as a panic.
//!
//! Layout: `device/` the seam and its two devices; `kernels/` one checked launcher per kernel,
//! one module per kernel family; `buffer` device buffers and views; `gemm` the checked GEMM;
//! `weights` the model's layout on the device; `streaming` the layers that
//! stream from host memory under a device-memory budget; `forward` a plan's forward pass; `decode` the
//! decoder over a persistent paged KV cache; `lowrank`,
//! `lora` (sharing `adapter_sites`), `prefix` and `dense` the families; `moments` the
//! momentum and Adam state of lora and prefix; `backend` the backend
//! itself.

mod adapter_sites;
mod backend;
mod buffer;
mod decode;
mod dense;
mod device;
mod forward;
mod gemm;
pub mod kernels;
mod lora;
mod lowrank;
mod moments;
mod params;
mod prefix;
pub mod profile;
mod streaming;
mod weights;

pub use backend::adapter_layout;
pub use backend::{CudaBackend, CudaOptions, StateTensors};
pub use buffer::{live_device_bytes, peak_device_bytes, reset_peak_device_bytes, DBuf, View};
pub use device::{gpu_count, kernels_built, CudaDevice, Target};
pub use gemm::{linear, GemmShape};
/// A perturbed segment as the kernels read it (csrc/zo_params.h); build it with
/// `ZoSegment::from(&Segment)`.
pub use params::ZoSegment;
pub use streaming::{gib, MemoryPlan, Residency, STREAM_BUFFERS};
pub use weights::{
    adapter_state_bytes, fixed_bytes, layer_bytes, layer_shapes, AugSpec, DeviceModel, GroupLinear,
    Source,
};

pub use crate::backend::DType;
