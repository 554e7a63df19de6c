//! The seeded update launchers (csrc/update.cu) on every device against the CPU families, bit
//! for bit: dense/LoRA seeded axpy (with and without weight decay, strided weights inside an
//! augmented buffer), MeZO's in-place perturbation, the LoZO bank and LoZO-M momentum updates,
//! the factor merges and the momentum change of basis. For bf16/f16 weights the twin is the
//! same fp32 formula on the rounded weights, rounded once.
//!
//! Emulation runs every CUDA thread as a fiber, so where a shape list has large entries (grids
//! of thousands of blocks) only a GPU gets them; emulation gets smaller shapes of the same
//! structure.
#![cfg(feature = "cuda")]

#[path = "common/devices.rs"]
mod devices;

use devices::devices;
use zo::backend::cuda::kernels::update::{
    factor_merge, lowrank_bank_update, lowrank_change_of_basis, lowrank_project_momentum,
    moments_update, perturb_in_place, seeded_axpy, LeftFactor, MomentViews, Strided, UpdateDirs,
};
use zo::backend::cuda::{CudaDevice, DBuf, DType};
use zo::perturb::dense::{self, Tensor};
use zo::perturb::lowrank::{
    bank_coefs, bank_update, change_of_basis, merge_factors, merge_low_rank, momentum_coefs,
    project_momentum, BankStep,
};
use zo::perturb::step_rule::{direction_coefs, Moments, RuleCoefs, StepRule};
use zo::perturb::{role, Dist, StepRecord};

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

/// `(seed_d, -(lr·g_d)/q)`: the dense and lora update coefficients.
fn terms(r: &StepRecord) -> Vec<(u64, f32)> {
    let q = r.seeds.len() as f32;
    r.seeds
        .iter()
        .zip(&r.grads)
        .map(|(&s, &g)| (s, -(r.lr * g) / q))
        .collect()
}

fn assert_bits(got: &[f32], cpu: &[f32], what: &str) {
    assert_eq!(got.len(), cpu.len(), "{what}: lengths");
    if let Some(i) = got
        .iter()
        .zip(cpu)
        .position(|(a, b)| a.to_bits() != b.to_bits())
    {
        panic!("{what}: element {i}: device {:e} cpu {:e}", got[i], cpu[i]);
    }
}

fn f32s(dev: &CudaDevice, host: &[f32]) -> DBuf {
    DBuf::from_f32(dev, DType::F32, host).unwrap()
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
    dense::seeded_axpy(vec![t], role, dist, terms, decay);
    for i in 0..shape.rows {
        for j in 0..shape.cols {
            out[i * shape.ld + j] = dtype.round(packed[i * shape.cols + j]);
        }
    }
    out
}

fn strided(rows: usize, cols: usize, ld: usize) -> Strided {
    Strided { rows, cols, ld }
}

#[test]
fn seeded_axpy_matches_the_cpu() {
    for (name, dev) in devices("seeded_axpy_matches_the_cpu") {
        let shapes = [
            Strided::flat(1),
            Strided::flat(4099),
            strided(37, 130, 136),
            strided(5, 7, 9),
            strided(300, 4096, 4112),
        ];
        for dtype in DTYPES {
            for (n, &shape) in shapes.iter().enumerate() {
                for dist in [Dist::Gaussian, Dist::Rademacher] {
                    for (q, decay, rl) in [
                        (1, None, role::DENSE),
                        (3, Some(1e-3f32 * 0.1), role::DENSE),
                        (2, Some(0.5), role::DENSE),
                        (3, Some(1e-4f32), role::LORA_A),
                        (2, Some(0.5), role::LORA_B),
                    ] {
                        let terms = terms(&rec(q, 1e-3));
                        let len = (shape.rows - 1) * shape.ld + shape.cols;
                        let host = values(n as u64, len, 0.3);
                        let tensor = 1000 + n as u32;
                        let dirs = UpdateDirs::upload(&dev, &terms).unwrap();
                        let buf = DBuf::from_f32(&dev, dtype, &host).unwrap();
                        seeded_axpy(&dev, buf.view(), shape, tensor, rl, dist, &dirs, decay)
                            .unwrap();
                        let cpu = axpy_twin(dtype, &host, shape, tensor, rl, dist, &terms, decay);
                        assert_bits(
                            &buf.to_f32(&dev).unwrap(),
                            &cpu,
                            &format!("{name}: axpy {dtype} {shape:?} {dist:?} q {q} role {rl}"),
                        );
                    }
                }
            }
        }
    }
}

/// A tensor that starts one element into its buffer (rows not 4-element aligned in memory)
/// takes the element-wise path and gives the same bits as the aligned one.
#[test]
fn seeded_axpy_at_an_unaligned_offset_matches_the_cpu() {
    for (name, dev) in devices("seeded_axpy_at_an_unaligned_offset_matches_the_cpu") {
        for dtype in DTYPES {
            let shape = strided(6, 64, 72);
            let len = 5 * 72 + 64;
            let host = values(77, len + 1, 0.3);
            let terms = terms(&rec(2, 1e-3));
            let dirs = UpdateDirs::upload(&dev, &terms).unwrap();
            let buf = DBuf::from_f32(&dev, dtype, &host).unwrap();
            let view = buf.slice(1..len + 1);
            seeded_axpy(
                &dev,
                view,
                shape,
                9,
                role::DENSE,
                Dist::Gaussian,
                &dirs,
                Some(1e-3),
            )
            .unwrap();
            let cpu = axpy_twin(
                dtype,
                &host[1..],
                shape,
                9,
                role::DENSE,
                Dist::Gaussian,
                &terms,
                Some(1e-3),
            );
            let got = buf.to_f32(&dev).unwrap();
            assert_eq!(
                got[0].to_bits(),
                dtype.round(host[0]).to_bits(),
                "{name}: element before the view"
            );
            assert_bits(&got[1..], &cpu, &format!("{name}: {dtype} offset axpy"));
        }
    }
}

#[test]
fn perturb_in_place_round_trip_matches_the_cpu() {
    for (name, dev) in devices("perturb_in_place_round_trip_matches_the_cpu") {
        let shape = strided(64, 96, 104);
        let host = values(8, 63 * 104 + 96, 0.2);
        for dtype in DTYPES {
            let (seed, eps, tid) = (77u64, 1e-3f32, 42u32);
            let buf = DBuf::from_f32(&dev, dtype, &host).unwrap();
            for s in [eps, -2.0 * eps, eps] {
                let dirs = UpdateDirs::upload(&dev, &[(seed, s)]).unwrap();
                perturb_in_place(&dev, buf.view(), shape, tid, Dist::Gaussian, &dirs).unwrap();
            }
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
            assert_bits(
                &buf.to_f32(&dev).unwrap(),
                &cpu,
                &format!("{name}: in-place perturbation {dtype}"),
            );
        }
    }
}

#[test]
fn lora_factor_updates_match_the_family() {
    for (name, dev) in devices("lora_factor_updates_match_the_family") {
        // The lora family's update on A and B is the seeded axpy with its roles and decay.
        let (r, n_in, out) = (8, 260, 130);
        let rc = rec(3, 2e-3);
        let wd = 0.01f32;
        let terms = terms(&rc);
        let dirs = UpdateDirs::upload(&dev, &terms).unwrap();
        for (rl, n) in [(role::LORA_A, r * n_in), (role::LORA_B, out * r)] {
            let host = values(rl as u64, n, 0.05);
            let buf = f32s(&dev, &host);
            seeded_axpy(
                &dev,
                buf.view(),
                Strided::flat(n),
                555,
                rl,
                Dist::Gaussian,
                &dirs,
                Some(rc.lr * wd),
            )
            .unwrap();
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
            assert_bits(
                &buf.to_f32(&dev).unwrap(),
                &cpu,
                &format!("{name}: lora role {rl}"),
            );
        }
    }
}

/// ZO-SGD momentum and ZO-Adam on two fp32 tensors over four updates (Adam's bias corrections
/// change every step) against the host's `Moments`, bit for bit: θ and, through θ, both
/// moments. One tensor is longer than the host's parallel chunk, both end mid Philox block.
#[test]
fn moments_updates_match_the_cpu() {
    let adam = StepRule::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    let rules = [StepRule::Momentum { beta: 0.9 }, adam];
    for (name, dev) in devices("moments_updates_match_the_cpu") {
        for rule in rules {
            for (dist, wd) in [(Dist::Gaussian, 0.0f32), (Dist::Rademacher, 0.05)] {
                let what = format!("{name}: {rule:?} {dist:?} wd {wd}");
                let sizes = [(41u32, 16_384 + 7), (42, 1_001)];
                let mut host: Vec<Vec<f32>> = sizes
                    .iter()
                    .map(|&(id, n)| values(id as u64, n, 0.1))
                    .collect();
                let theta: Vec<DBuf> = host.iter().map(|h| f32s(&dev, h)).collect();
                let zeros = |n| f32s(&dev, &vec![0.0; n]);
                let m: Vec<DBuf> = sizes.iter().map(|&(_, n)| zeros(n)).collect();
                let v: Vec<DBuf> = sizes.iter().map(|&(_, n)| zeros(n)).collect();
                let mut cpu = Moments::default();
                for step in 0..4u64 {
                    let mut r = rec(3, 1e-2);
                    r.grads.iter_mut().for_each(|g| *g *= 1.0 + step as f32);
                    r.seeds.iter_mut().for_each(|s| *s += step);
                    let decay = (wd != 0.0).then_some(r.lr * wd);
                    let k = RuleCoefs::new(rule, r.lr, step).unwrap();
                    let dirs = UpdateDirs::upload(&dev, &direction_coefs(&r)).unwrap();
                    for (i, &(id, n)) in sizes.iter().enumerate() {
                        let views = MomentViews {
                            m: m[i].view(),
                            v: Some(v[i].view()),
                        };
                        moments_update(
                            &dev,
                            theta[i].view(),
                            views,
                            n,
                            id,
                            role::LORA_B,
                            dist,
                            &k,
                            &dirs,
                            decay,
                        )
                        .unwrap();
                    }
                    let tensors = host
                        .iter_mut()
                        .zip(&sizes)
                        .map(|(data, &(id, _))| Tensor {
                            param: zo::model::Param::Embed,
                            tensor_id: id,
                            data,
                            decay: true,
                        })
                        .collect();
                    cpu.apply(rule, tensors, role::LORA_B, dist, &r, decay)
                        .unwrap();
                    cpu.finish_update();
                    for (i, &(id, _)) in sizes.iter().enumerate() {
                        assert_bits(
                            &theta[i].to_f32(&dev).unwrap(),
                            &host[i],
                            &format!("{what}: tensor {id} after update {step}"),
                        );
                    }
                }
            }
        }
        // Adam without its second moment.
        let k = RuleCoefs::new(adam, 1e-2, 0).unwrap();
        let (t, m) = (f32s(&dev, &[0.0; 8]), f32s(&dev, &[0.0; 8]));
        let dirs = UpdateDirs::upload(&dev, &direction_coefs(&rec(2, 1e-2))).unwrap();
        let only_m = MomentViews {
            m: m.view(),
            v: None,
        };
        let e = moments_update(
            &dev,
            t.view(),
            only_m,
            8,
            1,
            0,
            Dist::Gaussian,
            &k,
            &dirs,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("second-moment"), "{name}: {e}");
    }
}

#[test]
fn lowrank_bank_updates_match_the_cpu() {
    for (name, dev) in devices("lowrank_bank_updates_match_the_cpu") {
        let sizes: &[(usize, usize)] = &[(1, 7), (4, 130), (17, 4096)];
        for &(r, out) in sizes {
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
                    let coefs = match step {
                        BankStep::Plain(c) | BankStep::Momentum { coefs: c, .. } => c,
                    };
                    let dirs = UpdateDirs::upload(&dev, coefs).unwrap();
                    let (bank, mom) = (f32s(&dev, &bank0), f32s(&dev, &mom0));
                    lowrank_bank_update(
                        &dev,
                        bank.view(),
                        Some(mom.view()),
                        n,
                        tid,
                        dist,
                        step,
                        &dirs,
                    )
                    .unwrap();
                    let (mut cb, mut cm) = (bank0.clone(), mom0.clone());
                    bank_update(dist, tid, r, &mut cb, &mut cm, step);
                    let what = format!("{name}: bank r {r} out {out} {dist:?} {step:?}");
                    assert_bits(&bank.to_f32(&dev).unwrap(), &cb, &what);
                    assert_bits(&mom.to_f32(&dev).unwrap(), &cm, &what);
                }
            }
        }
    }
}

#[test]
fn merges_match_the_cpu() {
    for (name, dev) in devices("merges_match_the_cpu") {
        let sizes: &[(usize, usize, usize, usize)] =
            &[(1, 5, 7, 8), (5, 130, 260, 288), (33, 64, 300, 320)];
        for &(r, out, k, ld) in sizes {
            let bt = values(10, r * out, 1e-3);
            let vt = values(11, r * k, 1.0);
            let host = values(12, out * ld, 0.2);
            let shape = strided(out, k, ld);
            let (b, a) = (f32s(&dev, &bt), f32s(&dev, &vt));
            for dtype in DTYPES {
                for layout in [LeftFactor::Transposed, LeftFactor::RowMajor] {
                    let scale = 0.25f32;
                    let w = DBuf::from_f32(&dev, dtype, &host).unwrap();
                    factor_merge(&dev, w.view(), shape, scale, b.view(), layout, a.view(), r)
                        .unwrap();
                    let mut packed: Vec<f32> = (0..out)
                        .flat_map(|i| host[i * ld..i * ld + k].iter().map(|&v| dtype.round(v)))
                        .collect();
                    match layout {
                        LeftFactor::Transposed => {
                            merge_low_rank(&mut packed, scale, &bt, &vt, r, k)
                        }
                        LeftFactor::RowMajor => merge_factors(&mut packed, scale, &bt, &vt, r, k),
                    }
                    let mut cpu: Vec<f32> = host.iter().map(|&v| dtype.round(v)).collect();
                    for i in 0..out {
                        for j in 0..k {
                            cpu[i * ld + j] = dtype.round(packed[i * k + j]);
                        }
                    }
                    assert_bits(
                        &w.to_f32(&dev).unwrap(),
                        &cpu,
                        &format!("{name}: merge {dtype} {layout:?} r {r} {out}×{k}"),
                    );
                }
            }
        }
    }
}

#[test]
fn momentum_change_of_basis_matches_the_cpu() {
    for (name, dev) in devices("momentum_change_of_basis_matches_the_cpu") {
        let sizes: &[(usize, usize, usize)] = &[(1, 3, 5), (4, 260, 130), (16, 1000, 77)];
        for &(r, k, out) in sizes {
            let old = values(20, r * k, 1.0);
            let new = values(21, r * k, 1.0);
            let mom = values(22, r * out, 1e-2);
            let (od, nd, md) = (f32s(&dev, &old), f32s(&dev, &new), f32s(&dev, &mom));
            // NaN-filled outputs: every element must be written.
            let p = f32s(&dev, &vec![f32::NAN; r * r]);
            lowrank_change_of_basis(&dev, p.view(), od.view(), nd.view(), r, k).unwrap();
            let m2 = f32s(&dev, &vec![f32::NAN; r * out]);
            lowrank_project_momentum(&dev, m2.view(), md.view(), p.view(), r, out).unwrap();
            let cp = change_of_basis(&old, &new, r, k);
            assert_bits(
                &p.to_f32(&dev).unwrap(),
                &cp,
                &format!("{name}: P r {r} k {k}"),
            );
            assert_bits(
                &m2.to_f32(&dev).unwrap(),
                &project_momentum(&mom, &cp, r),
                &format!("{name}: projected m r {r}"),
            );
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    for (name, dev) in devices("bad_shapes_are_errors") {
        let w = DBuf::zeros(&dev, DType::F32, 10).unwrap();
        let dirs = UpdateDirs::upload(&dev, &[(1, 1.0)]).unwrap();
        let axpy = |shape: Strided| {
            seeded_axpy(&dev, w.view(), shape, 0, 0, Dist::Gaussian, &dirs, None).unwrap_err()
        };
        let err = axpy(strided(2, 6, 5));
        assert!(err.to_string().contains("stride"), "{name}: {err}");
        let err = axpy(strided(2, 5, 6));
        assert!(err.to_string().contains("theta"), "{name}: {err}");
        // A view shorter than its buffer is what the launcher checks against.
        let err = seeded_axpy(
            &dev,
            w.slice(0..9),
            Strided::flat(10),
            0,
            0,
            Dist::Gaussian,
            &dirs,
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("theta"), "{name}: {err}");
        let bank = DBuf::zeros(&dev, DType::F32, 10).unwrap();
        let step = BankStep::Momentum {
            beta: 0.5,
            neg_lr: -1.0,
            coefs: vec![(1, 1.0)],
        };
        let err = lowrank_bank_update(&dev, bank.view(), None, 10, 0, Dist::Gaussian, &step, &dirs)
            .unwrap_err();
        assert!(err.to_string().contains("momentum"), "{name}: {err}");
        // Trained fp32 state in a 2-byte buffer.
        let half = DBuf::zeros(&dev, DType::Bf16, 10).unwrap();
        let plain = BankStep::Plain(vec![(1, 1.0)]);
        let err = lowrank_bank_update(
            &dev,
            half.view(),
            None,
            10,
            0,
            Dist::Gaussian,
            &plain,
            &dirs,
        )
        .unwrap_err();
        assert!(err.to_string().contains("bf16"), "{name}: {err}");
        let err = factor_merge(
            &dev,
            w.view(),
            strided(2, 5, 5),
            1.0,
            half.view(),
            LeftFactor::RowMajor,
            w.view(),
            1,
        )
        .unwrap_err();
        assert!(err.to_string().contains("left factor"), "{name}: {err}");
        // Nothing above reached a kernel.
        assert!(w.to_f32(&dev).unwrap().iter().all(|&x| x == 0.0), "{name}");
    }
}
