//! The shrink and pack kernels of the K-augmented GEMM against their CPU twin
//! (`perturb::augment`, bit for bit) and the augmented product against the lowrank and lora
//! families' forward (tolerance rule in tests/common/adapter.rs), for every storage type.
//! Needs a GPU and a build with kernels; elsewhere it prints `skipped: <reason>` and passes,
//! unless ZO_REQUIRE_GPU=1.
#![cfg(feature = "cuda")]

#[path = "common/adapter.rs"]
mod adapter;

use adapter::{cases, Case, Prec};
use cudarc::driver::DeviceRepr;
use zo::backend::cuda::{CudaDevice, DType};

fn device() -> Option<CudaDevice> {
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e) if std::env::var("ZO_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("ZO_REQUIRE_GPU=1 but no usable GPU: {e}")
        }
        Err(e) => {
            skip(&format!("gpu_adapter: {e}"));
            None
        }
    }
}

fn dtype(p: Prec) -> DType {
    match p {
        Prec::F32 => DType::F32,
        Prec::Bf16 => DType::Bf16,
        Prec::F16 => DType::F16,
    }
}

/// Runs every site's shrink and pack on the device; returns x' and W' as f32.
fn run<T: DeviceRepr + Copy + Default + Unpin>(
    dev: &CudaDevice,
    case: &Case,
    prec: Prec,
    to: fn(f32) -> T,
    from: fn(T) -> f32,
) -> (Vec<f32>, Vec<f32>) {
    let s = dev.stream();
    let xh: Vec<T> = case.x_input(prec).into_iter().map(to).collect();
    let wh: Vec<T> = case.w_input(prec).into_iter().map(to).collect();
    let mut x = s.clone_htod(&xh).unwrap();
    let mut w = s.clone_htod(&wh).unwrap();
    let segs = dev.upload_segments(&case.segs, &case.dir_seeds).unwrap();
    let sites = case.aug_sites(prec);
    let n = sites.len();
    for (g, (sc, a)) in case.sites.iter().zip(&sites).enumerate() {
        let factor = s.clone_htod(&sc.factor).unwrap();
        let state = s.clone_htod(&sc.state).unwrap();
        let pad = if g + 1 == n { case.padding() } else { 0..0 };
        dev.adapter_shrink(dtype(prec), a, case.rows, &mut x, &factor, &segs, pad)
            .unwrap();
        dev.adapter_pack(
            dtype(prec),
            a,
            sc.lin.out_dim,
            sc.row0,
            &mut w,
            &state,
            &segs,
        )
        .unwrap();
    }
    let xo = s.clone_dtoh(&x).unwrap().into_iter().map(from).collect();
    let wo = s.clone_dtoh(&w).unwrap().into_iter().map(from).collect();
    (xo, wo)
}

fn first_mismatch(gpu: &[f32], cpu: &[f32], ld: usize) -> Option<String> {
    let i = gpu
        .iter()
        .zip(cpu)
        .position(|(a, b)| a.to_bits() != b.to_bits())?;
    Some(format!(
        "row {} col {}: gpu {:e} cpu {:e}",
        i / ld,
        i % ld,
        gpu[i],
        cpu[i]
    ))
}

fn check(dev: &CudaDevice, case: &Case, prec: Prec) {
    let (xg, wg) = match prec {
        Prec::F32 => run::<f32>(dev, case, prec, |v| v, |v| v),
        Prec::Bf16 => run::<half::bf16>(dev, case, prec, half::bf16::from_f32, |v| v.to_f32()),
        Prec::F16 => run::<half::f16>(dev, case, prec, half::f16::from_f32, |v| v.to_f32()),
    };
    let (xt, wt) = case.twin(prec);
    let what = format!("{} {prec:?}", case.name);
    if let Some(m) = first_mismatch(&xg, &xt, case.ld) {
        panic!("{what}: shrink output differs from the twin at {m}");
    }
    if let Some(m) = first_mismatch(&wg, &wt, case.ld) {
        panic!("{what}: pack output differs from the twin at {m}");
    }
    case.check_product(&xg, &wg, prec, &what);
}

#[test]
fn shrink_and_pack_equal_the_twin_and_the_family() {
    let Some(dev) = device() else { return };
    println!("device: {}", dev.describe().unwrap());
    // 70 rows: 5 row blocks, the last partial; 96: six whole blocks.
    for rows in [70, 96] {
        for case in cases(rows) {
            for prec in Prec::ALL {
                check(&dev, &case, prec);
            }
        }
    }
}

#[test]
fn large_shapes() {
    let Some(dev) = device() else { return };
    // Many row blocks and two rank blocks on the real fused qkv layout.
    use zo::model::Slot;
    use zo::perturb::Dist;
    let case = adapter::case(
        false,
        &[Slot::Q, Slot::K, Slot::V],
        2,
        17,
        Dist::Gaussian,
        true,
        300,
    );
    check(&dev, &case, Prec::Bf16);
    let case = adapter::case(
        true,
        &[Slot::Q, Slot::K, Slot::V],
        2,
        8,
        Dist::Gaussian,
        true,
        300,
    );
    check(&dev, &case, Prec::F16);
}

#[test]
fn bad_shapes_are_errors() {
    let Some(dev) = device() else { return };
    use zo::model::Slot;
    use zo::perturb::Dist;
    let case = adapter::case(false, &[Slot::O], 1, 3, Dist::Gaussian, true, 70);
    let s = dev.stream();
    let segs = dev.upload_segments(&case.segs, &case.dir_seeds).unwrap();
    let a = case.sites[0].aug;
    let factor = s.clone_htod(&case.sites[0].factor).unwrap();
    let mut small = s.alloc_zeros::<f32>(case.ld * case.rows - 1).unwrap();
    let err = dev
        .adapter_shrink(DType::F32, &a, case.rows, &mut small, &factor, &segs, 0..0)
        .unwrap_err();
    assert!(err.to_string().contains("x holds"), "{err}");
    let mut x = s.alloc_zeros::<f32>(case.ld * case.rows).unwrap();
    let err = dev
        .adapter_shrink(DType::Bf16, &a, case.rows, &mut x, &factor, &segs, 0..0)
        .unwrap_err();
    assert!(err.to_string().contains("bytes"), "{err}");
    let mut wide = a;
    wide.col0 = case.ld - 1;
    let err = dev
        .adapter_shrink(DType::F32, &wide, case.rows, &mut x, &factor, &segs, 0..0)
        .unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    let other = dev
        .upload_segments(&case.segs, &[case.dir_seeds[0], 5])
        .unwrap();
    let err = dev
        .adapter_shrink(DType::F32, &a, case.rows, &mut x, &factor, &other, 0..0)
        .unwrap_err();
    assert!(err.to_string().contains("directions"), "{err}");
    let err = dev.upload_segments(&case.segs, &[12345]).unwrap_err();
    assert!(err.to_string().contains("not among"), "{err}");
}

/// Says why a test did not run. Written to the process's stderr directly, not through
/// `eprintln!`, so the test harness does not capture it and CI logs show every skip.
fn skip(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
}
