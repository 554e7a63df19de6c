//! The prefix family (MeZO-prefix): each layer holds `tokens` trainable key and value
//! positions, `[tokens][kv_heads·head_dim]` each, that every sequence attends to before its
//! own tokens (all prefix positions visible to every query, causal within the sequence).
//!
//! Conventions (the CUDA kernels follow them):
//!
//! - Prefix keys are used as stored: no rotary embedding is applied to them, and the
//!   sequence's own positions stay 0-based (as without a prefix). Since RoPE at position 0 is
//!   the identity, a stored key acts as a key at position 0 for every query; the prefix is a
//!   free trainable vector either way, and leaving it unrotated keeps it one tensor shared by
//!   all sequences whatever their length.
//! - A perturbed segment reads `K' = fma(s, z_K, K)` and `V' = fma(s, z_V, V)` elementwise,
//!   `s = sign·ε`, z from (direction seed, [`Param::PrefixKey`]/[`Param::PrefixValue`] of the
//!   layer, role [`role::PREFIX`], index `t·kv_width + c`).
//! - Update: as the dense family ([`super::dense`]): weight decay `θ = (-(lr·wd)).mul_add(θ, θ)`
//!   first when `wd != 0` (prefix keys and values count as weights), then
//!   `θ = c_d.mul_add(z_d, θ)` with `c_d = -(lr·g_d)/q` for d = 0..q in order.
//!
//! Initialisation. MeZO's reference initialises the prefix from the model's own keys and values
//! of a few random tokens. Here the initial prefix is part of the trained state that a seed log
//! must replay bit for bit on any backend, and a forward pass is not bit-reproducible across
//! backends, so the prefix is drawn from the run seed instead and scaled to the magnitude the
//! layer's own projections produce:
//!
//!   `K[t][c] = σ_K · z`, z standard normal (Gaussian whatever the direction distribution) from (run seed, PrefixKey(layer), role [`role::PREFIX_INIT`],
//!   index `t·kv_width + c`), `σ_K = sqrt(Σ W_K² / kv_width)` (f64, summed in storage order,
//!   rounded to f32 once; `σ_K·z` one f32 product), likewise V with W_V.
//!
//! `σ` is the standard deviation of a key entry for an input with unit-variance entries (what
//! a normalised hidden state has), so prefix scores start on the scale of the sequence's own.
//! [`Prefix::with_state`] installs any other initial prefix (e.g. real activations).

use super::dense::{seeded_axpy, update_terms, Tensor};
use super::step_rule::Moments;
use super::{role, Dist, Family, FamilyConfig, Perturbation, Segment, StepRecord, UpdateConfig};
use crate::model::{Model, Param};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct Prefix {
    cfg: FamilyConfig,
    dist: Dist,
    tokens: usize,
    kv_width: usize,
    /// Per layer `[tokens][kv_width]`.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    moments: Moments,
}

impl Prefix {
    /// A prefix initialised from `seed` (see the module notes).
    pub fn new(cfg: FamilyConfig, dist: Dist, model: &Model, seed: u64) -> Result<Prefix> {
        let (tokens, kv_width) = shape(&cfg, model)?;
        let init = |w: &[f32], p: Param| {
            let sum_sq: f64 = w.iter().map(|&x| x as f64 * x as f64).sum();
            let sigma = (sum_sq / kv_width as f64).sqrt() as f32;
            let mut z = vec![0.0f32; tokens * kv_width];
            Dist::Gaussian.fill(seed, p.tensor_id(), role::PREFIX_INIT, 0, &mut z);
            z.iter_mut().for_each(|z| *z *= sigma);
            z
        };
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for (li, layer) in model.layers.iter().enumerate() {
            keys.push(init(&layer.k.w, Param::PrefixKey(li)));
            values.push(init(&layer.v.w, Param::PrefixValue(li)));
        }
        Ok(Prefix {
            cfg,
            dist,
            tokens,
            kv_width,
            keys,
            values,
            moments: Moments::default(),
        })
    }

    /// A prefix with the given keys and values, one `[tokens][kv_heads·head_dim]` pair per layer
    /// (checkpoint restore, custom initialisation, tests).
    pub fn with_state(
        cfg: FamilyConfig,
        dist: Dist,
        model: &Model,
        keys: Vec<Vec<f32>>,
        values: Vec<Vec<f32>>,
    ) -> Result<Prefix> {
        let (tokens, kv_width) = shape(&cfg, model)?;
        let layers = model.layers.len();
        for (what, t) in [("prefix_key", &keys), ("prefix_value", &values)] {
            if t.len() != layers {
                return Err(Error::tensor(
                    what,
                    format!("{} layers given; the model has {layers}", t.len()),
                ));
            }
            if let Some((li, x)) = t
                .iter()
                .enumerate()
                .find(|(_, x)| x.len() != tokens * kv_width)
            {
                return Err(Error::tensor(
                    format!("layers.{li}.{what}"),
                    format!(
                        "{} elements; expected [{tokens}][{kv_width}] = {}",
                        x.len(),
                        tokens * kv_width
                    ),
                ));
            }
        }
        Ok(Prefix {
            cfg,
            dist,
            tokens,
            kv_width,
            keys,
            values,
            moments: Default::default(),
        })
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Per layer `[tokens][kv_heads·head_dim]`.
    pub fn keys(&self) -> &[Vec<f32>] {
        &self.keys
    }

    pub fn values(&self) -> &[Vec<f32>] {
        &self.values
    }

    fn perturbed(&self, x: &[f32], seed: u64, p: Param, scale: f32) -> Vec<f32> {
        let mut z = vec![0.0f32; x.len()];
        self.dist.fill(seed, p.tensor_id(), role::PREFIX, 0, &mut z);
        x.iter()
            .zip(&z)
            .map(|(&x, &z)| scale.mul_add(z, x))
            .collect()
    }
}

/// `(tokens, kv_heads·head_dim)` of a prefix config on `model`.
fn shape(cfg: &FamilyConfig, model: &Model) -> Result<(usize, usize)> {
    let FamilyConfig::Prefix { tokens } = *cfg else {
        return Err(Error::Config(format!(
            "the prefix family was built with a {:?} config; expected family \"prefix\"",
            cfg.name()
        )));
    };
    if tokens == 0 {
        return Err(Error::Config(
            "prefix family: tokens = 0; expected at least one prefix position per layer".into(),
        ));
    }
    let c = &model.config;
    Ok((tokens, c.num_kv_heads * c.head_dim))
}

impl Perturbation for Prefix {
    fn prefix(&self, layer: usize, seg: Option<&Segment>) -> Option<(Vec<f32>, Vec<f32>)> {
        let (k, v) = (self.keys.get(layer)?, self.values.get(layer)?);
        Some(match seg {
            None => (k.clone(), v.clone()),
            Some(s) => (
                self.perturbed(k, s.seed, Param::PrefixKey(layer), s.scale),
                self.perturbed(v, s.seed, Param::PrefixValue(layer), s.scale),
            ),
        })
    }
}

impl Family for Prefix {
    fn config(&self) -> &FamilyConfig {
        &self.cfg
    }

    fn update(&mut self, _model: &mut Model, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        let u = update_terms("prefix", rec, cfg, self.dist)?;
        let mut tensors = Vec::new();
        for (li, (k, v)) in self.keys.iter_mut().zip(&mut self.values).enumerate() {
            for (p, data) in [(Param::PrefixKey(li), k), (Param::PrefixValue(li), v)] {
                tensors.push(Tensor {
                    param: p,
                    tensor_id: p.tensor_id(),
                    data,
                    decay: true,
                });
            }
        }
        if cfg.rule.is_stateless() {
            seeded_axpy(tensors, role::PREFIX, self.dist, &u.terms, u.decay);
        } else {
            let m = &mut self.moments;
            m.apply(cfg.rule, tensors, role::PREFIX, self.dist, rec, u.decay)?;
            m.finish_update();
        }
        Ok(())
    }

    fn merged(&self, _model: &Model) -> Result<Model> {
        Err(Error::Unsupported(
            "the prefix family cannot be merged into the weights: a prefix is extra attention \
             positions, not a change of any weight; export its state tensors instead"
                .into(),
        ))
    }

    fn state_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let shape = vec![self.tokens, self.kv_width];
        let mut out = Vec::with_capacity(2 * self.keys.len());
        for (li, (k, v)) in self.keys.iter().zip(&self.values).enumerate() {
            out.push((format!("layers.{li}.prefix_key"), shape.clone(), k.clone()));
            out.push((
                format!("layers.{li}.prefix_value"),
                shape.clone(),
                v.clone(),
            ));
        }
        out
    }

    fn clone_box(&self) -> Box<dyn Family> {
        Box::new(self.clone())
    }
}
