//! The CUDA bench backend: [`CudaBackend`](crate::backend::cuda::CudaBackend) on synthetic
//! weights made on the device from the seed (never through the host, never from disk), the
//! compute floor from cuBLASLt GEMMs of the step's shapes in the storage dtype, the memory
//! floor from a device-to-device copy, and the peak memory from zo's allocation counter.

use super::backend::{BenchBackend, BenchSpec};
use crate::{Error, Result};

/// A description of the device when the CUDA bench backend can run, else why not.
pub fn probe() -> Result<String> {
    #[cfg(feature = "cuda")]
    {
        if !crate::backend::cuda::kernels_built() {
            return Err(Error::Unsupported(
                "this build has no CUDA kernels (nvcc was not found at build time)".into(),
            ));
        }
        crate::backend::cuda::CudaDevice::new(0)?.describe()
    }
    #[cfg(not(feature = "cuda"))]
    Err(Error::Unsupported(
        "this build has no CUDA support (build with --features cuda)".into(),
    ))
}

/// A CUDA bench backend for `spec` on device 0.
pub fn open(spec: &BenchSpec) -> Result<Box<dyn BenchBackend>> {
    probe()?;
    #[cfg(feature = "cuda")]
    {
        Ok(Box::new(imp::CudaBench::new(spec)?))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = spec;
        Err(Error::Unsupported("this build has no CUDA support".into()))
    }
}

#[cfg(feature = "cuda")]
mod imp {
    use std::time::Instant;

    use super::super::backend::{BenchBackend, BenchSpec, GemmShape, ScoreTiming, StreamFloor};
    use crate::backend::cuda::kernels::init::{init, Init};
    use crate::backend::cuda::{self, CudaBackend, CudaOptions, DBuf, Target};
    use crate::backend::{Backend, DType, Scores, ZoBackend};
    use crate::perturb::{Dist, StepRecord, UpdateConfig};
    use crate::plan::Plan;
    use crate::{Error, Result};

    /// Bytes of each of the two buffers the bandwidth copy moves between.
    const COPY_BYTES: usize = 1 << 30;
    /// Timed repetitions of the bandwidth copy (best one kept).
    const COPY_REPS: usize = 10;
    /// Each floor GEMM runs at least this many times per timing.
    const MIN_GEMM_REPS: usize = 8;
    /// RNG tensor id of the floor operands (no model tensor uses it).
    const FLOOR_TENSOR: u32 = 0x7e57_0002;

    pub struct CudaBench {
        inner: CudaBackend,
        name: String,
    }

    impl CudaBench {
        pub fn new(spec: &BenchSpec) -> Result<CudaBench> {
            let t = &spec.train;
            let opts = CudaOptions {
                target: Target::Gpu(0),
                dtype: spec.dtype,
                directions: t.q,
                memory_budget: spec.gpu_memory_budget,
            };
            let (free, total) = cuda::CudaDevice::new(0)?.memory()?;
            let whole = spec.config.n_params() as f64 * spec.dtype.size() as f64;
            let need = spec
                .gpu_memory_budget
                .map_or(whole, |b| whole.min(b as f64));
            if need > free as f64 {
                return Err(Error::Unsupported(format!(
                    "this architecture's {} weights take {:.1} GiB but the GPU has {:.1} of \
                     {:.1} GiB free; pick a smaller --arch or a --gpu-memory-budget",
                    spec.dtype.suffix(),
                    need / (1u64 << 30) as f64,
                    free as f64 / (1u64 << 30) as f64,
                    total as f64 / (1u64 << 30) as f64,
                )));
            }
            cuda::reset_peak_device_bytes();
            let inner = CudaBackend::synthetic(
                &spec.config,
                spec.weight_seed,
                Some((&t.family, t.dist)),
                &opts,
            )?;
            let name = format!(
                "{}, {:.0} GiB",
                inner.device().describe()?,
                total as f64 / (1u64 << 30) as f64
            );
            Ok(CudaBench { inner, name })
        }

        fn time<F: FnMut() -> Result<()>>(&self, reps: usize, mut f: F) -> Result<f64> {
            self.inner.synchronize()?;
            let t = Instant::now();
            for _ in 0..reps {
                f()?;
            }
            self.inner.synchronize()?;
            Ok(t.elapsed().as_secs_f64() / reps as f64)
        }
    }

    impl Backend for CudaBench {
        fn name(&self) -> &'static str {
            "cuda"
        }

        fn score(&self, plan: &Plan) -> Result<Scores> {
            self.inner.score(plan)
        }
    }

    impl ZoBackend for CudaBench {
        fn begin_step(&mut self, step: u64, period_seed: Option<u64>) -> Result<()> {
            ZoBackend::begin_step(&mut self.inner, step, period_seed)
        }

        fn update(&mut self, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
            ZoBackend::update(&mut self.inner, rec, cfg)
        }

        fn perturb_in_place(&mut self, seed: u64, scale: f32, dist: Dist) -> Result<()> {
            self.inner.perturb_in_place(seed, scale, dist)
        }

        fn family_state(&self) -> Result<crate::backend::StateTensors> {
            self.inner.family_state()
        }
    }

    impl BenchBackend for CudaBench {
        fn device_name(&self) -> String {
            self.name.clone()
        }

        fn score_timed(&self, plan: &Plan) -> Result<(Scores, ScoreTiming)> {
            // `score` reads the log-probs back, which waits for the whole forward.
            self.inner.synchronize()?;
            let t = Instant::now();
            let scores = self.inner.score(plan)?;
            let timing = ScoreTiming {
                forward_s: t.elapsed().as_secs_f64(),
                loss_s: None,
            };
            Ok((scores, timing))
        }

        fn synchronize(&self) -> Result<()> {
            self.inner.synchronize()
        }

        fn peak_memory_bytes(&self) -> Result<u64> {
            Ok(cuda::peak_device_bytes() as u64)
        }

        fn compute_floor_s(&self, shapes: &[GemmShape]) -> Result<f64> {
            let dev = self.inner.device();
            let dt = self.inner.dtype();
            let mut total = 0.0;
            for (i, s) in shapes.iter().enumerate() {
                if s.m == 0 || s.n == 0 || s.k == 0 || s.count == 0 {
                    continue;
                }
                // Random operands: a GEMM of zeros draws less power and clocks higher.
                let x = DBuf::zeros(dev, dt, s.m * s.k)?;
                let w = DBuf::zeros(dev, dt, s.n * s.k)?;
                let y = DBuf::zeros(dev, dt, s.m * s.n)?;
                for (j, (b, rows, cols)) in [(&x, s.m, s.k), (&w, s.n, s.k)].iter().enumerate() {
                    let how = Init::Normal {
                        seed: i as u64,
                        tensor: FLOOR_TENSOR,
                        role: j as u32,
                        std: 0.02,
                    };
                    init(dev, b.view(), *rows, *cols, *cols, how)?;
                }
                let shape = cuda::GemmShape {
                    dtype: dt,
                    rows: s.m,
                    out: s.n,
                    k: s.k,
                    ld_x: s.k,
                    ld_w: s.k,
                    ld_y: s.n,
                    bias: false,
                    accumulate: false,
                    store_y: true,
                };
                let run = || cuda::linear(dev, &shape, x.view(), w.view(), y.view(), None);
                run()?;
                let reps = s.count.max(MIN_GEMM_REPS);
                let once = self.time(reps, run)?;
                total += once * s.count as f64;
            }
            Ok(total)
        }

        fn memory_bandwidth(&self) -> Result<f64> {
            let dev = self.inner.device();
            let a = DBuf::zeros(dev, DType::F32, COPY_BYTES / 4)?;
            let b = DBuf::zeros(dev, DType::F32, COPY_BYTES / 4)?;
            dev.copy(&a, &b)?;
            let mut best = f64::INFINITY;
            for _ in 0..COPY_REPS {
                best = best.min(self.time(1, || dev.copy(&a, &b))?);
            }
            Ok(2.0 * COPY_BYTES as f64 / best.max(1e-9))
        }

        fn stream_floor(&self) -> Result<Option<StreamFloor>> {
            let r = self.inner.residency();
            if r.streamed() == 0 {
                return Ok(None);
            }
            Ok(Some(StreamFloor {
                resident_layers: r.resident,
                streamed_layers: r.streamed(),
                device_weight_bytes: self.inner.weight_bytes(),
                streamed_bytes: self.inner.streamed_bytes(),
                h2d_bandwidth: self.h2d_bandwidth(r.layer_bytes)?,
            }))
        }
    }

    impl CudaBench {
        /// Host-to-device bandwidth from page-locked memory on the copy stream, as layers
        /// stream: one layer's bytes per copy, best of [`COPY_REPS`].
        fn h2d_bandwidth(&self, bytes: usize) -> Result<f64> {
            let dev = self.inner.device();
            let host = dev.api().pinned(bytes)?;
            let dst = DBuf::zeros(dev, DType::F32, bytes.div_ceil(4))?;
            let mut best = f64::INFINITY;
            for _ in 0..COPY_REPS {
                best = best.min(self.time(1, || {
                    // SAFETY: `dst` holds at least `bytes` bytes; `host` outlives the copy,
                    // which `time` waits for.
                    let a = unsafe { dev.api().stream_in(dst.ptr(), host.as_slice())? };
                    dev.api().arrive(a)
                })?);
            }
            Ok(bytes as f64 / best.max(1e-9))
        }
    }
}
