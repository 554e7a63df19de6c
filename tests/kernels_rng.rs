//! The device RNG source (csrc/philox.cuh, csrc/rng.cu) through its launcher, on the emulated
//! device and on a GPU when there is one, against the host fills of `zo::rng`, bit for bit.
#![cfg(feature = "cuda")]

#[path = "common/devices.rs"]
mod devices;

use devices::devices;
use zo::backend::cuda::kernels::rng::{draw, draw_to_host, Draw};
use zo::backend::cuda::{CudaDevice, DBuf, DType};
use zo::rng::Stream;

/// (seed, tensor, role, start, n): aligned and odd starts, lengths that are not multiples of 4,
/// a range crossing the 2^32-block boundary, the end of the 2^64-element stream, one long
/// enough for several CUDA blocks, and one long enough for the launcher's grid-stride loop.
const CASES: &[(u64, u32, u32, u64, usize)] = &[
    (0, 0, 0, 0, 4096),
    (1, 0, 0, 1, 7),
    (0xa409_3822_299f_31d0, 11, 1, 2, 1),
    (0xa409_3822_299f_31d0, 11, 2, 3, 4099),
    (u64::MAX, u32::MAX, u32::MAX, 5, 1001),
    (42, 7, 3, 4 * (1 << 32) - 3, 10),
    (7, 1, 9, u64::MAX - 9, 9),
    (0x5eed, 123, 4, 12_345_677, 3 * 1024 + 13),
    (0x5eed, 123, 4, 12_345_677, 256 * 8192 * 4 + 13),
];

/// Elements each side of the drawn range that must keep their fill.
const GUARD: usize = 4;

/// The draw into the middle of a buffer filled with `fill` (a word no draw of the case
/// produces, so a skipped element shows); fails if a word outside the range changed.
fn drawn(dev: &CudaDevice, s: Stream, start: u64, n: usize, kind: Draw, fill: u32) -> Vec<u32> {
    let buf = DBuf::from_words(dev, &vec![fill; n + 2 * GUARD]).unwrap();
    draw(dev, s, start, kind, buf.slice(GUARD..GUARD + n)).unwrap();
    let mut all = buf.to_words(dev).unwrap();
    let inside: Vec<u32> = all.drain(GUARD..GUARD + n).collect();
    assert!(
        all.iter().all(|&w| w == fill),
        "{kind:?} draw of {n} from {start} wrote outside its range"
    );
    inside
}

fn host(n: usize, fill: impl FnOnce(&mut [f32])) -> Vec<u32> {
    let mut v = vec![0f32; n];
    fill(&mut v);
    bits(&v)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn first_mismatch<T: PartialEq + std::fmt::Debug>(dev: &[T], host: &[T]) -> String {
    match dev.iter().zip(host).position(|(a, b)| a != b) {
        Some(i) => format!(
            "first mismatch at {i}: device {:?} host {:?}",
            dev[i], host[i]
        ),
        None => format!("lengths device {} host {}", dev.len(), host.len()),
    }
}

#[test]
fn device_draws_equal_host_draws_bit_for_bit() {
    // A quiet NaN payload no float draw produces.
    let nan = 0x7fbf_ffff;
    for (name, dev) in devices("device_draws_equal_host_draws_bit_for_bit") {
        println!("device: {}", dev.describe().unwrap());
        for &(seed, tensor, role, start, n) in CASES {
            let s = Stream::new(seed, tensor, role);
            let case =
                format!("{name}: seed {seed:#x} tensor {tensor} role {role} start {start} n {n}");

            let got = drawn(&dev, s, start, n, Draw::Raw, 0xdead_beef);
            let mut want = vec![0u32; n];
            s.fill_raw(start, &mut want);
            assert!(got == want, "raw, {case}: {}", first_mismatch(&got, &want));

            let got = drawn(&dev, s, start, n, Draw::Gaussian, nan);
            let want = host(n, |v| s.fill_gaussian(start, v));
            assert!(
                got == want,
                "gaussian, {case}: {}",
                first_mismatch(&got, &want)
            );
            let got = bits(&draw_to_host(&dev, s, start, n, Draw::Gaussian).unwrap());
            assert!(
                got == want,
                "gaussian to the host, {case}: {}",
                first_mismatch(&got, &want)
            );

            let got = drawn(&dev, s, start, n, Draw::Rademacher, nan);
            let want = host(n, |v| s.fill_rademacher(start, v));
            assert!(
                got == want,
                "rademacher, {case}: {}",
                first_mismatch(&got, &want)
            );

            let got = drawn(&dev, s, start, n, Draw::Uniform, nan);
            let want = host(n, |v| {
                for (i, x) in v.iter_mut().enumerate() {
                    *x = s.uniform(start + i as u64);
                }
            });
            assert!(
                got == want,
                "uniform, {case}: {}",
                first_mismatch(&got, &want)
            );
        }
    }
}

#[test]
fn draw_of_nothing_and_bad_ranges() {
    for (name, dev) in devices("draw_of_nothing_and_bad_ranges") {
        let s = Stream::new(1, 2, 3);
        assert!(
            draw_to_host(&dev, s, 17, 0, Draw::Gaussian)
                .unwrap()
                .is_empty(),
            "{name}"
        );
        let err = draw_to_host(&dev, s, u64::MAX - 2, 8, Draw::Gaussian).unwrap_err();
        assert!(err.to_string().contains("past"), "{name}: {err}");
        // Four-byte elements only: a 16-bit buffer would be overrun.
        let half = DBuf::zeros(&dev, DType::Bf16, 8).unwrap();
        let err = draw(&dev, s, 0, Draw::Gaussian, half.view()).unwrap_err();
        assert!(err.to_string().contains("f32 is needed"), "{name}: {err}");
    }
}

/// The kernel itself, launched with far fewer threads than Philox blocks (the launcher's
/// geometry strides only past eight million elements, and by at most one round there): it must
/// still write every element through its grid-stride loop. Launched directly on the emulator,
/// into memory that ends at a guard page.
#[test]
fn grid_stride_loop_covers_draws_longer_than_the_grid() {
    use zo_emu::params::{ZoRngDrawParams, ZoRngStream};
    use zo_emu::{GuardedVec, Launch};

    let s = Stream::new(0x1234, 5, 6);
    let (start, n) = (3u64, 4 * 64 * 5 + 2);
    let p = ZoRngDrawParams {
        stream: ZoRngStream {
            seed_lo: s.seed as u32,
            seed_hi: (s.seed >> 32) as u32,
            tensor: s.tensor,
            role: s.role,
        },
        start,
        n: n as u64,
        kind: 0,
        reserved: 0,
    };
    // Ends at a guard page: a write past the last element faults.
    let got = GuardedVec::filled(n, 0u32);
    // SAFETY: zo_rng_draw_u32(ZoRngDrawParams, u32*) writes exactly n elements of `got`.
    unsafe {
        zo_emu::launch(
            "zo_rng_draw_u32",
            Launch::new(2, 32, 0),
            &p as *const ZoRngDrawParams as *const std::ffi::c_void,
            std::mem::size_of::<ZoRngDrawParams>(),
            &[got.as_ptr() as u64],
        )
    }
    .unwrap();
    let mut want = vec![0u32; n];
    s.fill_raw(start, &mut want);
    assert!(*got == want[..], "{}", first_mismatch(&got, &want));
}

/// A kernel name the emulated device does not hold is an error that names it, not a crash.
#[test]
fn unknown_kernel_is_a_clear_error() {
    let p = 0u32;
    // SAFETY: nothing runs; the name is looked up first.
    let err = unsafe {
        zo_emu::launch(
            "zo_no_such_kernel",
            zo_emu::Launch::new(1, 1, 0),
            &p as *const u32 as *const std::ffi::c_void,
            4,
            &[],
        )
    }
    .unwrap_err();
    assert!(err.contains("zo_no_such_kernel"), "{err}");
}
