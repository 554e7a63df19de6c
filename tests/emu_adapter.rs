//! The shrink and pack kernels of the K-augmented GEMM (csrc/adapter.cu) on the CPU through
//! the emulation harness, with the CUDA wrapper's launch geometry: bit for bit against the CPU
//! twin (`perturb::augment`), and the augmented product against the lowrank and lora forward
//! (tolerance rule in tests/common/adapter.rs). tests/gpu_adapter.rs runs the same on a GPU.

#[path = "common/adapter.rs"]
mod adapter;

use adapter::{cases, Case, Prec};
use zo::backend::launch::{pack_launch_config, shrink_launch_config};
use zo::perturb::augment::{AugFamily, AugSite};
use zo::perturb::Dist;
use zo_emu::params::*;
use zo_emu::Launch;

fn launch(d: zo::backend::launch::LaunchDims) -> Launch {
    Launch::new(d.grid, d.block, d.smem)
}

fn dist(d: Dist) -> u32 {
    match d {
        Dist::Gaussian => ZO_DIST_GAUSSIAN,
        Dist::Rademacher => ZO_DIST_RADEMACHER,
    }
}

fn family(f: AugFamily) -> u32 {
    match f {
        AugFamily::LowRank => ZO_ADAPTER_LOWRANK,
        AugFamily::Lora => ZO_ADAPTER_LORA,
    }
}

fn shrink_params(
    a: &AugSite,
    rows: usize,
    n_segs: usize,
    pad: std::ops::Range<usize>,
    elem: usize,
) -> ZoShrinkParams {
    ZoShrinkParams {
        rows: rows as u32,
        k: a.k as u32,
        ld: a.ld as u32,
        col0: a.col0 as u32,
        rank: a.rank as u32,
        dirs: a.dirs as u32,
        n_segs: n_segs as u32,
        family: family(a.family),
        live: a.live as u32,
        dist: dist(a.dist),
        tensor: a.tensor_id,
        vec: (a.ld * elem).is_multiple_of(16) as u32,
        pad_begin: pad.start as u32,
        pad_end: pad.end as u32,
        scale: a.scale,
        scale_exp: a.scale_exp,
    }
}

fn pack_params(a: &AugSite, out: usize, row0: usize) -> ZoPackParams {
    ZoPackParams {
        out: out as u32,
        ld: a.ld as u32,
        row0: row0 as u32,
        col0: a.col0 as u32,
        rank: a.rank as u32,
        dirs: a.dirs as u32,
        family: family(a.family),
        dist: dist(a.dist),
        tensor: a.tensor_id,
        scale_exp: a.scale_exp,
    }
}

fn to_bits(p: Prec, v: &[f32]) -> Vec<u16> {
    v.iter()
        .map(|&x| match p {
            Prec::Bf16 => half::bf16::from_f32(x).to_bits(),
            _ => half::f16::from_f32(x).to_bits(),
        })
        .collect()
}

fn from_bits(p: Prec, v: &[u16]) -> Vec<f32> {
    v.iter()
        .map(|&x| match p {
            Prec::Bf16 => half::bf16::from_bits(x).to_f32(),
            _ => half::f16::from_bits(x).to_f32(),
        })
        .collect()
}

/// Every site's shrink and pack, emulated; x' and W' as f32.
fn run(case: &Case, prec: Prec) -> (Vec<f32>, Vec<f32>) {
    let segs: Vec<ZoSegment> = case
        .segs
        .iter()
        .map(|s| ZoSegment {
            row_start: s.rows.start as u32,
            row_end: s.rows.end as u32,
            seed_lo: s.seed as u32,
            seed_hi: (s.seed >> 32) as u32,
            scale: s.scale,
            reserved: 0,
        })
        .collect();
    let mut x = case.x_input(prec);
    let mut w = case.w_input(prec);
    let (mut xb, mut wb) = (to_bits(prec, &x), to_bits(prec, &w));
    let sites = case.aug_sites(prec);
    let n = sites.len();
    let elem = if prec == Prec::F32 { 4 } else { 2 };
    for (g, (sc, a)) in case.sites.iter().zip(&sites).enumerate() {
        let pad = if g + 1 == n { case.padding() } else { 0..0 };
        let sp = shrink_params(a, case.rows, segs.len(), pad, elem);
        let sl = launch(shrink_launch_config(case.rows, a.rank));
        let out = sc.lin.out_dim;
        let pp = pack_params(a, out, sc.row0);
        let pl = launch(pack_launch_config(out, a.width()));
        let (f, st, sd, seeds) = (&sc.factor, &sc.state, &case.seg_dir, &case.dir_seeds);
        match prec {
            Prec::F32 => {
                zo_emu::adapter::shrink_f32(sl, sp, &mut x, f, &segs, sd);
                zo_emu::adapter::pack_f32(pl, pp, &mut w, st, seeds);
            }
            Prec::Bf16 => {
                zo_emu::adapter::shrink_bf16(sl, sp, &mut xb, f, &segs, sd);
                zo_emu::adapter::pack_bf16(pl, pp, &mut wb, st, seeds);
            }
            Prec::F16 => {
                zo_emu::adapter::shrink_f16(sl, sp, &mut xb, f, &segs, sd);
                zo_emu::adapter::pack_f16(pl, pp, &mut wb, st, seeds);
            }
        }
    }
    if prec == Prec::F32 {
        (x, w)
    } else {
        (from_bits(prec, &xb), from_bits(prec, &wb))
    }
}

fn first_mismatch(emu: &[f32], cpu: &[f32], ld: usize) -> Option<String> {
    let i = emu
        .iter()
        .zip(cpu)
        .position(|(a, b)| a.to_bits() != b.to_bits())?;
    Some(format!(
        "row {} col {}: emu {:e} twin {:e}",
        i / ld,
        i % ld,
        emu[i],
        cpu[i]
    ))
}

fn check(case: &Case, prec: Prec) {
    let (xe, we) = run(case, prec);
    let (xt, wt) = case.twin(prec);
    let what = format!("{} {prec:?}", case.name);
    if let Some(m) = first_mismatch(&xe, &xt, case.ld) {
        panic!("{what}: shrink differs from the twin at {m}");
    }
    if let Some(m) = first_mismatch(&we, &wt, case.ld) {
        panic!("{what}: pack differs from the twin at {m}");
    }
    case.check_product(&xe, &we, prec, &what);
}

#[test]
fn shrink_and_pack_equal_the_twin_and_the_family() {
    for case in cases(70) {
        for prec in Prec::ALL {
            check(&case, prec);
        }
    }
}

#[test]
fn two_rank_blocks_on_the_fused_qkv_group() {
    use zo::model::Slot;
    let qkv = [Slot::Q, Slot::K, Slot::V];
    let case = adapter::case(true, &qkv, 2, 17, Dist::Gaussian, true, 50);
    check(&case, Prec::Bf16);
    let case = adapter::case(false, &qkv, 1, 16, Dist::Rademacher, true, 33);
    check(&case, Prec::F16);
}
