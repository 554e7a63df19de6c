//! The seeded update kernels against the CPU families, bit for bit: dense/LoRA seeded axpy
//! (with and without weight decay, strided weights inside an augmented buffer), MeZO's in-place
//! perturbation, the LoZO bank and LoZO-M momentum updates, the factor merges and the momentum
//! change of basis. For bf16/f16 weights the twin is the same fp32 formula on the rounded
//! weights, rounded once. Needs a GPU and a build with kernels; elsewhere it prints
//! `skipped: <reason>` and passes, unless ZO_REQUIRE_GPU=1.
#![cfg(feature = "cuda")]

use cudarc::driver::DeviceRepr;
use zo::backend::cuda::{CudaDevice, DType, LeftFactor, Strided};
use zo::perturb::dense::{seeded_axpy, Tensor};
use zo::perturb::lowrank::{
    bank_coefs, bank_update, change_of_basis, merge_factors, merge_low_rank, momentum_coefs,
    project_momentum, BankStep,
};
use zo::perturb::{role, Dist, StepRecord};

fn device() -> Option<CudaDevice> {
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e) if std::env::var("ZO_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("ZO_REQUIRE_GPU=1 but no usable GPU: {e}")
        }
        Err(e) => {
            skip(&format!("gpu_update: {e}"));
            None
        }
    }
}

const DTYPES: [DType; 3] = [DType::F32, DType::Bf16, DType::F16];

fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut v = vec![0.0; n];
    Dist::Gaussian.fill(seed, 3, 9, 0, &mut v);
    v.iter_mut().for_each(|x| *x *= scale);
    v
}

fn rec(q: usize, lr: f32) -> StepRecord {
    StepRecord {
        step: 4,
        seeds: (0..q as u64).map(|d| 0xabcd_0000_1234 + d * 977).collect(),
        grads: (0..q).map(|d| 2.5 - 1.7 * d as f32).collect(),
        lr,
        period_seed: None,
    }
}

fn assert_bits(gpu: &[f32], cpu: &[f32], what: &str) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    if let Some(i) = gpu
        .iter()
        .zip(cpu)
        .position(|(a, b)| a.to_bits() != b.to_bits())
    {
        panic!("{what}: element {i}: gpu {:e} cpu {:e}", gpu[i], cpu[i]);
    }
}

fn roundtrip<T: DeviceRepr + Copy + Default + Unpin>(
    dev: &CudaDevice,
    host: &[f32],
    to: fn(f32) -> T,
    from: fn(T) -> f32,
    f: impl FnOnce(&mut cudarc::driver::CudaSlice<T>),
) -> Vec<f32> {
    let s = dev.stream();
    let h: Vec<T> = host.iter().map(|&v| to(v)).collect();
    let mut d = s.clone_htod(&h).unwrap();
    f(&mut d);
    s.clone_dtoh(&d).unwrap().into_iter().map(from).collect()
}

/// Runs `f` on `host` stored as `dtype` (a generic closure per element type).
macro_rules! typed {
    ($dev:expr, $dtype:expr, $host:expr, |$buf:ident| $body:expr) => {
        match $dtype {
            DType::F32 => roundtrip::<f32>($dev, $host, |v| v, |v| v, |$buf| $body),
            DType::Bf16 => roundtrip::<half::bf16>(
                $dev,
                $host,
                half::bf16::from_f32,
                |v| v.to_f32(),
                |$buf| $body,
            ),
            DType::F16 => roundtrip::<half::f16>(
                $dev,
                $host,
                half::f16::from_f32,
                |v| v.to_f32(),
                |$buf| $body,
            ),
        }
    };
}

/// The CPU twin of a seeded axpy on a strided tensor stored as `dtype`.
#[allow(clippy::too_many_arguments)]
fn axpy_twin(
    dtype: DType,
    host: &[f32],
    shape: Strided,
    tensor: u32,
    role: u32,
    dist: Dist,
    terms: &[(u64, f32)],
    decay: Option<f32>,
) -> Vec<f32> {
    let mut out: Vec<f32> = host.iter().map(|&v| dtype.round(v)).collect();
    let mut packed: Vec<f32> = (0..shape.rows)
        .flat_map(|i| out[i * shape.ld..i * shape.ld + shape.cols].to_vec())
        .collect();
    let t = Tensor {
        param: zo::model::Param::Embed,
        tensor_id: tensor,
        data: &mut packed,
        decay: true,
    };
    seeded_axpy(vec![t], role, dist, terms, decay);
    for i in 0..shape.rows {
        for j in 0..shape.cols {
            out[i * shape.ld + j] = dtype.round(packed[i * shape.cols + j]);
        }
    }
    out
}

#[test]
fn seeded_axpy_matches_the_cpu() {
    let Some(dev) = device() else { return };
    println!("device: {}", dev.describe().unwrap());
    let shapes = [
        Strided::flat(1),
        Strided::flat(4099),
        Strided {
            rows: 37,
            cols: 130,
            ld: 136,
        },
        Strided {
            rows: 5,
            cols: 7,
            ld: 9,
        },
        Strided {
            rows: 300,
            cols: 4096,
            ld: 4112,
        },
    ];
    for dtype in DTYPES {
        for (n, &shape) in shapes.iter().enumerate() {
            for dist in [Dist::Gaussian, Dist::Rademacher] {
                for (q, decay) in [(1, None), (3, Some(1e-3f32 * 0.1)), (2, Some(0.5))] {
                    let r = rec(q, 1e-3);
                    let terms: Vec<(u64, f32)> = r
                        .seeds
                        .iter()
                        .zip(&r.grads)
                        .map(|(&s, &g)| (s, -(r.lr * g) / q as f32))
                        .collect();
                    let len = (shape.rows - 1) * shape.ld + shape.cols;
                    let host = values(n as u64, len, 0.3);
                    let tensor = 1000 + n as u32;
                    let gpu = typed!(&dev, dtype, &host, |buf| dev
                        .seeded_axpy(dtype, buf, shape, tensor, role::DENSE, dist, &terms, decay)
                        .unwrap());
                    let cpu = axpy_twin(
                        dtype,
                        &host,
                        shape,
                        tensor,
                        role::DENSE,
                        dist,
                        &terms,
                        decay,
                    );
                    assert_bits(
                        &gpu,
                        &cpu,
                        &format!("axpy {dtype} {shape:?} {dist:?} q {q}"),
                    );
                }
            }
        }
    }
}

#[test]
fn perturb_in_place_round_trip_matches_the_cpu() {
    let Some(dev) = device() else { return };
    let shape = Strided {
        rows: 64,
        cols: 96,
        ld: 104,
    };
    let host = values(8, 63 * 104 + 96, 0.2);
    for dtype in DTYPES {
        let (seed, eps, tid) = (77u64, 1e-3f32, 42u32);
        let gpu = typed!(&dev, dtype, &host, |buf| {
            for s in [eps, -2.0 * eps, eps] {
                dev.perturb_in_place(dtype, buf, shape, tid, Dist::Gaussian, seed, s)
                    .unwrap();
            }
        });
        let mut cpu = host.clone();
        for s in [eps, -2.0 * eps, eps] {
            cpu = axpy_twin(
                dtype,
                &cpu,
                shape,
                tid,
                role::DENSE,
                Dist::Gaussian,
                &[(seed, s)],
                None,
            );
        }
        assert_bits(&gpu, &cpu, &format!("in-place perturbation {dtype}"));
    }
}

#[test]
fn lora_factor_updates_match_the_family() {
    let Some(dev) = device() else { return };
    // The lora family's update on A and B is the seeded axpy with its roles and decay.
    let (r, n_in, out) = (8, 260, 130);
    let rc = rec(3, 2e-3);
    let wd = 0.01f32;
    let terms: Vec<(u64, f32)> = rc
        .seeds
        .iter()
        .zip(&rc.grads)
        .map(|(&s, &g)| (s, -(rc.lr * g) / 3.0))
        .collect();
    for (rl, n) in [(role::LORA_A, r * n_in), (role::LORA_B, out * r)] {
        let host = values(rl as u64, n, 0.05);
        let gpu = typed!(&dev, DType::F32, &host, |buf| dev
            .seeded_axpy(
                DType::F32,
                buf,
                Strided::flat(n),
                555,
                rl,
                Dist::Gaussian,
                &terms,
                Some(rc.lr * wd)
            )
            .unwrap());
        let mut cpu = host.clone();
        // lora.rs: θ = (-(lr * wd)).mul_add(θ, θ), then the c_d chain.
        let decay = -(rc.lr * wd);
        cpu.iter_mut().for_each(|t| *t = decay.mul_add(*t, *t));
        let mut z = vec![0.0f32; n];
        for &(seed, c) in &terms {
            Dist::Gaussian.fill(seed, 555, rl, 0, &mut z);
            cpu.iter_mut()
                .zip(&z)
                .for_each(|(t, &z)| *t = c.mul_add(z, *t));
        }
        assert_bits(&gpu, &cpu, &format!("lora role {rl}"));
    }
}

#[test]
fn lowrank_bank_updates_match_the_cpu() {
    let Some(dev) = device() else { return };
    let s = dev.stream();
    for (r, out) in [(1, 7), (4, 130), (17, 4096)] {
        let n = r * out;
        for dist in [Dist::Gaussian, Dist::Rademacher] {
            let tid = 321;
            let rc = rec(3, 1e-2);
            let bank0 = values(1, n, 1e-4);
            let mom0 = values(2, n, 1e-2);
            let steps = [
                BankStep::Plain(bank_coefs(&rc)),
                BankStep::Momentum {
                    beta: 0.9,
                    neg_lr: -rc.lr,
                    coefs: momentum_coefs(&rc, 0.9, true),
                },
                BankStep::Momentum {
                    beta: 0.9,
                    neg_lr: -rc.lr,
                    coefs: momentum_coefs(&rc, 0.9, false),
                },
            ];
            for step in &steps {
                let mut bank = s.clone_htod(&bank0).unwrap();
                let mut mom = s.clone_htod(&mom0).unwrap();
                dev.lowrank_bank_update(&mut bank, Some(&mut mom), n, tid, dist, step)
                    .unwrap();
                let (mut cb, mut cm) = (bank0.clone(), mom0.clone());
                bank_update(dist, tid, r, &mut cb, &mut cm, step);
                let what = format!("bank r {r} out {out} {dist:?} {step:?}");
                assert_bits(&s.clone_dtoh(&bank).unwrap(), &cb, &what);
                assert_bits(&s.clone_dtoh(&mom).unwrap(), &cm, &what);
            }
        }
    }
}

#[test]
fn merges_match_the_cpu() {
    let Some(dev) = device() else { return };
    let s = dev.stream();
    for (r, out, k, ld) in [(1, 5, 7, 8), (5, 130, 260, 288), (33, 64, 300, 320)] {
        let bt = values(10, r * out, 1e-3);
        let vt = values(11, r * k, 1.0);
        let host = values(12, out * ld, 0.2);
        let shape = Strided {
            rows: out,
            cols: k,
            ld,
        };
        for dtype in DTYPES {
            for layout in [LeftFactor::Transposed, LeftFactor::RowMajor] {
                let scale = 0.25f32;
                let b = s.clone_htod(&bt).unwrap();
                let a = s.clone_htod(&vt).unwrap();
                let gpu = typed!(&dev, dtype, &host, |buf| dev
                    .factor_merge(dtype, buf, shape, scale, &b, layout, &a, r)
                    .unwrap());
                let mut w: Vec<f32> = (0..out)
                    .flat_map(|i| host[i * ld..i * ld + k].iter().map(|&v| dtype.round(v)))
                    .collect();
                match layout {
                    LeftFactor::Transposed => merge_low_rank(&mut w, scale, &bt, &vt, r, k),
                    LeftFactor::RowMajor => merge_factors(&mut w, scale, &bt, &vt, r, k),
                }
                let mut cpu: Vec<f32> = host.iter().map(|&v| dtype.round(v)).collect();
                for i in 0..out {
                    for j in 0..k {
                        cpu[i * ld + j] = dtype.round(w[i * k + j]);
                    }
                }
                assert_bits(
                    &gpu,
                    &cpu,
                    &format!("merge {dtype} {layout:?} r {r} {out}×{k}"),
                );
            }
        }
    }
}

#[test]
fn momentum_change_of_basis_matches_the_cpu() {
    let Some(dev) = device() else { return };
    let s = dev.stream();
    for (r, k, out) in [(1, 3, 5), (4, 260, 130), (16, 1000, 77)] {
        let old = values(20, r * k, 1.0);
        let new = values(21, r * k, 1.0);
        let mom = values(22, r * out, 1e-2);
        let (od, nd, md) = (
            s.clone_htod(&old).unwrap(),
            s.clone_htod(&new).unwrap(),
            s.clone_htod(&mom).unwrap(),
        );
        let mut p = s.alloc_zeros::<f32>(r * r).unwrap();
        dev.lowrank_change_of_basis(&mut p, &od, &nd, r, k).unwrap();
        let mut m2 = s.alloc_zeros::<f32>(r * out).unwrap();
        dev.lowrank_project_momentum(&mut m2, &md, &p, r, out)
            .unwrap();
        let cp = change_of_basis(&old, &new, r, k);
        assert_bits(&s.clone_dtoh(&p).unwrap(), &cp, &format!("P r {r} k {k}"));
        let cm = project_momentum(&mom, &cp, r);
        assert_bits(
            &s.clone_dtoh(&m2).unwrap(),
            &cm,
            &format!("projected m r {r}"),
        );
    }
}

#[test]
fn bad_shapes_are_errors() {
    let Some(dev) = device() else { return };
    let s = dev.stream();
    let mut w = s.alloc_zeros::<f32>(10).unwrap();
    let shape = Strided {
        rows: 2,
        cols: 6,
        ld: 5,
    };
    let err = dev
        .seeded_axpy(
            DType::F32,
            &mut w,
            shape,
            0,
            0,
            Dist::Gaussian,
            &[(1, 1.0)],
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("stride"), "{err}");
    let shape = Strided {
        rows: 2,
        cols: 5,
        ld: 6,
    };
    let err = dev
        .seeded_axpy(
            DType::F32,
            &mut w,
            shape,
            0,
            0,
            Dist::Gaussian,
            &[(1, 1.0)],
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("theta"), "{err}");
    let err = dev
        .seeded_axpy(
            DType::Bf16,
            &mut w,
            Strided::flat(10),
            0,
            0,
            Dist::Gaussian,
            &[(1, 1.0)],
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("bytes"), "{err}");
    let mut bank = s.alloc_zeros::<f32>(10).unwrap();
    let step = BankStep::Momentum {
        beta: 0.5,
        neg_lr: -1.0,
        coefs: vec![(1, 1.0)],
    };
    let err = dev
        .lowrank_bank_update(&mut bank, None, 10, 0, Dist::Gaussian, &step)
        .unwrap_err();
    assert!(err.to_string().contains("momentum"), "{err}");
}

/// Says why a test did not run. Written to the process's stderr directly, not through
/// `eprintln!`, so the test harness does not capture it and CI logs show every skip.
fn skip(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
}
