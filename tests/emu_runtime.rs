//! The CPU emulation runtime (emu/include/zo_emu.h) on small test kernels
//! (emu/csrc/selftest.cpp): barriers, warp shuffles, shared memory, atomics, early exits, grid
//! geometry, 16-bit float conversions, and the failures it must report instead of hanging.
//! Reductions are compared bit for bit with serial models that add in the kernel's order.

use half::{bf16, f16};
use std::process::Command;
use zo::rng::Stream;
use zo_emu::selftest::{self, Shuffle};
use zo_emu::ZoEmuDim;

fn dim(x: u32, y: u32, z: u32) -> ZoEmuDim {
    ZoEmuDim { x, y, z }
}

type Dims = (u32, u32, u32);

/// Launch shapes (grid, block): 1-D, 2-D and 3-D grids and blocks, block sizes from one warp
/// to 1024.
const SHAPES: &[(Dims, Dims)] = &[
    ((1, 1, 1), (32, 1, 1)),
    ((3, 1, 1), (256, 1, 1)),
    ((2, 2, 1), (96, 1, 1)),
    ((1, 2, 2), (8, 4, 2)),
    ((2, 1, 3), (32, 1, 3)),
    ((1, 1, 1), (1024, 1, 1)),
];

fn gaussians(n: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0f32; n];
    Stream::new(seed, 1, 2).fill_gaussian(0, &mut v);
    v
}

fn bits32(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn block_sum_through_shared_memory_matches_the_tree_order() {
    for &(g, b) in SHAPES {
        let (grid, block) = (g.into(), b.into());
        let per_block = (b.0 * b.1 * b.2) as usize;
        let blocks = (g.0 * g.1 * g.2) as usize;
        let inp = gaussians(per_block * blocks, 7);
        let mut out = vec![f32::NAN; blocks];
        selftest::block_sum(grid, block, &inp, &mut out);
        let want: Vec<f32> = inp
            .chunks(per_block)
            .map(|c| {
                let mut s = c.to_vec();
                let mut w = s.len();
                while w > 1 {
                    let h = w.div_ceil(2);
                    for t in 0..w - h {
                        s[t] += s[t + h];
                    }
                    w = h;
                }
                s[0]
            })
            .collect();
        assert_eq!(bits32(&out), bits32(&want), "grid {g:?} block {b:?}");
    }
}

#[test]
fn warp_sums_match_serial_butterfly_and_tree() {
    for &(g, b) in SHAPES {
        let (grid, block) = (g.into(), b.into());
        let n = selftest::threads(grid, block);
        let inp = gaussians(n, 11);
        let (mut xor, mut down) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        selftest::warp_sums(grid, block, &inp, &mut xor, &mut down);
        let (mut want_xor, mut want_down) = (Vec::new(), Vec::new());
        for warp in inp.chunks(32) {
            let mut v = warp.to_vec();
            for m in [16, 8, 4, 2, 1] {
                v = (0..32).map(|l| v[l] + v[l ^ m]).collect();
            }
            want_xor.extend(v);
            let mut d = warp.to_vec();
            for o in [16, 8, 4, 2, 1] {
                // A lane whose source is past the warp reads its own value.
                d = (0..32)
                    .map(|l| d[l] + if l + o < 32 { d[l + o] } else { d[l] })
                    .collect();
            }
            want_down.extend(d);
        }
        assert_eq!(
            bits32(&xor),
            bits32(&want_xor),
            "xor, grid {g:?} block {b:?}"
        );
        assert_eq!(
            bits32(&down),
            bits32(&want_down),
            "down, grid {g:?} block {b:?}"
        );
    }
}

/// The source lane CUDA defines for each shuffle (own lane where the source is out of range).
fn shuffle_source(op: Shuffle, lane: u32, arg: i32, width: u32) -> u32 {
    let base = lane & !(width - 1);
    match op {
        Shuffle::Idx => base + (arg as u32 & (width - 1)),
        Shuffle::Xor => {
            let src = lane ^ arg as u32;
            if src >= base + width {
                lane
            } else {
                src
            }
        }
        Shuffle::Up => {
            if (lane & (width - 1)) < arg as u32 {
                lane
            } else {
                lane - arg as u32
            }
        }
        Shuffle::Down => {
            if (lane & (width - 1)) + arg as u32 >= width {
                lane
            } else {
                lane + arg as u32
            }
        }
    }
}

#[test]
fn shuffles_read_the_lanes_cuda_defines_for_every_width() {
    let (grid, block) = (dim(2, 1, 1), dim(16, 2, 2));
    let n = selftest::threads(grid, block);
    let inp: Vec<u32> = (0..n as u32).map(|i| i.wrapping_mul(0x9e37_79b9)).collect();
    for op in [Shuffle::Idx, Shuffle::Xor, Shuffle::Up, Shuffle::Down] {
        for width in [1, 2, 4, 8, 16, 32] {
            for arg in [0, 1, 3, 5, 8, 16, 31, 33] {
                let (mut o32, mut o64) = (vec![0u32; n], vec![f64::NAN; n]);
                selftest::shuffle(grid, block, op, arg, width, &inp, &mut o32, &mut o64);
                for i in 0..n {
                    let lane = (i % 32) as u32;
                    let src =
                        i - lane as usize + shuffle_source(op, lane, arg, width as u32) as usize;
                    let case = format!("{op:?} width {width} arg {arg} thread {i}");
                    assert_eq!(o32[i], inp[src], "u32, {case}");
                    assert_eq!(o64[i], inp[src] as f64 + 0.25, "f64, {case}");
                }
            }
        }
    }
}

#[test]
fn dynamic_shared_memory_is_poisoned_per_block_aligned_and_shared_in_the_block() {
    for &(g, b) in SHAPES {
        let (grid, block) = (g.into(), b.into());
        let per_block = (b.0 * b.1 * b.2) as usize;
        let blocks = (g.0 * g.1 * g.2) as usize;
        let per_thread = 3usize;
        let n = per_block * blocks * per_thread;
        let (mut before, mut after, mut aligned) = (vec![0u32; n], vec![0f32; n], vec![0; blocks]);
        selftest::dynamic_smem(
            grid,
            block,
            per_thread as u32,
            &mut before,
            &mut after,
            &mut aligned,
        );
        let case = format!("grid {g:?} block {b:?}");
        assert!(
            before.iter().all(|&x| x == u32::MAX),
            "unwritten smem, {case}"
        );
        assert!(aligned.iter().all(|&a| a == 1), "alignment, {case}");
        for blk in 0..blocks {
            for t in 0..per_block {
                for k in 0..per_thread {
                    let other = per_block - 1 - t;
                    let want = (blk * 100_000 + other * per_thread + k) as f32;
                    let got = after[(blk * per_block + t) * per_thread + k];
                    assert_eq!(got, want, "block {blk} thread {t} slot {k}, {case}");
                }
            }
        }
    }
}

#[test]
fn atomics_from_all_threads_of_many_blocks_all_land() {
    let (grid, block) = (dim(4, 1, 2), dim(128, 1, 1));
    let n = selftest::threads(grid, block);
    let mut a = selftest::Atomics {
        f_sum: 0.0,
        d_sum: 0.0,
        i_sum: 0,
        u_sum: 0,
        ull_sum: 0,
        i_max: i32::MIN,
        i_min: i32::MAX,
        u_max: 0,
        u_min: u32::MAX,
        cas_count: 0,
        exch: 123_456,
        exch_old: vec![0; n],
    };
    selftest::atomics(grid, block, &mut a);
    let g = 0..n as u64;
    // Integer-valued partial sums below 2^24 are exact in f32 in any order.
    assert_eq!(a.f_sum as u64, g.clone().sum::<u64>());
    assert_eq!(a.d_sum, g.clone().map(|x| x as f64 * 0.5).sum::<f64>());
    assert_eq!(
        a.i_sum as i64,
        g.clone().map(|x| x as i64 - 300).sum::<i64>()
    );
    assert_eq!(a.u_sum as u64, g.clone().sum::<u64>());
    assert_eq!(
        a.ull_sum,
        g.clone().fold(0u64, |s, x| s.wrapping_add(x << 33))
    );
    assert_eq!(a.i_max, n as i32 - 1 - 500);
    assert_eq!(a.i_min, -500);
    assert_eq!(a.u_max, (n as u32 - 1) * 7);
    assert_eq!(a.u_min, 3);
    assert_eq!(a.cas_count, n as u32);
    // Exchanges form one chain: every value but the last written was returned exactly once.
    let mut seen = a.exch_old.clone();
    seen.push(a.exch);
    seen.sort_unstable();
    let mut want: Vec<u32> = (0..n as u32).collect();
    want.push(123_456);
    want.sort_unstable();
    assert_eq!(seen, want);
}

#[test]
fn threads_that_return_early_do_not_block_later_barriers() {
    for (blocks, threads, live) in [
        (1, 256, 256),
        (2, 256, 200),
        (3, 64, 33),
        (1, 96, 1),
        (2, 1024, 64),
    ] {
        let mut out = vec![f32::NAN; 2 * blocks];
        selftest::early_return(dim(blocks as u32, 1, 1), dim(threads, 1, 1), live, &mut out);
        let first: u32 = (1..=live).sum();
        let second: u32 = (0..live).filter(|k| k % 3 != 1).map(|k| 2 * (k + 1)).sum();
        for b in 0..blocks {
            let case = format!("{blocks} blocks of {threads}, {live} live");
            assert_eq!(out[2 * b], first as f32, "first barrier, {case}");
            assert_eq!(out[2 * b + 1], second as f32, "second barrier, {case}");
        }
    }
}

#[test]
fn every_thread_of_2d_and_3d_grids_runs_once_with_its_indices() {
    for (g, b) in [
        ((3, 2, 2), (8, 4, 2)),
        ((2, 1, 3), (32, 1, 3)),
        ((1, 5, 1), (4, 8, 1)),
    ] {
        let (grid, block): (ZoEmuDim, ZoEmuDim) = (g.into(), b.into());
        let n = selftest::threads(grid, block);
        let (mut visits, mut info) = (vec![0u32; n], vec![u32::MAX; 12 * n]);
        selftest::geometry(grid, block, &mut visits, &mut info);
        let per_block = (b.0 * b.1 * b.2) as usize;
        for (i, rec) in info.chunks(12).enumerate() {
            let (bid, tid) = ((i / per_block) as u32, (i % per_block) as u32);
            let want = [
                tid % b.0,
                tid / b.0 % b.1,
                tid / b.0 / b.1,
                bid % g.0,
                bid / g.0 % g.1,
                bid / g.0 / g.1,
                b.0,
                b.1,
                b.2,
                g.0,
                g.1,
                g.2,
            ];
            assert_eq!(rec, want, "thread {i}, grid {g:?} block {b:?}");
            assert_eq!(visits[i], 1, "visits of thread {i}, grid {g:?} block {b:?}");
        }
    }
}

fn same_value(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn widening_16_bit_floats_is_exact_for_all_values() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let bf = selftest::bf16_to_f32(&all);
    let hf = selftest::f16_to_f32(&all);
    for (i, &h) in all.iter().enumerate() {
        let want = bf16::from_bits(h).to_f32();
        assert!(
            same_value(bf[i], want),
            "bf16 {h:#06x}: {} vs {want}",
            bf[i]
        );
        let want = f16::from_bits(h).to_f32();
        assert!(same_value(hf[i], want), "f16 {h:#06x}: {} vs {want}", hf[i]);
    }
}

/// f32 inputs for narrowing: a stride through all bit patterns, the specials, and for every
/// 16-bit value its exact f32, the tie with the next value up and the f32s either side.
fn narrowing_sample() -> Vec<f32> {
    let mut v: Vec<u32> = (0..=u32::MAX).step_by(4099).collect();
    v.extend([
        0,
        0x8000_0000,
        1,
        0x8000_0001,
        0x007f_ffff,
        0x0080_0000,
        0x7f7f_ffff,
        0x7f80_0000,
        0xff80_0000,
        0x7f80_0001,
        0x7fc0_0000,
        0xffc0_0001,
        0xffff_ffff,
        0x477f_f000, // 65520: f16 ties to infinity
        0x477f_efff,
        0x3300_0000, // 2^-25: f16 ties to zero
        0x3300_0001,
    ]);
    for h in 0..=u16::MAX {
        let b = (h as u32) << 16;
        v.extend([b, b | 0x8000, (b | 0x8000) - 1, (b | 0x8000) + 1]);
        let (a, n) = (f16::from_bits(h), f16::from_bits(h.wrapping_add(1)));
        if a.is_finite() && n.is_finite() && (h & 0x7fff) != 0x7fff {
            let mid = ((a.to_f64() + n.to_f64()) / 2.0) as f32; // exact: 12 significant bits
            let m = mid.to_bits();
            v.extend([
                a.to_f32().to_bits(),
                m,
                m.wrapping_sub(1),
                m.wrapping_add(1),
            ]);
        }
    }
    v.into_iter().map(f32::from_bits).collect()
}

#[test]
fn narrowing_to_16_bit_floats_rounds_to_nearest_even() {
    let sample = narrowing_sample();
    let bf = selftest::f32_to_bf16(&sample);
    let hf = selftest::f32_to_f16(&sample);
    for (i, &x) in sample.iter().enumerate() {
        let want = bf16::from_f32(x);
        let got = bf16::from_bits(bf[i]);
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "bf16 of {x:e} ({:#010x}): {:#06x} vs {:#06x}",
            x.to_bits(),
            bf[i],
            want.to_bits()
        );
        let want = f16::from_f32(x);
        let got = f16::from_bits(hf[i]);
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "f16 of {x:e} ({:#010x}): {:#06x} vs {:#06x}",
            x.to_bits(),
            hf[i],
            want.to_bits()
        );
    }
}

#[test]
fn dtype_round_trip_through_kernel_matches_half() {
    let mut inp = gaussians(5000, 3);
    inp.extend([
        0.0,
        -0.0,
        1e-30,
        65519.0,
        65520.0,
        1e30,
        f32::INFINITY,
        f32::NAN,
    ]);
    for (dtype, round) in [
        (0, (|x| x) as fn(f32) -> f32),
        (1, |x| bf16::from_f32(x).to_f32()),
        (2, |x| f16::from_f32(x).to_f32()),
    ] {
        let mut out = vec![0f32; inp.len()];
        selftest::roundtrip(dtype, dim(3, 1, 1), dim(64, 1, 1), &inp, &mut out);
        for (i, &x) in inp.iter().enumerate() {
            assert!(same_value(out[i], round(x)), "dtype {dtype}, input {x:e}");
        }
    }
}

/// Runs `child_process_case` in a fresh copy of this test binary with ZO_EMU_CHILD_CASE set,
/// for failures that end the process. Returns (killed by a signal or non-zero exit, stderr).
fn run_child(case: &str) -> (bool, String) {
    let out = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "child_process_case",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ZO_EMU_CHILD_CASE", case)
        .output()
        .expect("running the test binary");
    (
        !out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn child_process_case() {
    let Ok(case) = std::env::var("ZO_EMU_CHILD_CASE") else {
        return;
    };
    match case.as_str() {
        "deadlock" => selftest::deadlock(dim(64, 1, 1)),
        "smem_overrun" => selftest::smem_overrun(1000),
        "block_48" => selftest::empty(dim(1, 1, 1), dim(48, 1, 1), 0),
        "block_2048" => selftest::empty(dim(1, 1, 1), dim(2048, 1, 1), 0),
        "grid_y" => selftest::empty(dim(1, 70_000, 1), dim(32, 1, 1), 0),
        "smem_limit" => selftest::empty(dim(1, 1, 1), dim(32, 1, 1), 227 * 1024 + 1),
        "guarded_overrun" => {
            let mut v = zo_emu::GuardedVec::filled(100, 0f32);
            // SAFETY: index 99 is inside; 100 is the element past the end, which must fault.
            unsafe {
                selftest::store(v.as_mut_ptr(), 99);
                eprintln!("last element {}", v[99]);
                selftest::store(v.as_mut_ptr(), 100);
            }
        }
        other => panic!("unknown case {other}"),
    }
    eprintln!("child case {case} returned");
}

#[test]
fn broken_launches_and_kernels_end_the_process_with_a_message() {
    for (case, msg) in [
        ("deadlock", "zo_emu: deadlock in block (0, 0, 0)"),
        ("block_48", "not a multiple of 32 threads"),
        ("block_2048", "not a multiple of 32 threads"),
        ("grid_y", "exceeds the device limits"),
        ("smem_limit", "exceeds the 232448-byte limit"),
        ("smem_overrun", ""),
        ("guarded_overrun", "last element 1"),
    ] {
        let (failed, stderr) = run_child(case);
        assert!(failed, "{case}: the child process succeeded\n{stderr}");
        assert!(
            stderr.contains(msg),
            "{case}: stderr lacks {msg:?}:\n{stderr}"
        );
        assert!(
            !stderr.contains("returned"),
            "{case}: kernel returned:\n{stderr}"
        );
    }
}

#[test]
fn guarded_vec_holds_its_elements() {
    let v = zo_emu::GuardedVec::from_slice(&[1u16, 2, 3]);
    assert_eq!(&v[..], &[1, 2, 3]);
    assert!(zo_emu::GuardedVec::<f64>::from_slice(&[]).is_empty());
    let mut w = zo_emu::GuardedVec::filled(5, 7.5f32);
    w[4] = 1.0;
    assert_eq!(&w[..], &[7.5, 7.5, 7.5, 7.5, 1.0]);
    assert_eq!(w.as_ptr() as usize % 4, 0);
}

#[test]
fn largest_dynamic_shared_memory_request_is_accepted() {
    selftest::empty(dim(2, 1, 1), dim(32, 1, 1), 227 * 1024);
}

/// Launch by name checks the argument list against the kernel's signature before anything
/// runs: an unknown name, a params struct of the wrong size, a wrong pointer count and a
/// geometry the device would refuse each come back as an error naming the problem; a correct
/// launch runs the kernel.
#[test]
fn launch_by_name_refuses_argument_lists_that_do_not_match_the_kernel() {
    use zo::backend::params::{ZoRngDrawParams, ZO_RNG_GAUSSIAN};
    use zo_emu::Launch;
    let p = ZoRngDrawParams {
        stream: Stream::new(1, 2, 3).into(),
        start: 0,
        n: 8,
        kind: ZO_RNG_GAUSSIAN,
        reserved: 0,
    };
    let out = zo_emu::GuardedVec::filled(8, 0.0f32);
    let ptr = out.as_ptr() as u64;
    let size = std::mem::size_of::<ZoRngDrawParams>();
    let params = &p as *const ZoRngDrawParams as *const std::ffi::c_void;
    let one = Launch::new(1u32, 32u32, 0);
    // SAFETY (every call): the params point at a live ZoRngDrawParams and the output holds the
    // 8 elements it asks for; the failing calls run nothing.
    let err = |name: &str, cfg: Launch, size: usize, ptrs: &[u64]| unsafe {
        zo_emu::launch(name, cfg, params, size, ptrs).unwrap_err()
    };
    assert!(err("zo_no_such_kernel", one, size, &[ptr]).contains("no emulated kernel"));
    assert!(err("zo_rng_draw_f32", one, size - 4, &[ptr]).contains("params struct"));
    assert!(err("zo_rng_draw_f32", one, size, &[ptr, ptr]).contains("pointers"));
    assert!(err("zo_rng_draw_f32", Launch::new(0u32, 32u32, 0), size, &[ptr]).contains("grid"));
    assert!(err(
        "zo_rng_draw_f32",
        Launch::new(1u32, 2048u32, 0),
        size,
        &[ptr]
    )
    .contains("grid"));
    assert!(err(
        "zo_rng_draw_f32",
        Launch::new(1u32, 32u32, 300_000),
        size,
        &[ptr]
    )
    .contains("shared memory"));
    // SAFETY: as above, with the kernel's own argument list.
    unsafe { zo_emu::launch("zo_rng_draw_f32", one, params, size, &[ptr]) }.unwrap();
    let mut want = vec![0.0f32; 8];
    zo::rng::fill_gaussian(1, 2, 3, 0, &mut want);
    assert_eq!(bits32(&out), bits32(&want));
    let names = zo_emu::kernel_names();
    for family in [
        "zo_norm_bf16",
        "zo_attn_prefill_hd128_f16",
        "zo_adapter_pack_f32",
    ] {
        assert!(names.iter().any(|n| n == family), "{family} not registered");
    }
}
