//! The devices a kernel-family test runs its one case list on: the emulated device (zo-emu,
//! the kernels on the CPU) always, and GPU 0 when one is usable. Where there is no GPU the
//! GPU run prints `skipped: <reason>` and the test passes on emulation alone, unless
//! ZO_REQUIRE_GPU=1 makes that a failure.
#![allow(dead_code)]

use zo::backend::cuda::CudaDevice;

/// `(name, device)` pairs: `("emu", ..)` first, then `("gpu", ..)` when present.
pub fn devices(test: &str) -> Vec<(&'static str, CudaDevice)> {
    let mut out = vec![("emu", CudaDevice::emulated())];
    match CudaDevice::new(0) {
        Ok(d) => out.push(("gpu", d)),
        Err(e) if std::env::var("ZO_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("ZO_REQUIRE_GPU=1 but no usable GPU: {e}")
        }
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipped on the GPU: {test}: {e}");
        }
    }
    out
}

/// The GPU alone (tests that only make sense on real hardware), or None with a printed skip.
pub fn gpu(test: &str) -> Option<CudaDevice> {
    devices(test)
        .into_iter()
        .find(|(n, _)| *n == "gpu")
        .map(|(_, d)| d)
}

/// Where to build a `CudaBackend` for each device of [`devices`].
pub fn targets(test: &str) -> Vec<(&'static str, zo::backend::cuda::Target)> {
    use zo::backend::cuda::Target;
    devices(test)
        .into_iter()
        .map(|(name, d)| {
            (
                name,
                if d.is_emulated() {
                    Target::Emulated
                } else {
                    Target::Gpu(0)
                },
            )
        })
        .collect()
}
