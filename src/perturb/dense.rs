//! The dense family (MeZO): every parameter tensor of the model is perturbed by `s·Z`, with
//! `s = sign·ε` and `Z` drawn from the direction seed, role [`role::DENSE`], tensor id
//! [`Param::tensor_id`], element index row-major over the stored tensor (a Linear weight
//! `W[out][in]` at `i·in + j`, a bias or norm vector at `i`, an embedding `[rows][dim]` at
//! `row·dim + j`).
//!
//! Fused forward (no θ ± εZ copy ever exists), for the rows of each perturbed segment:
//!
//! - Linear: `y = fma(s, x·Zᵀ + z_b, y)` where `x·Zᵀ + z_b` is one GEMM with the bias
//!   stream as its initial value. Z is generated once per direction seed per call and shared by
//!   the `+` and `−` segments of that direction.
//! - Norm: the segment uses `w' = fma(s, z_w, w)`, `b' = fma(s, z_b, b)`.
//! - Embedding / learned positions: `x[row] = fma(s, Z[token or pos+2 row], x[row])`; only the
//!   rows the plan reads are generated (the RNG is counter-based).
//! - Head: `logits = fma(s, h·Z_headᵀ, logits)`, Z_head = the embedding's Z when tied
//!   ([`Param::Embed`]), else [`Param::Head`]; generated in vocabulary blocks to bound memory.
//!
//! Update of step record `rec` with `q = rec.seeds.len()` (the CUDA kernels reproduce it bit
//! for bit), for each element θ of each tensor:
//!
//! 1. weight matrices and embeddings only (never biases or norms), when `wd != 0`:
//!    `θ = (-(lr·wd)).mul_add(θ, θ)`;
//! 2. for d = 0..q in order: `c_d = -(lr·g_d) / q`, `θ = c_d.mul_add(z_d, θ)`.
//!
//! Tensors and element chunks run in parallel, but each element sees exactly this sequence.

use rayon::prelude::*;

use super::step_rule::Moments;
use super::{role, Dist, Family, FamilyConfig, Perturbation, Segment, StepRecord, UpdateConfig};
use crate::matmul::matmul_wt;
use crate::model::{Layer, Linear, Mlp, Model, Norm, NormSite, Param, Site, Slot};
use crate::{Error, Result};

/// Elements per rayon task in updates (a multiple of 4: tasks start on Philox block
/// boundaries, which saves a partial block; values do not depend on it).
const UPDATE_CHUNK: usize = 1 << 14;

/// Vocabulary rows of the head's Z generated at a time.
const HEAD_BLOCK: usize = 4096;

/// MeZO over every parameter.
#[derive(Debug, Clone)]
pub struct Dense {
    cfg: FamilyConfig,
    dist: Dist,
    moments: Moments,
}

impl Dense {
    /// `in_place` in the config only tells the trainer to perturb θ itself with
    /// [`perturb_in_place`] and score unperturbed plans; the fused hooks stay available (and
    /// exact) either way.
    pub fn new(cfg: FamilyConfig, dist: Dist, _model: &Model) -> Result<Dense> {
        match cfg {
            FamilyConfig::Dense { .. } => Ok(Dense {
                cfg,
                dist,
                moments: Moments::default(),
            }),
            other => Err(Error::Config(format!(
                "the dense family was built with a {:?} config; expected family \"dense\"",
                other.name()
            ))),
        }
    }

    pub fn dist(&self) -> Dist {
        self.dist
    }

    /// Z elements `start .. start + n` of tensor `param` for direction `seed`.
    fn z(&self, seed: u64, param: Param, start: u64, n: usize) -> Vec<f32> {
        let mut z = vec![0.0f32; n];
        self.dist
            .fill(seed, param.tensor_id(), role::DENSE, start, &mut z);
        z
    }
}

/// One parameter tensor to update: its RNG id, its elements, whether weight decay applies.
#[doc(hidden)]
pub struct Tensor<'a> {
    pub param: Param,
    pub tensor_id: u32,
    pub data: &'a mut [f32],
    pub decay: bool,
}

/// Every parameter tensor of `model` (a tied head is the embedding, listed once). Weight
/// matrices and embeddings carry `decay: true`; biases and norm parameters do not.
pub(crate) fn model_tensors(model: &mut Model) -> Vec<Tensor<'_>> {
    let mut out = Vec::new();
    let Model {
        embed,
        pos_embed,
        project_in,
        project_out,
        layers,
        final_norm,
        lm_head,
        ..
    } = model;
    out.push(tensor(Param::Embed, embed, true));
    if let Some(p) = pos_embed {
        out.push(tensor(Param::PosEmbed, p, true));
    }
    if let Some(l) = project_in {
        linear_tensors(&mut out, Site::model(Slot::ProjectIn), l);
    }
    if let Some(l) = project_out {
        linear_tensors(&mut out, Site::model(Slot::ProjectOut), l);
    }
    for (li, layer) in layers.iter_mut().enumerate() {
        let Layer {
            attn_norm,
            q,
            k,
            v,
            o,
            mlp_norm,
            mlp,
        } = layer;
        norm_tensors(&mut out, NormSite::Attn(li), attn_norm);
        linear_tensors(&mut out, Site::layer(li, Slot::Q), q);
        linear_tensors(&mut out, Site::layer(li, Slot::K), k);
        linear_tensors(&mut out, Site::layer(li, Slot::V), v);
        linear_tensors(&mut out, Site::layer(li, Slot::O), o);
        norm_tensors(&mut out, NormSite::Mlp(li), mlp_norm);
        match mlp {
            Mlp::Gated { gate, up, down } => {
                linear_tensors(&mut out, Site::layer(li, Slot::Gate), gate);
                linear_tensors(&mut out, Site::layer(li, Slot::Up), up);
                linear_tensors(&mut out, Site::layer(li, Slot::Down), down);
            }
            Mlp::Plain { fc1, fc2 } => {
                linear_tensors(&mut out, Site::layer(li, Slot::Fc1), fc1);
                linear_tensors(&mut out, Site::layer(li, Slot::Fc2), fc2);
            }
        }
    }
    if let Some(n) = final_norm {
        norm_tensors(&mut out, NormSite::Final, n);
    }
    if let Some(h) = lm_head {
        out.push(tensor(Param::Head, h, true));
    }
    out
}

fn tensor(p: Param, data: &mut [f32], decay: bool) -> Tensor<'_> {
    Tensor {
        param: p,
        tensor_id: p.tensor_id(),
        data,
        decay,
    }
}

fn linear_tensors<'a>(out: &mut Vec<Tensor<'a>>, site: Site, lin: &'a mut Linear) {
    out.push(tensor(Param::Weight(site), &mut lin.w, true));
    if let Some(b) = &mut lin.b {
        out.push(tensor(Param::Bias(site), b, false));
    }
}

fn norm_tensors<'a>(out: &mut Vec<Tensor<'a>>, site: NormSite, norm: &'a mut Norm) {
    if let Some(w) = &mut norm.w {
        out.push(tensor(Param::NormWeight(site), w, false));
    }
    if let Some(b) = &mut norm.b {
        out.push(tensor(Param::NormBias(site), b, false));
    }
}

/// For every element θ of every tensor: when `decay` is Some(λ) and the tensor is decayed,
/// `θ = (-λ).mul_add(θ, θ)`; then for each `(seed, c)` in order, `θ = c.mul_add(z, θ)` with
/// z from (seed, tensor id, `role`, element index). Parallel over chunks of every tensor; the
/// per-element sequence is fixed, so the result does not depend on the thread count.
#[doc(hidden)]
pub fn seeded_axpy(
    tensors: Vec<Tensor<'_>>,
    role: u32,
    dist: Dist,
    terms: &[(u64, f32)],
    decay: Option<f32>,
) {
    let flat = tensors
        .into_iter()
        .map(|t| (t.tensor_id, t.decay, t.data))
        .collect();
    seeded_axpy_flat(flat, role, dist, terms, decay)
}

/// [`seeded_axpy`] on `(tensor id, decayed, elements)` triples: tensors that are not the
/// model's (a caller's own weights through the C ABI).
pub fn seeded_axpy_flat(
    tensors: Vec<(u32, bool, &mut [f32])>,
    role: u32,
    dist: Dist,
    terms: &[(u64, f32)],
    decay: Option<f32>,
) {
    let chunks: Vec<(u32, bool, u64, &mut [f32])> = tensors
        .into_iter()
        .flat_map(|(id, decay, data)| {
            data.chunks_mut(UPDATE_CHUNK)
                .enumerate()
                .map(move |(i, c)| (id, decay, (i * UPDATE_CHUNK) as u64, c))
        })
        .collect();
    chunks
        .into_par_iter()
        .for_each(|(id, decayed, start, theta)| {
            if let (Some(lambda), true) = (decay, decayed) {
                let neg = -lambda;
                theta.iter_mut().for_each(|t| *t = neg.mul_add(*t, *t));
            }
            let mut z = vec![0.0f32; theta.len()];
            for &(seed, c) in terms {
                dist.fill(seed, id, role, start, &mut z);
                theta
                    .iter_mut()
                    .zip(&z)
                    .for_each(|(t, &z)| *t = c.mul_add(z, *t));
            }
        });
}

/// What [`seeded_axpy`] applies for one step record.
pub struct UpdateTerms {
    /// `(seed_d, c_d)` with `c_d = -(lr·g_d) / q`, in direction order.
    pub terms: Vec<(u64, f32)>,
    /// `lr·wd`; None when `wd == 0`, so θ is then untouched bit for bit.
    pub decay: Option<f32>,
}

/// Checks a step record against the family's distribution and returns its update terms.
pub fn update_terms(
    family: &str,
    rec: &StepRecord,
    cfg: &UpdateConfig,
    dist: Dist,
) -> Result<UpdateTerms> {
    // The update must regenerate the very Z the forward used.
    if cfg.dist != dist {
        return Err(Error::Config(format!(
            "{family} update: update config uses {:?} directions but the family perturbs with \
             {:?}; expected the same distribution",
            cfg.dist, dist
        )));
    }
    if rec.seeds.is_empty() || rec.seeds.len() != rec.grads.len() {
        return Err(Error::Data(format!(
            "{family} update of step {}: {} seeds and {} grads; expected the same non-zero number",
            rec.step,
            rec.seeds.len(),
            rec.grads.len()
        )));
    }
    if !rec.lr.is_finite() || !cfg.weight_decay.is_finite() {
        return Err(Error::Config(format!(
            "{family} update of step {}: lr {} and weight decay {}; expected finite values",
            rec.step, rec.lr, cfg.weight_decay
        )));
    }
    if let Some((d, g)) = rec.grads.iter().enumerate().find(|(_, g)| !g.is_finite()) {
        return Err(Error::Data(format!(
            "{family} update of step {}: grad {d} is {g}; expected a finite value",
            rec.step
        )));
    }
    let q = rec.seeds.len() as f32;
    let terms = rec
        .seeds
        .iter()
        .zip(&rec.grads)
        .map(|(&s, &g)| (s, -(rec.lr * g) / q))
        .collect();
    let decay = (cfg.weight_decay != 0.0).then_some(rec.lr * cfg.weight_decay);
    Ok(UpdateTerms { terms, decay })
}

/// Adds `scale·Z(seed)` to every parameter in fp32 as `θ = scale.mul_add(z, θ)`: MeZO's own
/// in-place perturbation, for exact parity with its trainer (+ε, score, −2ε, score, +ε).
///
/// Like MeZO's, that sequence restores θ only up to rounding (each fma rounds), so θ drifts by
/// an ulp here and there over a run; the fused variants never write θ at all.
pub fn perturb_in_place(model: &mut Model, seed: u64, scale: f32, dist: Dist) {
    seeded_axpy(
        model_tensors(model),
        role::DENSE,
        dist,
        &[(seed, scale)],
        None,
    );
}

/// Distinct seeds of `segs`, in order of first appearance.
fn seeds(segs: &[Segment]) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    for s in segs {
        if !out.contains(&s.seed) {
            out.push(s.seed);
        }
    }
    out
}

/// The segment holding packed row `r`, if any (segments are sorted and disjoint).
fn segment_of(segs: &[Segment], r: usize) -> Option<&Segment> {
    let k = segs.partition_point(|s| s.rows.end <= r);
    segs.get(k).filter(|s| s.rows.contains(&r))
}

/// `x[row] = fma(s, Z[index_row(row)], x[row])` for the rows of every segment, each row's Z
/// being `width` elements of tensor `param` starting at `index_row(row)·width`.
fn add_rows(
    dist: Dist,
    param: Param,
    x: &mut [f32],
    width: usize,
    segs: &[Segment],
    index_row: impl Fn(usize) -> usize + Sync,
) {
    let id = param.tensor_id();
    for seg in segs {
        let rows = &mut x[seg.rows.start * width..seg.rows.end * width];
        rows.par_chunks_mut(width).enumerate().for_each(|(i, row)| {
            let mut z = vec![0.0f32; width];
            let src = index_row(seg.rows.start + i);
            dist.fill(seg.seed, id, role::DENSE, (src * width) as u64, &mut z);
            row.iter_mut()
                .zip(&z)
                .for_each(|(x, &z)| *x = seg.scale.mul_add(z, *x));
        });
    }
}

impl Perturbation for Dense {
    fn linear(&self, site: Site, lin: &Linear, x: &[f32], y: &mut [f32], segs: &[Segment]) {
        let (n_in, n_out) = (lin.in_dim, lin.out_dim);
        for seed in seeds(segs) {
            let z = self.z(seed, Param::Weight(site), 0, n_out * n_in);
            let zb = lin
                .b
                .as_ref()
                .map(|_| self.z(seed, Param::Bias(site), 0, n_out));
            for seg in segs.iter().filter(|s| s.seed == seed) {
                let (r0, r1) = (seg.rows.start, seg.rows.end);
                let xs = &x[r0 * n_in..r1 * n_in];
                let t = matmul_wt(xs, &z, zb.as_deref(), r1 - r0, n_in, n_out);
                y[r0 * n_out..r1 * n_out]
                    .par_chunks_mut(n_out)
                    .zip(t.par_chunks(n_out))
                    .for_each(|(y, t)| {
                        y.iter_mut()
                            .zip(t)
                            .for_each(|(y, &t)| *y = seg.scale.mul_add(t, *y))
                    });
            }
        }
    }

    fn norm(&self, site: NormSite, norm: &Norm, seg: &Segment) -> Option<Norm> {
        if norm.w.is_none() && norm.b.is_none() {
            return None;
        }
        let shift = |p: Param, v: &Vec<f32>| {
            let z = self.z(seg.seed, p, 0, v.len());
            v.iter()
                .zip(&z)
                .map(|(&v, &z)| seg.scale.mul_add(z, v))
                .collect()
        };
        Some(Norm {
            w: norm.w.as_ref().map(|w| shift(Param::NormWeight(site), w)),
            b: norm.b.as_ref().map(|b| shift(Param::NormBias(site), b)),
            ..norm.clone()
        })
    }

    fn embed(&self, tokens: &[u32], x: &mut [f32], segs: &[Segment]) {
        let width = x.len() / tokens.len().max(1);
        add_rows(self.dist, Param::Embed, x, width, segs, |r| {
            tokens[r] as usize
        });
    }

    fn pos_embed(&self, positions: &[u32], x: &mut [f32], segs: &[Segment]) {
        let width = x.len() / positions.len().max(1);
        // OPT's learned positions are read at pos + 2 (see the forward pass).
        add_rows(self.dist, Param::PosEmbed, x, width, segs, |r| {
            positions[r] as usize + 2
        });
    }

    fn head(&self, model: &Model, h: &[f32], rows: &[u32], logits: &mut [f32], segs: &[Segment]) {
        let e = model.config.embed_dim;
        let vocab = model.config.vocab_size;
        let param = if model.lm_head.is_some() {
            Param::Head
        } else {
            Param::Embed
        };
        // (buffer row, s) of the gathered rows inside a segment, per direction seed.
        let marked: Vec<Option<&Segment>> =
            rows.iter().map(|&r| segment_of(segs, r as usize)).collect();
        for seed in seeds(segs) {
            let mine: Vec<(usize, f32)> = marked
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.filter(|s| s.seed == seed).map(|s| (i, s.scale)))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let hs: Vec<f32> = mine
                .iter()
                .flat_map(|&(i, _)| h[i * e..(i + 1) * e].iter().copied())
                .collect();
            for v0 in (0..vocab).step_by(HEAD_BLOCK) {
                let nb = HEAD_BLOCK.min(vocab - v0);
                let z = self.z(seed, param, (v0 * e) as u64, nb * e);
                let t = matmul_wt(&hs, &z, None, mine.len(), e, nb);
                for (k, &(i, s)) in mine.iter().enumerate() {
                    let dst = &mut logits[i * vocab + v0..][..nb];
                    dst.iter_mut()
                        .zip(&t[k * nb..(k + 1) * nb])
                        .for_each(|(l, &t)| *l = s.mul_add(t, *l));
                }
            }
        }
    }
}

impl Family for Dense {
    fn config(&self) -> &FamilyConfig {
        &self.cfg
    }

    fn update(&mut self, model: &mut Model, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        let u = update_terms("dense", rec, cfg, self.dist)?;
        if cfg.rule.is_stateless() {
            seeded_axpy(
                model_tensors(model),
                role::DENSE,
                self.dist,
                &u.terms,
                u.decay,
            );
        } else {
            let m = &mut self.moments;
            m.apply(
                cfg.rule,
                model_tensors(model),
                role::DENSE,
                self.dist,
                rec,
                u.decay,
            )?;
            m.finish_update();
        }
        Ok(())
    }

    fn merged(&self, model: &Model) -> Result<Model> {
        Ok(model.clone())
    }

    fn state_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        Vec::new()
    }

    fn clone_box(&self) -> Box<dyn Family> {
        Box::new(self.clone())
    }
}
