//! The device RNG against the host RNG, bit for bit. Needs a GPU and a build with kernels
//! (`--features cuda` with nvcc found); elsewhere it prints `skipped: <reason>` and passes,
//! unless ZO_REQUIRE_GPU=1, which turns the skip into a failure (for runs on GPU machines).
#![cfg(feature = "cuda")]

use zo::backend::cuda::CudaDevice;
use zo::rng::Stream;

fn device() -> Option<CudaDevice> {
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e) if std::env::var("ZO_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("ZO_REQUIRE_GPU=1 but no usable GPU: {e}")
        }
        Err(e) => {
            skip(&format!("gpu_rng: {e}"));
            None
        }
    }
}

/// (seed, tensor, role, start, n): aligned and unaligned starts, lengths that are not multiples
/// of 4, a range crossing the 2^32-block boundary, and one large enough to use the grid-stride
/// loop.
const CASES: &[(u64, u32, u32, u64, usize)] = &[
    (0, 0, 0, 0, 4096),
    (1, 0, 0, 1, 7),
    (0xa409_3822_299f_31d0, 11, 1, 2, 1),
    (0xa409_3822_299f_31d0, 11, 2, 3, 4099),
    (u64::MAX, u32::MAX, u32::MAX, 5, 1001),
    (42, 7, 3, 4 * (1 << 32) - 3, 10),
    (0x5eed, 123, 4, 12_345_677, 256 * 8192 * 4 + 13),
];

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn first_mismatch<T: PartialEq + std::fmt::Debug>(gpu: &[T], cpu: &[T]) -> String {
    match gpu.iter().zip(cpu).position(|(a, b)| a != b) {
        Some(i) => format!("first mismatch at {i}: gpu {:?} cpu {:?}", gpu[i], cpu[i]),
        None => format!("lengths gpu {} cpu {}", gpu.len(), cpu.len()),
    }
}

#[test]
fn gpu_draws_equal_host_draws_bit_for_bit() {
    let Some(dev) = device() else { return };
    println!("device: {}", dev.describe().unwrap());
    for &(seed, tensor, role, start, n) in CASES {
        let s = Stream::new(seed, tensor, role);
        let case = format!("seed {seed:#x} tensor {tensor} role {role} start {start} n {n}");

        let gpu = dev.rng_draw_raw(seed, tensor, role, start, n).unwrap();
        let mut cpu = vec![0u32; n];
        s.fill_raw(start, &mut cpu);
        assert!(gpu == cpu, "raw, {case}: {}", first_mismatch(&gpu, &cpu));

        let gpu = bits(&dev.rng_draw_gaussian(seed, tensor, role, start, n).unwrap());
        let mut cpu = vec![0f32; n];
        s.fill_gaussian(start, &mut cpu);
        let cpu = bits(&cpu);
        assert!(
            gpu == cpu,
            "gaussian, {case}: {}",
            first_mismatch(&gpu, &cpu)
        );

        let gpu = bits(
            &dev.rng_draw_rademacher(seed, tensor, role, start, n)
                .unwrap(),
        );
        let mut cpu = vec![0f32; n];
        s.fill_rademacher(start, &mut cpu);
        let cpu = bits(&cpu);
        assert!(
            gpu == cpu,
            "rademacher, {case}: {}",
            first_mismatch(&gpu, &cpu)
        );

        let gpu = bits(&dev.rng_draw_uniform(seed, tensor, role, start, n).unwrap());
        let cpu: Vec<u32> = (0..n as u64)
            .map(|i| s.uniform(start + i).to_bits())
            .collect();
        assert!(
            gpu == cpu,
            "uniform, {case}: {}",
            first_mismatch(&gpu, &cpu)
        );
    }
}

#[test]
fn gpu_draw_of_nothing_and_bad_ranges() {
    let Some(dev) = device() else { return };
    assert!(dev.rng_draw_gaussian(1, 2, 3, 17, 0).unwrap().is_empty());
    let err = dev.rng_draw_gaussian(1, 2, 3, u64::MAX - 2, 8).unwrap_err();
    assert!(err.to_string().contains("past"), "{err}");
}

#[test]
fn unknown_kernel_is_a_clear_error() {
    let Some(dev) = device() else { return };
    let err = dev.function("zo_no_such_kernel").unwrap_err();
    assert!(err.to_string().contains("zo_no_such_kernel"), "{err}");
}

/// Says why a test did not run. Written to the process's stderr directly, not through
/// `eprintln!`, so the test harness does not capture it and CI logs show every skip.
fn skip(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
}
