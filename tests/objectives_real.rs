//! The new tasks on real data with the default model: a short ZO run on SQuAD's LM loss and
//! on HellaSwag's multiple-choice loss lowers the loss of the examples it trained on. Runs
//! where tools/fetch-assets has written assets/ and prints why it skipped otherwise.

use std::path::{Path, PathBuf};

use zo::engine::config::TrainConfig;
use zo::engine::hash::model_hash;
use zo::engine::{Checkpoint, Objective};
use zo::eval::evaluate;
use zo::train::{cpu_backend, load_base, load_data, train, RunOptions};

fn assets() -> Option<PathBuf> {
    let a = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let needed = [
        "smollm2-135m/config.json",
        "data/squad/task.json",
        "data/hellaswag/task.json",
    ];
    if needed.iter().all(|f| a.join(f).is_file()) {
        Some(a)
    } else {
        println!("skipped: assets/ lacks the model or the squad/hellaswag tasks (run tools/fetch-assets)");
        None
    }
}

/// Trains `steps` LoZO steps on the first `n` training examples (every step sees all of them)
/// and returns their mean loss before and after.
fn run(task: &str, objective: Objective, n: usize, steps: u64, lr: f32) -> Option<(f64, f64)> {
    let a = assets()?;
    let data_dir = a.join("data").join(task);
    let (base, tok) = load_base(&a.join("smollm2-135m")).unwrap();
    let cfg = TrainConfig {
        task: data_dir.join("task.json").display().to_string(),
        objective,
        steps,
        batch: n,
        lr,
        train_limit: Some(n),
        dev_limit: Some(2),
        test_limit: Some(1),
        eval_every: 0,
        eval_batch: 8,
        ..TrainConfig::preset("lozo").unwrap()
    };
    let data = load_data(&cfg, &data_dir, &tok, &base.config).unwrap();
    let hash = model_hash(&base);
    let make = || cpu_backend(&base, &cfg);
    let opts = RunOptions {
        skip_test: true,
        ..RunOptions::default()
    };
    let log = Checkpoint::new(hash.clone(), cfg.clone());
    let out = train(&make, &data, &cfg, &hash, log, &opts).unwrap();
    let loss = |b: &zo::backend::cpu::CpuBackend| {
        evaluate(b, &data.train, 8, &mut |_| {}).unwrap().mean_loss
    };
    Some((loss(&cpu_backend(&base, &cfg).unwrap()), loss(&out.backend)))
}

#[test]
fn squad_lm_loss_falls() {
    if let Some((before, after)) = run("squad", Objective::Lm, 4, 6, 2e-5) {
        println!("squad lm loss {before:.4} -> {after:.4}");
        assert!(after < before, "squad lm loss {before} -> {after}");
    }
}

#[test]
fn hellaswag_choice_loss_falls() {
    if let Some((before, after)) = run("hellaswag", Objective::Classification, 4, 6, 2e-4) {
        println!("hellaswag loss {before:.4} -> {after:.4}");
        assert!(after < before, "hellaswag loss {before} -> {after}");
    }
}
