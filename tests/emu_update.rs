//! The seeded update kernels (csrc/update.cu) on the CPU through the emulation harness, with
//! the CUDA wrappers' launch geometry, bit for bit against the CPU families: seeded axpy (dense
//! and LoRA, with weight decay, strided), the LoZO bank and LoZO-M momentum updates, the factor
//! merges and the momentum change of basis. tests/gpu_update.rs runs the same on a GPU.

use zo::backend::launch::{
    axpy_launch_config, basis_launch_config, merge_launch_config, LaunchDims,
};
use zo::perturb::dense::{seeded_axpy, Tensor};
use zo::perturb::lowrank::{
    bank_coefs, bank_update, change_of_basis, merge_factors, merge_low_rank, momentum_coefs,
    project_momentum, BankStep,
};
use zo::perturb::{role, Dist, StepRecord};
use zo_emu::params::*;
use zo_emu::Launch;

fn launch(d: LaunchDims) -> Launch {
    Launch::new(d.grid, d.block, d.smem)
}

fn dist(d: Dist) -> u32 {
    match d {
        Dist::Gaussian => ZO_DIST_GAUSSIAN,
        Dist::Rademacher => ZO_DIST_RADEMACHER,
    }
}

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

fn dirs(terms: &[(u64, f32)]) -> Vec<ZoUpdateDir> {
    terms
        .iter()
        .map(|&(s, c)| ZoUpdateDir {
            seed_lo: s as u32,
            seed_hi: (s >> 32) as u32,
            coef: c,
            reserved: 0,
        })
        .collect()
}

fn assert_bits(emu: &[f32], cpu: &[f32], what: &str) {
    assert_eq!(emu.len(), cpu.len(), "{what}: lengths");
    if let Some(i) = emu
        .iter()
        .zip(cpu)
        .position(|(a, b)| a.to_bits() != b.to_bits())
    {
        panic!("{what}: element {i}: emu {:e} cpu {:e}", emu[i], cpu[i]);
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Prec {
    F32,
    Bf16,
    F16,
}

impl Prec {
    fn round(self, x: f32) -> f32 {
        match self {
            Prec::F32 => x,
            Prec::Bf16 => half::bf16::from_f32(x).to_f32(),
            Prec::F16 => half::f16::from_f32(x).to_f32(),
        }
    }
    fn bits(self, v: &[f32]) -> Vec<u16> {
        v.iter()
            .map(|&x| match self {
                Prec::Bf16 => half::bf16::from_f32(x).to_bits(),
                _ => half::f16::from_f32(x).to_bits(),
            })
            .collect()
    }
    fn floats(self, v: &[u16]) -> Vec<f32> {
        v.iter()
            .map(|&x| match self {
                Prec::Bf16 => half::bf16::from_bits(x).to_f32(),
                _ => half::f16::from_bits(x).to_f32(),
            })
            .collect()
    }
}

const PRECS: [Prec; 3] = [Prec::F32, Prec::Bf16, Prec::F16];

/// (rows, cols, ld)
const SHAPES: [(u64, u64, u64); 4] = [(1, 1, 1), (1, 1031, 1031), (13, 130, 136), (5, 7, 9)];

#[allow(clippy::too_many_arguments)]
fn axpy_twin(
    prec: Prec,
    host: &[f32],
    (rows, cols, ld): (usize, usize, usize),
    tensor: u32,
    role: u32,
    d: Dist,
    terms: &[(u64, f32)],
    decay: Option<f32>,
) -> Vec<f32> {
    let mut out: Vec<f32> = host.iter().map(|&v| prec.round(v)).collect();
    let mut packed: Vec<f32> = (0..rows)
        .flat_map(|i| out[i * ld..i * ld + cols].to_vec())
        .collect();
    let t = Tensor {
        param: zo::model::Param::Embed,
        tensor_id: tensor,
        data: &mut packed,
        decay: true,
    };
    seeded_axpy(vec![t], role, d, terms, decay);
    for i in 0..rows {
        for j in 0..cols {
            out[i * ld + j] = prec.round(packed[i * cols + j]);
        }
    }
    out
}

#[test]
fn seeded_axpy_matches_the_cpu() {
    for prec in PRECS {
        for (n, &(rows, cols, ld)) in SHAPES.iter().enumerate() {
            for d in [Dist::Gaussian, Dist::Rademacher] {
                for (q, decay, rl) in [
                    (1, None, role::DENSE),
                    (3, Some(1e-4f32), role::LORA_A),
                    (2, Some(0.5), role::LORA_B),
                ] {
                    let r = rec(q, 1e-3);
                    let terms: Vec<(u64, f32)> = r
                        .seeds
                        .iter()
                        .zip(&r.grads)
                        .map(|(&s, &g)| (s, -(r.lr * g) / q as f32))
                        .collect();
                    let len = ((rows - 1) * ld + cols) as usize;
                    let host = values(n as u64, len, 0.3);
                    let tensor = 1000 + n as u32;
                    let p = ZoAxpyParams {
                        rows,
                        cols,
                        ld,
                        tensor,
                        role: rl,
                        dist: dist(d),
                        dirs: q as u32,
                        decay: decay.is_some() as u32,
                        neg_decay: decay.map_or(0.0, |l| -l),
                    };
                    let cfg = launch(axpy_launch_config((rows * cols) as usize));
                    let dv = dirs(&terms);
                    let emu = match prec {
                        Prec::F32 => {
                            let mut t = host.clone();
                            zo_emu::update::seeded_axpy_f32(cfg, p, &mut t, &dv);
                            t
                        }
                        Prec::Bf16 | Prec::F16 => {
                            let mut t = prec.bits(&host);
                            if prec == Prec::Bf16 {
                                zo_emu::update::seeded_axpy_bf16(cfg, p, &mut t, &dv);
                            } else {
                                zo_emu::update::seeded_axpy_f16(cfg, p, &mut t, &dv);
                            }
                            prec.floats(&t)
                        }
                    };
                    let shape = (rows as usize, cols as usize, ld as usize);
                    let cpu = axpy_twin(prec, &host, shape, tensor, rl, d, &terms, decay);
                    let what = format!("axpy {prec:?} {shape:?} {d:?} q {q}");
                    assert_bits(&emu, &cpu, &what);
                }
            }
        }
    }
}

#[test]
fn lowrank_bank_updates_match_the_cpu() {
    for (r, out) in [(1, 7), (4, 130)] {
        let n = r * out;
        for d in [Dist::Gaussian, Dist::Rademacher] {
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
                let (mut bank, mut mom) = (bank0.clone(), mom0.clone());
                let cfg = launch(axpy_launch_config(n));
                match step {
                    BankStep::Plain(c) => {
                        let p = ZoAxpyParams {
                            rows: 1,
                            cols: n as u64,
                            ld: n as u64,
                            tensor: tid,
                            role: role::LOWRANK_U,
                            dist: dist(d),
                            dirs: c.len() as u32,
                            decay: 0,
                            neg_decay: 0.0,
                        };
                        zo_emu::update::seeded_axpy_f32(cfg, p, &mut bank, &dirs(c));
                    }
                    BankStep::Momentum {
                        beta,
                        neg_lr,
                        coefs,
                    } => {
                        let p = ZoMomentumParams {
                            n: n as u64,
                            tensor: tid,
                            dist: dist(d),
                            dirs: coefs.len() as u32,
                            beta: *beta,
                            neg_lr: *neg_lr,
                            reserved: 0,
                        };
                        zo_emu::update::lowrank_momentum(cfg, p, &mut bank, &mut mom, &dirs(coefs));
                    }
                }
                let (mut cb, mut cm) = (bank0.clone(), mom0.clone());
                bank_update(d, tid, r, &mut cb, &mut cm, step);
                let what = format!("bank r {r} out {out} {d:?} {step:?}");
                assert_bits(&bank, &cb, &what);
                assert_bits(&mom, &cm, &what);
            }
        }
    }
}

#[test]
fn merges_match_the_cpu() {
    for (r, out, k, ld) in [(1, 5, 7, 8), (5, 30, 260, 288), (17, 9, 300, 304)] {
        let bt = values(10, r * out, 1e-3);
        let vt = values(11, r * k, 1.0);
        let host = values(12, out * ld, 0.2);
        for prec in PRECS {
            for transposed in [true, false] {
                let scale = 0.25f32;
                let p = ZoMergeParams {
                    out: out as u32,
                    k: k as u32,
                    ld: ld as u32,
                    rank: r as u32,
                    b_si: if transposed { 1 } else { r as u32 },
                    b_sk: if transposed { out as u32 } else { 1 },
                    scale,
                    reserved: 0,
                };
                let cfg = launch(merge_launch_config(out, k));
                let emu = match prec {
                    Prec::F32 => {
                        let mut w = host.clone();
                        zo_emu::update::factor_merge_f32(cfg, p, &mut w, &bt, &vt);
                        w
                    }
                    _ => {
                        let mut w = prec.bits(&host);
                        if prec == Prec::Bf16 {
                            zo_emu::update::factor_merge_bf16(cfg, p, &mut w, &bt, &vt);
                        } else {
                            zo_emu::update::factor_merge_f16(cfg, p, &mut w, &bt, &vt);
                        }
                        prec.floats(&w)
                    }
                };
                let mut w: Vec<f32> = (0..out)
                    .flat_map(|i| host[i * ld..i * ld + k].iter().map(|&v| prec.round(v)))
                    .collect();
                if transposed {
                    merge_low_rank(&mut w, scale, &bt, &vt, r, k);
                } else {
                    merge_factors(&mut w, scale, &bt, &vt, r, k);
                }
                let mut cpu: Vec<f32> = host.iter().map(|&v| prec.round(v)).collect();
                for i in 0..out {
                    for j in 0..k {
                        cpu[i * ld + j] = prec.round(w[i * k + j]);
                    }
                }
                let what = format!("merge {prec:?} transposed {transposed} r {r} {out}×{k}");
                assert_bits(&emu, &cpu, &what);
            }
        }
    }
}

#[test]
fn momentum_change_of_basis_matches_the_cpu() {
    for (r, k, out) in [(1, 3, 5), (4, 260, 130), (9, 100, 17)] {
        let old = values(20, r * k, 1.0);
        let new = values(21, r * k, 1.0);
        let mom = values(22, r * out, 1e-2);
        let p = ZoBasisParams {
            rank: r as u32,
            k_in: k as u32,
            out: out as u32,
            reserved: 0,
        };
        let mut pm = vec![f32::NAN; r * r];
        zo_emu::update::lowrank_basis(launch(basis_launch_config(r * r)), p, &mut pm, &old, &new);
        let mut m2 = vec![f32::NAN; r * out];
        zo_emu::update::lowrank_project(
            launch(basis_launch_config(r * out)),
            p,
            &mut m2,
            &mom,
            &pm,
        );
        let cp = change_of_basis(&old, &new, r, k);
        assert_bits(&pm, &cp, &format!("P r {r} k {k}"));
        assert_bits(
            &m2,
            &project_momentum(&mom, &cp, r),
            &format!("projected m r {r}"),
        );
    }
}
