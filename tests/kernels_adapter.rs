//! The shrink and pack of the K-augmented GEMM (csrc/adapter.cu) through their launchers, on
//! the emulated device and on a GPU when there is one: bit for bit against the CPU twin
//! (`perturb::adapter`), and the augmented product against the lowrank and lora families'
//! forward (tolerance rule in tests/common/adapter.rs), for every storage type.
#![cfg(feature = "cuda")]

#[path = "common/adapter.rs"]
mod adapter;
#[path = "common/devices.rs"]
mod devices;

use adapter::{cases, Case, DTYPES};
use devices::devices;
use zo::backend::cuda::kernels::adapter::{pack, shrink, shrink_tiled, DeviceSegments};
use zo::backend::cuda::{CudaDevice, DBuf, DType};
use zo::model::Slot;
use zo::perturb::Dist;

/// Every site's shrink and pack on `dev`; x' and W' widened to f32.
fn run(dev: &CudaDevice, case: &Case, prec: DType) -> (Vec<f32>, Vec<f32>) {
    let x = DBuf::from_f32(dev, prec, &case.x_input(prec)).unwrap();
    let w = DBuf::from_f32(dev, prec, &case.w_input(prec)).unwrap();
    let segs = DeviceSegments::upload(dev, &case.segs, &case.dir_seeds).unwrap();
    let sites = case.aug_sites(prec);
    let n = sites.len();
    for (g, (sc, a)) in case.sites.iter().zip(&sites).enumerate() {
        let factor = DBuf::from_f32(dev, DType::F32, &sc.factor).unwrap();
        let state = DBuf::from_f32(dev, DType::F32, &sc.state).unwrap();
        let pad = if g + 1 == n { case.padding() } else { 0..0 };
        shrink(dev, a, case.rows, x.view(), factor.view(), &segs, pad).unwrap();
        pack(
            dev,
            a,
            sc.lin.out_dim,
            sc.row0,
            w.view(),
            state.view(),
            &segs,
        )
        .unwrap();
    }
    (x.to_f32(dev).unwrap(), w.to_f32(dev).unwrap())
}

fn first_mismatch(dev: &[f32], cpu: &[f32], ld: usize) -> Option<String> {
    let i = dev
        .iter()
        .zip(cpu)
        .position(|(a, b)| a.to_bits() != b.to_bits())?;
    Some(format!(
        "row {} col {}: device {:e} twin {:e}",
        i / ld,
        i % ld,
        dev[i],
        cpu[i]
    ))
}

fn check(name: &str, dev: &CudaDevice, case: &Case, prec: DType) {
    let (xd, wd) = run(dev, case, prec);
    let (xt, wt) = case.twin(prec);
    let what = format!("{name}: {} {prec:?}", case.name);
    if let Some(m) = first_mismatch(&xd, &xt, case.ld) {
        panic!("{what}: shrink output differs from the twin at {m}");
    }
    if let Some(m) = first_mismatch(&wd, &wt, case.ld) {
        panic!("{what}: pack output differs from the twin at {m}");
    }
    case.check_product(&xd, &wd, prec, &what);
}

#[test]
fn shrink_and_pack_equal_the_twin_and_the_family() {
    for (name, dev) in devices("shrink_and_pack_equal_the_twin_and_the_family") {
        println!("device: {}", dev.describe().unwrap());
        // 70 rows: five row blocks, the last partial; 96: six whole blocks.
        for rows in [70, 96] {
            for case in cases(rows) {
                for prec in DTYPES {
                    check(name, &dev, &case, prec);
                }
            }
        }
    }
}

/// Every tiling of rows over shrink blocks (1 to ZO_SHRINK_ROWS rows sharing each factor and
/// Z_A load) writes the twin's bits: tiles that straddle segment boundaries, the gaps between
/// segments and the + and − segments of one direction, and a partial last tile (70 rows).
#[test]
fn every_row_tiling_gives_the_twin_bits() {
    use zo::backend::params::ZO_SHRINK_ROWS;
    let qkv = [Slot::Q, Slot::K, Slot::V];
    for (name, dev) in devices("every_row_tiling_gives_the_twin_bits") {
        let mut list = vec![
            adapter::case(true, &qkv, 2, 5, Dist::Gaussian, true, 70),
            adapter::case(true, &[Slot::O], 3, 3, Dist::Rademacher, false, 70),
            adapter::case(false, &qkv, 3, 5, Dist::Gaussian, true, 70),
        ];
        list.extend(cases(96).into_iter().take(2));
        for case in list {
            for prec in [DType::F32, DType::Bf16] {
                let want = case.twin(prec).0;
                for rpb in 1..=ZO_SHRINK_ROWS as usize {
                    let x = DBuf::from_f32(&dev, prec, &case.x_input(prec)).unwrap();
                    let segs = DeviceSegments::upload(&dev, &case.segs, &case.dir_seeds).unwrap();
                    let sites = case.aug_sites(prec);
                    for (g, (sc, a)) in case.sites.iter().zip(&sites).enumerate() {
                        let factor = DBuf::from_f32(&dev, DType::F32, &sc.factor).unwrap();
                        let pad = if g + 1 == sites.len() {
                            case.padding()
                        } else {
                            0..0
                        };
                        shrink_tiled(&dev, a, case.rows, x.view(), factor.view(), &segs, pad, rpb)
                            .unwrap();
                    }
                    let got = x.to_f32(&dev).unwrap();
                    if let Some(m) = first_mismatch(&got, &want, case.ld) {
                        panic!("{name}: {} {prec:?} {rpb} rows per block: {m}", case.name);
                    }
                }
            }
        }
    }
}

#[test]
fn two_rank_blocks_on_the_fused_qkv_group() {
    let qkv = [Slot::Q, Slot::K, Slot::V];
    for (name, dev) in devices("two_rank_blocks_on_the_fused_qkv_group") {
        let case = adapter::case(true, &qkv, 2, 17, Dist::Gaussian, true, 50);
        check(name, &dev, &case, DType::Bf16);
        let case = adapter::case(false, &qkv, 1, 16, Dist::Rademacher, true, 33);
        check(name, &dev, &case, DType::F16);
    }
}

/// Many row blocks and two rank blocks on the real fused qkv layout.
#[test]
fn large_shapes() {
    let qkv = [Slot::Q, Slot::K, Slot::V];
    for (name, dev) in devices("large_shapes") {
        let case = adapter::case(false, &qkv, 2, 17, Dist::Gaussian, true, 300);
        check(name, &dev, &case, DType::Bf16);
        let case = adapter::case(true, &qkv, 2, 8, Dist::Gaussian, true, 300);
        check(name, &dev, &case, DType::F16);
    }
}

/// Weights laid out for more directions than the plan scores: the shrink zeroes the unused
/// sub-blocks of x', the pack writes only sub-block 0 and the named directions' and leaves the
/// others as they were.
#[test]
fn segments_naming_fewer_directions_than_the_site_holds() {
    let qkv = [Slot::Q, Slot::K, Slot::V];
    for (name, dev) in devices("segments_naming_fewer_directions_than_the_site_holds") {
        let case = adapter::case(false, &qkv, 3, 5, Dist::Gaussian, true, 70);
        check(name, &dev, &case.naming_fewer_directions(1), DType::Bf16);
        let case = adapter::case(true, &[Slot::O], 3, 3, Dist::Rademacher, true, 70);
        check(name, &dev, &case.naming_fewer_directions(2), DType::F16);
    }
}

#[test]
fn bad_shapes_are_errors() {
    for (_, dev) in devices("bad_shapes_are_errors") {
        let case = adapter::case(false, &[Slot::O], 1, 3, Dist::Gaussian, true, 70);
        let dev = &dev;
        let segs = DeviceSegments::upload(dev, &case.segs, &case.dir_seeds).unwrap();
        let sc = &case.sites[0];
        let a = sc.aug;
        let out = sc.lin.out_dim;
        let factor = DBuf::from_f32(dev, DType::F32, &sc.factor).unwrap();
        let state = DBuf::from_f32(dev, DType::F32, &sc.state).unwrap();
        let x = DBuf::zeros(dev, DType::F32, case.ld * case.rows).unwrap();
        let w = DBuf::zeros(dev, DType::F32, case.ld * out).unwrap();

        for rpb in [0, zo::backend::params::ZO_SHRINK_ROWS as usize + 1] {
            let (xv, f) = (x.view(), factor.view());
            let err = shrink_tiled(dev, &a, case.rows, xv, f, &segs, 0..0, rpb).unwrap_err();
            assert!(err.to_string().contains("rows per block"), "{err}");
        }
        let small = x.slice(0..case.ld * case.rows - 1);
        let err = shrink(dev, &a, case.rows, small, factor.view(), &segs, 0..0).unwrap_err();
        assert!(err.to_string().contains("x holds"), "{err}");
        let err = pack(dev, &a, out, 1, w.view(), state.view(), &segs).unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");

        // The factor and state are fp32 whatever x' and W' hold.
        let half_factor = DBuf::from_f32(dev, DType::Bf16, &sc.factor).unwrap();
        let err = shrink(
            dev,
            &a,
            case.rows,
            x.view(),
            half_factor.view(),
            &segs,
            0..0,
        )
        .unwrap_err();
        assert!(err.to_string().contains("f32 is needed"), "{err}");
        let half_state = DBuf::from_f32(dev, DType::Bf16, &sc.state).unwrap();
        let err = pack(dev, &a, out, 0, w.view(), half_state.view(), &segs).unwrap_err();
        assert!(err.to_string().contains("f32 is needed"), "{err}");
        let short = factor.slice(0..factor.len - 1);
        let err = shrink(dev, &a, case.rows, x.view(), short, &segs, 0..0).unwrap_err();
        assert!(err.to_string().contains("elements needed"), "{err}");

        let mut wide = a;
        wide.col0 = case.ld - 1;
        let err = shrink(dev, &wide, case.rows, x.view(), factor.view(), &segs, 0..0).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        let err = pack(dev, &wide, out, 0, w.view(), state.view(), &segs).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        let err = shrink(
            dev,
            &a,
            case.rows,
            x.view(),
            factor.view(),
            &segs,
            1..case.ld,
        )
        .unwrap_err();
        assert!(err.to_string().contains("padding"), "{err}");

        // More directions than the site's sub-blocks.
        let other = DeviceSegments::upload(dev, &case.segs, &[case.dir_seeds[0], 5]).unwrap();
        let err = shrink(dev, &a, case.rows, x.view(), factor.view(), &other, 0..0).unwrap_err();
        assert!(err.to_string().contains("directions"), "{err}");
        let err = pack(dev, &a, out, 0, w.view(), state.view(), &other).unwrap_err();
        assert!(err.to_string().contains("directions"), "{err}");

        let err = DeviceSegments::upload(dev, &case.segs, &[12345]).unwrap_err();
        assert!(err.to_string().contains("not among"), "{err}");
        let mut swapped = case.segs.clone();
        swapped.swap(0, 1);
        let err = DeviceSegments::upload(dev, &swapped, &case.dir_seeds).unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
    }
}
