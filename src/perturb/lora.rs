//! The lora family: MeZO-LoRA.
//!
//! Each target slot (`cfg.targets`, e.g. q and v) of every layer carries trainable LoRA
//! factors `A` (r×in, element `k·in + j`) and `B` (out×r, element `i·r + k`) with scaling
//! `α/r`: `y += (α/r)·((x·Aᵀ)·Bᵀ)`. A perturbed segment (sign·ε = `sc`) runs with
//! `A + sc·Z_A` and `B + sc·Z_B`, the exact product including its `sc²` term, where `Z_A`
//! (role [`role::LORA_A`]) and `Z_B` (role [`role::LORA_B`]) follow the element order of A and
//! B and use the tensor id of `Param::Weight(site)`.
//!
//! # Initialisation (as PEFT's default)
//!
//! `A` is Kaiming-uniform with a = √5, i.e. uniform with bound `1/√in`: element e is
//! `bound * (2u − 1)` with `u = uniform_open0(raw(run seed, tensor id, LORA_INIT, e))` and
//! `bound = 1 / sqrt(in)` (f32 sqrt and divide); `2u − 1` is exact, so one rounding. The A/B
//! distinction lives in the role: only A has an init stream. `B = 0`.
//!
//! # Exact update (copied bit for bit by the device kernels)
//!
//! Per element θ of A and B: with weight decay `wd ≠ 0`, first `θ = (-(lr * wd)).mul_add(θ,
//! θ)`; then for each direction d ascending, `c_d = -(lr * g_d) / q` and `θ = c_d.mul_add(z_d,
//! θ)` with z_d the element of Z_A or Z_B.
//!
//! # Exact merge
//!
//! `w[i][j] = (α/r).mul_add(acc, w[i][j])` with `acc` from `0.0` by
//! `acc = B[i][k].mul_add(A[k][j], acc)` over ascending k; `α/r` is one f32 divide.

use std::collections::HashMap;

use rayon::prelude::*;

use super::dense::Tensor;
use super::lowrank::{
    check_record, complement, distinct_seeds, gemm_acc, merge_factors, shrink_ranges, site_name,
    Mat,
};
use super::step_rule::Moments;
use super::{role, Dist, Family, FamilyConfig, Perturbation, Segment, StepRecord, UpdateConfig};
use crate::model::{Arch, Linear, Model, Param, Site, Slot};
use crate::{Error, Result};

/// MeZO-LoRA adapters on the target slots of every layer.
#[derive(Clone)]
pub struct Lora {
    cfg: FamilyConfig,
    dist: Dist,
    arch: Arch,
    rank: usize,
    alpha: f32,
    /// α/r.
    scale: f32,
    targets: Vec<Slot>,
    sites: Vec<Site>,
    index: HashMap<Site, usize>,
    adapters: Vec<Adapter>,
    /// An update has landed, so B may be non-zero (B·A vanishes until then).
    b_live: bool,
    moments: Moments,
}

#[derive(Clone)]
struct Adapter {
    out_dim: usize,
    in_dim: usize,
    /// r×in.
    a: Vec<f32>,
    /// out×r.
    b: Vec<f32>,
}

impl Lora {
    /// Validates `cfg` for `model` and initialises A from `seed` (B = 0).
    pub fn new(cfg: FamilyConfig, dist: Dist, model: &Model, seed: u64) -> Result<Lora> {
        let FamilyConfig::Lora {
            rank,
            alpha,
            ref targets,
        } = cfg
        else {
            return Err(Error::Config(format!(
                "the lora family was given a {} configuration",
                cfg.name()
            )));
        };
        let arch = model.config.arch;
        if targets.is_empty() {
            return Err(Error::Config(
                "lora: no target modules; expected at least one of the layer's Linears".into(),
            ));
        }
        if !alpha.is_finite() {
            return Err(Error::Config(format!("lora: alpha {alpha} is not finite")));
        }
        let allowed = model.layer_slots();
        for (n, t) in targets.iter().enumerate() {
            if !allowed.contains(t) {
                let names: Vec<&str> = allowed.iter().map(|s| s.name()).collect();
                return Err(Error::Config(format!(
                    "lora: target {:?} is not a Linear of {arch:?} layers; expected one of {}",
                    t.name(),
                    names.join(", ")
                )));
            }
            if targets[..n].contains(t) {
                return Err(Error::Config(format!(
                    "lora: target {:?} is listed twice",
                    t.name()
                )));
            }
        }
        // Forward order within a layer, whatever order the config lists.
        let targets: Vec<Slot> = allowed
            .iter()
            .copied()
            .filter(|s| targets.contains(s))
            .collect();
        let sites: Vec<Site> = (0..model.layers.len())
            .flat_map(|l| targets.iter().map(move |&s| Site::layer(l, s)))
            .collect();
        let mut adapters = Vec::with_capacity(sites.len());
        for &site in &sites {
            let l = model.linear_at(site).ok_or_else(|| {
                Error::Config(format!("lora: the model has no {}", site_name(site)))
            })?;
            let max = l.out_dim.min(l.in_dim);
            if rank == 0 || rank > max {
                return Err(Error::Config(format!(
                    "lora: rank {rank} does not fit {} ({}×{} weight); expected 1..={max}",
                    site_name(site),
                    l.out_dim,
                    l.in_dim
                )));
            }
            adapters.push(Adapter {
                out_dim: l.out_dim,
                in_dim: l.in_dim,
                a: init_a(seed, site, rank, l.in_dim),
                b: vec![0.0; l.out_dim * rank],
            });
        }
        let index = sites.iter().enumerate().map(|(i, &s)| (s, i)).collect();
        Ok(Lora {
            dist,
            arch,
            rank,
            alpha,
            scale: alpha / rank as f32,
            targets,
            sites,
            index,
            adapters,
            b_live: false,
            moments: Moments::default(),
            cfg,
        })
    }

    /// The adapters as a PEFT LoRA checkpoint: HF module names, `lora_A.weight` `[r, in]` and
    /// `lora_B.weight` `[out, r]`, layers ascending.
    pub fn peft_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let prefix = match self.arch {
            Arch::Llama => "base_model.model.model.layers",
            Arch::Opt => "base_model.model.model.decoder.layers",
        };
        let mut out = Vec::with_capacity(2 * self.sites.len());
        for (&site, ad) in self.sites.iter().zip(&self.adapters) {
            let l = site.layer.expect("lora sites are layer sites");
            let module = hf_module(self.arch, site.slot);
            let name = format!("{prefix}.{l}.{module}");
            out.push((
                format!("{name}.lora_A.weight"),
                vec![self.rank, ad.in_dim],
                ad.a.clone(),
            ));
            out.push((
                format!("{name}.lora_B.weight"),
                vec![ad.out_dim, self.rank],
                ad.b.clone(),
            ));
        }
        out
    }

    /// PEFT's `adapter_config.json` for [`Lora::peft_tensors`].
    pub fn peft_config_json(&self, base_model_name: &str) -> serde_json::Value {
        let modules: Vec<&str> = self
            .targets
            .iter()
            .map(|&s| {
                let m = hf_module(self.arch, s);
                m.rsplit('.').next().unwrap_or(m)
            })
            .collect();
        serde_json::json!({
            "base_model_name_or_path": base_model_name,
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": self.rank,
            "lora_alpha": self.alpha,
            "lora_dropout": 0.0,
            "target_modules": modules,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
        })
    }
}

/// The full HF module name of a Linear: `model.layers.0.self_attn.q_proj` (Llama),
/// `model.decoder.layers.0.fc1` or `model.decoder.project_in` (OPT).
pub fn hf_module_path(arch: Arch, site: Site) -> String {
    let stem = match arch {
        Arch::Llama => "model",
        Arch::Opt => "model.decoder",
    };
    let module = hf_module(arch, site.slot);
    match site.layer {
        Some(l) => format!("{stem}.layers.{l}.{module}"),
        None => format!("{stem}.{module}"),
    }
}

/// The HF module path of a slot inside a decoder layer.
fn hf_module(arch: Arch, slot: Slot) -> &'static str {
    match (arch, slot) {
        (_, Slot::Q) => "self_attn.q_proj",
        (_, Slot::K) => "self_attn.k_proj",
        (_, Slot::V) => "self_attn.v_proj",
        (Arch::Llama, Slot::O) => "self_attn.o_proj",
        (Arch::Opt, Slot::O) => "self_attn.out_proj",
        (_, Slot::Gate) => "mlp.gate_proj",
        (_, Slot::Up) => "mlp.up_proj",
        (_, Slot::Down) => "mlp.down_proj",
        (_, Slot::Fc1) => "fc1",
        (_, Slot::Fc2) => "fc2",
        (_, Slot::ProjectIn) => "project_in",
        (_, Slot::ProjectOut) => "project_out",
    }
}

/// A (r×in), uniform in (−1/√in, 1/√in] from the run seed (see the module docs); the twin of
/// the device init (`zo_init_<T>`, kind uniform).
#[doc(hidden)]
pub fn init_a(seed: u64, site: Site, r: usize, n_in: usize) -> Vec<f32> {
    let stream = crate::rng::Stream::new(seed, Param::Weight(site).tensor_id(), role::LORA_INIT);
    let mut raw = vec![0u32; r * n_in];
    stream.fill_raw(0, &mut raw);
    let bound = 1.0 / (n_in as f32).sqrt();
    raw.into_iter()
        .map(|x| bound * (2.0 * crate::rng::uniform_open0(x) - 1.0))
        .collect()
}

impl Perturbation for Lora {
    fn linear(&self, site: Site, lin: &Linear, x: &[f32], y: &mut [f32], segs: &[Segment]) {
        let Some(&ai) = self.index.get(&site) else {
            return;
        };
        if !self.b_live && segs.is_empty() {
            return;
        }
        let ad = &self.adapters[ai];
        let (r, n_in, out) = (self.rank, lin.in_dim, lin.out_dim);
        debug_assert_eq!((out, n_in), (ad.out_dim, ad.in_dim));
        let rows = y.len() / out;
        let seeds = distinct_seeds(segs);
        let tid = Param::Weight(site).tensor_id();
        // Z_A and Z_B once per direction, shared by its + and − segments.
        let zs: Vec<(Vec<f32>, Vec<f32>)> = seeds
            .par_iter()
            .map(|&seed| {
                let mut za = vec![0.0; r * n_in];
                let mut zb = vec![0.0; out * r];
                self.dist.fill(seed, tid, role::LORA_A, 0, &mut za);
                self.dist.fill(seed, tid, role::LORA_B, 0, &mut zb);
                (za, zb)
            })
            .collect();
        // A and Z_A read as [in][r] (element (j, k) at k·in + j); B and B' as [r][out].
        let shrink_rows = shrink_ranges(self.b_live, segs, rows);
        let mut h = vec![0.0f32; rows * r];
        for rg in &shrink_rows {
            gemm_acc(
                &mut h[rg.start * r..rg.end * r],
                &x[rg.start * n_in..rg.end * n_in],
                Mat::new(&ad.a, n_in, r, 1, n_in),
                1.0,
            );
        }
        if self.b_live {
            for rg in complement(segs, rows) {
                gemm_acc(
                    &mut y[rg.start * out..rg.end * out],
                    &h[rg.start * r..rg.end * r],
                    Mat::new(&ad.b, r, out, 1, r),
                    self.scale,
                );
            }
        }
        for seg in segs {
            let (za, zb) = &zs[seeds.iter().position(|&s| s == seg.seed).unwrap()];
            let (rg, sc) = (&seg.rows, seg.scale);
            // x·(A + sc·Z_A)ᵀ, then the expand with B + sc·Z_B: the exact product.
            let mut hp = h[rg.start * r..rg.end * r].to_vec();
            gemm_acc(
                &mut hp,
                &x[rg.start * n_in..rg.end * n_in],
                Mat::new(za, n_in, r, 1, n_in),
                sc,
            );
            let bp: Vec<f32> = ad.b.iter().zip(zb).map(|(&b, &z)| b + sc * z).collect();
            gemm_acc(
                &mut y[rg.start * out..rg.end * out],
                &hp,
                Mat::new(&bp, r, out, 1, r),
                self.scale,
            );
        }
    }
}

impl Lora {
    /// ZO-SGD momentum or ZO-Adam on A and B (see [`super::step_rule`]).
    fn update_with_moments(&mut self, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        let decay = (cfg.weight_decay != 0.0).then_some(rec.lr * cfg.weight_decay);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (&site, ad) in self.sites.iter().zip(self.adapters.iter_mut()) {
            let param = Param::Weight(site);
            let tensor_id = param.tensor_id();
            for (data, out) in [(&mut ad.a, &mut a), (&mut ad.b, &mut b)] {
                out.push(Tensor {
                    param,
                    tensor_id,
                    data,
                    decay: true,
                });
            }
        }
        let m = &mut self.moments;
        m.apply(cfg.rule, a, role::LORA_A, self.dist, rec, decay)?;
        m.apply(cfg.rule, b, role::LORA_B, self.dist, rec, decay)?;
        m.finish_update();
        self.b_live = true;
        Ok(())
    }
}

impl Family for Lora {
    fn config(&self) -> &FamilyConfig {
        &self.cfg
    }

    fn update(&mut self, _model: &mut Model, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        check_record(rec, cfg, self.dist, "lora")?;
        if !cfg.rule.is_stateless() {
            return self.update_with_moments(rec, cfg);
        }
        let q = rec.seeds.len() as f32;
        let lr = rec.lr;
        let decay = -(lr * cfg.weight_decay);
        let wd = cfg.weight_decay != 0.0;
        let dist = self.dist;
        self.sites
            .par_iter()
            .zip(self.adapters.par_iter_mut())
            .for_each(|(&site, ad)| {
                let tid = Param::Weight(site).tensor_id();
                for (p, role) in [(&mut ad.a, role::LORA_A), (&mut ad.b, role::LORA_B)] {
                    if wd {
                        p.iter_mut().for_each(|t| *t = decay.mul_add(*t, *t));
                    }
                    let mut z = vec![0.0f32; p.len()];
                    for (&seed, &g) in rec.seeds.iter().zip(&rec.grads) {
                        dist.fill(seed, tid, role, 0, &mut z);
                        let c = -(lr * g) / q;
                        for (t, &zz) in p.iter_mut().zip(&z) {
                            *t = c.mul_add(zz, *t);
                        }
                    }
                }
            });
        self.b_live = true;
        Ok(())
    }

    fn merged(&self, model: &Model) -> Result<Model> {
        let mut m = model.clone();
        let r = self.rank;
        for (&site, ad) in self.sites.iter().zip(&self.adapters) {
            let l = m.linear_at_mut(site).ok_or_else(|| {
                Error::Config(format!("lora: the model has no {}", site_name(site)))
            })?;
            if (l.out_dim, l.in_dim) != (ad.out_dim, ad.in_dim) {
                return Err(Error::tensor(
                    site_name(site),
                    format!(
                        "weight is {}×{} but the adapter was built for {}×{}",
                        l.out_dim, l.in_dim, ad.out_dim, ad.in_dim
                    ),
                ));
            }
            merge_factors(&mut l.w, self.scale, &ad.b, &ad.a, r, ad.in_dim);
        }
        Ok(m)
    }

    /// `layers.{l}.{slot}.lora_a` `[r, in]` and `.lora_b` `[out, r]`.
    fn state_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut out = Vec::with_capacity(2 * self.sites.len());
        for (&site, ad) in self.sites.iter().zip(&self.adapters) {
            out.push((
                format!("{}.lora_a", site_name(site)),
                vec![self.rank, ad.in_dim],
                ad.a.clone(),
            ));
            out.push((
                format!("{}.lora_b", site_name(site)),
                vec![ad.out_dim, self.rank],
                ad.b.clone(),
            ));
        }
        out
    }

    fn clone_box(&self) -> Box<dyn Family> {
        Box::new(self.clone())
    }
}
