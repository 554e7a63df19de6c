//! The CUDA backend's whole training step (forward, candidate log-probs, pack, shrink, updates,
//! the low-rank period switch) against the CPU reference, on the emulated device everywhere and
//! on the GPU where there is one (elsewhere the GPU run prints `skipped: <reason>`;
//! ZO_REQUIRE_GPU=1 makes that a failure). The emulated device runs the same kernels through
//! the same launchers, with a GEMM of cuBLASLt's semantics, so the tolerances are the GPU's.
//!
//! Tolerances. With f32 storage both backends compute the same f32 model and differ only in
//! summation order (cuBLASLt and tiled attention vs the CPU's GEMM and loops): query
//! log-probs agree within `F32_TOL·(1 + |lp|)`. With bf16/fp16 storage the GPU rounds every
//! GEMM input to 8 (11) significant bits, so it is compared with the CPU on the same rounded
//! weights within a bound of the size a naive bf16 forward has against f32.
#![cfg(feature = "cuda")]

#[path = "common/devices.rs"]
mod devices;
#[path = "common/fam1.rs"]
mod fam1;
#[path = "common/synth.rs"]
mod synth;

use devices::targets;
use fam1::{examples, variants};
use zo::backend::cpu::CpuBackend;
use zo::backend::cuda::{CudaBackend, CudaOptions, DType, Target};
use zo::backend::{Backend, ZoBackend};
use zo::model::{Model, ModelConfig};
use zo::perturb::{Dist, FamilyConfig, LowRankScale};
use zo::plan::{Plan, Variant};

const F32_TOL: f32 = 2e-4;

fn opts(target: Target, dtype: DType, directions: usize) -> CudaOptions {
    CudaOptions {
        target,
        dtype,
        directions,
    }
}

fn rounded(model: &Model, dtype: DType) -> Model {
    let mut m = model.clone();
    for l in &mut m.layers {
        for lin in [&mut l.q, &mut l.k, &mut l.v, &mut l.o] {
            lin.w.iter_mut().for_each(|w| *w = dtype.round(*w));
        }
        match &mut l.mlp {
            zo::model::Mlp::Gated { gate, up, down } => {
                for lin in [gate, up, down] {
                    lin.w.iter_mut().for_each(|w| *w = dtype.round(*w));
                }
            }
            zo::model::Mlp::Plain { fc1, fc2 } => {
                for lin in [fc1, fc2] {
                    lin.w.iter_mut().for_each(|w| *w = dtype.round(*w));
                }
            }
        }
    }
    m.embed.iter_mut().for_each(|w| *w = dtype.round(*w));
    m
}

fn compare(gpu: &[f32], cpu: &[f32], abs: f32, rel: f32, what: &str) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: query counts");
    let mut worst = (0.0f32, 0usize);
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        assert!(g.is_finite(), "{what}: query {i} is {g}");
        let excess = (g - c).abs() - (abs + rel * c.abs());
        if excess > worst.0 {
            worst = (excess, i);
        }
    }
    assert!(
        worst.0 <= 0.0,
        "{what}: query {} gpu {} cpu {} exceeds the bound by {}",
        worst.1,
        gpu[worst.1],
        cpu[worst.1],
        worst.0
    );
}

fn tiny(cfg: ModelConfig) -> Model {
    Model::random_with_std(cfg, 11, 0.2)
}

fn base_plan(model: &Model) -> Plan {
    Plan::build(&examples(model.config.vocab_size as u32), &[Variant::BASE]).unwrap()
}

#[test]
fn base_model_log_probs_match_the_cpu() {
    for (dev, target) in targets("base_model_log_probs_match_the_cpu") {
        for cfg in [
            ModelConfig::tiny_llama(),
            ModelConfig::tiny_llama3(),
            ModelConfig::tiny_opt(),
        ] {
            let model = tiny(cfg);
            let plan = base_plan(&model);
            for dtype in [DType::F32, DType::Bf16, DType::F16] {
                let gpu = CudaBackend::new(&model, None, &opts(target, dtype, 1)).unwrap();
                let lp = gpu.score(&plan).unwrap().query_logprobs;
                let cpu = CpuBackend::new(rounded(&model, dtype))
                    .score(&plan)
                    .unwrap();
                let (abs, rel) = match dtype {
                    DType::F32 => (F32_TOL, F32_TOL),
                    _ => (0.05, 0.02),
                };
                compare(
                    &lp,
                    &cpu.query_logprobs,
                    abs,
                    rel,
                    &format!("{dev}: {} {dtype}", model.config.model_type),
                );
            }
        }
    }
}

#[test]
fn synthetic_weights_equal_the_host_twin() {
    for (dev, target) in targets("synthetic_weights_equal_the_host_twin") {
        let cfg = ModelConfig::tiny_llama();
        let gpu = CudaBackend::synthetic(&cfg, 5, None, &opts(target, DType::F32, 1)).unwrap();
        let host = Model::synthetic(cfg, 5, zo::model::random::DEFAULT_STD);
        let site = zo::model::Site::layer(1, zo::model::Slot::K);
        let (w, _out, ld) = gpu.group_weights(site).unwrap();
        // k's rows follow q's in the fused qkv weight.
        let q_rows = host.layers[1].q.out_dim;
        let k = &host.layers[1].k;
        for i in 0..k.out_dim {
            for j in 0..k.in_dim {
                assert_eq!(
                    w[(q_rows + i) * ld + j].to_bits(),
                    k.w[i * k.in_dim + j].to_bits(),
                    "{dev}: k[{i}][{j}]"
                );
            }
        }
        let plan = base_plan(&host);
        let lp = gpu.score(&plan).unwrap().query_logprobs;
        let cpu = CpuBackend::new(host).score(&plan).unwrap().query_logprobs;
        compare(
            &lp,
            &cpu,
            F32_TOL,
            F32_TOL,
            &format!("{dev}: synthetic tiny llama"),
        );
    }
}

fn lozo(momentum: Option<f32>) -> FamilyConfig {
    FamilyConfig::LowRank {
        rank: 2,
        period: 3,
        scale: LowRankScale::Plain,
        momentum,
    }
}

/// Variants, updates, and period switches (merge + new V) on both backends in lockstep: Llama
/// in f32 with and without momentum, OPT in bf16 (compared on the same rounded weights with
/// the bf16 bound of the base test).
#[test]
fn lowrank_steps_match_the_cpu() {
    for (dev, target) in targets("lowrank_steps_match_the_cpu") {
        for (cfg, dtype, momentum) in [
            (ModelConfig::tiny_llama(), DType::F32, None),
            (ModelConfig::tiny_llama(), DType::F32, Some(0.9)),
            (ModelConfig::tiny_opt(), DType::Bf16, None),
        ] {
            let model = tiny(cfg);
            let fam = lozo(momentum);
            let mut gpu = CudaBackend::new(
                &model,
                Some((&fam, Dist::Gaussian)),
                &opts(target, dtype, 2),
            )
            .unwrap();
            let host = if dtype == DType::F32 {
                model.clone()
            } else {
                rounded(&model, dtype)
            };
            let family = zo::perturb::build(&fam, Dist::Gaussian, &host, 1).unwrap();
            let mut cpu = CpuBackend::with_family(host, family);
            let (abs, rel) = match dtype {
                DType::F32 => (F32_TOL, F32_TOL),
                _ => (0.05, 0.02),
            };
            let ucfg = zo::perturb::UpdateConfig {
                dist: Dist::Gaussian,
                weight_decay: 0.0,
                rule: Default::default(),
            };
            for step in 0..7u64 {
                gpu.begin_step(step, None).unwrap();
                cpu.begin_step(step, None);
                let seeds = [100 + step, 200 + step];
                let plan = Plan::build(
                    &examples(model.config.vocab_size as u32),
                    &variants(&seeds, 1e-2),
                )
                .unwrap();
                let g = gpu.score(&plan).unwrap().query_logprobs;
                let c = cpu.score(&plan).unwrap().query_logprobs;
                compare(
                    &g,
                    &c,
                    abs,
                    rel,
                    &format!(
                        "{dev}: {} {dtype} step {step} momentum {momentum:?}",
                        model.config.model_type
                    ),
                );
                let rec = zo::perturb::StepRecord {
                    step,
                    seeds: seeds.to_vec(),
                    grads: vec![3.0, -2.0],
                    lr: 1e-2,
                    period_seed: None,
                };
                gpu.update(&rec, &ucfg).unwrap();
                cpu.update(&rec, &ucfg).unwrap();
            }
        }
    }
}

fn mezo_lora(targets: Vec<zo::model::Slot>) -> FamilyConfig {
    // An odd rank and α/r = 2, as the preset's 16/8.
    FamilyConfig::Lora {
        rank: 3,
        alpha: 6.0,
        targets,
    }
}

/// Every perturbed variant of `plan` moves the log-probs `lp` by more than `min` from the base
/// rows (the last variant), or comparing backends says nothing about the perturbation.
fn assert_variants_move(plan: &Plan, lp: &[f32], min: f32, what: &str) {
    let per = fam1::split(plan, lp);
    let base = per.last().unwrap();
    for (v, lp) in per[..per.len() - 1].iter().enumerate() {
        let moved = lp
            .iter()
            .zip(base)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(moved > min, "{what}: variant {v} moved {moved}");
    }
}

/// The family state of both backends, bit for bit (names, shapes and values).
fn assert_state_equal(gpu: &CudaBackend, cpu: &CpuBackend, what: &str) {
    let g = gpu.family_state().unwrap();
    let c = cpu.family().unwrap().state_tensors();
    assert_eq!(g.len(), c.len(), "{what}: tensor count");
    for ((gn, gs, gv), (cn, cs, cv)) in g.iter().zip(&c) {
        assert_eq!((gn, gs), (cn, cs), "{what}: tensor name/shape");
        assert_eq!(gv.len(), cv.len(), "{what}: {gn} length");
        for (i, (a, b)) in gv.iter().zip(cv).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{what}: {gn}[{i}] gpu {a} cpu {b}"
            );
        }
    }
}

/// MeZO-LoRA in lockstep with the CPU family: A drawn from the run seed and B = 0 at the
/// start, then per step ±ε variants of q directions (and the base rows) scored through the
/// K-augmented GEMMs, and the seeded A/B update (with and without weight decay).
///
/// Tolerances: log-probs as the file header says (f32: summation order only; bf16/fp16: the
/// base test's bound, on the same rounded weights). The A/B state is fp32 on both sides and
/// every update element is the same fma chain on the same random values, so it must agree bit
/// for bit, in every storage dtype.
#[test]
fn lora_steps_match_the_cpu() {
    use zo::model::Slot;
    for (dev, target) in targets("lora_steps_match_the_cpu") {
        // llama: q and v share the fused qkv GEMM with k (no adapter) between them, down is a GEMM
        // of its own; opt: k alone in qkv, o, fc1. Targets listed out of forward order on purpose.
        let cases = [
            (
                ModelConfig::tiny_llama(),
                vec![Slot::V, Slot::Down, Slot::Q],
            ),
            (ModelConfig::tiny_opt(), vec![Slot::Fc1, Slot::K, Slot::O]),
        ];
        let run_seed = 7u64;
        let eps = 5e-2f32;
        for (cfg, targets) in cases {
            for (q, wd, dtype, steps) in [
                (1usize, 0.0f32, DType::F32, 5u64),
                (2, 0.1, DType::F32, 5),
                (2, 0.0, DType::Bf16, 3),
                (1, 0.0, DType::F16, 3),
            ] {
                let model = tiny(cfg.clone());
                let fam = mezo_lora(targets.clone());
                let dist = if q == 2 {
                    Dist::Rademacher
                } else {
                    Dist::Gaussian
                };
                let what = format!("{dev}: {} q {q} wd {wd} {dtype}", model.config.model_type);
                let mut gpu = CudaBackend::new_seeded(
                    &model,
                    Some((&fam, dist)),
                    run_seed,
                    &opts(target, dtype, q),
                )
                .unwrap();
                let host = rounded(&model, dtype);
                let family = zo::perturb::build(&fam, dist, &host, run_seed).unwrap();
                let mut cpu = CpuBackend::with_family(host, family);
                let (abs, rel) = match dtype {
                    DType::F32 => (F32_TOL, F32_TOL),
                    _ => (0.05, 0.02),
                };
                assert_state_equal(&gpu, &cpu, &format!("{what}: init"));
                let ucfg = zo::perturb::UpdateConfig {
                    dist,
                    weight_decay: wd,
                    rule: Default::default(),
                };
                for step in 0..steps {
                    gpu.begin_step(step, None).unwrap();
                    cpu.begin_step(step, None);
                    // Consecutive steps share seeds: the packed Z_B stays, B must be repacked.
                    let seeds: Vec<u64> = [100 + step / 2, 200 + step / 2][..q].to_vec();
                    let plan = Plan::build(
                        &examples(model.config.vocab_size as u32),
                        &variants(&seeds, eps),
                    )
                    .unwrap();
                    let g = gpu.score(&plan).unwrap().query_logprobs;
                    let c = cpu.score(&plan).unwrap().query_logprobs;
                    compare(&g, &c, abs, rel, &format!("{what}: step {step}"));
                    if step == 0 && dtype == DType::F32 {
                        // The perturbation must move the log-probs far beyond the f32 tolerance
                        // (it moves them by 0.16 to 0.75 here), or the comparison above proves
                        // nothing about the adapter columns.
                        assert_variants_move(&plan, &c, 100.0 * F32_TOL, &what);
                    }
                    let rec = zo::perturb::StepRecord {
                        step,
                        seeds: seeds.clone(),
                        grads: [3.0, -2.0][..q].to_vec(),
                        lr: 1e-2,
                        period_seed: None,
                    };
                    gpu.update(&rec, &ucfg).unwrap();
                    cpu.update(&rec, &ucfg).unwrap();
                    assert_state_equal(&gpu, &cpu, &format!("{what}: after step {step}"));
                }
                // B is live now: the unperturbed rows carry the adapter, alone and next to fewer
                // directions than the weights were laid out for.
                for vars in [vec![Variant::BASE], variants(&[999], eps)] {
                    let plan =
                        Plan::build(&examples(model.config.vocab_size as u32), &vars).unwrap();
                    let g = gpu.score(&plan).unwrap().query_logprobs;
                    let c = cpu.score(&plan).unwrap().query_logprobs;
                    compare(
                        &g,
                        &c,
                        abs,
                        rel,
                        &format!("{what}: {} variants", vars.len()),
                    );
                }
            }
        }
    }
}

/// MeZO-prefix in lockstep with the CPU family: the prefix starts as the host's (drawn from
/// the run seed), the attention kernel perturbs it on the rows of each ±ε segment as it loads
/// it, and the seeded update (with and without weight decay) keeps the fp32 keys and values
/// bit-exact with the host. Log-probs within the base test's tolerances.
#[test]
fn prefix_steps_match_the_cpu() {
    for (dev, target) in targets("prefix_steps_match_the_cpu") {
        for (cfg, q, wd, dtype) in [
            (ModelConfig::tiny_llama(), 1usize, 0.0f32, DType::F32),
            (ModelConfig::tiny_opt(), 2, 0.1, DType::F32),
            (ModelConfig::tiny_llama3(), 1, 0.0, DType::Bf16),
        ] {
            let model = tiny(cfg);
            let fam = FamilyConfig::Prefix { tokens: 3 };
            let dist = Dist::Gaussian;
            let what = format!("{dev}: {} q {q} wd {wd} {dtype}", model.config.model_type);
            let mut gpu =
                CudaBackend::new_seeded(&model, Some((&fam, dist)), 5, &opts(target, dtype, q))
                    .unwrap();
            let host = rounded(&model, dtype);
            let family = zo::perturb::build(&fam, dist, &model, 5).unwrap();
            let mut cpu = CpuBackend::with_family(host, family);
            let (abs, rel) = match dtype {
                DType::F32 => (F32_TOL, F32_TOL),
                _ => (0.05, 0.02),
            };
            assert_state_equal(&gpu, &cpu, &format!("{what}: init"));
            let ucfg = zo::perturb::UpdateConfig {
                dist,
                weight_decay: wd,
                rule: Default::default(),
            };
            for step in 0..3u64 {
                let seeds: Vec<u64> = [300 + step, 400 + step][..q].to_vec();
                let plan = Plan::build(
                    &examples(model.config.vocab_size as u32),
                    &variants(&seeds, 1e-1),
                )
                .unwrap();
                let g = gpu.score(&plan).unwrap().query_logprobs;
                let c = cpu.score(&plan).unwrap().query_logprobs;
                compare(&g, &c, abs, rel, &format!("{what}: step {step}"));
                if step == 0 && dtype == DType::F32 {
                    // The ±ε prefix must move the log-probs well past the tolerance, or the
                    // comparison says nothing about the perturbed loads.
                    assert_variants_move(&plan, &c, 10.0 * F32_TOL, &what);
                }
                let rec = zo::perturb::StepRecord {
                    step,
                    seeds: seeds.clone(),
                    grads: [3.0, -2.0][..q].to_vec(),
                    lr: 1e-2,
                    period_seed: None,
                };
                gpu.update(&rec, &ucfg).unwrap();
                cpu.update(&rec, &ucfg).unwrap();
                assert_state_equal(&gpu, &cpu, &format!("{what}: after step {step}"));
            }
        }
    }
}

/// In-place dense perturbation is bit-exact with the host: in f32, and in bf16 against the
/// host's f32 fma on the rounded weights, rounded once (the numerics contract's update rule).
#[test]
fn dense_in_place_is_bit_exact() {
    for (dev, target) in targets("dense_in_place_is_bit_exact") {
        for dtype in [DType::F32, DType::Bf16] {
            let model = tiny(ModelConfig::tiny_opt());
            let fam = FamilyConfig::Dense { in_place: true };
            let mut gpu = CudaBackend::new(
                &model,
                Some((&fam, Dist::Gaussian)),
                &opts(target, dtype, 1),
            )
            .unwrap();
            let mut host = rounded(&model, dtype);
            gpu.perturb_in_place(9, 1e-3, Dist::Gaussian).unwrap();
            zo::perturb::dense::perturb_in_place(&mut host, 9, 1e-3, Dist::Gaussian);
            let site = zo::model::Site::layer(0, zo::model::Slot::Fc1);
            let (w, _, ld) = gpu.group_weights(site).unwrap();
            let fc1 = match &host.layers[0].mlp {
                zo::model::Mlp::Plain { fc1, .. } => fc1,
                _ => unreachable!(),
            };
            for i in 0..fc1.out_dim {
                for j in 0..fc1.in_dim {
                    let want = dtype.round(fc1.w[i * fc1.in_dim + j]);
                    assert_eq!(
                        w[i * ld + j].to_bits(),
                        want.to_bits(),
                        "{dev} {dtype}: fc1[{i}][{j}]"
                    );
                }
            }
        }
    }
}

/// The default model, lozo, 200 steps: the GPU's projected gradient has the CPU's sign on
/// every step where the loss difference is clearly above the two backends' disagreement.
#[test]
fn lozo_on_the_default_model_agrees_in_sign() {
    // 200 steps of a 135M model: the GPU only (emulation would take hours).
    if devices::gpu("lozo_on_the_default_model_agrees_in_sign").is_none() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/smollm2-135m");
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/data/sentiment");
    if !dir.join("model.safetensors").is_file() || !data.is_dir() {
        eprintln!("skipped: the default model is not in assets/ (run tools/fetch-assets)");
        return;
    }
    let cfg = zo::engine::TrainConfig::preset("lozo").unwrap();
    let (base, tok) = zo::train::load_base(&dir).unwrap();
    let d = zo::train::load_data(&cfg, &data, &tok, &base.config).unwrap();
    let mut gpu = CudaBackend::new(
        &base,
        Some((&cfg.family, cfg.dist)),
        &opts(Target::Gpu(0), DType::F32, cfg.q),
    )
    .unwrap();
    let mut cpu = zo::train::cpu_backend(&base, &cfg).unwrap();
    let ucfg = cfg.update_config();
    let (mut agree, mut compared) = (0, 0);
    for step in 0..200u64 {
        let ps = cfg
            .period()
            .map(|nu| zo::engine::seeds::period_seed(cfg.seed, step, nu));
        gpu.begin_step(step, ps).unwrap();
        cpu.begin_step(step, ps);
        let batch: Vec<_> =
            zo::engine::seeds::batch_indices(cfg.data_seed, step, cfg.batch, d.train.len())
                .into_iter()
                .map(|i| d.train[i].clone())
                .collect();
        let lr = zo::engine::schedule::lr_at(&cfg, step);
        let eg = zo::engine::estimator::estimate(&mut gpu, &cfg, step, ps, lr, &batch).unwrap();
        let ec = zo::engine::estimator::estimate(&mut cpu, &cfg, step, ps, lr, &batch).unwrap();
        // Loss differences below 1e-5 are within the two backends' summation-order noise.
        for (g, c) in eg.record.grads.iter().zip(&ec.record.grads) {
            if (c * 2.0 * cfg.eps).abs() > 1e-5 {
                compared += 1;
                agree += (g.signum() == c.signum()) as usize;
            }
        }
        // Both continue from the CPU's estimate so the states stay identical.
        gpu.update(&ec.record, &ucfg).unwrap();
        cpu.update(&ec.record, &ucfg).unwrap();
    }
    eprintln!("sign agreement {agree}/{compared}");
    assert_eq!(agree, compared);
}

/// Training through the engine on the CUDA backend leaves a seed log that the CPU replays to
/// the same trained state, bit for bit: the A/B updates are pure functions of the logged
/// records, whichever backend estimated g. Also checks that training moved the state.
#[test]
fn a_cuda_run_replays_on_the_cpu_bit_for_bit() {
    use zo::engine::{replay, Checkpoint, TrainConfig};
    for (dev, target) in targets("a_cuda_run_replays_on_the_cpu_bit_for_bit") {
        let base = synth::tiny_model();
        let data = synth::parity_data(16, 8, 8);
        let cfg = TrainConfig {
            preset: None,
            family: mezo_lora(vec![zo::model::Slot::Q, zo::model::Slot::V]),
            steps: 4,
            batch: 4,
            lr: 1e-2,
            eps: 1e-2,
            eval_every: 0,
            eval_batch: 8,
            seed: 17,
            data_seed: 3,
            ..TrainConfig::preset("mezo-lora").unwrap()
        };
        let hash = zo::engine::hash::model_hash(&base);
        let o = opts(target, DType::F32, cfg.q);
        let make = || CudaBackend::new_seeded(&base, Some((&cfg.family, cfg.dist)), cfg.seed, &o);
        let opts = zo::train::RunOptions {
            skip_test: true,
            ..Default::default()
        };
        let log = Checkpoint::new(hash.clone(), cfg.clone());
        let out = zo::train::train(&make, &data, &cfg, &hash, log, &opts).unwrap();
        assert_eq!(out.log.records.len(), 4, "{dev}: every step applied");
        let mut cpu = zo::train::cpu_backend(&base, &cfg).unwrap();
        let before = cpu.family().unwrap().state_tensors();
        replay(&mut cpu, &cfg, &out.log.records, &out.log.skipped, 4).unwrap();
        assert_ne!(
            before,
            cpu.family().unwrap().state_tensors(),
            "{dev}: training moved nothing"
        );
        assert_state_equal(&out.backend, &cpu, &format!("{dev}: replayed on the CPU"));
    }
}
