//! The ZO estimator against an f64 finite difference, HF export round trips, and bad input:
//! unknown presets and families, bad hyper-parameters, corrupt checkpoints, mismatched base
//! weights and a full disk while checkpointing.

mod common;

use std::path::Path;

use common::naive::{log_softmax, naive_logits};
use common::synth::{parity_data, parity_examples, tiny_model};
use zo::engine::hash::model_hash;
use zo::engine::{estimate, Checkpoint, TrainConfig};
use zo::io::gguf::ImportDtype;
use zo::model::save::{hf_tensors, save_hf};
use zo::model::{Model, ModelConfig, Slot};
use zo::perturb::{Dist, FamilyConfig};
use zo::plan::TokenizedExample;
use zo::train::{cpu_backend, train, RunOptions};

/// MeZO's classification loss averaged over `examples`, in f64 on the naive forward.
fn naive_mean_loss(m: &Model, examples: &[TokenizedExample]) -> f64 {
    let total: f64 = examples
        .iter()
        .map(|ex| {
            let lp = log_softmax(naive_logits(m, &ex.prompt).last().unwrap());
            let s: Vec<f64> = ex.candidates.iter().map(|c| lp[c[0] as usize]).collect();
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = mx + s.iter().map(|v| (v - mx).exp()).sum::<f64>().ln();
            lse - s[ex.gold]
        })
        .sum();
    total / examples.len() as f64
}

fn dense_config(eps: f32) -> TrainConfig {
    TrainConfig {
        family: FamilyConfig::Dense { in_place: false },
        eps,
        batch: 4,
        seed: 5,
        ..TrainConfig::preset("mezo").unwrap()
    }
}

#[test]
fn projected_gradient_matches_an_f64_finite_difference() {
    let base = tiny_model();
    let examples = parity_examples(4, 9);
    let eps = 1e-3f32;
    let cfg = dense_config(eps);
    for step in 0..3 {
        let mut b = cpu_backend(&base, &cfg).unwrap();
        let est = estimate(&mut b, &cfg, step, None, 0.0, &examples).unwrap();
        assert!(est.skipped.is_none());
        let (seed, g) = (est.record.seeds[0], est.record.grads[0] as f64);
        // The same direction materialized: θ ± hZ, scored in f64.
        let fd = |h: f32| {
            let mut p = base.clone();
            zo::perturb::dense::perturb_in_place(&mut p, seed, h, Dist::Gaussian);
            let mut m = base.clone();
            zo::perturb::dense::perturb_in_place(&mut m, seed, -h, Dist::Gaussian);
            (naive_mean_loss(&p, &examples) - naive_mean_loss(&m, &examples)) / (2.0 * h as f64)
        };
        let central = fd(eps);
        let derivative = fd(1e-4);
        // The engine's g differs from the f64 difference at the same ε only by the rounding
        // of its f32 forward (losses ~1, fp32 relative error ~1e-7 per op, accumulated over
        // the depth: a few 1e-6 in a mean loss), amplified by 1/(2ε) = 500: ~1e-3. Measured
        // differences are ~1e-4; the tolerance leaves room for other CPUs' summation orders.
        let tol = 2e-3;
        eprintln!("step {step}: g {g:.6}, f64 central {central:.6}, derivative {derivative:.6}");
        assert!((g - central).abs() < tol, "g {g} vs f64 {central}");
        assert_eq!(
            g.signum(),
            derivative.signum(),
            "g {g} vs derivative {derivative}"
        );
        // O(ε²) truncation: the ε-difference is close to the derivative itself.
        assert!((central - derivative).abs() < 0.05 * derivative.abs().max(0.1));
        // Make the comparison meaningful: g is far larger than the tolerance.
        assert!(g.abs() > 100.0 * tol, "g {g} too small to test anything");
    }
}

#[test]
fn one_sided_and_multi_direction_estimates_use_their_own_variants() {
    let base = tiny_model();
    let examples = parity_examples(4, 9);
    let cfg = TrainConfig {
        q: 3,
        ..dense_config(1e-3)
    };
    let mut b = cpu_backend(&base, &cfg).unwrap();
    let two = estimate(&mut b, &cfg, 0, None, 0.0, &examples).unwrap();
    assert_eq!(two.record.grads.len(), 3);
    assert_eq!(two.loss_minus.len(), 3);
    let one = TrainConfig {
        one_sided: true,
        ..cfg
    };
    let o = estimate(&mut b, &one, 0, None, 0.0, &examples).unwrap();
    assert_eq!(o.record.seeds, two.record.seeds);
    assert!(o.loss_minus.is_empty());
    let l0 = o.loss0.unwrap();
    for d in 0..3 {
        assert_eq!(o.loss_plus[d], two.loss_plus[d]);
        let want = ((o.loss_plus[d] - l0) / 1e-3f32 as f64) as f32;
        // (L+ − L0)/ε and (L+ − L−)/2ε estimate the same derivative.
        assert_eq!(o.record.grads[d], want);
        assert!(
            (o.record.grads[d] - two.record.grads[d]).abs()
                < 0.05 * two.record.grads[d].abs().max(0.5)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------

fn llama_config_json() -> serde_json::Value {
    serde_json::json!({
        "model_type": "llama", "vocab_size": 97, "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 8, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "tie_word_embeddings": false, "hidden_act": "silu",
        "bos_token_id": 1, "eos_token_id": 2
    })
}

fn opt_config_json() -> serde_json::Value {
    serde_json::json!({
        "model_type": "opt", "vocab_size": 40, "hidden_size": 16, "ffn_dim": 24,
        "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 20,
        "word_embed_proj_dim": 8, "do_layer_norm_before": true,
        "_remove_final_layer_norm": false, "activation_function": "relu",
        "enable_bias": true, "layer_norm_elementwise_affine": true,
        "tie_word_embeddings": true
    })
}

/// A source directory holding `config` and a random model matching it.
fn source_dir(dir: &Path, config: &serde_json::Value) -> Model {
    std::fs::create_dir_all(dir).unwrap();
    let text = config.to_string();
    std::fs::write(dir.join("config.json"), &text).unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{\"marker\": 1}").unwrap();
    let c = ModelConfig::from_json_str(&text, "test").unwrap();
    Model::random_with_std(c, 3, 0.2)
}

fn bits(m: &Model) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    hf_tensors(m)
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

#[test]
fn saved_models_load_back_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    for (name, cfg) in [("llama", llama_config_json()), ("opt", opt_config_json())] {
        let src = dir.path().join(format!("{name}-src"));
        let out = dir.path().join(format!("{name}-out"));
        let m = source_dir(&src, &cfg);
        save_hf(&m, &src, &out, ImportDtype::F32).unwrap();
        let back = zo::model::load::load_model(&out).unwrap();
        assert_eq!(back.config, m.config, "{name}");
        assert_eq!(bits(&back), bits(&m), "{name}");
        assert_eq!(model_hash(&back), model_hash(&m));
        assert_eq!(
            std::fs::read_to_string(out.join("tokenizer.json")).unwrap(),
            "{\"marker\": 1}"
        );
        // bf16 export rounds: loads, but no longer bit-exact.
        let out16 = dir.path().join(format!("{name}-bf16"));
        save_hf(&m, &src, &out16, ImportDtype::BF16).unwrap();
        let b16 = zo::model::load::load_model(&out16).unwrap();
        assert_ne!(model_hash(&b16), model_hash(&m));
    }
    // Exporting over the source directory is refused.
    let src = dir.path().join("llama-src");
    let m = zo::model::load::load_model(&dir.path().join("llama-out")).unwrap();
    let e = save_hf(&m, &src, &src, ImportDtype::F32)
        .unwrap_err()
        .to_string();
    assert!(e.contains("source model directory"), "{e}");
}

#[test]
fn export_replays_the_log_and_writes_merged_weights_and_a_peft_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let m0 = source_dir(&src, &llama_config_json());
    let base_dir = dir.path().join("base");
    save_hf(&m0, &src, &base_dir, ImportDtype::F32).unwrap();
    let base = zo::model::load::load_model(&base_dir).unwrap();
    let cfg = TrainConfig {
        family: FamilyConfig::Lora {
            rank: 2,
            alpha: 4.0,
            targets: vec![Slot::Q, Slot::V],
        },
        steps: 5,
        batch: 4,
        lr: 0.2,
        eps: 1e-2,
        eval_every: 0,
        ..TrainConfig::preset("mezo-lora").unwrap()
    };
    let data = parity_data(8, 4, 4);
    let hash = model_hash(&base);
    let mut log = Checkpoint::new(hash.clone(), cfg.clone());
    log.model_dir = Some(base_dir.display().to_string());
    let ck = dir.path().join("ck.json");
    let opts = RunOptions {
        checkpoint: Some(ck.clone()),
        ..RunOptions::default()
    };
    let make = || cpu_backend(&base, &cfg);
    let out = train(&make, &data, &cfg, &hash, log, &opts).unwrap();
    let (model, fam) = out.backend.into_parts();
    let want = fam.unwrap().merged(&model).unwrap();
    assert_ne!(bits(&want), bits(&base), "training changed nothing");

    let exp = dir.path().join("export");
    let r = zo::engine::export::export(
        &ck,
        &exp,
        None,
        zo::engine::export::ExportState::Last,
        ImportDtype::F32,
    )
    .unwrap();
    assert_eq!(r.after, 5);
    let got = zo::model::load::load_model(&exp).unwrap();
    assert_eq!(bits(&got), bits(&want));
    // The merged folder must not look like an adapter folder to HF loaders.
    assert!(!exp.join("adapter_config.json").exists());
    let adapter_dir = exp.join(zo::engine::export::ADAPTER_DIR);
    let adapter =
        zo::io::safetensors::TensorStore::open(adapter_dir.join("adapter_model.safetensors"))
            .unwrap();
    assert!(!adapter.names().is_empty());
    let ac: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(adapter_dir.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(ac["r"], 2);

    // Other base weights: refused, naming both hashes.
    let other = dir.path().join("other");
    let m1 = source_dir(&dir.path().join("src1"), &llama_config_json());
    let mut m1 = m1;
    m1.embed[0] += 1.0;
    save_hf(&m1, &src, &other, ImportDtype::F32).unwrap();
    let e = zo::engine::export::export(
        &ck,
        &dir.path().join("x"),
        Some(&other),
        zo::engine::export::ExportState::Best,
        ImportDtype::F32,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains(&hash) && e.contains(&model_hash(&m1)), "{e}");
}

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_presets_families_and_bad_hyper_parameters_are_rejected() {
    let e = TrainConfig::preset("sgd").unwrap_err().to_string();
    assert!(e.contains("unknown preset \"sgd\""), "{e}");
    let e = zo::perturb::family_from_name("adapterx")
        .unwrap_err()
        .to_string();
    assert!(e.contains("adapterx"), "{e}");

    let base = tiny_model();
    let data = parity_data(8, 4, 4);
    let hash = model_hash(&base);
    for (cfg, want) in [
        (
            TrainConfig {
                eps: 0.0,
                ..dense_config(1e-3)
            },
            "eps",
        ),
        (
            TrainConfig {
                eps: -1e-3,
                ..dense_config(1e-3)
            },
            "eps",
        ),
        (
            TrainConfig {
                q: 0,
                ..dense_config(1e-3)
            },
            "q",
        ),
    ] {
        let make = || cpu_backend(&base, &cfg);
        let log = Checkpoint::new(hash.clone(), cfg.clone());
        let e = train(&make, &data, &cfg, &hash, log, &RunOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(want), "{e}");
    }
    // A rank larger than a layer's dimensions: the family refuses.
    let cfg = TrainConfig {
        family: FamilyConfig::LowRank {
            rank: 10_000,
            period: 5,
            scale: zo::perturb::LowRankScale::Plain,
            momentum: None,
        },
        ..dense_config(1e-3)
    };
    assert!(cpu_backend(&base, &cfg).is_err());
}

#[test]
fn cli_rejects_bad_flags_with_clear_messages() {
    let exe = env!("CARGO_BIN_EXE_zo-run");
    for (args, want) in [
        (vec!["--preset", "nope"], "unknown preset"),
        (vec!["--family", "nope"], "unknown perturbation family"),
        (vec!["--eps", "0"], "eps"),
        (vec!["--eps", "-1e-3"], "eps"),
        (vec!["--q", "0"], "q (directions"),
        (
            vec!["--preset", "mezo", "--rank", "4"],
            "--rank does not apply",
        ),
    ] {
        let out = std::process::Command::new(exe)
            .arg("train")
            .args(&args)
            .args(["--model", "/nonexistent", "--out", "/nonexistent/out"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

fn small_log() -> (Checkpoint, Model, TrainConfig) {
    let base = tiny_model();
    let cfg = TrainConfig {
        steps: 3,
        eval_every: 0,
        ..dense_config(1e-3)
    };
    let data = parity_data(8, 4, 4);
    let hash = model_hash(&base);
    let make = || cpu_backend(&base, &cfg);
    let out = train(
        &make,
        &data,
        &cfg,
        &hash,
        Checkpoint::new(hash.clone(), cfg.clone()),
        &RunOptions::default(),
    )
    .unwrap();
    (out.log, base, cfg)
}

#[test]
fn corrupt_checkpoints_and_other_base_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, base, cfg) = small_log();
    let path = dir.path().join("ck.json");
    log.save(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap(), log);

    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let e = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("ck.json") && e.contains("corrupt or truncated"),
        "{e}"
    );
    std::fs::write(&path, "{\"format\": \"zo-seed-log\"}").unwrap();
    assert!(Checkpoint::load(&path)
        .unwrap_err()
        .to_string()
        .contains("missing field"));
    // A log with a gap is not replayable.
    let mut gap = log.clone();
    gap.records.remove(1);
    gap.completed -= 1;
    gap.save(&path).unwrap();
    let e = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(e.contains("expected step 1"), "{e}");

    // Resuming on other base weights names both hashes.
    let mut other = base.clone();
    other.layers[0].q.w[0] += 1e-3;
    let other_hash = model_hash(&other);
    assert_ne!(other_hash, log.base_hash);
    let make = || cpu_backend(&other, &cfg);
    let data = parity_data(8, 4, 4);
    let e = train(
        &make,
        &data,
        &cfg,
        &other_hash,
        log.clone(),
        &RunOptions::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains(&log.base_hash) && e.contains(&other_hash), "{e}");
    // And with another config, names the field.
    let changed = TrainConfig {
        lr: 5e-3,
        ..cfg.clone()
    };
    let make = || cpu_backend(&base, &changed);
    let e = train(
        &make,
        &data,
        &changed,
        &log.base_hash.clone(),
        log,
        &RunOptions::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("lr:"), "{e}");
}

const CHILD: &str = "ZO_TEST_FULL_DISK_CHILD";

/// A real full disk: a child process whose file-size limit (RLIMIT_FSIZE) is below the size
/// of the new checkpoint, with SIGXFSZ ignored so write() fails with EFBIG instead of the
/// process being killed.
#[test]
fn full_disk_while_checkpointing_leaves_the_previous_checkpoint() {
    if let Ok(path) = std::env::var(CHILD) {
        let mut log = Checkpoint::load(Path::new(&path)).unwrap();
        // Grow the log well past the limit.
        let r = log.records[0].clone();
        for s in 0..500 {
            log.records.push(zo::perturb::StepRecord {
                step: log.completed + s,
                ..r.clone()
            });
        }
        log.completed += 500;
        match log.save(Path::new(&path)) {
            Ok(()) => panic!("saving past the file-size limit succeeded"),
            Err(e) => println!("CHILD-ERROR: {e}"),
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = small_log();
    let path = dir.path().join("ck.json");
    log.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    assert!(
        before.len() < 4096,
        "the previous checkpoint must fit under the limit"
    );

    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "full_disk_while_checkpointing_leaves_the_previous_checkpoint",
    ])
    .args(["--nocapture", "--test-threads=1"])
    .env(CHILD, &path);
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 4096,
                rlim_max: 4096,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("CHILD-ERROR"))
        .expect("child reports the error");
    assert!(
        line.contains("ck.json") && line.contains("previous file there is unchanged"),
        "{line}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the previous checkpoint was damaged"
    );
    assert_eq!(Checkpoint::load(&path).unwrap(), log);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}
