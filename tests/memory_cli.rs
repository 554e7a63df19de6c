//! `zo-run memory`: the GPU memory a model takes under a budget, without a GPU.
#![cfg(feature = "cuda")]

use std::process::Command;

use serde_json::Value;

fn memory(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zo-run"))
        .arg("memory")
        .args(args)
        .output()
        .expect("zo-run runs")
}

fn plan(args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = memory(&all);
    assert!(
        out.status.success(),
        "zo-run memory {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key}: {v}"))
}

#[test]
fn opt_13b_streams_under_8_gib_and_fits_resident_without_a_budget() {
    let whole = plan(&["--arch", "opt-13b"]);
    assert_eq!(n(&whole, "streamed_layers"), 0);
    // bf16 weights: two bytes a parameter, plus the adapter columns and padding.
    let params = n(&whole, "params") as f64;
    let ratio = n(&whole, "weight_bytes_on_gpu") as f64 / (2.0 * params);
    assert!((1.0..1.01).contains(&ratio), "{ratio}: {whole}");

    let budget = 8u64 << 30;
    let v = plan(&[
        "--arch",
        "opt-13b",
        "--gpu-memory-budget",
        "8GiB",
        "--h2d-gbs",
        "25",
    ]);
    assert_eq!(n(&v, "budget"), budget);
    assert!(n(&v, "weight_bytes_on_gpu") <= budget, "{v}");
    assert_eq!(n(&v, "resident_layers") + n(&v, "streamed_layers"), 40);
    assert_eq!(
        n(&v, "streamed_bytes_per_forward"),
        n(&v, "streamed_layers") * n(&v, "layer_bytes")
    );
    let floor = v["pcie_floor_ms"].as_f64().unwrap();
    let want = n(&v, "streamed_bytes_per_forward") as f64 / 25e9 * 1e3;
    assert!((floor - want).abs() < 1e-6 * want, "{floor} vs {want}");
    assert_eq!(v["fits"], true);
}

#[test]
fn a_budget_below_two_layers_names_the_least_that_works() {
    let out = memory(&["--arch", "opt-13b", "--gpu-memory-budget", "1GiB"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--gpu-memory-budget 1073741824 bytes"),
        "{err}"
    );
    assert!(err.contains("least budget for this model is"), "{err}");
}

#[test]
fn a_malformed_budget_is_refused() {
    let out = memory(&["--arch", "opt-13b", "--gpu-memory-budget", "lots"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("expected bytes, e.g. 8589934592, 8GiB or 512MiB"),
        "{err}"
    );
}
