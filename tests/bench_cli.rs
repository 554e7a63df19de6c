//! `zo-run bench` end to end on the CPU with a tiny architecture and fixed prompt lengths.

use std::process::Command;

use serde_json::Value;

fn zo_run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zo-run"))
        .arg("bench")
        .args(args)
        .output()
        .expect("zo-run runs")
}

/// A small OPT as a config.json file (2 layers, hidden 64, vocab 512).
fn tiny_config(dir: &std::path::Path) -> String {
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        r#"{"model_type": "opt", "hidden_size": 64, "ffn_dim": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "vocab_size": 512, "max_position_embeddings": 128,
            "word_embed_proj_dim": 64, "do_layer_norm_before": true}"#,
    )
    .unwrap();
    path.display().to_string()
}

fn bench_json(args: &[&str]) -> Value {
    let out = zo_run(args);
    assert!(
        out.status.success(),
        "zo-run bench {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {v}"))
}

fn spread_is_sane(v: &Value, key: &str) {
    let s = &v[key];
    let (min, med, max) = (num(s, "min"), num(s, "median"), num(s, "max"));
    let (p10, p90) = (num(s, "p10"), num(s, "p90"));
    assert!(
        min >= 0.0 && min <= p10 && p10 <= med && med <= p90 && p90 <= max,
        "{key}: {s}"
    );
}

#[test]
fn json_report_has_sane_values() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let lengths = dir.path().join("lengths.json");
    let v = bench_json(&[
        "--config",
        &config,
        "--device",
        "cpu",
        "--seq-len",
        "12",
        "--steps",
        "3",
        "--warmup",
        "1",
        "--batch",
        "4",
        "--json",
        "--dump-lengths",
        lengths.to_str().unwrap(),
    ]);
    assert_eq!(v["schema"], "zo-bench/1");
    for key in [
        "arch",
        "device",
        "device_name",
        "dtype",
        "family",
        "lengths",
        "flop_model",
    ] {
        assert!(v[key].is_string(), "{key}: {v}");
    }
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["dtype"], "f32");
    assert_eq!(v["family"], "lowrank");
    assert_eq!(
        (v["steps"].as_u64(), v["batch"].as_u64()),
        (Some(3), Some(4))
    );
    spread_is_sane(&v, "step_ms");
    spread_is_sane(&v, "scoring_ms");
    spread_is_sane(&v, "loss_ms");
    spread_is_sane(&v, "update_ms");
    assert_eq!(v["loss_separate"], true);
    // 4 examples × (+, −), 12 tokens each.
    assert_eq!(num(&v, "sequences_per_step"), 8.0);
    assert_eq!(num(&v, "tokens_per_step"), 96.0);
    assert_eq!(num(&v, "prompt_len_mean"), 12.0);
    for key in [
        "tokens_per_s",
        "flops_per_step",
        "tflops",
        "compute_floor_ms",
        "memory_floor_ms",
        "memory_bandwidth_gbs",
        "ratio_to_compute_floor",
        "ratio_to_memory_floor",
        "est_hours_run",
        "peak_memory_bytes",
        "params",
        "linear_params",
    ] {
        let x = num(&v, key);
        assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    }
    let hours = num(&v, "est_hours_run");
    let median = num(&v["step_ms"], "median");
    assert!((hours - median * 20_000.0 / 3.6e6).abs() < 1e-9 * hours.max(1.0));
    assert!(num(&v, "last_loss").is_finite());
    assert_eq!(v["skipped_steps"], 0);
    assert!(v["compute_floor_gemms"].as_array().unwrap().len() >= 6);
    // Warm-up and measured steps, batch 4 each.
    let dumped: Vec<usize> =
        serde_json::from_str(&std::fs::read_to_string(&lengths).unwrap()).unwrap();
    assert_eq!(dumped, vec![12; 16]);
}

#[test]
fn every_family_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    for (family, extra) in [
        ("mezo", &[][..]),
        ("mezo", &["--in-place"][..]),
        ("mezo-lora", &[][..]),
        ("mezo-prefix", &[][..]),
        ("lozo-m", &["--q", "2"][..]),
    ] {
        let mut args = vec![
            "--config",
            &config,
            "--device",
            "cpu",
            "--seq-len",
            "8",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--batch",
            "2",
            "--no-floors",
            "--json",
            "--family",
            family,
        ];
        args.extend_from_slice(extra);
        let v = bench_json(&args);
        assert!(v["compute_floor_ms"].is_null(), "{family}");
        let q = if extra.contains(&"2") { 2.0 } else { 1.0 };
        assert_eq!(num(&v, "sequences_per_step"), 4.0 * q, "{family} {extra:?}");
        if extra.contains(&"--in-place") {
            assert_eq!(v["forwards_per_step"], 2);
            assert!(num(&v["perturb_ms"], "median") > 0.0);
        }
    }
}

#[test]
fn unknown_arch_lists_the_valid_ones() {
    let out = zo_run(&["--arch", "opt-14b", "--seq-len", "8", "--device", "cpu"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("opt-14b") && err.contains("opt-13b") && err.contains("llama2-7b"),
        "{err}"
    );
}

#[test]
fn oversized_arch_and_wrong_dtype_are_refused_on_the_cpu() {
    let out = zo_run(&["--arch", "opt-66b", "--seq-len", "8", "--device", "cpu"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GiB") && err.contains("f32 weights"), "{err}");
    let out = zo_run(&[
        "--arch",
        "opt-125m",
        "--seq-len",
        "8",
        "--device",
        "cpu",
        "--dtype",
        "bf16",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("f32") && err.contains("cuda"), "{err}");
}

#[test]
fn cuda_device_says_why_it_cannot_run() {
    let out = zo_run(&["--arch", "opt-125m", "--seq-len", "8", "--device", "cuda"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CUDA") || err.contains("cuda"), "{err}");
}

#[test]
fn missing_assets_ask_for_seq_len() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let missing = dir.path().join("nope");
    let out = zo_run(&[
        "--config",
        &config,
        "--device",
        "cpu",
        "--data",
        missing.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--seq-len") && err.contains("fetch-assets"),
        "{err}"
    );
}
