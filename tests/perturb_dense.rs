//! The dense (MeZO) family on the CPU reference: fused variants score like explicitly
//! perturbed weights, the in-place MeZO sequence agrees with them, and updates follow the
//! documented fma convention bit for bit.

#[path = "common/fam2.rs"]
mod fam2;

use fam2::*;
use zo::backend::cpu::CpuBackend;
use zo::model::Model;
use zo::perturb::dense::{perturb_in_place, Dense};
use zo::perturb::{build, role, Dist, Family, FamilyConfig, StepRecord, UpdateConfig};
use zo::plan::Variant;
use zo::Error;

const EPS: f32 = 1e-3;
const FUSED: FamilyConfig = FamilyConfig::Dense { in_place: false };

fn dense_backend(model: &Model, dist: Dist) -> CpuBackend {
    CpuBackend::with_family(model.clone(), build(&FUSED, dist, model, 0).unwrap())
}

/// Every parameter tensor's bits, in a fixed order.
fn all_params(model: &Model) -> Vec<(String, Vec<u32>)> {
    let mut m = model.clone();
    let mut out = Vec::new();
    for_each_param(&mut m, |p, data, _| {
        out.push((format!("{p:?}"), bits(data)))
    });
    out
}

#[test]
fn fused_scoring_equals_materialized_weights() {
    for (name, model) in models() {
        for (q, dist) in [
            (1, Dist::Gaussian),
            (4, Dist::Gaussian),
            (1, Dist::Rademacher),
        ] {
            let variants = two_sided(q, EPS);
            let plan = plan(&model, &variants);
            let fused = logprobs(&dense_backend(&model, dist), &plan);
            let base_plan = plan_base(&model);
            let base = logprobs(&CpuBackend::new(model.clone()), &base_plan);
            for (v, var) in variants.iter().enumerate() {
                let scale = var.sign as f32 * var.eps;
                let explicit = materialize_dense(&model, var.seed, scale, dist);
                let want = logprobs(&CpuBackend::new(explicit), &base_plan);
                let got = of_variant(&fused, variants.len(), v);
                let err = max_abs_diff(&got, &want);
                assert!(err <= TOL, "{name} q={q} {dist:?} variant {v}: {err}");
                // The perturbation is visible far above the tolerance, so the check can fail.
                let moved = max_abs_diff(&got, &base);
                assert!(moved > 50.0 * TOL, "{name} variant {v} moved only {moved}");
            }
            let pm = max_abs_diff(
                &of_variant(&fused, variants.len(), 0),
                &of_variant(&fused, variants.len(), 1),
            );
            assert!(pm > 100.0 * TOL, "{name}: + and − differ by {pm}");
        }
    }
}

fn plan_base(model: &Model) -> zo::plan::Plan {
    plan(model, &[Variant::BASE])
}

#[test]
fn unperturbed_sequences_in_a_mixed_plan_see_the_base_model() {
    // One-sided order: q perturbed variants, then the unperturbed one.
    for (name, model) in models() {
        let mut variants: Vec<Variant> = (0..3)
            .map(|d| Variant {
                seed: seed(d),
                sign: 1,
                eps: EPS,
            })
            .collect();
        variants.push(Variant::BASE);
        let backend = dense_backend(&model, Dist::Gaussian);
        let fused = logprobs(&backend, &plan(&model, &variants));
        let base = logprobs(&CpuBackend::new(model.clone()), &plan_base(&model));
        let err = max_abs_diff(&of_variant(&fused, 4, 3), &base);
        assert!(err <= TOL, "{name}: base rows off by {err}");
        // Scoring never writes θ.
        assert_eq!(all_params(backend.model()), all_params(&model), "{name}");
    }
}

#[test]
fn in_place_mezo_sequence_matches_fused_and_restores_theta_up_to_rounding() {
    for (name, model) in models() {
        let dist = Dist::Gaussian;
        let variants = two_sided(1, EPS);
        let fused = logprobs(&dense_backend(&model, dist), &plan(&model, &variants));

        let mut backend = CpuBackend::new(model.clone());
        let base_plan = plan_base(&model);
        let s = seed(0);
        perturb_in_place(backend.parts_mut().0, s, EPS, dist);
        let plus = logprobs(&backend, &base_plan);
        perturb_in_place(backend.parts_mut().0, s, -2.0 * EPS, dist);
        let minus = logprobs(&backend, &base_plan);
        perturb_in_place(backend.parts_mut().0, s, EPS, dist);

        assert!(
            max_abs_diff(&plus, &of_variant(&fused, 2, 0)) <= TOL,
            "{name} +"
        );
        assert!(
            max_abs_diff(&minus, &of_variant(&fused, 2, 1)) <= TOL,
            "{name} −"
        );

        // θ comes back only up to the rounding of three fmas (MeZO's own behaviour).
        let mut start = model.clone();
        let mut starts = Vec::new();
        for_each_param(&mut start, |p, d, _| starts.push((p, d.clone())));
        let mut end = backend.into_parts().0;
        let (mut i, mut changed, mut total) = (0, 0, 0);
        for_each_param(&mut end, |p, d, _| {
            let (sp, s0) = &starts[i];
            assert_eq!(*sp, p);
            let z = z(dist, s, p, role::DENSE, d.len());
            for ((&a, &b), &z) in d.iter().zip(s0).zip(&z) {
                let bound = 3.0 * f32::EPSILON * (b.abs() + 2.0 * EPS * z.abs());
                assert!((a - b).abs() <= bound, "{name} {p:?}: {b} -> {a}");
                changed += (a != b) as usize;
                total += 1;
            }
            i += 1;
        });
        assert_eq!(i, starts.len());
        assert!(changed > 0, "{name}: {total} elements all restored exactly");
    }
}

#[test]
fn perturb_in_place_equals_materialized() {
    let (_, model) = models().remove(2);
    let mut m = model.clone();
    perturb_in_place(&mut m, 77, -0.3, Dist::Rademacher);
    let want = materialize_dense(&model, 77, -0.3, Dist::Rademacher);
    assert_eq!(all_params(&m), all_params(&want));
    assert_ne!(all_params(&m), all_params(&model));
}

fn record(q: usize) -> StepRecord {
    StepRecord {
        step: 3,
        seeds: (0..q).map(seed).collect(),
        grads: [0.7f32, -1.3, 0.25, 2.0][..q].to_vec(),
        lr: 1e-2,
        period_seed: None,
    }
}

fn update_cfg(dist: Dist, wd: f32) -> UpdateConfig {
    UpdateConfig {
        dist,
        weight_decay: wd,
        rule: Default::default(),
    }
}

#[test]
fn update_equals_explicit_fma_sequence_bit_for_bit() {
    for (name, model) in models() {
        for (q, wd) in [(1, 0.0f32), (3, 0.1)] {
            let dist = Dist::Gaussian;
            let rec = record(q);
            let mut backend = dense_backend(&model, dist);
            backend.update(&rec, &update_cfg(dist, wd)).unwrap();

            let mut want = model.clone();
            for_each_param(&mut want, |p, data, is_weight| {
                let zs: Vec<Vec<f32>> = rec
                    .seeds
                    .iter()
                    .map(|&s| z(dist, s, p, role::DENSE, data.len()))
                    .collect();
                let decay = (is_weight && wd != 0.0).then_some(wd);
                explicit_update(data, &zs, &rec.grads, rec.lr, decay);
            });
            assert_eq!(
                all_params(backend.model()),
                all_params(&want),
                "{name} q={q}"
            );
            assert_ne!(all_params(backend.model()), all_params(&model), "{name}");
        }
    }
}

#[test]
fn updates_are_deterministic_whatever_the_thread_count() {
    let (_, model) = models().remove(0);
    let run = || {
        let mut b = dense_backend(&model, Dist::Rademacher);
        b.update(&record(4), &update_cfg(Dist::Rademacher, 0.05))
            .unwrap();
        all_params(b.model())
    };
    let a = run();
    assert_eq!(a, run());
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    assert_eq!(a, one.install(run));
}

#[test]
fn weight_decay_skips_biases_and_norms() {
    // Zero grads isolate the decay: c_d = -0, and fma(-0, z, θ) = θ.
    let (_, model) = models().remove(1);
    let mut backend = dense_backend(&model, Dist::Gaussian);
    let rec = StepRecord {
        grads: vec![0.0, 0.0],
        ..record(2)
    };
    let (lr, wd) = (rec.lr, 0.5f32);
    backend
        .update(&rec, &update_cfg(Dist::Gaussian, wd))
        .unwrap();
    let mut after = backend.into_parts().0;
    let mut before = Vec::new();
    let mut m = model.clone();
    for_each_param(&mut m, |_, d, w| before.push((d.clone(), w)));
    let (mut i, mut weights, mut others) = (0, 0, 0);
    for_each_param(&mut after, |p, d, is_weight| {
        let (b, w) = &before[i];
        assert_eq!(*w, is_weight);
        if is_weight {
            let want: Vec<f32> = b.iter().map(|&t| (-(lr * wd)).mul_add(t, t)).collect();
            assert_eq!(bits(d), bits(&want), "{p:?} not decayed");
            assert_ne!(bits(d), bits(b), "{p:?}");
            weights += 1;
        } else {
            assert_eq!(bits(d), bits(b), "{p:?} must not decay");
            others += 1;
        }
        i += 1;
    });
    assert!(weights > 0 && others > 0);
}

#[test]
fn bad_records_and_configs_are_rejected() {
    let (_, model) = models().remove(0);
    let mut b = dense_backend(&model, Dist::Gaussian);
    let cfg = update_cfg(Dist::Gaussian, 0.0);
    let mut rec = record(2);
    rec.grads.pop();
    let e = b.update(&rec, &cfg).unwrap_err();
    assert!(
        matches!(e, Error::Data(ref m) if m.contains("2 seeds and 1 grads")),
        "{e}"
    );
    rec.grads = vec![1.0, f32::NAN];
    assert!(matches!(b.update(&rec, &cfg), Err(Error::Data(_))));
    let e = b
        .update(&record(1), &update_cfg(Dist::Rademacher, 0.0))
        .unwrap_err();
    assert!(e.to_string().contains("Rademacher"), "{e}");
    // Nothing was applied by the failed calls.
    assert_eq!(all_params(b.model()), all_params(&model));

    let e = Dense::new(FamilyConfig::Prefix { tokens: 2 }, Dist::Gaussian, &model).unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
}

#[test]
fn merged_is_the_model_and_there_is_no_extra_state() {
    let (_, model) = models().remove(0);
    let d = Dense::new(
        FamilyConfig::Dense { in_place: true },
        Dist::Gaussian,
        &model,
    )
    .unwrap();
    assert_eq!(all_params(&d.merged(&model).unwrap()), all_params(&model));
    assert!(d.state_tensors().is_empty());
    assert_eq!(d.config(), &FamilyConfig::Dense { in_place: true });
}
