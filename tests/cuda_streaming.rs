//! Layer streaming against the resident path: under a device-memory budget the layers past the
//! resident ones live in host memory and cross into two device buffers during each forward, the
//! adapter columns packed as each lands, the lowrank merge applied as the layer passes through.
//! The kernels, their inputs and their order are those of the resident model, so scores, family
//! state and weights must agree bit for bit, step after step. On the emulated device a copy
//! lands only when the forward waits for it, so a layer used before its wait would read the
//! buffer's previous layer and fail here; on a GPU (where present) the copies overlap compute.
#![cfg(feature = "cuda")]

#[path = "common/devices.rs"]
mod devices;
#[path = "common/fam1.rs"]
mod fam1;
#[path = "common/fixture_run.rs"]
mod fixture_run;

use devices::targets;
use fam1::{examples, variants};
use zo::backend::cuda::{
    fixed_bytes, layer_bytes, AugSpec, CudaBackend, CudaOptions, DType, Target,
};
use zo::backend::{Backend, ZoBackend};
use zo::model::{Model, ModelConfig, Site, Slot};
use zo::perturb::{Dist, FamilyConfig, LowRankScale, StepRecord, UpdateConfig};
use zo::plan::Plan;

/// Five layers: one resident and four streamed through the two buffers, so every buffer is
/// refilled during a forward.
fn model(mut cfg: ModelConfig) -> Model {
    cfg.num_layers = 5;
    Model::random_with_std(cfg, 11, 0.2)
}

fn opts(target: Target, dtype: DType, budget: Option<usize>) -> CudaOptions {
    CudaOptions {
        target,
        dtype,
        directions: 2,
        memory_budget: budget,
    }
}

/// A budget that keeps `resident` layers on the device (every adapter site of lowrank laid
/// out, an upper bound for the other families' layers).
fn budget_for(m: &Model, dtype: DType, fam: Option<&FamilyConfig>, resident: usize) -> usize {
    let c = &m.config;
    let aug = match fam {
        Some(FamilyConfig::LowRank { rank, .. } | FamilyConfig::Lora { rank, .. }) => AugSpec {
            rank: *rank,
            dirs: 2,
        },
        _ => AugSpec::default(),
    };
    let adapters = matches!(
        fam,
        Some(FamilyConfig::LowRank { .. } | FamilyConfig::Lora { .. })
    );
    let layer = layer_bytes(c, dtype, aug, &|s: Site| adapters && s.layer.is_some());
    fixed_bytes(c, dtype) + (resident + 2) * layer
}

fn families() -> Vec<Option<FamilyConfig>> {
    vec![
        None,
        // Period 2: the bank merges into the (streamed) weights at steps 2 and 4.
        Some(FamilyConfig::LowRank {
            rank: 2,
            period: 2,
            scale: LowRankScale::Plain,
            momentum: None,
        }),
        Some(FamilyConfig::Lora {
            rank: 3,
            alpha: 6.0,
            targets: vec![Slot::Q, Slot::V, Slot::O],
        }),
        Some(FamilyConfig::Prefix { tokens: 3 }),
    ]
}

fn assert_bits(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(
            x.to_bits(),
            y.to_bits(),
            "{what}[{i}]: streamed {x} resident {y}"
        );
    }
}

#[test]
fn streamed_layers_score_and_train_as_resident_ones() {
    for (dev, target) in targets("streamed_layers_score_and_train_as_resident_ones") {
        for (cfg, dtype) in [
            (ModelConfig::tiny_llama(), DType::F32),
            (ModelConfig::tiny_opt(), DType::Bf16),
            // Post-LN: each layer's last norm writes the next layer's input.
            (ModelConfig::tiny_opt_post_ln(), DType::F32),
        ] {
            let m = model(cfg);
            for fam in families() {
                let name = fam.as_ref().map_or("none", |f| f.name());
                let what = format!("{dev}: {} {dtype} {name}", m.config.model_type);
                let family = fam.as_ref().map(|f| (f, Dist::Gaussian));
                let budget = budget_for(&m, dtype, fam.as_ref(), 1);
                let build = |b| CudaBackend::new_seeded(&m, family, 4, &opts(target, dtype, b));
                let mut resident = build(None).unwrap();
                let mut streamed = build(Some(budget)).unwrap();
                let r = streamed.residency();
                assert_eq!((r.resident, r.streamed()), (1, 4), "{what}: {r:?}");
                assert_eq!(resident.residency().streamed(), 0, "{what}");
                assert!(streamed.streamed_bytes() > 0, "{what}");
                assert!(
                    streamed.weight_bytes() < resident.weight_bytes(),
                    "{what}: {} streamed vs {} resident",
                    streamed.weight_bytes(),
                    resident.weight_bytes()
                );
                let ucfg = UpdateConfig {
                    dist: Dist::Gaussian,
                    weight_decay: 0.0,
                    rule: Default::default(),
                };
                for step in 0..5u64 {
                    let seeds = [700 + step, 800 + step];
                    let vs = if fam.is_some() {
                        variants(&seeds, 1e-1)
                    } else {
                        vec![zo::plan::Variant::BASE]
                    };
                    let plan = Plan::build(&examples(m.config.vocab_size as u32), &vs).unwrap();
                    for b in [&mut resident, &mut streamed] {
                        b.begin_step(step, None).unwrap();
                    }
                    let want = resident.score(&plan).unwrap().query_logprobs;
                    let got = streamed.score(&plan).unwrap().query_logprobs;
                    assert_bits(&got, &want, &format!("{what}: step {step} log-probs"));
                    if fam.is_none() {
                        continue;
                    }
                    let rec = StepRecord {
                        step,
                        seeds: seeds.to_vec(),
                        grads: vec![3.0, -2.0],
                        lr: 1e-2,
                        period_seed: None,
                    };
                    resident.update(&rec, &ucfg).unwrap();
                    streamed.update(&rec, &ucfg).unwrap();
                }
                // The weights of a streamed layer, merged into on the host copy by lowrank
                // (columns past K hold the step's packed adapter columns, on the resident side
                // only once packed).
                let k = m.config.num_heads * m.config.head_dim;
                for li in [0, 3, 4] {
                    let site = Site::layer(li, Slot::O);
                    let (a, _, ld) = streamed.group_weights(site).unwrap();
                    let (b, ..) = resident.group_weights(site).unwrap();
                    let base = |w: &[f32]| -> Vec<f32> {
                        w.chunks(ld).flat_map(|row| row[..k].to_vec()).collect()
                    };
                    assert_bits(
                        &base(&a),
                        &base(&b),
                        &format!("{what}: layer {li} o weights"),
                    );
                }
                if matches!(
                    fam,
                    Some(FamilyConfig::Lora { .. } | FamilyConfig::Prefix { .. })
                ) {
                    let (a, b) = (
                        streamed.family_state().unwrap(),
                        resident.family_state().unwrap(),
                    );
                    for ((n, _, x), (_, _, y)) in a.iter().zip(&b) {
                        assert_bits(x, y, &format!("{what}: state {n}"));
                    }
                }
            }
        }
    }
}

/// A low-rank merge changes the weights: without it every streamed check above could pass
/// on weights that never moved.
#[test]
fn the_lowrank_merge_moves_streamed_weights() {
    let m = model(ModelConfig::tiny_llama());
    let fam = FamilyConfig::LowRank {
        rank: 2,
        period: 1,
        scale: LowRankScale::Plain,
        momentum: None,
    };
    let budget = budget_for(&m, DType::F32, Some(&fam), 0);
    let o = opts(Target::Emulated, DType::F32, Some(budget));
    let mut b = CudaBackend::new(&m, Some((&fam, Dist::Gaussian)), &o).unwrap();
    let site = Site::layer(4, Slot::Down);
    let (before, ..) = b.group_weights(site).unwrap();
    b.begin_step(0, None).unwrap();
    let rec = StepRecord {
        step: 0,
        seeds: vec![5],
        grads: vec![1.0],
        lr: 1e-1,
        period_seed: None,
    };
    let ucfg = UpdateConfig {
        dist: Dist::Gaussian,
        weight_decay: 0.0,
        rule: Default::default(),
    };
    b.update(&rec, &ucfg).unwrap();
    b.begin_step(1, None).unwrap();
    let (after, ..) = b.group_weights(site).unwrap();
    let moved = before.iter().zip(&after).filter(|(x, y)| x != y).count();
    assert!(
        moved > before.len() / 4,
        "{moved} of {} weights moved",
        before.len()
    );
}

#[test]
fn a_budget_below_two_layers_is_refused_before_anything_streams() {
    let m = model(ModelConfig::tiny_opt());
    let least = budget_for(&m, DType::F32, None, 0);
    let o = opts(Target::Emulated, DType::F32, Some(least - 1));
    let e = CudaBackend::new(&m, None, &o)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("--gpu-memory-budget"), "{e}");
    assert!(
        e.contains(&format!("least budget for this model is {least} bytes")),
        "{e}"
    );
}

#[test]
fn in_place_dense_under_a_budget_is_refused_with_the_budget_that_fits() {
    let m = model(ModelConfig::tiny_opt());
    let fam = FamilyConfig::Dense { in_place: true };
    let o = opts(
        Target::Emulated,
        DType::F32,
        Some(budget_for(&m, DType::F32, None, 1)),
    );
    let e = CudaBackend::new(&m, Some((&fam, Dist::Gaussian)), &o)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("in-place dense MeZO under --gpu-memory-budget"),
        "{e}"
    );
    assert!(e.contains("the whole model"), "{e}");
}

/// `zo-run memory` reports the layout the backend builds: the same resident layers, and no
/// fewer weight bytes than the backend holds.
#[test]
fn the_memory_plan_is_the_layout_the_backend_builds() {
    use zo::backend::cuda::MemoryPlan;
    let m = model(ModelConfig::tiny_llama());
    for fam in families() {
        for resident in [0, 2] {
            let budget = budget_for(&m, DType::Bf16, fam.as_ref(), resident);
            let b = CudaBackend::new(
                &m,
                fam.as_ref().map(|f| (f, Dist::Gaussian)),
                &opts(Target::Emulated, DType::Bf16, Some(budget)),
            );
            let name = fam.as_ref().map_or("none", |f| f.name());
            let plan =
                MemoryPlan::new(&m.config, DType::Bf16, fam.as_ref(), 2, Some(budget), 64, 8)
                    .unwrap();
            let b = b.unwrap_or_else(|e| panic!("{name}: {e}"));
            let r = b.residency();
            assert_eq!(
                (plan.resident_layers, plan.streamed_layers),
                (r.resident, r.streamed()),
                "{name}"
            );
            assert_eq!(
                plan.streamed_bytes_per_forward,
                r.streamed_bytes(),
                "{name}"
            );
            assert!(
                b.streamed_bytes() <= plan.streamed_bytes_per_forward,
                "{name}"
            );
            assert!(plan.weight_bytes_on_gpu <= budget, "{name}: {plan:?}");
            // Family state: prefix holds its own, the others only adapter factors.
            let weights = b.weight_bytes();
            assert!(
                weights <= plan.weight_bytes_on_gpu + plan.adapter_state_bytes + 4096 * 16,
                "{name}: {weights} vs {plan:?}"
            );
        }
    }
}

/// The decoder (generation objectives, `zo-run generate`) runs every decoding step through the
/// streamed layers: its tokens are the resident decoder's, for the base rows and ± variants.
#[test]
fn streamed_decoding_generates_the_resident_tokens() {
    use zo::backend::decode::{DecodeBatch, Sampling};
    let m = model(ModelConfig::tiny_opt());
    let vocab = m.config.vocab_size as u32;
    for fam in families() {
        let name = fam.as_ref().map_or("none", |f| f.name());
        let family = fam.as_ref().map(|f| (f, Dist::Gaussian));
        let budget = budget_for(&m, DType::F32, fam.as_ref(), 1);
        let build =
            |b| CudaBackend::new_seeded(&m, family, 4, &opts(Target::Emulated, DType::F32, b));
        let (resident, streamed) = (build(None).unwrap(), build(Some(budget)).unwrap());
        let mut batch = DecodeBatch::base(Vec::new(), Sampling::Greedy);
        if fam.is_some() {
            batch.variants = variants(&[31], 1e-1);
        }
        for v in 0..batch.variants.len() as u32 {
            for p in 0..2u32 {
                batch.prompts.push(
                    (0..5 + 4 * p)
                        .map(|i| (i * 29 + p * 7 + 3) % vocab)
                        .collect(),
                );
                batch.seq_variant.push(v);
            }
        }
        let n = batch.prompts.len();
        let live: Vec<usize> = (0..n).collect();
        let run = |b: &CudaBackend| -> Vec<Vec<u32>> {
            let mut d = b.decoder(batch.clone()).unwrap();
            (0..4).map(|_| d.next(&live).unwrap()).collect()
        };
        assert_eq!(run(&streamed), run(&resident), "{name}");
    }
}

/// The fixture run's model with four layers (random weights from a fixed seed): with two,
/// streaming through two buffers would save nothing, so every budget keeps them resident.
fn four_layer_fixture() -> fixture_run::Fixture {
    let fx = fixture_run::Fixture::new();
    let src = fx.dir().join("four-layers");
    std::fs::create_dir_all(&src).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.model().join("config.json")).unwrap())
            .unwrap();
    cfg["num_hidden_layers"] = 4.into();
    std::fs::write(src.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(
        fx.model().join("tokenizer.json"),
        src.join("tokenizer.json"),
    )
    .unwrap();
    let config = ModelConfig::from_file(src.join("config.json")).unwrap();
    let model = Model::random_with_std(config, 3, 0.1);
    zo::model::save::save_hf(&model, &src, &fx.model(), zo::io::gguf::ImportDtype::F32).unwrap();
    fx
}

/// `zo-run train --gpu-memory-budget` end to end on the emulated device: the least budget that
/// streams (every layer through the two buffers, as `zo-run memory` gives it) writes the
/// resident run's seed log, period switch included.
#[test]
fn a_streamed_training_run_writes_the_resident_checkpoint() {
    use fixture_run::zo_run_train;
    let (fx_res, fx_str) = (four_layer_fixture(), four_layer_fixture());
    let config = fx_str.model().join("config.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zo-run"))
        .args([
            "memory", "--json", "--family", "lozo", "--q", "2", "--dtype", "f32",
        ])
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let least = plan["fixed_bytes"].as_u64().unwrap() + 2 * plan["layer_bytes"].as_u64().unwrap();
    let emu = ["--device", "emu", "--dtype", "f32"];
    let resident = zo_run_train(&fx_res, "lozo", &emu);
    let budget = least.to_string();
    let mut streamed_args = emu.to_vec();
    streamed_args.extend(["--gpu-memory-budget", &budget]);
    let streamed = zo_run_train(&fx_str, "lozo", &streamed_args);
    assert!(
        streamed
            .stderr
            .contains("0 of 4 layers on the GPU, 4 stream from host memory"),
        "{}",
        streamed.stderr
    );
    assert!(!resident.stderr.contains("stream from host memory"));
    let read = |p: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (a, b) = (read(&streamed.checkpoint), read(&resident.checkpoint));
    assert_eq!(a["completed"], 6);
    assert_eq!(a["records"], b["records"]);
    let g = |ck: &serde_json::Value| ck["records"][0]["grads"][0].as_f64().unwrap();
    assert!(g(&a) != 0.0, "{a}");
}
