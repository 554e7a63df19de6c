//! Helpers for the dense and prefix family tests: plans with q directions, explicit
//! (materialised) perturbations and updates written straight from the documented conventions.

#![allow(dead_code)]

use zo::backend::cpu::CpuBackend;
use zo::backend::Backend;
use zo::model::{Layer, Linear, Mlp, Model, ModelConfig, Norm, NormSite, Param, Site, Slot};
use zo::perturb::{role, Dist};
use zo::plan::{Plan, TokenizedExample, Variant};

/// The three tiny architectures: Llama (untied head, GQA), pre-LN OPT (biases, tied head)
/// and post-LN OPT with project_in/out. A larger std puts them far from the linear regime.
pub fn models() -> Vec<(&'static str, Model)> {
    vec![
        (
            "llama",
            Model::random_with_std(ModelConfig::tiny_llama(), 11, 0.2),
        ),
        (
            "opt",
            Model::random_with_std(ModelConfig::tiny_opt(), 12, 0.2),
        ),
        (
            "opt-post-ln",
            Model::random_with_std(ModelConfig::tiny_opt_post_ln(), 13, 0.2),
        ),
    ]
}

/// Two examples: single-token candidates (scored at one row) and multi-token ones (one
/// sequence per candidate).
pub fn examples(vocab: u32) -> Vec<TokenizedExample> {
    let t = |x: u32| x % vocab;
    vec![
        TokenizedExample {
            prompt: vec![t(5), t(17), t(42), t(8), t(23)],
            candidates: vec![vec![t(30)], vec![t(31)]],
            gold: 1,
            answers: Vec::new(),
        },
        TokenizedExample {
            prompt: vec![t(3), t(64), t(9)],
            candidates: vec![vec![t(12), t(50)], vec![t(77), t(6), t(19)]],
            gold: 0,
            answers: Vec::new(),
        },
    ]
}

pub fn seed(d: usize) -> u64 {
    0x9E37_79B9_7F4A_7C15u64.wrapping_mul(d as u64 + 1) ^ 0x00C0_FFEE
}

/// The estimator's two-sided order: (seed_d, +1, ε), (seed_d, −1, ε) for d in 0..q.
pub fn two_sided(q: usize, eps: f32) -> Vec<Variant> {
    (0..q)
        .flat_map(|d| {
            [1i8, -1].map(|sign| Variant {
                seed: seed(d),
                sign,
                eps,
            })
        })
        .collect()
}

pub fn plan(model: &Model, variants: &[Variant]) -> Plan {
    Plan::build(&examples(model.config.vocab_size as u32), variants).unwrap()
}

pub fn logprobs(backend: &CpuBackend, plan: &Plan) -> Vec<f32> {
    backend.score(plan).unwrap().query_logprobs
}

/// Query log-probs of variant `v` in a plan built variant-major from `n_variants` variants.
pub fn of_variant(all: &[f32], n_variants: usize, v: usize) -> Vec<f32> {
    let per = all.len() / n_variants;
    all[v * per..(v + 1) * per].to_vec()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Fused-vs-reference tolerance on log-probs (f32 rounding of x·(W+sεZ)ᵀ vs x·Wᵀ + sε·x·Zᵀ).
pub const TOL: f32 = 2e-5;

pub fn z(dist: Dist, seed: u64, p: Param, role: u32, n: usize) -> Vec<f32> {
    let id = p.tensor_id();
    (0..n as u64)
        .map(|i| match dist {
            Dist::Gaussian => zo::rng::gaussian(seed, id, role, i),
            Dist::Rademacher => zo::rng::rademacher(seed, id, role, i),
        })
        .collect()
}

/// Calls `f(param, data, is_weight)` for every parameter tensor of `model`: weight matrices
/// and embeddings have `is_weight`; biases and norm parameters do not. Written out here
/// independently of the family so a tensor the family forgets shows up as a mismatch.
pub fn for_each_param(model: &mut Model, mut f: impl FnMut(Param, &mut Vec<f32>, bool)) {
    f(Param::Embed, &mut model.embed, true);
    if let Some(p) = &mut model.pos_embed {
        f(Param::PosEmbed, p, true);
    }
    if let Some(h) = &mut model.lm_head {
        f(Param::Head, h, true);
    }
    let lin = |site: Site, l: &mut Linear, f: &mut dyn FnMut(Param, &mut Vec<f32>, bool)| {
        f(Param::Weight(site), &mut l.w, true);
        if let Some(b) = &mut l.b {
            f(Param::Bias(site), b, false);
        }
    };
    let norm = |site: NormSite, n: &mut Norm, f: &mut dyn FnMut(Param, &mut Vec<f32>, bool)| {
        if let Some(w) = &mut n.w {
            f(Param::NormWeight(site), w, false);
        }
        if let Some(b) = &mut n.b {
            f(Param::NormBias(site), b, false);
        }
    };
    if let Some(l) = &mut model.project_in {
        lin(Site::model(Slot::ProjectIn), l, &mut f);
    }
    if let Some(l) = &mut model.project_out {
        lin(Site::model(Slot::ProjectOut), l, &mut f);
    }
    if let Some(n) = &mut model.final_norm {
        norm(NormSite::Final, n, &mut f);
    }
    for (i, layer) in model.layers.iter_mut().enumerate() {
        let Layer {
            attn_norm,
            q,
            k,
            v,
            o,
            mlp_norm,
            mlp,
        } = layer;
        norm(NormSite::Attn(i), attn_norm, &mut f);
        norm(NormSite::Mlp(i), mlp_norm, &mut f);
        lin(Site::layer(i, Slot::Q), q, &mut f);
        lin(Site::layer(i, Slot::K), k, &mut f);
        lin(Site::layer(i, Slot::V), v, &mut f);
        lin(Site::layer(i, Slot::O), o, &mut f);
        match mlp {
            Mlp::Gated { gate, up, down } => {
                lin(Site::layer(i, Slot::Gate), gate, &mut f);
                lin(Site::layer(i, Slot::Up), up, &mut f);
                lin(Site::layer(i, Slot::Down), down, &mut f);
            }
            Mlp::Plain { fc1, fc2 } => {
                lin(Site::layer(i, Slot::Fc1), fc1, &mut f);
                lin(Site::layer(i, Slot::Fc2), fc2, &mut f);
            }
        }
    }
}

/// θ + scale·Z(seed) built explicitly, each element `scale.mul_add(z, θ)`.
pub fn materialize_dense(model: &Model, seed: u64, scale: f32, dist: Dist) -> Model {
    let mut m = model.clone();
    for_each_param(&mut m, |p, data, _| {
        let z = z(dist, seed, p, role::DENSE, data.len());
        data.iter_mut()
            .zip(&z)
            .for_each(|(t, &z)| *t = scale.mul_add(z, *t));
    });
    m
}

/// The documented update, element by element: decay (weights only, when wd ≠ 0), then
/// `θ = c_d.mul_add(z_d, θ)`, `c_d = -(lr·g_d)/q`, for d in order.
pub fn explicit_update(
    theta: &mut [f32],
    zs: &[Vec<f32>],
    grads: &[f32],
    lr: f32,
    wd: Option<f32>,
) {
    let q = grads.len() as f32;
    for (i, t) in theta.iter_mut().enumerate() {
        if let Some(wd) = wd {
            *t = (-(lr * wd)).mul_add(*t, *t);
        }
        for (d, &g) in grads.iter().enumerate() {
            let c = -(lr * g) / q;
            *t = c.mul_add(zs[d][i], *t);
        }
    }
}

/// Bit patterns, so that -0.0 vs 0.0 and NaNs count as differences.
pub fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}
