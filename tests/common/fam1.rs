//! Helpers for the lowrank and lora family tests: tiny models, plans with ±ε variants, and
//! scoring of explicitly materialised weights with a family-less backend (the oracle).
#![allow(dead_code)]

use zo::backend::cpu::CpuBackend;
use zo::backend::Backend;
use zo::model::{Linear, Mlp, Model, ModelConfig, Site, Slot};
use zo::perturb::{Dist, StepRecord};
use zo::plan::{Plan, TokenizedExample, Variant};

/// Fused vs materialised scoring differ only by f32 rounding of the GEMMs.
pub const TOL: f32 = 2e-5;

/// The tiny test models, weights at std 0.2 so perturbations visibly move the log-probs.
pub fn tiny(arch: &str) -> Model {
    let cfg = match arch {
        "llama" => ModelConfig::tiny_llama(),
        "opt" => ModelConfig::tiny_opt(),
        other => panic!("no tiny {other}"),
    };
    Model::random_with_std(cfg, 11, 0.2)
}

/// A few examples: single-token candidates (one sequence each) and one multi-token example.
pub fn examples(vocab: u32) -> Vec<TokenizedExample> {
    let tok = |i: u32| (i * 37 + 5) % vocab;
    vec![
        TokenizedExample {
            prompt: (0..6).map(tok).collect(),
            candidates: vec![vec![tok(40)], vec![tok(41)]],
            gold: 0,
            answers: Vec::new(),
        },
        TokenizedExample {
            prompt: (10..14).map(tok).collect(),
            candidates: vec![vec![tok(42), tok(43)], vec![tok(44)]],
            gold: 1,
            answers: Vec::new(),
        },
        TokenizedExample {
            prompt: (20..27).map(tok).collect(),
            candidates: vec![vec![tok(45)], vec![tok(46)]],
            gold: 1,
            answers: Vec::new(),
        },
    ]
}

/// Direction seeds of a step.
pub fn dir_seeds(step: u64, q: usize) -> Vec<u64> {
    (0..q as u64).map(|d| 1000 + step * 16 + d).collect()
}

/// The estimator's order: (seed_d, +1), (seed_d, −1) for each d, then the base model.
pub fn variants(seeds: &[u64], eps: f32) -> Vec<Variant> {
    let mut v = Vec::new();
    for &seed in seeds {
        for sign in [1i8, -1] {
            v.push(Variant { seed, sign, eps });
        }
    }
    v.push(Variant::BASE);
    v
}

pub fn plan(model: &Model, variants: &[Variant]) -> Plan {
    Plan::build(&examples(model.config.vocab_size as u32), variants).unwrap()
}

pub fn logprobs(b: &CpuBackend, plan: &Plan) -> Vec<f32> {
    b.score(plan).unwrap().query_logprobs
}

/// Per-variant query log-probs of a variant-major plan (every variant packs the same
/// examples, so each owns an equal, contiguous share of the queries).
pub fn split(plan: &Plan, lp: &[f32]) -> Vec<Vec<f32>> {
    let n = lp.len() / plan.variants.len();
    lp.chunks(n).map(<[f32]>::to_vec).collect()
}

/// Scores `model` (no family) on the base-only plan.
pub fn score_plain(model: Model) -> Vec<f32> {
    let p = plan(&model, &[Variant::BASE]);
    logprobs(&CpuBackend::new(model), &p)
}

pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn assert_close(got: &[f32], want: &[f32], what: &str) {
    let d = max_diff(got, want);
    assert!(d <= TOL, "{what}: max |Δ log-prob| = {d:e} > {TOL:e}");
}

/// Asserts that the ± variants of each direction differ from each other and from the base
/// by far more than the tolerance, so agreement within it is meaningful.
pub fn assert_variants_distinct(per: &[Vec<f32>]) {
    let base = per.last().unwrap();
    for pair in per[..per.len() - 1].chunks(2) {
        for (x, y) in [(&pair[0], &pair[1]), (&pair[0], base), (&pair[1], base)] {
            let d = max_diff(x, y);
            assert!(d > 100.0 * TOL, "variants too close to test: {d:e}");
        }
    }
}

pub fn record(step: u64, seeds: Vec<u64>, lr: f32, period_seed: Option<u64>) -> StepRecord {
    let grads = (0..seeds.len())
        .map(|d| 1.5 - 0.8 * d as f32 + 0.3 * (step % 3) as f32)
        .collect();
    StepRecord {
        step,
        seeds,
        grads,
        lr,
        period_seed,
    }
}

pub fn fill(dist: Dist, seed: u64, tensor: u32, role: u32, n: usize) -> Vec<f32> {
    let mut v = vec![0.0; n];
    dist.fill(seed, tensor, role, 0, &mut v);
    v
}

/// Linear slots of a layer of `model`.
pub fn slots(model: &Model) -> Vec<Slot> {
    match &model.layers[0].mlp {
        Mlp::Gated { .. } => vec![
            Slot::Q,
            Slot::K,
            Slot::V,
            Slot::O,
            Slot::Gate,
            Slot::Up,
            Slot::Down,
        ],
        Mlp::Plain { .. } => vec![Slot::Q, Slot::K, Slot::V, Slot::O, Slot::Fc1, Slot::Fc2],
    }
}

/// Every block Linear's site.
pub fn block_sites(model: &Model) -> Vec<Site> {
    let slots = slots(model);
    (0..model.layers.len())
        .flat_map(|l| slots.iter().map(move |&s| Site::layer(l, s)))
        .collect()
}

pub fn linear_mut(model: &mut Model, site: Site) -> &mut Linear {
    let layer = &mut model.layers[site.layer.unwrap()];
    match (site.slot, &mut layer.mlp) {
        (Slot::Q, _) => &mut layer.q,
        (Slot::K, _) => &mut layer.k,
        (Slot::V, _) => &mut layer.v,
        (Slot::O, _) => &mut layer.o,
        (Slot::Gate, Mlp::Gated { gate, .. }) => gate,
        (Slot::Up, Mlp::Gated { up, .. }) => up,
        (Slot::Down, Mlp::Gated { down, .. }) => down,
        (Slot::Fc1, Mlp::Plain { fc1, .. }) => fc1,
        (Slot::Fc2, Mlp::Plain { fc2, .. }) => fc2,
        _ => panic!("no Linear at {site:?}"),
    }
}

pub fn site_name(site: Site) -> String {
    format!("layers.{}.{}", site.layer.unwrap(), site.slot.name())
}

/// A named tensor of a family's `state_tensors`.
pub fn state<'a>(st: &'a [(String, Vec<usize>, Vec<f32>)], name: &str) -> &'a [f32] {
    &st.iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no state tensor {name}"))
        .2
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every block weight of a model, flattened, for bitwise comparisons.
pub fn all_weights(model: &Model) -> Vec<u32> {
    let mut m = model.clone();
    block_sites(model)
        .into_iter()
        .flat_map(|s| bits(&linear_mut(&mut m, s).w))
        .collect()
}
