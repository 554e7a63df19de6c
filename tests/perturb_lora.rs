//! The lora family (MeZO-LoRA) on the CPU reference: fused variants against explicitly
//! materialised weights, exact init / update formulas, merges, PEFT export and config errors.

#[path = "common/fam1.rs"]
mod fam1;

use fam1::*;
use zo::backend::cpu::CpuBackend;
use zo::model::{Model, Param, Site, Slot};
use zo::perturb::lora::Lora;
use zo::perturb::{build, role, Dist, Family, FamilyConfig, UpdateConfig};
use zo::plan::Variant;
use zo::Error;

const EPS: f32 = 0.01;
const LR: f32 = 0.02;
const SEED: u64 = 5;

fn lora(rank: usize, alpha: f32, targets: &[Slot]) -> FamilyConfig {
    FamilyConfig::Lora {
        rank,
        alpha,
        targets: targets.to_vec(),
    }
}

fn ucfg(dist: Dist, weight_decay: f32) -> UpdateConfig {
    UpdateConfig {
        dist,
        weight_decay,
        rule: Default::default(),
    }
}

fn targets_of(cfg: &FamilyConfig) -> (usize, f32, Vec<Slot>) {
    match cfg {
        FamilyConfig::Lora {
            rank,
            alpha,
            targets,
        } => (*rank, *alpha / *rank as f32, targets.clone()),
        _ => unreachable!(),
    }
}

/// `W + (α/r)·(B + sc·Z_B)·(A + sc·Z_A)` on every target, summed in f64.
fn materialize(
    model: &Model,
    st: &[(String, Vec<usize>, Vec<f32>)],
    cfg: &FamilyConfig,
    dist: Dist,
    pert: Option<(u64, f32)>,
) -> Model {
    let (r, scale, targets) = targets_of(cfg);
    let mut m = model.clone();
    for site in block_sites(model) {
        if !targets.contains(&site.slot) {
            continue;
        }
        let tid = Param::Weight(site).tensor_id();
        let lin = linear_mut(&mut m, site);
        let (out, n_in) = (lin.out_dim, lin.in_dim);
        let a = state(st, &format!("{}.lora_a", site_name(site)));
        let b = state(st, &format!("{}.lora_b", site_name(site)));
        let (za, zb, sc) = match pert {
            Some((seed, sc)) => (
                fill(dist, seed, tid, role::LORA_A, r * n_in),
                fill(dist, seed, tid, role::LORA_B, out * r),
                sc as f64,
            ),
            None => (vec![0.0; r * n_in], vec![0.0; out * r], 0.0),
        };
        for i in 0..out {
            for j in 0..n_in {
                let mut z = 0.0f64;
                for k in 0..r {
                    let bk = b[i * r + k] as f64 + sc * zb[i * r + k] as f64;
                    let ak = a[k * n_in + j] as f64 + sc * za[k * n_in + j] as f64;
                    z += bk * ak;
                }
                let w = &mut lin.w[i * n_in + j];
                *w = (*w as f64 + scale as f64 * z) as f32;
            }
        }
    }
    m
}

fn check_fused(b: &CpuBackend, cfg: &FamilyConfig, dist: Dist, step: u64) {
    let st = b.family().unwrap().state_tensors();
    for q in [1, 4] {
        let vars = variants(&dir_seeds(step, q), EPS);
        let p = plan(b.model(), &vars);
        let per = split(&p, &logprobs(b, &p));
        assert_variants_distinct(&per);
        for (v, var) in vars.iter().enumerate() {
            let pert = (var.sign != 0).then_some((var.seed, var.sign as f32 * var.eps));
            let m = materialize(b.model(), &st, cfg, dist, pert);
            let what = format!("q={q} variant {v} ({var:?}) step {step}");
            assert_close(&per[v], &score_plain(m), &what);
        }
    }
}

fn base_scores(b: &CpuBackend) -> Vec<f32> {
    let p = plan(b.model(), &[Variant::BASE]);
    logprobs(b, &p)
}

fn scenario(arch: &str, cfg: FamilyConfig, dist: Dist, wd: f32) {
    let model = tiny(arch);
    let fam = build(&cfg, dist, &model, SEED).unwrap();
    let mut b = CpuBackend::with_family(model, fam);
    // B = 0: the adapters start as the identity.
    assert_eq!(
        bits(&base_scores(&b)),
        bits(&score_plain(b.model().clone()))
    );
    check_fused(&b, &cfg, dist, 0);
    for step in 0..4 {
        b.begin_step(step, None);
        let rec = record(step, dir_seeds(step, 1 + step as usize % 3), LR, None);
        b.update(&rec, &ucfg(dist, wd)).unwrap();
    }
    let fused = base_scores(&b);
    let d = max_diff(&fused, &score_plain(b.model().clone()));
    assert!(
        d > 100.0 * TOL,
        "{arch}: trained adapters change log-probs by only {d:e}"
    );
    check_fused(&b, &cfg, dist, 4);

    // merged() is what the forward computes.
    let merged = b.family().unwrap().merged(b.model()).unwrap();
    assert_close(&score_plain(merged), &fused, "merged() vs forward");
}

#[test]
fn fused_matches_materialized_llama() {
    scenario(
        "llama",
        lora(4, 16.0, &[Slot::Q, Slot::V]),
        Dist::Gaussian,
        0.0,
    );
}

#[test]
fn fused_matches_materialized_llama_mlp_with_decay() {
    let cfg = lora(2, 8.0, &[Slot::Down, Slot::K, Slot::Gate]);
    scenario("llama", cfg, Dist::Rademacher, 0.1);
}

#[test]
fn fused_matches_materialized_opt() {
    let cfg = lora(3, 6.0, &[Slot::Q, Slot::O, Slot::Fc1, Slot::Fc2]);
    scenario("opt", cfg, Dist::Gaussian, 0.05);
}

fn run(cfg: &FamilyConfig) -> Vec<Vec<u32>> {
    let model = tiny("opt");
    let fam = build(cfg, Dist::Gaussian, &model, SEED).unwrap();
    let mut b = CpuBackend::with_family(model, fam);
    for step in 0..5 {
        let rec = record(step, dir_seeds(step, 3), LR, None);
        b.update(&rec, &ucfg(Dist::Gaussian, 0.01)).unwrap();
    }
    let st = b.family().unwrap().state_tensors();
    st.iter().map(|t| bits(&t.2)).collect()
}

#[test]
fn updates_are_deterministic() {
    let cfg = lora(4, 16.0, &[Slot::Q, Slot::V]);
    let a = run(&cfg);
    assert_eq!(a, run(&cfg));
}

/// A: `bound·(2u − 1)` from the run seed's LORA_INIT stream, bound = 1/√in; B = 0.
#[test]
fn init_follows_peft_kaiming_uniform() {
    let model = tiny("llama");
    let cfg = lora(4, 16.0, &[Slot::Q, Slot::V]);
    let f = Lora::new(cfg.clone(), Dist::Gaussian, &model, SEED).unwrap();
    let st = f.state_tensors();
    let site = Site::layer(1, Slot::V);
    let a = state(&st, "layers.1.v.lora_a");
    let stream = zo::rng::Stream::new(SEED, Param::Weight(site).tensor_id(), role::LORA_INIT);
    let bound = 1.0 / 32f32.sqrt();
    let want: Vec<f32> = (0..a.len() as u64)
        .map(|e| bound * (2.0 * stream.uniform(e) - 1.0))
        .collect();
    assert_eq!(bits(a), bits(&want));
    assert!(a.iter().all(|&x| x.abs() <= bound));
    let var = a.iter().map(|&x| (x * x) as f64).sum::<f64>() / a.len() as f64;
    let want_var = (bound * bound) as f64 / 3.0;
    assert!(
        (var / want_var - 1.0).abs() < 0.5,
        "variance {var} vs {want_var}"
    );
    assert!(state(&st, "layers.1.v.lora_b").iter().all(|&x| x == 0.0));
    assert_ne!(bits(a), bits(state(&st, "layers.1.q.lora_a")));
    let other = Lora::new(cfg, Dist::Gaussian, &model, SEED + 1).unwrap();
    assert_ne!(
        bits(a),
        bits(state(&other.state_tensors(), "layers.1.v.lora_a"))
    );
}

/// `θ = (−lr·wd).mul_add(θ, θ)`, then `θ = c_d.mul_add(z_d, θ)` per direction, and the merge
/// `w = (α/r).mul_add(Σ_k B·A (fma chain), w)`, all bit for bit.
#[test]
fn update_and_merge_follow_the_documented_formulas() {
    let mut model = tiny("opt");
    let (r, alpha) = (3, 9.0f32);
    let mut f = Lora::new(lora(r, alpha, &[Slot::V]), Dist::Gaussian, &model, SEED).unwrap();
    let site = Site::layer(0, Slot::V);
    let tid = Param::Weight(site).tensor_id();
    let a0 = state(&f.state_tensors(), "layers.0.v.lora_a").to_vec();
    let rec = record(0, dir_seeds(0, 2), LR, None);
    let wd = 0.3f32;
    let mut want = Vec::new();
    for (init, role, n) in [
        (a0, role::LORA_A, r * 32),
        (vec![0.0f32; 32 * r], role::LORA_B, 32 * r),
    ] {
        let mut t = init;
        assert_eq!(t.len(), n);
        let decay = -(rec.lr * wd);
        t.iter_mut().for_each(|x| *x = decay.mul_add(*x, *x));
        for (&seed, &g) in rec.seeds.iter().zip(&rec.grads) {
            let z = fill(Dist::Gaussian, seed, tid, role, n);
            let c = -(rec.lr * g) / rec.seeds.len() as f32;
            for (x, &z) in t.iter_mut().zip(&z) {
                *x = c.mul_add(z, *x);
            }
        }
        want.push(t);
    }
    f.update(&mut model, &rec, &ucfg(Dist::Gaussian, wd))
        .unwrap();
    let st = f.state_tensors();
    let (a, b) = (
        state(&st, "layers.0.v.lora_a"),
        state(&st, "layers.0.v.lora_b"),
    );
    assert_eq!(bits(a), bits(&want[0]), "A update");
    assert_eq!(bits(b), bits(&want[1]), "B update");

    let merged = f.merged(&model).unwrap();
    let scale = alpha / r as f32;
    let mut w = linear_mut(&mut model, site).w.clone();
    for i in 0..32 {
        for j in 0..32 {
            let mut acc = 0.0f32;
            for k in 0..r {
                acc = b[i * r + k].mul_add(a[k * 32 + j], acc);
            }
            w[i * 32 + j] = scale.mul_add(acc, w[i * 32 + j]);
        }
    }
    assert_eq!(bits(&linear_mut(&mut merged.clone(), site).w), bits(&w));
    // Non-target Linears are untouched.
    let q = Site::layer(0, Slot::Q);
    assert_eq!(
        bits(&linear_mut(&mut merged.clone(), q).w),
        bits(&linear_mut(&mut model, q).w)
    );
}

#[test]
fn peft_export_llama() {
    let model = tiny("llama");
    let f = Lora::new(
        lora(4, 16.0, &[Slot::V, Slot::Q, Slot::Down]),
        Dist::Gaussian,
        &model,
        1,
    )
    .unwrap();
    let t = f.peft_tensors();
    let names: Vec<&str> = t.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(t.len(), 2 * 3 * 2);
    assert_eq!(
        names[0],
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    );
    assert_eq!(
        names[1],
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
    );
    assert_eq!(
        names[3],
        "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"
    );
    assert_eq!(
        names[5],
        "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"
    );
    assert_eq!(
        names[6],
        "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"
    );
    // v: 2 kv heads × 8 = 16 outputs; down: 48 → 32.
    assert_eq!((t[2].1.clone(), t[3].1.clone()), (vec![4, 32], vec![16, 4]));
    assert_eq!((t[4].1.clone(), t[5].1.clone()), (vec![4, 48], vec![32, 4]));
    for (_, shape, data) in &t {
        assert_eq!(shape.iter().product::<usize>(), data.len());
    }
    let c = f.peft_config_json("HuggingFaceTB/SmolLM2-135M-Instruct");
    assert_eq!(c["r"], 4);
    assert_eq!(c["lora_alpha"], 16.0);
    assert_eq!(c["peft_type"], "LORA");
    assert_eq!(c["task_type"], "CAUSAL_LM");
    assert_eq!(c["bias"], "none");
    assert_eq!(c["fan_in_fan_out"], false);
    assert_eq!(
        c["base_model_name_or_path"],
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    );
    assert_eq!(
        c["target_modules"],
        serde_json::json!(["q_proj", "v_proj", "down_proj"])
    );
}

#[test]
fn peft_export_opt() {
    let model = tiny("opt");
    let f = Lora::new(
        lora(2, 4.0, &[Slot::O, Slot::Fc1, Slot::Q]),
        Dist::Gaussian,
        &model,
        1,
    )
    .unwrap();
    let t = f.peft_tensors();
    let names: Vec<&str> = t.iter().map(|x| x.0.as_str()).collect();
    let p = "base_model.model.model.decoder.layers";
    assert_eq!(names[0], format!("{p}.0.self_attn.q_proj.lora_A.weight"));
    assert_eq!(names[2], format!("{p}.0.self_attn.out_proj.lora_A.weight"));
    assert_eq!(names[5], format!("{p}.0.fc1.lora_B.weight"));
    assert_eq!(t[5].1, vec![64, 2]);
    let c = f.peft_config_json("facebook/opt-125m");
    assert_eq!(
        c["target_modules"],
        serde_json::json!(["q_proj", "out_proj", "fc1"])
    );
}

fn config_err(cfg: FamilyConfig, arch: &str) -> String {
    match Lora::new(cfg, Dist::Gaussian, &tiny(arch), SEED) {
        Err(Error::Config(m)) => m,
        Err(e) => panic!("wrong error kind: {e}"),
        Ok(_) => panic!("accepted a bad config"),
    }
}

#[test]
fn bad_configs_are_rejected_clearly() {
    let e = config_err(lora(4, 8.0, &[Slot::Q, Slot::Gate]), "opt");
    assert!(
        e.contains("\"gate\"") && e.contains("Opt") && e.contains("fc1"),
        "{e}"
    );
    let e = config_err(lora(4, 8.0, &[Slot::Fc1]), "llama");
    assert!(e.contains("\"fc1\""), "{e}");
    let e = config_err(lora(4, 8.0, &[Slot::ProjectIn]), "opt");
    assert!(e.contains("project_in"), "{e}");
    let e = config_err(lora(4, 8.0, &[]), "llama");
    assert!(e.contains("no target"), "{e}");
    let e = config_err(lora(4, 8.0, &[Slot::Q, Slot::Q]), "llama");
    assert!(e.contains("twice"), "{e}");
    let e = config_err(lora(0, 8.0, &[Slot::Q]), "llama");
    assert!(e.contains("rank 0") && e.contains("layers.0.q"), "{e}");
    let e = config_err(lora(17, 8.0, &[Slot::V]), "llama");
    assert!(e.contains("layers.0.v") && e.contains("16×32"), "{e}");
    let e = config_err(lora(2, f32::NAN, &[Slot::V]), "llama");
    assert!(e.contains("alpha"), "{e}");
    let e = config_err(FamilyConfig::Prefix { tokens: 3 }, "llama");
    assert!(e.contains("prefix"), "{e}");
    assert!(build(&lora(4, 8.0, &[Slot::Up]), Dist::Gaussian, &tiny("opt"), 0).is_err());
}

#[test]
fn bad_updates_are_rejected_clearly() {
    let mut model = tiny("llama");
    let mut f = Lora::new(lora(2, 4.0, &[Slot::Q]), Dist::Gaussian, &model, SEED).unwrap();
    let before: Vec<Vec<u32>> = f.state_tensors().iter().map(|t| bits(&t.2)).collect();
    let mut rec = record(0, dir_seeds(0, 2), LR, None);
    rec.grads.push(0.5);
    let e = f
        .update(&mut model, &rec, &ucfg(Dist::Gaussian, 0.0))
        .unwrap_err();
    assert!(
        matches!(e, Error::Data(_)) && e.to_string().contains("2 direction seeds and 3"),
        "{e}"
    );
    let rec = record(0, dir_seeds(0, 2), LR, None);
    let e = f
        .update(&mut model, &rec, &ucfg(Dist::Rademacher, 0.0))
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    let after: Vec<Vec<u32>> = f.state_tensors().iter().map(|t| bits(&t.2)).collect();
    assert_eq!(before, after);
}
