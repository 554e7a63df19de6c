//! The Python client (tools/python/zo.py, over ctypes) against libzo.so: a session run equals
//! `zo-run train` bit for bit, and a scheduler-level loop with HF transformers as the engine
//! lowers the dev loss of the default task (where PyTorch and transformers are installed;
//! the test says why it skipped otherwise).

#[path = "common/c_client.rs"]
mod c_client;
#[path = "common/fixture_run.rs"]
mod fixture_run;

use std::path::{Path, PathBuf};
use std::process::Command;

use fixture_run::{g_of_metrics, read_g, zo_run_train, Fixture};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python_run(python: &str, script: &str, args: &[String]) -> String {
    let out = Command::new(python)
        .arg(repo().join("tools/python").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{python} does not run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} {args:?} failed:\n{text}");
    text
}

fn libzo() -> String {
    c_client::lib_dir().join("libzo.so").display().to_string()
}

#[test]
fn python_session_runs_equal_zo_run_train_bit_for_bit() {
    let fx = Fixture::new();
    let reference = zo_run_train(&fx, "lozo", &[]);
    let want = g_of_metrics(&reference.metrics);
    let ck = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    for mode in ["session", "scheduler"] {
        let out = fx.dir().join(format!("py-{mode}"));
        std::fs::create_dir_all(&out).unwrap();
        let mut args = vec![libzo()];
        args.extend(fx.client_args(mode, &reference.config, Some(&out)));
        python_run("python3", "session_client.py", &args);
        assert_eq!(read_g(&out.join("g.txt")), want, "{mode}: g per step");
        assert_eq!(
            ck(&out.join("checkpoint.json")),
            ck(&reference.checkpoint),
            "{mode}: checkpoint"
        );
        let w = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
        assert!(
            w(&out.join("export")) == w(&reference.export),
            "{mode}: export"
        );
    }
}

/// The interpreter with PyTorch and transformers: `ZO_TORCH_PYTHON`, else `python3`.
fn torch_python() -> Result<String, String> {
    let py = std::env::var("ZO_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import torch, transformers"])
        .output()
        .map_err(|e| format!("{py} does not run: {e}"))?;
    if !ok.status.success() {
        return Err(format!(
            "{py} cannot import torch and transformers (set ZO_TORCH_PYTHON to an interpreter \
             that can)"
        ));
    }
    Ok(py)
}

#[test]
fn hf_transformers_as_the_engine_lowers_the_dev_loss() {
    let model: PathBuf = repo().join("assets/smollm2-135m");
    let data: PathBuf = repo().join("assets/data/sentiment");
    let python = match torch_python() {
        Ok(p) if model.join("model.safetensors").is_file() => p,
        Ok(_) => {
            println!("skipped: the default model is missing (run tools/fetch-assets)");
            return;
        }
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("hf.json");
    let steps = std::env::var("ZO_HF_STEPS").unwrap_or_else(|_| "40".into());
    let args: Vec<String> = [
        libzo(),
        model.display().to_string(),
        data.display().to_string(),
        out.display().to_string(),
        "--steps".into(),
        steps,
    ]
    .into();
    let text = python_run(&python, "hf_engine.py", &args);
    println!("{text}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let diff = r["max_abs_logprob_diff_vs_zo"].as_f64().unwrap();
    assert!(
        diff < 1e-3,
        "PyTorch and zo disagree on a perturbed variant's log-probs by {diff}"
    );
    let before = r["dev_before"]["loss"].as_f64().unwrap();
    let after = r["dev_after"]["loss"].as_f64().unwrap();
    assert!(
        after < before,
        "dev loss did not go down: {before} -> {after}"
    );
}
