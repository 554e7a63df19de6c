//! GPU kernel microbenchmarks: elements/s and bytes/s of each kernel family, timed with
//! `iter_custom` around a stream synchronisation so queued launches are counted in full.
//! Without the `cuda` feature, kernels or a GPU, prints why and exits 0.
//!
//! Families slot in as one function each taking `(&mut Criterion, &CudaDevice)`, listed in
//! `FAMILIES`.

#[cfg(feature = "cuda")]
mod gpu {
    use std::time::{Duration, Instant};

    use criterion::{BenchmarkId, Criterion, Throughput};
    use zo::backend::cuda::CudaDevice;

    type Family = fn(&mut Criterion, &CudaDevice);

    /// Every family's benches, in kernel order. Add lowrank, lora, dense, norm, attention,
    /// head/loss and update benches here as their kernels land.
    const FAMILIES: &[(&str, Family)] = &[("rng", rng)];

    /// Times `iters` calls of `f` and the synchronisation that drains them.
    fn timed(dev: &CudaDevice, iters: u64, mut f: impl FnMut()) -> Duration {
        dev.stream().synchronize().expect("synchronize");
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        dev.stream().synchronize().expect("synchronize");
        start.elapsed()
    }

    /// The RNG draw kernels. The draw API returns host vectors, so these figures include the
    /// device-to-host copy of the 4-byte results: a lower bound on the kernel's own rate.
    fn rng(c: &mut Criterion, dev: &CudaDevice) {
        for (unit, n) in [("elements", 1usize << 20), ("elements", 1 << 24)] {
            let mut g = c.benchmark_group(format!("gpu_rng_{unit}"));
            g.throughput(Throughput::Elements(n as u64));
            g.bench_with_input(BenchmarkId::new("gaussian", n), &n, |b, &n| {
                b.iter_custom(|iters| {
                    timed(dev, iters, || {
                        dev.rng_draw_gaussian(1, 2, 3, 0, n).expect("draw");
                    })
                })
            });
            g.bench_with_input(BenchmarkId::new("raw", n), &n, |b, &n| {
                b.iter_custom(|iters| {
                    timed(dev, iters, || {
                        dev.rng_draw_raw(1, 2, 3, 0, n).expect("draw");
                    })
                })
            });
            g.finish();
            let mut g = c.benchmark_group("gpu_rng_bytes");
            g.throughput(Throughput::Bytes(4 * n as u64));
            g.bench_with_input(BenchmarkId::new("gaussian", n), &n, |b, &n| {
                b.iter_custom(|iters| {
                    timed(dev, iters, || {
                        dev.rng_draw_gaussian(1, 2, 3, 0, n).expect("draw");
                    })
                })
            });
            g.finish();
        }
    }

    pub fn main() {
        if !zo::backend::cuda::kernels_built() {
            println!("skipping GPU benches: this build has no CUDA kernels (nvcc not found)");
            return;
        }
        let dev = match CudaDevice::new(0) {
            Ok(d) => d,
            Err(e) => {
                println!("skipping GPU benches: {e}");
                return;
            }
        };
        if let Ok(d) = dev.describe() {
            println!("device: {d}");
        }
        let mut c = Criterion::default().configure_from_args();
        for (name, family) in FAMILIES {
            println!("family {name}");
            family(&mut c, &dev);
        }
        c.final_summary();
    }
}

fn main() {
    #[cfg(feature = "cuda")]
    gpu::main();
    #[cfg(not(feature = "cuda"))]
    println!("skipping GPU benches: built without the cuda feature");
}
