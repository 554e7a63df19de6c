//! The ZO engine end to end on tiny random models: determinism, seed-log replay, resume and
//! convergence.

mod common;

use common::synth::{parity_data, tiny_model};
use zo::backend::cpu::CpuBackend;
use zo::engine::config::{LrSchedule, Optimizer};
use zo::engine::hash::model_hash;
use zo::engine::{replay, Checkpoint, TrainConfig};
use zo::model::save::hf_tensors;
use zo::model::{Model, Slot};
use zo::perturb::{Dist, FamilyConfig, LowRankScale};
use zo::train::{cpu_backend, train, RunOptions, TrainData, TrainOutcome};

fn config(family: FamilyConfig, steps: u64, lr: f32, eps: f32) -> TrainConfig {
    TrainConfig {
        preset: None,
        family,
        steps,
        batch: 4,
        eps,
        lr,
        eval_every: 0,
        eval_batch: 8,
        seed: 17,
        data_seed: 3,
        ..TrainConfig::preset("mezo").unwrap()
    }
}

fn lowrank(period: u64) -> FamilyConfig {
    FamilyConfig::LowRank {
        rank: 2,
        period,
        scale: LowRankScale::Plain,
        momentum: Some(0.9),
    }
}

fn lora() -> FamilyConfig {
    FamilyConfig::Lora {
        rank: 2,
        alpha: 4.0,
        targets: vec![Slot::Q, Slot::V],
    }
}

fn run(
    base: &Model,
    data: &TrainData,
    cfg: &TrainConfig,
    log: Option<Checkpoint>,
    opts: &RunOptions,
) -> TrainOutcome<CpuBackend> {
    let hash = model_hash(base);
    let log = log.unwrap_or_else(|| Checkpoint::new(hash.clone(), cfg.clone()));
    let make = || cpu_backend(base, cfg);
    train(&make, data, cfg, &hash, log, opts).unwrap()
}

/// Every weight and every family state tensor, as bits.
fn state(b: &CpuBackend) -> Vec<(String, Vec<u32>)> {
    let mut out: Vec<(String, Vec<u32>)> = hf_tensors(b.model())
        .into_iter()
        .map(|(n, _, v)| (n, v.iter().map(|x| x.to_bits()).collect()))
        .collect();
    for (n, _, v) in b.family().unwrap().state_tensors() {
        out.push((n, v.iter().map(|x| x.to_bits()).collect()));
    }
    out
}

fn assert_same(a: &[(String, Vec<u32>)], b: &[(String, Vec<u32>)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: tensor count");
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb, "{what}");
        let diff = va.iter().zip(vb).filter(|(x, y)| x != y).count();
        assert_eq!(diff, 0, "{what}: {na} differs in {diff} elements");
    }
}

fn families() -> Vec<(&'static str, FamilyConfig, f32, f32)> {
    vec![
        // Period 3 over 7 steps: two period boundaries (merge + new V) inside the run.
        ("lowrank", lowrank(3), 1e-2, 1e-2),
        ("lora", lora(), 1e-1, 1e-2),
        ("dense", FamilyConfig::Dense { in_place: false }, 1e-3, 1e-3),
        (
            "dense-in-place",
            FamilyConfig::Dense { in_place: true },
            1e-3,
            1e-3,
        ),
    ]
}

#[test]
fn replaying_the_seed_log_reproduces_the_trained_state_bit_for_bit() {
    let base = tiny_model();
    let data = parity_data(16, 8, 8);
    for (name, fam, lr, eps) in families() {
        let cfg = config(fam, 7, lr, eps);
        let out = run(&base, &data, &cfg, None, &RunOptions::default());
        assert_eq!(out.log.records.len() + out.log.skipped.len(), 7);
        let trained = state(&out.backend);
        let fresh = cpu_backend(&base, &cfg).unwrap();
        // The test can fail: training moved the state away from the base.
        assert_ne!(state(&fresh), trained, "{name}: training changed nothing");
        let mut b = fresh;
        replay(&mut b, &cfg, &out.log.records, &out.log.skipped, 7).unwrap();
        assert_same(&state(&b), &trained, name);
    }
}

#[test]
fn two_runs_are_bit_identical_and_seeds_matter() {
    let base = tiny_model();
    let data = parity_data(16, 8, 8);
    let cfg = config(lowrank(3), 5, 1e-2, 1e-2);
    let a = run(&base, &data, &cfg, None, &RunOptions::default());
    let b = run(&base, &data, &cfg, None, &RunOptions::default());
    assert_same(&state(&a.backend), &state(&b.backend), "determinism");
    assert_eq!(a.log.records, b.log.records);
    let other = TrainConfig { seed: 18, ..cfg };
    let c = run(&base, &data, &other, None, &RunOptions::default());
    assert_ne!(state(&a.backend), state(&c.backend));
}

#[test]
fn resume_after_interruption_equals_the_uninterrupted_run() {
    let base = tiny_model();
    let data = parity_data(16, 8, 8);
    let dir = tempfile::tempdir().unwrap();
    for (name, fam, lr, eps) in families() {
        let cfg = TrainConfig {
            eval_every: 3,
            schedule: LrSchedule::Linear,
            ..config(fam, 8, lr, eps)
        };
        let full = run(&base, &data, &cfg, None, &RunOptions::default());

        let ck = dir.path().join(format!("{name}.json"));
        let opts = RunOptions {
            checkpoint: Some(ck.clone()),
            checkpoint_every: 2,
            stop_after: Some(5),
            ..RunOptions::default()
        };
        let part = run(&base, &data, &cfg, None, &opts);
        assert!(!part.finished);
        drop(part);
        // Only the file survives the interruption.
        let log = Checkpoint::load(&ck).unwrap();
        assert_eq!(log.completed, 5);
        let resumed = run(&base, &data, &cfg, Some(log), &RunOptions::default());
        assert!(resumed.finished);
        assert_same(&state(&resumed.backend), &state(&full.backend), name);
        assert_eq!(resumed.log.records, full.log.records, "{name}");
        assert_eq!(resumed.log.best, full.log.best, "{name}");
        assert_eq!(resumed.test_accuracy, full.test_accuracy, "{name}");
    }
}

#[test]
fn best_dev_state_is_recovered_by_replay() {
    let base = tiny_model();
    let data = parity_data(16, 8, 8);
    let cfg = TrainConfig {
        eval_every: 1,
        ..config(lora(), 6, 3e-1, 1e-2)
    };
    let out = run(&base, &data, &cfg, None, &RunOptions::default());
    let best = out.log.best.clone().unwrap();
    assert_eq!(out.log.evals.len(), 7);
    let max = out.log.evals.iter().map(|e| e.accuracy).fold(0.0, f64::max);
    assert_eq!(best.accuracy, max);
    // The replayed best state scores exactly what was recorded for it.
    let mut b = cpu_backend(&base, &cfg).unwrap();
    replay(&mut b, &cfg, &out.log.records, &out.log.skipped, best.after).unwrap();
    let (acc, loss) = zo::train::dev_eval(&b, &data.dev, 8).unwrap();
    assert_eq!((acc, loss), (best.accuracy, best.loss));
}

#[test]
fn dev_accuracy_ties_are_broken_by_the_lower_dev_loss() {
    let base = tiny_model();
    // Two dev examples: accuracy takes three values over seven evaluations, so it ties.
    let data = parity_data(16, 2, 2);
    let cfg = TrainConfig {
        eval_every: 1,
        ..config(lora(), 6, 3e-1, 1e-2)
    };
    let out = run(&base, &data, &cfg, None, &RunOptions::default());
    let best = out.log.best.clone().unwrap();
    let max = out.log.evals.iter().map(|e| e.accuracy).fold(0.0, f64::max);
    let at_max: Vec<_> = out.log.evals.iter().filter(|e| e.accuracy == max).collect();
    assert!(
        at_max.len() > 1,
        "no tie at the best accuracy: {:?}",
        out.log.evals
    );
    let min_loss = at_max.iter().map(|e| e.loss).fold(f64::INFINITY, f64::min);
    assert!(
        at_max[0].loss > min_loss,
        "the first tied evaluation already has the lowest loss"
    );
    assert_eq!((best.accuracy, best.loss), (max, min_loss));
}

#[test]
fn training_lowers_the_loss_on_a_synthetic_task() {
    let base = tiny_model();
    let data = parity_data(64, 32, 32);
    let cfg = TrainConfig {
        batch: 16,
        q: 4,
        ..config(lora(), 300, 5e-2, 1e-2)
    };
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("m.jsonl");
    let opts = RunOptions {
        metrics: Some(metrics.clone()),
        plot: Some(dir.path().join("curve.svg")),
        ..RunOptions::default()
    };
    let out = run(&base, &data, &cfg, None, &opts);
    let before = zo::train::dev_eval(&cpu_backend(&base, &cfg).unwrap(), &data.train, 16)
        .unwrap()
        .1;
    let after = zo::train::dev_eval(&out.backend, &data.train, 16)
        .unwrap()
        .1;
    eprintln!("train loss {before:.4} -> {after:.4}");
    assert!(
        after < before - 0.2,
        "full-train-split loss went from {before} to {after}; expected a drop of at least 0.2"
    );
    let curves = zo::engine::plot::read_curves(&metrics).unwrap();
    assert_eq!(curves.loss.len(), 300);
    let svg = std::fs::read_to_string(dir.path().join("curve.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("polyline"),
        "{}",
        &svg[..200.min(svg.len())]
    );
}

#[test]
fn non_finite_losses_skip_the_step_and_are_logged() {
    let mut base = tiny_model();
    // Poison one prompt token's embedding: examples using it score NaN.
    let e = base.config.embed_dim;
    let data = parity_data(16, 8, 8);
    let t = data.train[0].prompt[0] as usize;
    base.embed[t * e] = f32::NAN;
    let cfg = config(lowrank(3), 6, 1e-2, 1e-2);
    let out = run(&base, &data, &cfg, None, &RunOptions::default());
    assert!(!out.log.skipped.is_empty(), "no step was skipped");
    assert!(out
        .log
        .skipped
        .iter()
        .all(|s| s.reason.contains("non-finite")));
    assert_eq!(out.log.records.len() + out.log.skipped.len(), 6);
    assert!(out
        .log
        .records
        .iter()
        .all(|r| r.grads.iter().all(|g| g.is_finite())));
    let mut b = cpu_backend(&base, &cfg).unwrap();
    replay(&mut b, &cfg, &out.log.records, &out.log.skipped, 6).unwrap();
    // NaN != NaN, so compare bits.
    assert_same(
        &state(&b),
        &state(&out.backend),
        "replay with skipped steps",
    );
}

/// One trained family per optimizer beyond plain ZO-SGD, with what each needs.
fn optimizer_cases() -> Vec<(&'static str, TrainConfig)> {
    let with = |fam: FamilyConfig, lr: f32, optimizer: Optimizer| TrainConfig {
        optimizer,
        eval_every: 3,
        warmup: 2,
        schedule: LrSchedule::Cosine,
        ..config(fam, 8, lr, 1e-2)
    };
    let adam = Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    vec![
        (
            "momentum-lora",
            with(lora(), 1e-1, Optimizer::Momentum { beta: 0.9 }),
        ),
        ("adam-lora", with(lora(), 1e-2, adam)),
        (
            "adam-dense",
            with(FamilyConfig::Dense { in_place: false }, 1e-3, adam),
        ),
        (
            "momentum-prefix",
            with(
                FamilyConfig::Prefix { tokens: 2 },
                1e-1,
                Optimizer::Momentum { beta: 0.8 },
            ),
        ),
        ("sign-lowrank", with(lowrank(3), 1e-3, Optimizer::Sign)),
        (
            "fzoo-lora",
            TrainConfig {
                q: 4,
                one_sided: true,
                dist: Dist::Rademacher,
                ..with(lora(), 1e-2, Optimizer::Fzoo)
            },
        ),
    ]
}

#[test]
fn every_optimizer_replays_and_resumes_bit_for_bit() {
    let base = tiny_model();
    let data = parity_data(16, 8, 8);
    let dir = tempfile::tempdir().unwrap();
    for (name, cfg) in optimizer_cases() {
        let full = run(&base, &data, &cfg, None, &RunOptions::default());
        assert!(full.finished, "{name}");
        assert_eq!(full.log.records.len(), 8, "{name}: steps were skipped");
        let trained = state(&full.backend);
        // The optimizer matters: plain ZO-SGD on the same seeds ends elsewhere.
        let sgd = TrainConfig {
            optimizer: Optimizer::Sgd,
            ..cfg.clone()
        };
        let plain = run(&base, &data, &sgd, None, &RunOptions::default());
        assert_ne!(state(&plain.backend), trained, "{name}: same state as sgd");

        let mut b = cpu_backend(&base, &cfg).unwrap();
        replay(&mut b, &cfg, &full.log.records, &full.log.skipped, 8).unwrap();
        assert_same(&state(&b), &trained, &format!("{name}: replay"));

        let ck = dir.path().join(format!("{name}.json"));
        let opts = RunOptions {
            checkpoint: Some(ck.clone()),
            stop_after: Some(5),
            ..RunOptions::default()
        };
        drop(run(&base, &data, &cfg, None, &opts));
        let log = Checkpoint::load(&ck).unwrap();
        assert_eq!(log.completed, 5);
        let resumed = run(&base, &data, &cfg, Some(log), &RunOptions::default());
        assert_same(
            &state(&resumed.backend),
            &trained,
            &format!("{name}: resume"),
        );
        assert_eq!(resumed.log.records, full.log.records, "{name}");
        assert_eq!(resumed.log.best, full.log.best, "{name}");
    }
}

#[test]
fn sign_and_fzoo_records_hold_the_coefficients_they_applied() {
    let base = tiny_model();
    let data = parity_data(16, 8, 8);
    let cases = optimizer_cases();
    let (_, sign) = cases.iter().find(|(n, _)| *n == "sign-lowrank").unwrap();
    let out = run(&base, &data, sign, None, &RunOptions::default());
    assert!(out
        .log
        .records
        .iter()
        .flat_map(|r| &r.grads)
        .all(|g| *g == 1.0 || *g == -1.0));
    let (_, fzoo) = cases.iter().find(|(n, _)| *n == "fzoo-lora").unwrap();
    let out = run(&base, &data, fzoo, None, &RunOptions::default());
    for r in &out.log.records {
        // (L_d − L₀)/σ over the perturbed losses: their spread is exactly 1 in these units.
        let n = r.grads.len() as f64;
        let mean = r.grads.iter().map(|&g| g as f64).sum::<f64>() / n;
        let var = r
            .grads
            .iter()
            .map(|&g| (g as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(
            (var.sqrt() - 1.0).abs() < 1e-5,
            "step {}: σ {}",
            r.step,
            var.sqrt()
        );
    }
}

#[test]
fn a_diverging_learning_rate_stops_with_the_last_good_state_saved() {
    let base = tiny_model();
    let data = parity_data(16, 8, 8);
    let cfg = config(FamilyConfig::Dense { in_place: false }, 60, 1e6, 1e-2);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.json");
    let opts = RunOptions {
        checkpoint: Some(ck.clone()),
        ..RunOptions::default()
    };
    let hash = model_hash(&base);
    let make = || cpu_backend(&base, &cfg);
    let err = train(
        &make,
        &data,
        &cfg,
        &hash,
        Checkpoint::new(hash.clone(), cfg.clone()),
        &opts,
    )
    .err()
    .expect("lr 1e6 must diverge");
    let msg = err.to_string();
    assert!(matches!(err, zo::Error::Diverged(_)), "{msg}");
    assert!(
        msg.contains("--lr") && msg.contains(&ck.display().to_string()),
        "{msg}"
    );
    let log = Checkpoint::load(&ck).unwrap();
    assert!(log.completed < 60, "{msg}");
    // The saved state is the last good one: finite, and scored no worse than the limit.
    let mut b = cpu_backend(&base, &cfg).unwrap();
    replay(&mut b, &cfg, &log.records, &log.skipped, log.completed).unwrap();
    assert!(state(&b)
        .iter()
        .all(|(_, v)| v.iter().all(|&x| f32::from_bits(x).is_finite())));
    let (_, loss) = zo::train::dev_eval(&b, &data.train, 8).unwrap();
    assert!(loss.is_finite(), "{msg}");
}

/// θ after one update of `rule` with a fixed record, as f32 values.
fn after_one_update(base: &Model, cfg: &TrainConfig, rule: Optimizer) -> Vec<f32> {
    let mut b = cpu_backend(base, cfg).unwrap();
    let rec = zo::perturb::StepRecord {
        step: 0,
        seeds: vec![11, 12],
        grads: vec![0.7, -0.4],
        lr: 1e-3,
        period_seed: None,
    };
    let ucfg = TrainConfig {
        optimizer: rule,
        ..cfg.clone()
    }
    .update_config();
    b.update(&rec, &ucfg).unwrap();
    values(&b)
}

/// Every weight and family state element of `b`, in `state` order.
fn values(b: &CpuBackend) -> Vec<f32> {
    state(b)
        .into_iter()
        .flat_map(|(_, v)| v.into_iter().map(f32::from_bits))
        .collect()
}

#[test]
fn momentum_and_adam_move_along_the_perturbation_directions() {
    let base = tiny_model();
    for fam in [
        lora(),
        FamilyConfig::Dense { in_place: false },
        FamilyConfig::Prefix { tokens: 2 },
    ] {
        let cfg = TrainConfig {
            q: 2,
            ..config(fam.clone(), 4, 1e-3, 1e-2)
        };
        let before = values(&cpu_backend(&base, &cfg).unwrap());
        let sgd = after_one_update(&base, &cfg, Optimizer::Sgd);
        // Momentum with β = 0 is ZO-SGD up to the order of the fp32 roundings.
        let heavy = after_one_update(&base, &cfg, Optimizer::Momentum { beta: 0.0 });
        let adam = after_one_update(
            &base,
            &cfg,
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-12,
            },
        );
        let mut moved = 0;
        for (i, &b) in before.iter().enumerate() {
            let (ds, dh, da) = (sgd[i] - b, heavy[i] - b, adam[i] - b);
            assert!(
                (ds - dh).abs() <= 1e-6 * b.abs().max(1.0),
                "{}: element {i}: sgd moved {ds}, momentum β=0 {dh}",
                fam.name()
            );
            // Adam's first step is lr·sign(ĝ) per element: the same direction as ZO-SGD.
            if ds.abs() > 1e-7 {
                moved += 1;
                assert_eq!(ds.signum(), da.signum(), "{}: element {i}", fam.name());
                assert!((da.abs() - 1e-3).abs() < 2e-4, "{}: |Δ| {da}", fam.name());
            }
        }
        assert!(moved > 0, "{}: the update moved nothing", fam.name());
    }
}
