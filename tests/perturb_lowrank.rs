//! The lowrank family (LoZO, LoZO-M) on the CPU reference: fused variants against explicitly
//! materialised weights, exact update / merge / momentum formulas, and config errors.

#[path = "common/fam1.rs"]
mod fam1;

use fam1::*;
use zo::backend::cpu::CpuBackend;
use zo::model::{Model, Param, Site, Slot};
use zo::perturb::lowrank::LowRank;
use zo::perturb::{build, role, Dist, Family, FamilyConfig, LowRankScale, UpdateConfig};
use zo::Error;

const EPS: f32 = 0.01;
const LR: f32 = 0.01;
const P1: u64 = 77;
const P2: u64 = 78;

fn lozo(rank: usize, scale: LowRankScale, momentum: Option<f32>) -> FamilyConfig {
    FamilyConfig::LowRank {
        rank,
        period: 5,
        scale,
        momentum,
    }
}

fn ucfg(dist: Dist) -> UpdateConfig {
    UpdateConfig {
        dist,
        weight_decay: 0.0,
        rule: Default::default(),
    }
}

fn s_of(cfg: &FamilyConfig) -> (usize, f32) {
    match cfg {
        FamilyConfig::LowRank { rank, scale, .. } => (
            *rank,
            match scale {
                LowRankScale::Plain => 1.0,
                LowRankScale::InvSqrtRank => 1.0 / (*rank as f32).sqrt(),
            },
        ),
        _ => unreachable!(),
    }
}

/// `W + s·bank·Vᵀ + sc·s·U·Vᵀ` for every block Linear, summed in f64.
fn materialize(
    model: &Model,
    st: &[(String, Vec<usize>, Vec<f32>)],
    cfg: &FamilyConfig,
    dist: Dist,
    period_seed: u64,
    pert: Option<(u64, f32)>,
) -> Model {
    let (r, s) = s_of(cfg);
    let mut m = model.clone();
    for site in block_sites(model) {
        let tid = Param::Weight(site).tensor_id();
        let lin = linear_mut(&mut m, site);
        let (out, n_in) = (lin.out_dim, lin.in_dim);
        let vt = fill(dist, period_seed, tid, role::LOWRANK_V, r * n_in);
        let bank = state(st, &format!("{}.bank", site_name(site)));
        let ut = pert.map(|(seed, _)| fill(dist, seed, tid, role::LOWRANK_U, r * out));
        let sc = pert.map_or(0.0, |p| p.1) as f64;
        for i in 0..out {
            for j in 0..n_in {
                let mut z = 0.0f64;
                for k in 0..r {
                    let u = ut.as_ref().map_or(0.0, |u| u[k * out + i] as f64);
                    z += (bank[k * out + i] as f64 + sc * u) * vt[k * n_in + j] as f64;
                }
                let w = &mut lin.w[i * n_in + j];
                *w = (*w as f64 + s as f64 * z) as f32;
            }
        }
    }
    m
}

/// Scores `q` directions (± each) plus the base in one fused plan and compares every variant
/// with its materialised weights scored alone.
fn check_fused(b: &CpuBackend, cfg: &FamilyConfig, dist: Dist, period_seed: u64, step: u64) {
    let st = b.family().unwrap().state_tensors();
    for q in [1, 4] {
        let vars = variants(&dir_seeds(step, q), EPS);
        let p = plan(b.model(), &vars);
        let per = split(&p, &logprobs(b, &p));
        assert_variants_distinct(&per);
        for (v, var) in vars.iter().enumerate() {
            let pert = (var.sign != 0).then_some((var.seed, var.sign as f32 * var.eps));
            let m = materialize(b.model(), &st, cfg, dist, period_seed, pert);
            let what = format!("q={q} variant {v} ({var:?}) step {step}");
            assert_close(&per[v], &score_plain(m), &what);
        }
    }
}

/// Base-variant log-probs with the family.
fn base_scores(b: &CpuBackend) -> Vec<f32> {
    let p = plan(b.model(), &[zo::plan::Variant::BASE]);
    logprobs(b, &p)
}

fn scenario(arch: &str, cfg: FamilyConfig, dist: Dist) {
    let model = tiny(arch);
    let fam = build(&cfg, dist, &model, 0).unwrap();
    let mut b = CpuBackend::with_family(model, fam);
    b.begin_step(0, Some(P1));
    check_fused(&b, &cfg, dist, P1, 0);
    for step in 0..3 {
        b.begin_step(step, Some(P1));
        b.update(&record(step, dir_seeds(step, 2), LR, Some(P1)), &ucfg(dist))
            .unwrap();
    }
    // The bank must matter, or the checks below prove nothing about it.
    let with_bank = base_scores(&b);
    let d = max_diff(&with_bank, &score_plain(b.model().clone()));
    assert!(
        d > 100.0 * TOL,
        "{arch}: bank changes log-probs by only {d:e}"
    );
    check_fused(&b, &cfg, dist, P1, 3);

    // Period boundary: the bank merges into W and V switches.
    let before = all_weights(b.model());
    b.begin_step(3, Some(P2));
    assert_ne!(
        before,
        all_weights(b.model()),
        "{arch}: merge left W unchanged"
    );
    assert_close(&base_scores(&b), &with_bank, "outputs across the merge");
    check_fused(&b, &cfg, dist, P2, 3);
    for step in 3..5 {
        b.update(&record(step, dir_seeds(step, 3), LR, Some(P2)), &ucfg(dist))
            .unwrap();
    }
    check_fused(&b, &cfg, dist, P2, 5);

    // merged() is what the forward computes.
    let fam = b.family().unwrap();
    let merged = fam.merged(b.model()).unwrap();
    let fused = base_scores(&b);
    assert_close(&score_plain(merged), &fused, "merged() vs forward");
    let d = max_diff(&fused, &score_plain(b.model().clone()));
    assert!(
        d > 100.0 * TOL,
        "{arch}: second-period bank too small ({d:e})"
    );
}

#[test]
fn lozo_fused_matches_materialized_llama() {
    scenario("llama", lozo(2, LowRankScale::Plain, None), Dist::Gaussian);
}

#[test]
fn lozo_fused_matches_materialized_opt() {
    scenario(
        "opt",
        lozo(3, LowRankScale::InvSqrtRank, None),
        Dist::Rademacher,
    );
}

#[test]
fn lozo_m_fused_matches_materialized_llama() {
    scenario(
        "llama",
        lozo(3, LowRankScale::InvSqrtRank, Some(0.9)),
        Dist::Rademacher,
    );
}

#[test]
fn lozo_m_fused_matches_materialized_opt() {
    scenario(
        "opt",
        lozo(2, LowRankScale::Plain, Some(0.8)),
        Dist::Gaussian,
    );
}

/// Runs a fixed schedule across a period boundary; returns the state and weights as bits.
fn run(cfg: &FamilyConfig) -> (Vec<Vec<u32>>, Vec<u32>) {
    let model = tiny("llama");
    let fam = build(cfg, Dist::Gaussian, &model, 0).unwrap();
    let mut b = CpuBackend::with_family(model, fam);
    for step in 0..7 {
        let ps = 100 + step / 3;
        b.begin_step(step, Some(ps));
        b.update(
            &record(step, dir_seeds(step, 3), LR, Some(ps)),
            &ucfg(Dist::Gaussian),
        )
        .unwrap();
    }
    let st = b.family().unwrap().state_tensors();
    (
        st.iter().map(|t| bits(&t.2)).collect(),
        all_weights(b.model()),
    )
}

#[test]
fn updates_are_deterministic() {
    for cfg in [
        lozo(2, LowRankScale::Plain, None),
        lozo(2, LowRankScale::Plain, Some(0.9)),
    ] {
        let a = run(&cfg);
        assert_eq!(a, run(&cfg));
        assert!(a.0.iter().flatten().any(|&x| x != 0), "bank stayed zero");
    }
}

/// LoZO: `bank = c_d.mul_add(u_d, bank)` per direction, then the merge
/// `w = s.mul_add(Σ_k bank·v (fma chain), w)` at the switch, both bit for bit.
#[test]
fn lozo_update_and_merge_follow_the_documented_formulas() {
    let cfg = lozo(2, LowRankScale::InvSqrtRank, None);
    let (r, s) = s_of(&cfg);
    let mut model = tiny("opt");
    let mut f = LowRank::new(cfg, Dist::Gaussian, &model).unwrap();
    f.begin_step(&mut model, 0, Some(P1));
    let rec = record(0, dir_seeds(0, 2), LR, Some(P1));
    f.update(&mut model, &rec, &ucfg(Dist::Gaussian)).unwrap();
    let st = f.state_tensors();
    let q = rec.seeds.len() as f32;
    let merged = f.merged(&model).unwrap();
    let before = model.clone();
    f.begin_step(&mut model, 1, Some(P2));
    for site in block_sites(&model) {
        let tid = Param::Weight(site).tensor_id();
        let (out, n_in) = {
            let l = linear_mut(&mut model, site);
            (l.out_dim, l.in_dim)
        };
        let mut want = vec![0.0f32; r * out];
        for (&seed, &g) in rec.seeds.iter().zip(&rec.grads) {
            let u = fill(Dist::Gaussian, seed, tid, role::LOWRANK_U, r * out);
            let c = -(rec.lr * g) / q;
            for (w, &u) in want.iter_mut().zip(&u) {
                *w = c.mul_add(u, *w);
            }
        }
        let bank = state(&st, &format!("{}.bank", site_name(site)));
        assert_eq!(bits(bank), bits(&want), "{site:?} bank");

        let vt = fill(Dist::Gaussian, P1, tid, role::LOWRANK_V, r * n_in);
        let mut w = linear_mut(&mut before.clone(), site).w.clone();
        for i in 0..out {
            for j in 0..n_in {
                let mut acc = 0.0f32;
                for k in 0..r {
                    acc = bank[k * out + i].mul_add(vt[k * n_in + j], acc);
                }
                w[i * n_in + j] = s.mul_add(acc, w[i * n_in + j]);
            }
        }
        assert_eq!(
            bits(&linear_mut(&mut model, site).w),
            bits(&w),
            "{site:?} merge"
        );
        let m = linear_mut(&mut merged.clone(), site).w.clone();
        assert_eq!(bits(&m), bits(&w), "{site:?} merged()");
    }
    // The bank restarts at zero for the new V.
    assert!(f
        .state_tensors()
        .iter()
        .all(|t| t.2.iter().all(|&x| x == 0.0)));
}

/// LoZO-M: momentum starts at the first estimate, then `m = β·m + (1−β)·g·U/q`, the bank
/// takes `−lr·m`, and a V refresh projects m by `V_oldᵀ·V_new / in`.
#[test]
fn lozo_m_momentum_across_a_v_refresh() {
    let beta = 0.9f32;
    let cfg = lozo(3, LowRankScale::Plain, Some(beta));
    let r = 3;
    let mut model = tiny("llama");
    let mut f = LowRank::new(cfg, Dist::Gaussian, &model).unwrap();
    let site = Site::layer(1, Slot::Up);
    let tid = Param::Weight(site).tensor_id();
    let (out, n_in) = {
        let l = linear_mut(&mut model, site);
        (l.out_dim, l.in_dim)
    };
    let name = site_name(site);
    let get =
        |f: &LowRank, what: &str| state(&f.state_tensors(), &format!("{name}.{what}")).to_vec();
    let u = |seed| fill(Dist::Gaussian, seed, tid, role::LOWRANK_U, r * out);
    let (mut m, mut bank) = (vec![0.0f32; r * out], vec![0.0f32; r * out]);
    let step = |m: &mut Vec<f32>, bank: &mut Vec<f32>, rec: &zo::perturb::StepRecord, first| {
        let q = rec.seeds.len() as f32;
        m.iter_mut().for_each(|x| *x *= beta);
        for (&seed, &g) in rec.seeds.iter().zip(&rec.grads) {
            let a = if first { g / q } else { ((1.0 - beta) * g) / q };
            for (x, &u) in m.iter_mut().zip(&u(seed)) {
                *x = a.mul_add(u, *x);
            }
        }
        for (b, &x) in bank.iter_mut().zip(m.iter()) {
            *b = (-rec.lr).mul_add(x, *b);
        }
    };

    f.begin_step(&mut model, 0, Some(P1));
    for s in 0..2 {
        let rec = record(s, dir_seeds(s, 2), LR, Some(P1));
        f.update(&mut model, &rec, &ucfg(Dist::Gaussian)).unwrap();
        step(&mut m, &mut bank, &rec, s == 0);
        assert_eq!(
            bits(&get(&f, "momentum")),
            bits(&m),
            "momentum after step {s}"
        );
        assert_eq!(bits(&get(&f, "bank")), bits(&bank), "bank after step {s}");
    }
    // First estimate taken whole: m after step 0 would be g·U/q, not (1−β) of it.
    assert!(m.iter().any(|&x| x != 0.0));

    f.begin_step(&mut model, 2, Some(P2));
    let v_old = fill(Dist::Gaussian, P1, tid, role::LOWRANK_V, r * n_in);
    let v_new = fill(Dist::Gaussian, P2, tid, role::LOWRANK_V, r * n_in);
    let mut p = vec![0.0f32; r * r];
    let mut p64 = vec![0.0f64; r * r];
    for k in 0..r {
        for l in 0..r {
            let mut acc = 0.0f32;
            for j in 0..n_in {
                acc = v_old[k * n_in + j].mul_add(v_new[l * n_in + j], acc);
                p64[k * r + l] += v_old[k * n_in + j] as f64 * v_new[l * n_in + j] as f64;
            }
            p[k * r + l] = acc / n_in as f32;
            p64[k * r + l] /= n_in as f64;
        }
    }
    let mut proj = vec![0.0f32; r * out];
    for l in 0..r {
        for i in 0..out {
            let mut acc = 0.0f32;
            let mut acc64 = 0.0f64;
            for k in 0..r {
                acc = m[k * out + i].mul_add(p[k * r + l], acc);
                acc64 += m[k * out + i] as f64 * p64[k * r + l];
            }
            proj[l * out + i] = acc;
            assert!(
                (acc as f64 - acc64).abs() < 1e-6,
                "projection is M·V_oldᵀ·V_new/in"
            );
        }
    }
    let got = get(&f, "momentum");
    assert_eq!(bits(&got), bits(&proj), "momentum projected onto the new V");
    assert_ne!(bits(&got), bits(&m), "projection changed nothing");
    assert!(get(&f, "bank").iter().all(|&x| x == 0.0), "bank not reset");

    let rec = record(2, dir_seeds(2, 2), LR, Some(P2));
    f.update(&mut model, &rec, &ucfg(Dist::Gaussian)).unwrap();
    let (mut m, mut bank) = (proj, vec![0.0f32; r * out]);
    step(&mut m, &mut bank, &rec, false);
    assert_eq!(
        bits(&get(&f, "momentum")),
        bits(&m),
        "momentum after the refresh"
    );
    assert_eq!(
        bits(&get(&f, "bank")),
        bits(&bank),
        "bank after the refresh"
    );
}

#[test]
fn period_seed_defaults_to_the_period_index() {
    let mut model = tiny("llama");
    let mut f = LowRank::new(lozo(2, LowRankScale::Plain, None), Dist::Gaussian, &model).unwrap();
    f.begin_step(&mut model, 4, None);
    assert_eq!(f.period_seed(), 0);
    f.begin_step(&mut model, 5, None);
    assert_eq!(f.period_seed(), 1);
    f.begin_step(&mut model, 6, Some(9));
    assert_eq!(f.period_seed(), 9);
}

#[test]
fn state_tensor_names_and_shapes() {
    let model = tiny("opt");
    let f = LowRank::new(
        lozo(2, LowRankScale::Plain, Some(0.5)),
        Dist::Gaussian,
        &model,
    )
    .unwrap();
    let st = f.state_tensors();
    assert_eq!(st.len(), 2 * 2 * 6);
    assert_eq!(st[0].0, "layers.0.q.bank");
    assert_eq!(st[0].1, vec![2, 32]);
    assert_eq!(st[1].0, "layers.0.q.momentum");
    let fc1 = st.iter().find(|t| t.0 == "layers.1.fc1.bank").unwrap();
    assert_eq!(fc1.1, vec![2, 64]);
}

fn config_err(cfg: FamilyConfig, arch: &str) -> String {
    match LowRank::new(cfg, Dist::Gaussian, &tiny(arch)) {
        Err(Error::Config(m)) => m,
        Err(e) => panic!("wrong error kind: {e}"),
        Ok(_) => panic!("accepted a bad config"),
    }
}

#[test]
fn bad_configs_are_rejected_clearly() {
    let e = config_err(lozo(0, LowRankScale::Plain, None), "llama");
    assert!(e.contains("rank 0") && e.contains("layers.0.q"), "{e}");
    // k of tiny Llama is 16×32 (2 kv heads of 8).
    let e = config_err(lozo(17, LowRankScale::Plain, None), "llama");
    assert!(
        e.contains("layers.0.k") && e.contains("16×32") && e.contains("1..=16"),
        "{e}"
    );
    let e = config_err(
        FamilyConfig::LowRank {
            rank: 2,
            period: 0,
            scale: LowRankScale::Plain,
            momentum: None,
        },
        "opt",
    );
    assert!(e.contains("period"), "{e}");
    let e = config_err(lozo(2, LowRankScale::Plain, Some(1.0)), "opt");
    assert!(e.contains("momentum"), "{e}");
    let e = config_err(FamilyConfig::Dense { in_place: false }, "opt");
    assert!(e.contains("dense"), "{e}");
    assert!(build(
        &lozo(0, LowRankScale::Plain, None),
        Dist::Gaussian,
        &tiny("opt"),
        0
    )
    .is_err());
}

#[test]
fn bad_updates_are_rejected_clearly() {
    let mut model = tiny("llama");
    let mut f = LowRank::new(lozo(2, LowRankScale::Plain, None), Dist::Gaussian, &model).unwrap();
    f.begin_step(&mut model, 0, Some(P1));
    let rec = record(0, dir_seeds(0, 1), LR, Some(P1));
    let wd = UpdateConfig {
        dist: Dist::Gaussian,
        weight_decay: 0.1,
        rule: Default::default(),
    };
    match f.update(&mut model, &rec, &wd) {
        Err(Error::Unsupported(m)) => assert!(m.contains("weight decay"), "{m}"),
        other => panic!("weight decay accepted: {:?}", other.err()),
    }
    let stale = record(0, dir_seeds(0, 1), LR, Some(P2));
    let e = f
        .update(&mut model, &stale, &ucfg(Dist::Gaussian))
        .unwrap_err();
    assert!(
        matches!(e, Error::Data(_)) && e.to_string().contains("period seed"),
        "{e}"
    );
    let mut ragged = record(0, dir_seeds(0, 2), LR, Some(P1));
    ragged.grads.pop();
    let e = f
        .update(&mut model, &ragged, &ucfg(Dist::Gaussian))
        .unwrap_err();
    assert!(e.to_string().contains("2 direction seeds and 1"), "{e}");
    let e = f
        .update(&mut model, &rec, &ucfg(Dist::Rademacher))
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    // Nothing was applied by the rejected updates.
    assert!(f
        .state_tensors()
        .iter()
        .all(|t| t.2.iter().all(|&x| x == 0.0)));
}
