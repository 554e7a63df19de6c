//! The objectives through the training loop, on the tiny llama fixture with a word-level
//! tokenizer: a generated objective's g is the difference of the metric under θ ± εZ, decoded
//! from materialised weights here; the LM loss falls as a run trains on it.

#[path = "common/fixture_run.rs"]
mod fixture_run;

use fixture_run::Fixture;
use zo::backend::cpu::CpuBackend;
use zo::engine::config::TrainConfig;
use zo::engine::hash::model_hash;
use zo::engine::seeds::direction_seed;
use zo::engine::{Checkpoint, Objective};
use zo::eval::evaluate;
use zo::model::Model;
use zo::perturb::{Dist, FamilyConfig};
use zo::train::{
    cpu_backend, load_base, load_data, step_batch, train, RunOptions, TrainData, TrainOutcome,
};

fn config(objective: Objective, steps: u64, lr: f32, eps: f32) -> TrainConfig {
    TrainConfig {
        preset: None,
        family: FamilyConfig::Dense { in_place: false },
        objective,
        max_new_tokens: Some(3),
        steps,
        batch: 8,
        eps,
        lr,
        eval_every: 0,
        eval_batch: 8,
        seed: 5,
        data_seed: 2,
        ..TrainConfig::preset("mezo").unwrap()
    }
}

/// A fresh run of `cfg` on the CPU backend, without the test split.
fn fresh_run(base: &Model, data: &TrainData, cfg: &TrainConfig) -> TrainOutcome<CpuBackend> {
    let hash = model_hash(base);
    let make = || cpu_backend(base, cfg);
    let opts = RunOptions {
        skip_test: true,
        ..RunOptions::default()
    };
    let log = Checkpoint::new(hash.clone(), cfg.clone());
    train(&make, data, cfg, &hash, log, &opts).unwrap()
}

#[test]
fn a_generated_objective_differences_the_metric_under_plus_and_minus() {
    let fx = Fixture::new();
    let (base, tok) = load_base(&fx.model()).unwrap();
    // A generation task whose reference answer is the example's own text: a random model's
    // few generated words overlap it often enough for F1 to move with the weights.
    let spec = fx.dir().join("echo.json");
    std::fs::write(
        &spec,
        r#"{"name": "echo", "kind": "generation", "template": "{text}",
            "answers_field": "text", "max_new_tokens": 3}"#,
    )
    .unwrap();
    for (objective, eps) in [(Objective::F1, 0.5f32), (Objective::Em, 0.5)] {
        let cfg = TrainConfig {
            task: spec.display().to_string(),
            ..config(objective, 1, 1e-3, eps)
        };
        let data = load_data(&cfg, &fx.data(), &tok, &base.config).unwrap();
        let generator = data.judge.generator().unwrap().clone();
        let out = fresh_run(&base, &data, &cfg);
        let g = out.log.records[0].grads[0];

        // The same step by hand: the step's batch, greedy completions of θ ± εZ materialised
        // in place, and 1 − the metric of each against its reference.
        let batch = step_batch(&cfg, &data.train, 0);
        let seed = direction_seed(cfg.seed, 0, 0);
        let mut mean = [0f64; 2];
        for (k, sign) in [1f32, -1.0].into_iter().enumerate() {
            let mut m = base.clone();
            zo::perturb::dense::perturb_in_place(&mut m, seed, sign * eps, Dist::Gaussian);
            let b = CpuBackend::new(m);
            let refs: Vec<_> = batch.iter().collect();
            let (done, _) = generator
                .complete(&b, &refs, &vec![0; refs.len()], &[zo::plan::Variant::BASE])
                .unwrap();
            let losses: Vec<f64> = done
                .iter()
                .zip(&batch)
                // Per-example losses are fp32, their means f64 (the estimator's contract).
                .map(|(c, ex)| (1.0 - objective.metric(&c.text, &ex.answers)) as f32 as f64)
                .collect();
            mean[k] = losses.iter().sum::<f64>() / losses.len() as f64;
        }
        let want = ((mean[0] - mean[1]) / (2.0 * eps as f64)) as f32;
        assert_eq!(
            g, want,
            "{objective:?}: g from training vs by hand ({mean:?})"
        );
        if objective == Objective::F1 {
            // At this ε the two variants generate differently, so the check is not 0 = 0.
            assert_ne!(g, 0.0, "± generated alike; the check would be vacuous");
        }
    }
}

#[test]
fn training_on_the_lm_loss_lowers_it() {
    let fx = Fixture::new();
    let (base, tok) = load_base(&fx.model()).unwrap();
    let cfg = TrainConfig {
        train_limit: Some(8),
        ..config(Objective::Lm, 40, 1e-4, 1e-3)
    };
    let data = load_data(&cfg, &fx.data(), &tok, &base.config).unwrap();
    // The LM loss keeps each training example's gold label word as its only candidate.
    assert!(data.train.iter().all(|e| e.candidates.len() == 1));
    assert!(data.dev.iter().all(|e| e.candidates.len() == 2));
    let out = fresh_run(&base, &data, &cfg);
    let loss = |b: &CpuBackend| evaluate(b, &data.train, 8, &mut |_| {}).unwrap().mean_loss;
    let before = loss(&cpu_backend(&base, &cfg).unwrap());
    let after = loss(&out.backend);
    assert!(after < before - 0.01, "lm loss {before} -> {after}");
}
