//! The CUDA side of the bench: the seam the CUDA backend plugs into.
//!
//! [`probe`] says whether a CUDA bench backend can run here; [`open`] builds one for a spec:
//! synthetic weights filled on the device from the seed (never through the host), the floors
//! measured with cuBLAS(Lt) GEMMs of the step's shapes and a device-to-device copy, peak
//! memory from the allocator. Until the CUDA forward exists both return an error that says so.

use super::backend::{BenchBackend, BenchSpec};
use crate::{Error, Result};

const NOT_YET: &str = "CUDA bench backend not built yet (the CUDA forward is not implemented); \
                       use --device cpu";

/// A description of the device when the CUDA bench backend can run, else why not.
pub fn probe() -> Result<String> {
    #[cfg(feature = "cuda")]
    {
        if !crate::backend::cuda::kernels_built() {
            return Err(Error::Unsupported(
                "this build has no CUDA kernels (nvcc was not found at build time)".into(),
            ));
        }
        let dev = crate::backend::cuda::CudaDevice::new(0)?;
        let _ = dev;
        Err(Error::Unsupported(NOT_YET.into()))
    }
    #[cfg(not(feature = "cuda"))]
    Err(Error::Unsupported(
        "this build has no CUDA support (build with --features cuda)".into(),
    ))
}

/// A CUDA bench backend for `spec` on device 0.
pub fn open(spec: &BenchSpec) -> Result<Box<dyn BenchBackend>> {
    let _ = spec;
    probe()?;
    Err(Error::Unsupported(NOT_YET.into()))
}
