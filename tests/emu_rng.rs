//! The device RNG source (csrc/philox.cuh, csrc/rng.cu), run on the CPU through the emulation
//! harness with the launch geometry of the CUDA wrapper, against the host fills of `zo::rng`,
//! bit for bit. The same check runs on a GPU in tests/gpu_rng.rs.

use zo::backend::launch::rng_draw_launch_config;
use zo::rng::Stream;
use zo_emu::params::{
    ZoRngDrawParams, ZoRngStream, ZO_RNG_GAUSSIAN, ZO_RNG_RADEMACHER, ZO_RNG_UNIFORM,
};
use zo_emu::{GuardedVec, Launch};

/// (seed, tensor, role, start, n): aligned and odd starts, lengths that are not multiples of 4,
/// a range crossing the 2^32-block boundary, the end of the 2^64-element stream, and one long
/// enough for several CUDA blocks.
const CASES: &[(u64, u32, u32, u64, usize)] = &[
    (0, 0, 0, 0, 4096),
    (1, 0, 0, 1, 7),
    (0xa409_3822_299f_31d0, 11, 1, 2, 1),
    (0xa409_3822_299f_31d0, 11, 2, 3, 4099),
    (u64::MAX, u32::MAX, u32::MAX, 5, 1001),
    (42, 7, 3, 4 * (1 << 32) - 3, 10),
    (7, 1, 9, u64::MAX - 9, 9),
    (0x5eed, 123, 4, 12_345_677, 3 * 1024 + 13),
];

fn params(s: Stream, start: u64, n: usize, kind: u32) -> ZoRngDrawParams {
    ZoRngDrawParams {
        stream: ZoRngStream {
            seed_lo: s.seed as u32,
            seed_hi: (s.seed >> 32) as u32,
            tensor: s.tensor,
            role: s.role,
        },
        start,
        n: n as u64,
        kind,
        reserved: 0,
    }
}

fn launch(start: u64, n: usize) -> Launch {
    let d = rng_draw_launch_config(start, n);
    Launch::new(d.grid, d.block, d.smem)
}

fn emu_f32(s: Stream, start: u64, n: usize, kind: u32) -> Vec<u32> {
    // Filled with a pattern no draw produces, so an element the kernel skips shows up; one
    // written past the end faults.
    let mut out = GuardedVec::filled(n, f32::from_bits(0x7fbf_ffff));
    zo_emu::rng::draw_f32(launch(start, n), params(s, start, n, kind), &mut out);
    out.iter().map(|x| x.to_bits()).collect()
}

fn host(n: usize, fill: impl FnOnce(&mut [f32])) -> Vec<u32> {
    let mut v = vec![0f32; n];
    fill(&mut v);
    v.iter().map(|x| x.to_bits()).collect()
}

fn first_mismatch<T: PartialEq + std::fmt::Debug>(emu: &[T], host: &[T]) -> String {
    match emu.iter().zip(host).position(|(a, b)| a != b) {
        Some(i) => format!("first mismatch at {i}: emu {:?} host {:?}", emu[i], host[i]),
        None => format!("lengths emu {} host {}", emu.len(), host.len()),
    }
}

#[test]
fn emulated_draws_equal_host_draws_bit_for_bit() {
    for &(seed, tensor, role, start, n) in CASES {
        let s = Stream::new(seed, tensor, role);
        let case = format!("seed {seed:#x} tensor {tensor} role {role} start {start} n {n}");

        let mut raw = GuardedVec::filled(n, 0xdead_beef_u32);
        zo_emu::rng::draw_u32(launch(start, n), params(s, start, n, 0), &mut raw);
        let mut want = vec![0u32; n];
        s.fill_raw(start, &mut want);
        assert!(
            *raw == want[..],
            "raw, {case}: {}",
            first_mismatch(&raw, &want)
        );

        let got = emu_f32(s, start, n, ZO_RNG_GAUSSIAN);
        let want = host(n, |v| s.fill_gaussian(start, v));
        assert!(
            got == want,
            "gaussian, {case}: {}",
            first_mismatch(&got, &want)
        );

        let got = emu_f32(s, start, n, ZO_RNG_RADEMACHER);
        let want = host(n, |v| s.fill_rademacher(start, v));
        assert!(
            got == want,
            "rademacher, {case}: {}",
            first_mismatch(&got, &want)
        );

        let got = emu_f32(s, start, n, ZO_RNG_UNIFORM);
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

#[test]
fn grid_stride_loop_covers_draws_longer_than_the_grid() {
    // The CUDA wrapper caps the grid; a launch of fewer threads than Philox blocks must still
    // write every element through the grid-stride loop.
    let s = Stream::new(0x1234, 5, 6);
    let (start, n) = (3, 4 * 64 * 5 + 2);
    let mut got = GuardedVec::filled(n, 0u32);
    zo_emu::rng::draw_u32(Launch::new(2, 32, 0), params(s, start, n, 0), &mut got);
    let mut want = vec![0u32; n];
    s.fill_raw(start, &mut want);
    assert!(*got == want[..], "{}", first_mismatch(&got, &want));
}
