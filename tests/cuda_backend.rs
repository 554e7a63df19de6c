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
        memory_budget: None,
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
    for lin in [m.project_in.as_mut(), m.project_out.as_mut()]
        .into_iter()
        .flatten()
    {
        lin.w.iter_mut().for_each(|w| *w = dtype.round(*w));
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

/// The decoder tests' CUDA backend: `fam` from seed 9, f32 weights, one direction.
fn decoder_backend(model: &Model, fam: &FamilyConfig, target: Target) -> CudaBackend {
    CudaBackend::new_seeded(
        model,
        Some((fam, Dist::Gaussian)),
        9,
        &opts(target, DType::F32, 1),
    )
    .unwrap()
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

/// ZO-SGD momentum and ZO-Adam on the GPU's lora and prefix state, in lockstep with the CPU
/// family over four steps (with weight decay for one): the trained state stays bit-exact,
/// and the log-probs of each step's variants agree as in the plain-SGD tests.
#[test]
fn momentum_and_adam_match_the_cpu() {
    use zo::model::Slot;
    use zo::perturb::step_rule::StepRule;
    let rules = [
        (StepRule::Momentum { beta: 0.9 }, 0.0f32),
        (
            StepRule::Adam {
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-6,
            },
            0.05,
        ),
    ];
    for (dev, target) in targets("momentum_and_adam_match_the_cpu") {
        for (cfg, fam) in [
            (ModelConfig::tiny_llama(), mezo_lora(vec![Slot::Q, Slot::V])),
            (ModelConfig::tiny_opt(), FamilyConfig::Prefix { tokens: 2 }),
        ] {
            let model = tiny(cfg);
            for (rule, wd) in rules {
                let what = format!("{dev}: {} {rule:?}", fam.name());
                let dist = Dist::Gaussian;
                let mut gpu = CudaBackend::new_seeded(
                    &model,
                    Some((&fam, dist)),
                    5,
                    &opts(target, DType::F32, 2),
                )
                .unwrap();
                let family = zo::perturb::build(&fam, dist, &model, 5).unwrap();
                let mut cpu = CpuBackend::with_family(model.clone(), family);
                let ucfg = zo::perturb::UpdateConfig {
                    dist,
                    weight_decay: wd,
                    rule,
                };
                for step in 0..4u64 {
                    let seeds = [700 + step, 800 + step];
                    let plan = Plan::build(
                        &examples(model.config.vocab_size as u32),
                        &variants(&seeds, 5e-2),
                    )
                    .unwrap();
                    let g = gpu.score(&plan).unwrap().query_logprobs;
                    let c = cpu.score(&plan).unwrap().query_logprobs;
                    compare(&g, &c, F32_TOL, F32_TOL, &format!("{what}: step {step}"));
                    let rec = zo::perturb::StepRecord {
                        step,
                        seeds: seeds.to_vec(),
                        grads: vec![3.0 - step as f32, -2.0],
                        lr: 1e-2,
                        period_seed: None,
                    };
                    gpu.update(&rec, &ucfg).unwrap();
                    cpu.update(&rec, &ucfg).unwrap();
                    assert_state_equal(&gpu, &cpu, &format!("{what}: after step {step}"));
                }
            }
        }
        // LoZO keeps its momentum in V's subspace on both backends; other rules are refused.
        let model = tiny(ModelConfig::tiny_llama());
        let mut gpu = CudaBackend::new(
            &model,
            Some((&lozo(None), Dist::Gaussian)),
            &opts(target, DType::F32, 1),
        )
        .unwrap();
        gpu.begin_step(0, None).unwrap();
        let rec = zo::perturb::StepRecord {
            step: 0,
            seeds: vec![1],
            grads: vec![1.0],
            lr: 1e-2,
            period_seed: None,
        };
        let ucfg = zo::perturb::UpdateConfig {
            dist: Dist::Gaussian,
            weight_decay: 0.0,
            rule: rules[0].0,
        };
        let e = gpu.update(&rec, &ucfg).unwrap_err().to_string();
        assert!(e.contains("subspace of V"), "{dev}: {e}");
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

/// OPT-350m's layout (post-LN, project_in/out, no final norm) against the CPU: base log-probs
/// in f32 and bf16; lowrank and lora steps with updates; the in-place dense perturbation of
/// project_in bit for bit; greedy decoding.
#[test]
fn post_ln_opt_with_projections_matches_the_cpu() {
    use zo::model::{Site, Slot};
    for (dev, target) in targets("post_ln_opt_with_projections_matches_the_cpu") {
        let model = tiny(ModelConfig::tiny_opt_post_ln());
        assert!(model.project_in.is_some() && model.final_norm.is_none());
        let plan = base_plan(&model);
        for (dtype, abs, rel) in [(DType::F32, F32_TOL, F32_TOL), (DType::Bf16, 0.05, 0.02)] {
            let gpu = CudaBackend::new(&model, None, &opts(target, dtype, 1)).unwrap();
            let lp = gpu.score(&plan).unwrap().query_logprobs;
            let cpu = CpuBackend::new(rounded(&model, dtype))
                .score(&plan)
                .unwrap();
            compare(
                &lp,
                &cpu.query_logprobs,
                abs,
                rel,
                &format!("{dev}: {dtype}"),
            );
        }

        for fam in [lozo(None), mezo_lora(vec![Slot::Q, Slot::Fc2])] {
            let what = format!("{dev}: {}", fam.name());
            let mut gpu = CudaBackend::new_seeded(
                &model,
                Some((&fam, Dist::Gaussian)),
                3,
                &opts(target, DType::F32, 2),
            )
            .unwrap();
            let family = zo::perturb::build(&fam, Dist::Gaussian, &model, 3).unwrap();
            let mut cpu = CpuBackend::with_family(model.clone(), family);
            let ucfg = zo::perturb::UpdateConfig {
                dist: Dist::Gaussian,
                weight_decay: 0.0,
                rule: Default::default(),
            };
            for step in 0..4u64 {
                gpu.begin_step(step, None).unwrap();
                cpu.begin_step(step, None);
                let seeds = [500 + step, 600 + step];
                let plan = Plan::build(
                    &examples(model.config.vocab_size as u32),
                    &variants(&seeds, 5e-2),
                )
                .unwrap();
                let g = gpu.score(&plan).unwrap().query_logprobs;
                let c = cpu.score(&plan).unwrap().query_logprobs;
                compare(&g, &c, F32_TOL, F32_TOL, &format!("{what}: step {step}"));
                if step == 0 {
                    assert_variants_move(&plan, &c, 10.0 * F32_TOL, &what);
                }
                let rec = zo::perturb::StepRecord {
                    step,
                    seeds: seeds.to_vec(),
                    grads: vec![3.0, -2.0],
                    lr: 5e-2,
                    period_seed: None,
                };
                gpu.update(&rec, &ucfg).unwrap();
                cpu.update(&rec, &ucfg).unwrap();
            }
        }

        let dense = FamilyConfig::Dense { in_place: true };
        let mut gpu = CudaBackend::new(
            &model,
            Some((&dense, Dist::Gaussian)),
            &opts(target, DType::Bf16, 1),
        )
        .unwrap();
        let mut host = rounded(&model, DType::Bf16);
        gpu.perturb_in_place(9, 1e-3, Dist::Gaussian).unwrap();
        zo::perturb::dense::perturb_in_place(&mut host, 9, 1e-3, Dist::Gaussian);
        let (w, _, ld) = gpu.group_weights(Site::model(Slot::ProjectIn)).unwrap();
        let pi = host.project_in.as_ref().unwrap();
        for i in 0..pi.out_dim {
            for j in 0..pi.in_dim {
                let want = DType::Bf16.round(pi.w[i * pi.in_dim + j]);
                assert_eq!(
                    w[i * ld + j].to_bits(),
                    want.to_bits(),
                    "{dev}: project_in[{i}][{j}]"
                );
            }
        }

        let batch = decode_batch(
            model.config.vocab_size as u32,
            &[Variant::BASE],
            zo::backend::decode::Sampling::Greedy,
        );
        let gpu = CudaBackend::new(&model, None, &opts(target, DType::F32, 1)).unwrap();
        let g = decode_run(&gpu, batch.clone(), 6);
        let c = decode_run(&CpuBackend::new(model.clone()), batch, 6);
        assert_eq!(g, c, "{dev}: greedy tokens");
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
    use zo::engine::config::Optimizer;
    use zo::engine::{replay, Checkpoint, TrainConfig};
    let adam = Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    for ((dev, target), optimizer) in targets("a_cuda_run_replays_on_the_cpu_bit_for_bit")
        .into_iter()
        .flat_map(|t| [(t, Optimizer::Sgd), (t, adam)])
    {
        let dev = format!("{dev} {optimizer:?}");
        let base = synth::tiny_model();
        let data = synth::parity_data(16, 8, 8);
        let cfg = TrainConfig {
            optimizer,
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

/// Examples whose candidates span several tokens: prompts ending mid-page (21 tokens), on a
/// page boundary (16) and short (5), candidates of 1 to 18 tokens, so children of a shared
/// prompt read its partially filled last page and cross pages of their own.
fn multi_token_examples(vocab: u32) -> Vec<zo::plan::TokenizedExample> {
    let tok = |i: u32| (i * 37 + 5) % vocab;
    let run = |a: u32, n: u32| (a..a + n).map(tok).collect::<Vec<u32>>();
    vec![
        zo::plan::TokenizedExample {
            prompt: run(0, 21),
            candidates: vec![run(50, 3), run(60, 1), run(70, 18)],
            gold: 2,
            answers: Vec::new(),
        },
        zo::plan::TokenizedExample {
            prompt: run(100, 16),
            candidates: vec![run(120, 2), run(130, 4)],
            gold: 0,
            answers: Vec::new(),
        },
        zo::plan::TokenizedExample {
            prompt: run(200, 5),
            candidates: vec![run(210, 1), run(220, 1)],
            gold: 1,
            answers: Vec::new(),
        },
    ]
}

/// The default layout of multi-token candidates (children reading the shared prompt's pages)
/// under ± variants and the base rows, for lora, lowrank and prefix: the CUDA backend's
/// log-probs equal the CPU's, and equal its own for the per-candidate layout of the same
/// examples, within the f32 tolerance. One update first, so lora's B (and the trained prefix)
/// is live on the base rows too.
#[test]
fn shared_prompt_scores_match_the_cpu_and_the_per_candidate_layout() {
    use zo::model::Slot;
    use zo::plan::Sharing;
    for (dev, target) in targets("shared_prompt_scores_match_the_cpu_and_the_per_candidate_layout")
    {
        for (cfg, fam) in [
            (
                ModelConfig::tiny_llama(),
                mezo_lora(vec![Slot::V, Slot::Down, Slot::Q]),
            ),
            (
                ModelConfig::tiny_opt(),
                mezo_lora(vec![Slot::Fc1, Slot::K, Slot::O]),
            ),
            (ModelConfig::tiny_llama(), lozo(None)),
            (ModelConfig::tiny_opt(), lozo(None)),
            (
                ModelConfig::tiny_llama3(),
                FamilyConfig::Prefix { tokens: 3 },
            ),
        ] {
            let model = tiny(cfg);
            let dist = Dist::Gaussian;
            let what = format!("{dev}: {} {}", model.config.model_type, fam.name());
            let mut gpu = CudaBackend::new_seeded(
                &model,
                Some((&fam, dist)),
                3,
                &opts(target, DType::F32, 1),
            )
            .unwrap();
            let family = zo::perturb::build(&fam, dist, &model, 3).unwrap();
            let mut cpu = CpuBackend::with_family(model.clone(), family);
            gpu.begin_step(0, None).unwrap();
            cpu.begin_step(0, None);
            let rec = zo::perturb::StepRecord {
                step: 0,
                seeds: vec![77],
                grads: vec![5.0],
                lr: 1e-2,
                period_seed: None,
            };
            let ucfg = zo::perturb::UpdateConfig {
                dist,
                weight_decay: 0.0,
                rule: Default::default(),
            };
            gpu.update(&rec, &ucfg).unwrap();
            cpu.update(&rec, &ucfg).unwrap();
            gpu.begin_step(1, None).unwrap();
            cpu.begin_step(1, None);
            let examples = multi_token_examples(model.config.vocab_size as u32);
            let vars = variants(&[123], 1e-1);
            let shared = Plan::build(&examples, &vars).unwrap();
            assert!(
                shared.has_contexts(),
                "{what}: the default layout shares prompts"
            );
            let per = Plan::build_with(&examples, &vars, Sharing::PerCandidate).unwrap();
            assert!(!per.has_contexts());
            let g = gpu.score(&shared).unwrap();
            let c = cpu.score(&shared).unwrap().query_logprobs;
            let g_per = gpu.score(&per).unwrap().query_logprobs;
            compare(
                &g.query_logprobs,
                &c,
                F32_TOL,
                F32_TOL,
                &format!("{what}: vs cpu"),
            );
            compare(
                &g.query_logprobs,
                &g_per,
                F32_TOL,
                F32_TOL,
                &format!("{what}: vs per-candidate"),
            );
            assert_eq!(g.examples.len(), examples.len() * vars.len(), "{what}");
            assert_variants_move(&shared, &c, 10.0 * F32_TOL, &what);
        }
    }
}

fn fixture(name: &str) -> Model {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf");
    zo::model::load::load_model(&dir.join(name)).unwrap()
}

/// A decode batch of the same prompts under each variant (variant-major), lengths around a
/// page (15 crosses into a second page on its first generated token).
fn decode_batch(
    vocab: u32,
    vars: &[Variant],
    sampling: zo::backend::decode::Sampling,
) -> zo::backend::decode::DecodeBatch {
    let prompts: Vec<Vec<u32>> = [15u32, 3, 17]
        .iter()
        .enumerate()
        .map(|(p, &n)| {
            (0..n)
                .map(|i| (i * 31 + p as u32 * 7 + 1) % vocab)
                .collect()
        })
        .collect();
    let mut batch = zo::backend::decode::DecodeBatch::base(Vec::new(), sampling);
    batch.variants = vars.to_vec();
    for v in 0..vars.len() as u32 {
        for p in &prompts {
            batch.prompts.push(p.clone());
            batch.seq_variant.push(v);
        }
    }
    batch
}

/// The live sequences of decoding step `step` of a batch of `n`: all at first, then the second
/// is dropped after three steps and the last after five.
fn live_at(step: usize, n: usize) -> Vec<usize> {
    (0..n)
        .filter(|&i| !(step >= 3 && i == 1 || step >= 5 && i == n - 1))
        .collect()
}

/// Tokens of `steps` decoding calls, dropping sequences as [`live_at`] says: `out[step]`
/// holds the tokens of the live sequences in order.
fn decode_run(
    b: &dyn zo::backend::Backend,
    batch: zo::backend::decode::DecodeBatch,
    steps: usize,
) -> Vec<Vec<u32>> {
    let n = batch.prompts.len();
    let mut d = b.decoder(batch).unwrap();
    let mut out = Vec::new();
    for step in 0..steps {
        out.push(d.next(&live_at(step, n)).unwrap());
    }
    // A dropped sequence cannot be continued.
    assert!(
        d.next(&[1]).is_err(),
        "{}: a dropped sequence ran",
        b.name()
    );
    out
}

/// No family, lora (on q, v and the MLP's output) and lowrank, for a model of `arch`.
fn families(arch: zo::model::Arch) -> Vec<Option<FamilyConfig>> {
    use zo::model::Slot;
    let mlp = match arch {
        zo::model::Arch::Llama => Slot::Down,
        zo::model::Arch::Opt => Slot::Fc2,
    };
    vec![
        None,
        Some(mezo_lora(vec![Slot::Q, Slot::V, mlp])),
        Some(lozo(None)),
    ]
}

/// The CUDA decoder against the CPU's: the fixture Llama and OPT, no family (base rows) and
/// lora and lowrank with + and − variants next to the base rows in one batch; greedy tokens are
/// equal over eight steps, with sequences dropped mid-way, and the variants do change what is
/// generated.
#[test]
fn greedy_decoding_matches_the_cpu() {
    use zo::backend::decode::Sampling;
    for (dev, target) in targets("greedy_decoding_matches_the_cpu") {
        for name in ["llama-tiny", "opt-tiny"] {
            let model = fixture(name);
            for fam in families(model.config.arch) {
                let what = format!("{dev}: {name} {:?}", fam.as_ref().map(|f| f.name()));
                let vars = match fam {
                    None => vec![Variant::BASE],
                    Some(_) => variants(&[41], 0.5),
                };
                let family = fam.as_ref().map(|f| (f, Dist::Gaussian));
                let mut gpu =
                    CudaBackend::new_seeded(&model, family, 9, &opts(target, DType::F32, 1))
                        .unwrap();
                let mut cpu = match &fam {
                    None => CpuBackend::new(model.clone()),
                    Some(f) => CpuBackend::with_family(
                        model.clone(),
                        zo::perturb::build(f, Dist::Gaussian, &model, 9).unwrap(),
                    ),
                };
                if fam.is_some() {
                    gpu.begin_step(0, None).unwrap();
                    cpu.begin_step(0, None);
                }
                let vocab = model.config.vocab_size as u32;
                let batch = decode_batch(vocab, &vars, Sampling::Greedy);
                let n = batch.prompts.len();
                let g = decode_run(&gpu, batch.clone(), 8);
                let c = decode_run(&cpu, batch, 8);
                assert_eq!(g, c, "{what}: greedy tokens");
                // Per sequence, its stream of tokens; the same prompt under another variant
                // must generate something else somewhere.
                let stream = |i: usize| -> Vec<u32> {
                    (0..8)
                        .filter_map(|s| {
                            let live = live_at(s, n);
                            live.iter().position(|&j| j == i).map(|k| g[s][k])
                        })
                        .collect()
                };
                if fam.is_some() {
                    let per = n / vars.len();
                    assert!(
                        (0..n - per).any(|i| stream(i) != stream(i + per)),
                        "{what}: the variants generated the same tokens"
                    );
                }
            }
        }
    }
}

/// Seeded sampling replays bit for bit on the CUDA backend (a fresh decoder over the same
/// batch), and it is not greedy decoding in disguise.
#[test]
fn seeded_sampling_replays_on_the_cuda_backend() {
    use zo::backend::decode::Sampling;
    for (dev, target) in targets("seeded_sampling_replays_on_the_cuda_backend") {
        let model = fixture("llama-tiny");
        let fam = lozo(None);
        let mut gpu = decoder_backend(&model, &fam, target);
        gpu.begin_step(0, None).unwrap();
        let vocab = model.config.vocab_size as u32;
        let vars = variants(&[41], 0.5);
        let hot = Sampling::Seeded {
            seed: 2024,
            temperature: 1.0,
        };
        let a = decode_run(&gpu, decode_batch(vocab, &vars, hot), 8);
        let b = decode_run(&gpu, decode_batch(vocab, &vars, hot), 8);
        assert_eq!(a, b, "{dev}: seeded sampling replays");
        let greedy = decode_run(&gpu, decode_batch(vocab, &vars, Sampling::Greedy), 8);
        assert_ne!(
            a, greedy,
            "{dev}: sampling at T = 1 picked the argmax every time"
        );
    }
}

/// A long greedy run whose sequences outgrow the first KV cache (it doubles, keeping what it
/// holds) and give pages back when dropped (reused by the survivor): the CUDA decoder's tokens
/// equal the CPU's at every step.
#[test]
fn decoding_past_the_first_cache_matches_the_cpu() {
    use zo::backend::decode::{DecodeBatch, Sampling};
    for (dev, target) in targets("decoding_past_the_first_cache_matches_the_cpu") {
        let model = fixture("llama-tiny");
        let fam = lozo(None);
        let mut gpu = decoder_backend(&model, &fam, target);
        let family = zo::perturb::build(&fam, Dist::Gaussian, &model, 9).unwrap();
        let mut cpu = CpuBackend::with_family(model.clone(), family);
        gpu.begin_step(0, None).unwrap();
        cpu.begin_step(0, None);
        let mut batch = DecodeBatch::base(vec![vec![7], (0..30).collect()], Sampling::Greedy);
        batch.variants = variants(&[41], 0.5);
        batch.seq_variant = vec![0, 1];
        let mut g = gpu.decoder(batch.clone()).unwrap();
        let mut c = cpu.decoder(batch).unwrap();
        for step in 0..40 {
            let live: &[usize] = if step < 20 { &[0, 1] } else { &[1] };
            let (a, b) = (g.next(live).unwrap(), c.next(live).unwrap());
            assert_eq!(a, b, "{dev}: step {step}");
        }
    }
}

/// MeZO-prefix (the preset's family) under ± variants next to the base rows: greedy tokens
/// equal the CPU's over eight steps with sequences dropped, and a long prompt decodes past
/// one split of the decode kernel (prefix + cached keys > `SPLIT_KEYS`), so the split-K
/// combine runs against the CPU too. The ± prefix changes what is generated.
#[test]
fn prefix_decoding_matches_the_cpu() {
    use zo::backend::cuda::kernels::decode::decode_splits;
    use zo::backend::decode::{DecodeBatch, Sampling};
    let fam = zo::engine::TrainConfig::preset("mezo-prefix")
        .unwrap()
        .family;
    let tokens = match fam {
        FamilyConfig::Prefix { tokens } => tokens,
        ref other => panic!("the mezo-prefix preset trains {}", other.name()),
    };
    for (dev, target) in targets("prefix_decoding_matches_the_cpu") {
        for name in ["llama-tiny", "opt-tiny"] {
            let model = fixture(name);
            let what = format!("{dev}: {name} prefix");
            let gpu = decoder_backend(&model, &fam, target);
            let family = zo::perturb::build(&fam, Dist::Gaussian, &model, 9).unwrap();
            let cpu = CpuBackend::with_family(model.clone(), family);
            let vocab = model.config.vocab_size as u32;
            let vars = variants(&[41], 0.5);
            let batch = decode_batch(vocab, &vars, Sampling::Greedy);
            let n = batch.prompts.len();
            let g = decode_run(&gpu, batch.clone(), 8);
            assert_eq!(g, decode_run(&cpu, batch, 8), "{what}: greedy tokens");
            let per = n / vars.len();
            let stream = |i: usize| -> Vec<u32> {
                (0..8)
                    .filter_map(|s| {
                        let live = live_at(s, n);
                        live.iter().position(|&j| j == i).map(|k| g[s][k])
                    })
                    .collect()
            };
            assert!(
                (0..n - per).any(|i| stream(i) != stream(i + per)),
                "{what}: the variants generated the same tokens"
            );

            // Up to the model's last position: the keys outgrow one split.
            let max_pos = model.config.max_position_embeddings;
            let steps = 9;
            let prompt: Vec<u32> = (0..(max_pos - steps + 1) as u32)
                .map(|i| (i * 13 + 5) % vocab)
                .collect();
            // The first decoding step attends to the prompt and its own key, the last to
            // every position.
            assert!(
                decode_splits(tokens, prompt.len() + 1) == 1 && decode_splits(tokens, max_pos) > 1,
                "{what}: the long run starts in one split and ends in two"
            );
            let mut long = DecodeBatch::base(vec![prompt.clone(), prompt], Sampling::Greedy);
            long.variants = vars[1..].to_vec();
            long.seq_variant = vec![0, 1];
            let mut gd = gpu.decoder(long.clone()).unwrap();
            let mut cd = cpu.decoder(long).unwrap();
            for step in 0..steps {
                let (a, b) = (gd.next(&[0, 1]).unwrap(), cd.next(&[0, 1]).unwrap());
                assert_eq!(a, b, "{what}: long run step {step}");
            }
            assert!(
                gd.next(&[0, 1]).is_err(),
                "{what}: decoding past the model's context"
            );
        }
    }
}

/// Seeded sampling on the CUDA decoder (noise drawn on the device, addressed by batch index
/// and generated position) picks the CPU decoder's tokens, for no family, lowrank and prefix
/// under ± variants, at two temperatures, with sequences dropped mid-way.
#[test]
fn sampled_decoding_matches_the_cpu() {
    use zo::backend::decode::Sampling;
    for (dev, target) in targets("sampled_decoding_matches_the_cpu") {
        for name in ["llama-tiny", "opt-tiny"] {
            let model = fixture(name);
            for fam in [
                None,
                Some(lozo(None)),
                Some(FamilyConfig::Prefix { tokens: 5 }),
            ] {
                let what = format!("{dev}: {name} {:?}", fam.as_ref().map(|f| f.name()));
                let vars = match fam {
                    None => vec![Variant::BASE],
                    Some(_) => variants(&[41], 0.5),
                };
                let family = fam.as_ref().map(|f| (f, Dist::Gaussian));
                let mut gpu =
                    CudaBackend::new_seeded(&model, family, 9, &opts(target, DType::F32, 1))
                        .unwrap();
                let mut cpu = match &fam {
                    None => CpuBackend::new(model.clone()),
                    Some(f) => CpuBackend::with_family(
                        model.clone(),
                        zo::perturb::build(f, Dist::Gaussian, &model, 9).unwrap(),
                    ),
                };
                if fam.is_some() {
                    gpu.begin_step(0, None).unwrap();
                    cpu.begin_step(0, None);
                }
                let vocab = model.config.vocab_size as u32;
                for temperature in [1.0, 0.7] {
                    let hot = Sampling::Seeded {
                        seed: 2024,
                        temperature,
                    };
                    let g = decode_run(&gpu, decode_batch(vocab, &vars, hot), 8);
                    let c = decode_run(&cpu, decode_batch(vocab, &vars, hot), 8);
                    assert_eq!(g, c, "{what}: sampled tokens at T = {temperature}");
                }
            }
        }
    }
}

/// `zo-run generate --prompt ...` on a tiny model end to end: the CUDA backend (emulated, and
/// the GPU where there is one) prints the CPU's greedy completions, and its tokens/s.
#[test]
fn generate_cli_matches_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let model = tmp.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(root.join("hf/llama-tiny").join(f), model.join(f)).unwrap();
    }
    // The fixture tokenizer's words, then a filler word for every other id of the model's
    // vocabulary, so that each generated id shows in the completions.
    let mut tok: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("data/wordlevel_tokenizer.json")).unwrap())
            .unwrap();
    let words = tok["model"]["vocab"].as_object_mut().unwrap();
    let known = words.len();
    let vocab = fixture("llama-tiny").config.vocab_size;
    for id in known..vocab {
        words.insert(format!("w{id}"), id.into());
    }
    std::fs::write(model.join("tokenizer.json"), tok.to_string()).unwrap();
    // Every completion line, and the summary (the last line) as JSON.
    let run = |device: &str| -> (Vec<serde_json::Value>, serde_json::Value) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zo-run"))
            .args(["generate", "--model"])
            .arg(&model)
            .args(["--prompt", "the film is", "--prompt", "a dull cast and"])
            .args(["--prompt", "the script , the pacing"])
            .args(["--max-new-tokens", "12", "--batch", "2", "--stop", "@@"])
            .args(["--device", device, "--dtype", "f32"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "zo-run generate --device {device}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let summary = lines.pop().unwrap();
        (lines, summary)
    };
    let (cpu, cpu_summary) = run("cpu");
    assert_eq!(cpu.len(), 3);
    for line in &cpu {
        let words = line["completion"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count();
        assert!(words >= 3, "a completion of a few words: {line}");
    }
    for (dev, target) in targets("generate_cli_matches_the_cpu") {
        let device = match target {
            Target::Emulated => "emu",
            Target::Gpu(_) => "cuda",
        };
        let (lines, summary) = run(device);
        assert_eq!(lines, cpu, "{dev}: completions");
        assert_eq!(summary["device"], device, "{dev}: {summary}");
        assert_eq!(summary["new_tokens"], cpu_summary["new_tokens"], "{dev}");
        assert!(
            summary["tokens_per_s"].as_f64().unwrap() > 0.0,
            "{dev}: {summary}"
        );
    }
}
