//! The prefix (MeZO-prefix) family on the CPU reference: sequences attend to the layer's
//! prefix, perturbed variants score like an explicitly perturbed stored prefix, updates follow
//! the fma convention bit for bit, and bad configurations give clear errors.

#[path = "common/fam2.rs"]
mod fam2;

use fam2::*;
use zo::backend::cpu::CpuBackend;
use zo::model::{Model, Param};
use zo::perturb::prefix::Prefix;
use zo::perturb::{build, role, Dist, Family, FamilyConfig, StepRecord, UpdateConfig};
use zo::plan::Variant;
use zo::Error;

const EPS: f32 = 1e-3;
const TOKENS: usize = 3;
const CFG: FamilyConfig = FamilyConfig::Prefix { tokens: TOKENS };
const RUN_SEED: u64 = 4242;

fn prefix(model: &Model, dist: Dist) -> Prefix {
    Prefix::new(CFG, dist, model, RUN_SEED).unwrap()
}

fn backend(model: &Model, p: Prefix) -> CpuBackend {
    CpuBackend::with_family(model.clone(), Box::new(p))
}

/// The stored prefix with `scale·Z(seed)` added explicitly, each element an fma.
fn perturbed_state(
    p: &Prefix,
    seed: u64,
    scale: f32,
    dist: Dist,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let shift = |x: &[Vec<f32>], param: fn(usize) -> Param| {
        x.iter()
            .enumerate()
            .map(|(l, x)| {
                let z = z(dist, seed, param(l), role::PREFIX, x.len());
                x.iter()
                    .zip(&z)
                    .map(|(&x, &z)| scale.mul_add(z, x))
                    .collect()
            })
            .collect()
    };
    (
        shift(p.keys(), Param::PrefixKey),
        shift(p.values(), Param::PrefixValue),
    )
}

#[test]
fn fused_scoring_equals_an_explicitly_perturbed_prefix() {
    for (name, model) in models() {
        for q in [1, 4] {
            let dist = Dist::Gaussian;
            let variants = two_sided(q, EPS);
            let fam = prefix(&model, dist);
            let fused = logprobs(&backend(&model, fam.clone()), &plan(&model, &variants));
            let base_plan = plan(&model, &[Variant::BASE]);
            let base = logprobs(&backend(&model, fam.clone()), &base_plan);
            for (v, var) in variants.iter().enumerate() {
                let (k, val) = perturbed_state(&fam, var.seed, var.sign as f32 * var.eps, dist);
                let explicit = Prefix::with_state(CFG, dist, &model, k, val).unwrap();
                let want = logprobs(&backend(&model, explicit), &base_plan);
                let got = of_variant(&fused, variants.len(), v);
                let err = max_abs_diff(&got, &want);
                assert!(err <= TOL, "{name} q={q} variant {v}: {err}");
                let moved = max_abs_diff(&got, &base);
                assert!(moved > 20.0 * TOL, "{name} variant {v} moved only {moved}");
            }
            let pm = max_abs_diff(
                &of_variant(&fused, variants.len(), 0),
                &of_variant(&fused, variants.len(), 1),
            );
            assert!(pm > 40.0 * TOL, "{name}: + and − differ by {pm}");
        }
    }
}

#[test]
fn sequences_attend_to_the_prefix() {
    for (name, model) in models() {
        let base_plan = plan(&model, &[Variant::BASE]);
        let plain = logprobs(&CpuBackend::new(model.clone()), &base_plan);
        let fam = prefix(&model, Dist::Gaussian);
        let with = logprobs(&backend(&model, fam.clone()), &base_plan);
        assert!(max_abs_diff(&plain, &with) > 1e-3, "{name}: prefix ignored");

        // Changing only the values of one prefix position of the last layer changes outputs.
        let (k, mut v) = (fam.keys().to_vec(), fam.values().to_vec());
        let last = v.len() - 1;
        v[last][..8].iter_mut().for_each(|x| *x += 1.0);
        let changed = Prefix::with_state(CFG, Dist::Gaussian, &model, k, v).unwrap();
        let other = logprobs(&backend(&model, changed), &base_plan);
        assert!(max_abs_diff(&with, &other) > 1e-4, "{name}: values ignored");

        // With all-zero values the prefix still draws softmax mass through its keys, which
        // scales down the sequence's own contribution: the keys are read too.
        let zeros = vec![vec![0.0; fam.values()[0].len()]; model.layers.len()];
        let silent =
            Prefix::with_state(CFG, Dist::Gaussian, &model, fam.keys().to_vec(), zeros).unwrap();
        let s = logprobs(&backend(&model, silent), &base_plan);
        assert!(max_abs_diff(&plain, &s) > 1e-4, "{name}: keys ignored");
    }
}

#[test]
fn init_is_seeded_and_scaled_like_the_layers_projections() {
    let (_, model) = models().remove(0);
    let a = prefix(&model, Dist::Gaussian);
    let b = prefix(&model, Dist::Rademacher);
    let c = Prefix::new(CFG, Dist::Gaussian, &model, RUN_SEED + 1).unwrap();
    assert_eq!(
        a.keys(),
        b.keys(),
        "the init does not depend on the direction law"
    );
    assert_ne!(a.keys(), c.keys());
    assert_ne!(a.keys()[0], a.keys()[1]);
    assert_ne!(a.keys()[0], a.values()[0]);
    let kv = model.config.num_kv_heads * model.config.head_dim;
    for (l, layer) in model.layers.iter().enumerate() {
        for (x, w) in [(&a.keys()[l], &layer.k.w), (&a.values()[l], &layer.v.w)] {
            assert_eq!(x.len(), TOKENS * kv);
            let sigma = (w.iter().map(|&w| (w as f64).powi(2)).sum::<f64>() / kv as f64).sqrt();
            // Element 0 exactly: σ (rounded to f32) times the PREFIX_INIT Gaussian.
            let p = if std::ptr::eq(x, &a.keys()[l]) {
                Param::PrefixKey(l)
            } else {
                Param::PrefixValue(l)
            };
            let z0 = zo::rng::gaussian(RUN_SEED, p.tensor_id(), role::PREFIX_INIT, 0);
            assert_eq!(x[0], sigma as f32 * z0);
            let rms = (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
            assert!(
                (rms / sigma - 1.0).abs() < 0.35,
                "layer {l}: rms {rms} vs σ {sigma}"
            );
        }
    }
}

#[test]
fn zero_length_and_malformed_prefixes_are_rejected() {
    let (_, model) = models().remove(0);
    let zero = FamilyConfig::Prefix { tokens: 0 };
    let e = build(&zero, Dist::Gaussian, &model, 1)
        .err()
        .expect("tokens = 0 must fail");
    assert!(
        matches!(e, Error::Config(ref m) if m.contains("tokens = 0")),
        "{e}"
    );
    let e = Prefix::new(
        FamilyConfig::Dense { in_place: false },
        Dist::Gaussian,
        &model,
        1,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");

    let p = prefix(&model, Dist::Gaussian);
    let mut k = p.keys().to_vec();
    k[1].pop();
    let e = Prefix::with_state(CFG, Dist::Gaussian, &model, k, p.values().to_vec()).unwrap_err();
    assert!(
        matches!(e, Error::Tensor { ref name, .. } if name == "layers.1.prefix_key"),
        "{e}"
    );
    let e = Prefix::with_state(CFG, Dist::Gaussian, &model, p.keys().to_vec(), vec![]).unwrap_err();
    assert!(e.to_string().contains("0 layers given"), "{e}");
}

fn record(q: usize) -> StepRecord {
    StepRecord {
        step: 9,
        seeds: (0..q).map(seed).collect(),
        grads: [1.5f32, -0.4, 0.9][..q].to_vec(),
        lr: 2e-2,
        period_seed: None,
    }
}

#[test]
fn update_equals_explicit_fma_sequence_bit_for_bit() {
    for (name, model) in models() {
        for (q, wd) in [(1, 0.0f32), (3, 0.2)] {
            let dist = Dist::Rademacher;
            let rec = record(q);
            let cfg = UpdateConfig {
                dist,
                weight_decay: wd,
                rule: Default::default(),
            };
            let start = prefix(&model, dist);
            let mut b = backend(&model, start.clone());
            b.update(&rec, &cfg).unwrap();
            let got = b.family().unwrap().state_tensors();

            let decay = (wd != 0.0).then_some(wd);
            for (l, (k, v)) in start.keys().iter().zip(start.values()).enumerate() {
                for (i, (p, x)) in [(Param::PrefixKey(l), k), (Param::PrefixValue(l), v)]
                    .into_iter()
                    .enumerate()
                {
                    let zs: Vec<Vec<f32>> = rec
                        .seeds
                        .iter()
                        .map(|&s| z(dist, s, p, role::PREFIX, x.len()))
                        .collect();
                    let mut want = x.clone();
                    explicit_update(&mut want, &zs, &rec.grads, rec.lr, decay);
                    let (gname, shape, data) = &got[2 * l + i];
                    let kind = ["prefix_key", "prefix_value"][i];
                    assert_eq!(gname, &format!("layers.{l}.{kind}"));
                    assert_eq!(shape, &vec![TOKENS, x.len() / TOKENS]);
                    assert_eq!(bits(data), bits(&want), "{name} q={q} {gname}");
                    assert_ne!(bits(data), bits(x));
                }
            }
            // The model's weights are not trained by this family.
            assert_eq!(
                bits(&b.model().layers[0].k.w),
                bits(&model.layers[0].k.w),
                "{name}"
            );
        }
    }
}

#[test]
fn updates_are_deterministic_whatever_the_thread_count() {
    let (_, model) = models().remove(1);
    let run = || {
        let mut b = backend(&model, prefix(&model, Dist::Gaussian));
        let cfg = UpdateConfig {
            dist: Dist::Gaussian,
            weight_decay: 0.1,
            rule: Default::default(),
        };
        b.update(&record(3), &cfg).unwrap();
        b.family().unwrap().state_tensors()
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
fn a_prefix_cannot_be_merged() {
    let (_, model) = models().remove(0);
    let p = prefix(&model, Dist::Gaussian);
    assert!(matches!(p.merged(&model), Err(Error::Unsupported(_))));
    let names: Vec<String> = p.state_tensors().into_iter().map(|t| t.0).collect();
    assert_eq!(
        names,
        [
            "layers.0.prefix_key",
            "layers.0.prefix_value",
            "layers.1.prefix_key",
            "layers.1.prefix_value"
        ]
    );
}
