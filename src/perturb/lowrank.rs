//! The lowrank family: LoZO and LoZO-M.
//!
//! Every Linear of the transformer blocks (not ProjectIn/ProjectOut, embeddings, norms,
//! biases) is perturbed by `Z = s·U·Vᵀ` with `s` = 1 ([`LowRankScale::Plain`]) or `1/√r`
//! ([`LowRankScale::InvSqrtRank`]). `Uᵀ` (r×out, element `k·out + i`) comes from the step's
//! direction seed under role [`role::LOWRANK_U`]; `Vᵀ` (r×in, element `k·in + j`) from the
//! period seed under role [`role::LOWRANK_V`]; both use the tensor id of
//! `Param::Weight(site)`.
//!
//! # Trained state
//!
//! Within a period V is fixed, so every update `−lr·g·s·U·Vᵀ` lies in the span of V and is
//! accumulated in an fp32 *bank* per Linear, stored transposed like `Uᵀ`: `bankᵀ` is r×out,
//! element `k·out + i`, so a bank update is one flat elementwise fma against `Uᵀ`. The
//! effective weight is `W + s·bank·Vᵀ`; the forward adds `s·(x·V)·bankᵀ` to every row. At a
//! period switch the bank is merged into W and zeroed (see [`LowRank::begin_step`]).
//!
//! # Exact update (copied bit for bit by the device kernels)
//!
//! With `q = rec.seeds.len()` and `u_d` the element of `Uᵀ_d`, per bank element, directions
//! ascending:
//! - LoZO: `c_d = -(lr * g_d) / q`, `bank = c_d.mul_add(u_d, bank)`.
//! - LoZO-M (momentum β, `mᵀ` r×out like the bank): `m = β * m`, then per direction
//!   `m = a_d.mul_add(u_d, m)` with `a_d = ((1 - β) * g_d) / q`, except on the very first
//!   update of a run, where `a_d = g_d / q` (the momentum starts at the first estimate instead
//!   of `(1 − β)` of it, as LoZO-M's reference trainer does); then `bank = (-lr).mul_add(m,
//!   bank)`. This is the paper's form: `M ← βM + (1 − β)·g·U` in the rank-r space and
//!   `W ← W − lr·M·Vᵀ`.
//!
//! # Exact merge
//!
//! `w[i][j] = s.mul_add(acc, w[i][j])` where `acc` starts at `0.0` and runs
//! `acc = bankᵀ[k][i].mul_add(Vᵀ[k][j], acc)` for k ascending. Merges happen only when an
//! update landed since V was last set (a zero bank is not merged).
//!
//! # Momentum across a V refresh
//!
//! LoZO-M's reference trainer keeps the momentum in the r-dimensional coordinates of the old
//! V; when V is redrawn it re-expresses the momentum in the new coordinates by projecting it,
//! `M ← M·V_oldᵀ·V_new / n` with n the input width (V's columns are nearly orthogonal with
//! squared norm ≈ n, so this is the least-squares change of basis). We do the same at the
//! switch, before the next step's `β·m`:
//! `P[k][l] = (Σ_j Vᵀ_old[k][j]·Vᵀ_new[l][j]) / in` (fma chain over ascending j, then one
//! f32 divide) and `mᵀ_new[l][i] = Σ_k mᵀ[k][i]·P[k][l]` (fma chain over ascending k).

use std::collections::HashMap;

use rayon::prelude::*;

use super::UpdateConfig;
use super::{role, Dist, Family, FamilyConfig, LowRankScale, Perturbation, Segment, StepRecord};
use crate::model::{Linear, Mlp, Model, Param, Site, Slot};
use crate::{Error, Result};

/// LoZO / LoZO-M on every block Linear.
#[derive(Clone)]
pub struct LowRank {
    cfg: FamilyConfig,
    dist: Dist,
    rank: usize,
    period: u64,
    /// `s`: 1 or 1/√r.
    scale: f32,
    momentum: Option<f32>,
    sites: Vec<Site>,
    index: HashMap<Site, usize>,
    lin: Vec<LinState>,
    /// Seed of the current V.
    period_seed: u64,
    /// An update landed since V was last set, so the bank may be non-zero.
    dirty: bool,
    /// The momentum holds an estimate (LoZO-M after its first update).
    momentum_started: bool,
}

#[derive(Clone)]
struct LinState {
    out_dim: usize,
    in_dim: usize,
    /// Vᵀ, r×in.
    vt: Vec<f32>,
    /// bankᵀ, r×out.
    bank: Vec<f32>,
    /// mᵀ, r×out (empty without momentum).
    mom: Vec<f32>,
}

impl LowRank {
    /// Validates `cfg` against every block Linear of `model`. V starts from period seed 0
    /// until [`Family::begin_step`] names another.
    pub fn new(cfg: FamilyConfig, dist: Dist, model: &Model) -> Result<LowRank> {
        let FamilyConfig::LowRank {
            rank,
            period,
            scale,
            momentum,
        } = cfg
        else {
            return Err(Error::Config(format!(
                "the lowrank family was given a {} configuration",
                cfg.name()
            )));
        };
        if period == 0 {
            return Err(Error::Config(
                "lowrank: period must be at least 1 step (it is the number of steps between V refreshes)".into(),
            ));
        }
        if let Some(b) = momentum {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::Config(format!(
                    "lowrank: momentum {b} is outside [0, 1)"
                )));
            }
        }
        let sites = block_sites(model);
        let mut lin = Vec::with_capacity(sites.len());
        for &site in &sites {
            let l = linear_at(model, site).expect("block_sites lists existing Linears");
            let max = l.out_dim.min(l.in_dim);
            if rank == 0 || rank > max {
                return Err(Error::Config(format!(
                    "lowrank: rank {rank} does not fit {} ({}×{} weight); expected 1..={max}",
                    site_name(site),
                    l.out_dim,
                    l.in_dim
                )));
            }
            lin.push(LinState {
                out_dim: l.out_dim,
                in_dim: l.in_dim,
                vt: Vec::new(),
                bank: vec![0.0; rank * l.out_dim],
                mom: if momentum.is_some() {
                    vec![0.0; rank * l.out_dim]
                } else {
                    Vec::new()
                },
            });
        }
        let index = sites.iter().enumerate().map(|(i, &s)| (s, i)).collect();
        let mut f = LowRank {
            dist,
            rank,
            period,
            scale: match scale {
                LowRankScale::Plain => 1.0,
                LowRankScale::InvSqrtRank => 1.0 / (rank as f32).sqrt(),
            },
            momentum,
            sites,
            index,
            lin,
            period_seed: 0,
            dirty: false,
            momentum_started: false,
            cfg,
        };
        let v0 = f.fresh_v(0);
        for (st, vt) in f.lin.iter_mut().zip(v0) {
            st.vt = vt;
        }
        Ok(f)
    }

    /// The seed of the current V.
    pub fn period_seed(&self) -> u64 {
        self.period_seed
    }

    /// Vᵀ of every Linear drawn from `seed`.
    fn fresh_v(&self, seed: u64) -> Vec<Vec<f32>> {
        let r = self.rank;
        self.sites
            .par_iter()
            .zip(&self.lin)
            .map(|(&site, st)| {
                let mut vt = vec![0.0; r * st.in_dim];
                let tid = Param::Weight(site).tensor_id();
                self.dist.fill(seed, tid, role::LOWRANK_V, 0, &mut vt);
                vt
            })
            .collect()
    }

    /// Folds `s·bank·Vᵀ` of every Linear into `model` (the documented merge order).
    fn merge_into(&self, model: &mut Model) {
        for (&site, st) in self.sites.iter().zip(&self.lin) {
            let l = linear_at_mut(model, site).expect("the family was built for this model");
            assert_eq!(
                (l.out_dim, l.in_dim),
                (st.out_dim, st.in_dim),
                "{}: weight shape changed since the family was built",
                site_name(site)
            );
            merge_low_rank(&mut l.w, self.scale, &st.bank, &st.vt, self.rank, st.in_dim);
        }
    }
}

/// `w[i][j] = s.mul_add(Σ_k bt[k][i]·vt[k][j], w[i][j])`, the sum an fma chain over ascending
/// k from 0. `bt` is r×out, `vt` r×in, `w` out×in.
pub(crate) fn merge_low_rank(w: &mut [f32], s: f32, bt: &[f32], vt: &[f32], r: usize, n_in: usize) {
    let out = bt.len() / r;
    w.par_chunks_mut(n_in).enumerate().for_each(|(i, row)| {
        for (j, wij) in row.iter_mut().enumerate() {
            let mut acc = 0.0f32;
            for k in 0..r {
                acc = bt[k * out + i].mul_add(vt[k * n_in + j], acc);
            }
            *wij = s.mul_add(acc, *wij);
        }
    });
}

impl Perturbation for LowRank {
    fn linear(&self, site: Site, lin: &Linear, x: &[f32], y: &mut [f32], segs: &[Segment]) {
        let Some(&li) = self.index.get(&site) else {
            return;
        };
        if !self.dirty && segs.is_empty() {
            return;
        }
        let st = &self.lin[li];
        let (r, n_in, out) = (self.rank, lin.in_dim, lin.out_dim);
        debug_assert_eq!((out, n_in), (st.out_dim, st.in_dim));
        let rows = y.len() / out;
        let row_seg = row_segments(segs, rows);
        // Uᵀ once per direction: the + and − segments of a direction share it.
        let seeds = distinct_seeds(segs);
        let uts: Vec<Vec<f32>> = seeds
            .par_iter()
            .map(|&seed| {
                let mut ut = vec![0.0; r * out];
                let tid = Param::Weight(site).tensor_id();
                self.dist.fill(seed, tid, role::LOWRANK_U, 0, &mut ut);
                ut
            })
            .collect();
        let dirty = self.dirty;
        // The shrink x·V, once per row that needs it, shared by the bank and every direction.
        let xv = shrink(x, n_in, &st.vt, r, |t| dirty || row_seg[t].is_some());
        let s = self.scale;
        y.par_chunks_mut(out).enumerate().for_each(|(t, yr)| {
            let h = &xv[t * r..][..r];
            let pert = row_seg[t].map(|si| {
                let seg = &segs[si];
                let d = seeds.iter().position(|&sd| sd == seg.seed).unwrap();
                (seg.scale, &uts[d])
            });
            if !dirty && pert.is_none() {
                return;
            }
            for (i, yi) in yr.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                if dirty {
                    for k in 0..r {
                        acc += h[k] * st.bank[k * out + i];
                    }
                }
                if let Some((sc, ut)) = pert {
                    let mut p = 0.0f32;
                    for k in 0..r {
                        p += h[k] * ut[k * out + i];
                    }
                    acc += sc * p;
                }
                *yi += s * acc;
            }
        });
    }
}

impl Family for LowRank {
    fn config(&self) -> &FamilyConfig {
        &self.cfg
    }

    /// Switches V when the period seed changes: merges the bank into W (if any update landed
    /// since the last switch), zeroes it, projects the momentum onto the new V and redraws V.
    /// Without a period seed, the seed is the period index `step / period`.
    fn begin_step(&mut self, model: &mut Model, step: u64, period_seed: Option<u64>) {
        let seed = period_seed.unwrap_or(step / self.period);
        if seed == self.period_seed {
            return;
        }
        if self.dirty {
            self.merge_into(model);
            for st in &mut self.lin {
                st.bank.iter_mut().for_each(|b| *b = 0.0);
            }
        }
        let fresh = self.fresh_v(seed);
        if self.momentum_started {
            let r = self.rank;
            for (st, new) in self.lin.iter_mut().zip(&fresh) {
                let p = change_of_basis(&st.vt, new, r, st.in_dim);
                st.mom = project_momentum(&st.mom, &p, r);
            }
        }
        for (st, new) in self.lin.iter_mut().zip(fresh) {
            st.vt = new;
        }
        self.period_seed = seed;
        self.dirty = false;
    }

    fn update(&mut self, _model: &mut Model, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        check_record(rec, cfg, self.dist, "lowrank")?;
        if cfg.weight_decay != 0.0 {
            return Err(Error::Unsupported(format!(
                "lowrank: weight decay {} (LoZO trains without weight decay; set it to 0)",
                cfg.weight_decay
            )));
        }
        if let Some(p) = rec.period_seed {
            if p != self.period_seed {
                return Err(Error::Data(format!(
                    "step {}: record has period seed {p} but the current V is from seed {}; \
                     begin_step must switch V before the step is scored",
                    rec.step, self.period_seed
                )));
            }
        }
        let q = rec.seeds.len() as f32;
        let lr = rec.lr;
        let (r, dist) = (self.rank, self.dist);
        let momentum = self.momentum;
        let first = !self.momentum_started;
        self.sites
            .par_iter()
            .zip(self.lin.par_iter_mut())
            .for_each(|(&site, st)| {
                let tid = Param::Weight(site).tensor_id();
                let mut ut = vec![0.0f32; r * st.out_dim];
                match momentum {
                    None => {
                        for (&seed, &g) in rec.seeds.iter().zip(&rec.grads) {
                            dist.fill(seed, tid, role::LOWRANK_U, 0, &mut ut);
                            let c = -(lr * g) / q;
                            for (b, &u) in st.bank.iter_mut().zip(&ut) {
                                *b = c.mul_add(u, *b);
                            }
                        }
                    }
                    Some(beta) => {
                        st.mom.iter_mut().for_each(|m| *m *= beta);
                        for (&seed, &g) in rec.seeds.iter().zip(&rec.grads) {
                            dist.fill(seed, tid, role::LOWRANK_U, 0, &mut ut);
                            let a = if first { g / q } else { ((1.0 - beta) * g) / q };
                            for (m, &u) in st.mom.iter_mut().zip(&ut) {
                                *m = a.mul_add(u, *m);
                            }
                        }
                        for (b, &m) in st.bank.iter_mut().zip(&st.mom) {
                            *b = (-lr).mul_add(m, *b);
                        }
                    }
                }
            });
        self.dirty = true;
        self.momentum_started |= momentum.is_some();
        Ok(())
    }

    fn merged(&self, model: &Model) -> Result<Model> {
        let mut m = model.clone();
        for (&site, st) in self.sites.iter().zip(&self.lin) {
            let l = linear_at(&m, site).ok_or_else(|| {
                Error::Config(format!("lowrank: the model has no {}", site_name(site)))
            })?;
            if (l.out_dim, l.in_dim) != (st.out_dim, st.in_dim) {
                return Err(Error::tensor(
                    site_name(site),
                    format!(
                        "weight is {}×{} but the family was built for {}×{}",
                        l.out_dim, l.in_dim, st.out_dim, st.in_dim
                    ),
                ));
            }
        }
        if self.dirty {
            self.merge_into(&mut m);
        }
        Ok(m)
    }

    /// `layers.{l}.{slot}.bank` (and `.momentum` for LoZO-M), each `[r, out]`: stored
    /// transposed, element `k·out + i` is row i, rank component k.
    fn state_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut out = Vec::new();
        for (&site, st) in self.sites.iter().zip(&self.lin) {
            let shape = vec![self.rank, st.out_dim];
            out.push((
                format!("{}.bank", site_name(site)),
                shape.clone(),
                st.bank.clone(),
            ));
            if self.momentum.is_some() {
                out.push((
                    format!("{}.momentum", site_name(site)),
                    shape,
                    st.mom.clone(),
                ));
            }
        }
        out
    }

    fn clone_box(&self) -> Box<dyn Family> {
        Box::new(self.clone())
    }
}

/// `P = Vᵀ_old·Vᵀ_newᵀ / in` (r×r, element `k·r + l`), each sum an fma chain over ascending j.
fn change_of_basis(old: &[f32], new: &[f32], r: usize, n_in: usize) -> Vec<f32> {
    let mut p = vec![0.0f32; r * r];
    for k in 0..r {
        for l in 0..r {
            let (a, b) = (&old[k * n_in..][..n_in], &new[l * n_in..][..n_in]);
            let acc = a
                .iter()
                .zip(b)
                .fold(0.0f32, |acc, (&x, &y)| x.mul_add(y, acc));
            p[k * r + l] = acc / n_in as f32;
        }
    }
    p
}

/// `mᵀ_new[l][i] = Σ_k mᵀ[k][i]·P[k][l]`, an fma chain over ascending k.
fn project_momentum(mt: &[f32], p: &[f32], r: usize) -> Vec<f32> {
    let out = mt.len() / r;
    let mut new = vec![0.0f32; r * out];
    for l in 0..r {
        for i in 0..out {
            let mut acc = 0.0f32;
            for k in 0..r {
                acc = mt[k * out + i].mul_add(p[k * r + l], acc);
            }
            new[l * out + i] = acc;
        }
    }
    new
}

/// Checks what every seeded update needs from its record and settings.
pub(crate) fn check_record(
    rec: &StepRecord,
    cfg: &UpdateConfig,
    dist: Dist,
    fam: &str,
) -> Result<()> {
    if rec.seeds.is_empty() || rec.seeds.len() != rec.grads.len() {
        return Err(Error::Data(format!(
            "step {}: {} direction seeds and {} projected gradients; expected equal, non-zero counts",
            rec.step,
            rec.seeds.len(),
            rec.grads.len()
        )));
    }
    if cfg.dist != dist {
        return Err(Error::Config(format!(
            "{fam}: update asks for {:?} directions but the family scores {:?} ones",
            cfg.dist, dist
        )));
    }
    Ok(())
}

/// `[rows][r]`: row t is `x[t]·Mᵀ` (`mt` is r×in) where `need(t)`, zero elsewhere.
pub(crate) fn shrink(
    x: &[f32],
    n_in: usize,
    mt: &[f32],
    r: usize,
    need: impl Fn(usize) -> bool + Sync,
) -> Vec<f32> {
    let rows = x.len() / n_in;
    let mut h = vec![0.0f32; rows * r];
    h.par_chunks_mut(r).enumerate().for_each(|(t, hr)| {
        if !need(t) {
            return;
        }
        let xr = &x[t * n_in..][..n_in];
        for (k, hk) in hr.iter_mut().enumerate() {
            *hk = dot(xr, &mt[k * n_in..][..n_in]);
        }
    });
    h
}

/// Plain f32 dot product (forward-pass precision, not part of the bit-exact contract).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums let the compiler vectorise.
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// For each of `rows` rows, the index of the segment containing it.
pub(crate) fn row_segments(segs: &[Segment], rows: usize) -> Vec<Option<usize>> {
    let mut out = vec![None; rows];
    for (si, s) in segs.iter().enumerate() {
        for o in &mut out[s.rows.start.min(rows)..s.rows.end.min(rows)] {
            *o = Some(si);
        }
    }
    out
}

/// Seeds of `segs` in order of first appearance.
pub(crate) fn distinct_seeds(segs: &[Segment]) -> Vec<u64> {
    let mut seeds: Vec<u64> = Vec::new();
    for s in segs {
        if !seeds.contains(&s.seed) {
            seeds.push(s.seed);
        }
    }
    seeds
}

/// The Linear slots of a transformer layer, in forward order.
pub(crate) fn layer_slots(model: &Model) -> &'static [Slot] {
    match model.layers.first().map(|l| &l.mlp) {
        Some(Mlp::Plain { .. }) => &[Slot::Q, Slot::K, Slot::V, Slot::O, Slot::Fc1, Slot::Fc2],
        _ => &[
            Slot::Q,
            Slot::K,
            Slot::V,
            Slot::O,
            Slot::Gate,
            Slot::Up,
            Slot::Down,
        ],
    }
}

/// Every Linear of the transformer layers, layer-major in forward order.
pub(crate) fn block_sites(model: &Model) -> Vec<Site> {
    (0..model.layers.len())
        .flat_map(|l| layer_slots(model).iter().map(move |&s| Site::layer(l, s)))
        .filter(|&s| linear_at(model, s).is_some())
        .collect()
}

/// `layers.{l}.{slot}` (or the slot name for model-level sites).
pub(crate) fn site_name(site: Site) -> String {
    match site.layer {
        Some(l) => format!("layers.{l}.{}", site.slot.name()),
        None => site.slot.name().to_string(),
    }
}

/// The Linear applied at `site`, if the model has one there.
pub(crate) fn linear_at(model: &Model, site: Site) -> Option<&Linear> {
    let Some(l) = site.layer else {
        return match site.slot {
            Slot::ProjectIn => model.project_in.as_ref(),
            Slot::ProjectOut => model.project_out.as_ref(),
            _ => None,
        };
    };
    let layer = model.layers.get(l)?;
    match (site.slot, &layer.mlp) {
        (Slot::Q, _) => Some(&layer.q),
        (Slot::K, _) => Some(&layer.k),
        (Slot::V, _) => Some(&layer.v),
        (Slot::O, _) => Some(&layer.o),
        (Slot::Gate, Mlp::Gated { gate, .. }) => Some(gate),
        (Slot::Up, Mlp::Gated { up, .. }) => Some(up),
        (Slot::Down, Mlp::Gated { down, .. }) => Some(down),
        (Slot::Fc1, Mlp::Plain { fc1, .. }) => Some(fc1),
        (Slot::Fc2, Mlp::Plain { fc2, .. }) => Some(fc2),
        _ => None,
    }
}

/// Mutable [`linear_at`].
pub(crate) fn linear_at_mut(model: &mut Model, site: Site) -> Option<&mut Linear> {
    let Some(l) = site.layer else {
        return match site.slot {
            Slot::ProjectIn => model.project_in.as_mut(),
            Slot::ProjectOut => model.project_out.as_mut(),
            _ => None,
        };
    };
    let layer = model.layers.get_mut(l)?;
    match (site.slot, &mut layer.mlp) {
        (Slot::Q, _) => Some(&mut layer.q),
        (Slot::K, _) => Some(&mut layer.k),
        (Slot::V, _) => Some(&mut layer.v),
        (Slot::O, _) => Some(&mut layer.o),
        (Slot::Gate, Mlp::Gated { gate, .. }) => Some(gate),
        (Slot::Up, Mlp::Gated { up, .. }) => Some(up),
        (Slot::Down, Mlp::Gated { down, .. }) => Some(down),
        (Slot::Fc1, Mlp::Plain { fc1, .. }) => Some(fc1),
        (Slot::Fc2, Mlp::Plain { fc2, .. }) => Some(fc2),
        _ => None,
    }
}
