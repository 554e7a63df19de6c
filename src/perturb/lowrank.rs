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
use std::ops::Range;

use rayon::prelude::*;

use super::{
    role, Dist, Family, FamilyConfig, LowRankScale, Perturbation, Segment, StepRecord, UpdateConfig,
};
pub(crate) use crate::matmul::Mat;
use crate::model::{Linear, Model, Param, Site};
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
            let l = model
                .linear_at(site)
                .expect("block_sites lists existing Linears");
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
            let l = model
                .linear_at_mut(site)
                .expect("the family was built for this model");
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
#[doc(hidden)]
pub fn merge_low_rank(w: &mut [f32], s: f32, bt: &[f32], vt: &[f32], r: usize, n_in: usize) {
    let out = bt.len() / r;
    let mut b = vec![0.0f32; out * r];
    for k in 0..r {
        for i in 0..out {
            b[i * r + k] = bt[k * out + i];
        }
    }
    merge_factors(w, s, &b, vt, r, n_in);
}

/// `w[i][j] = s.mul_add(Σ_k b[i][k]·a[k][j], w[i][j])`, the sum an fma chain over ascending k
/// from 0. `b` is out×r, `a` r×in, `w` out×in. Both families merge through here.
#[doc(hidden)]
pub fn merge_factors(w: &mut [f32], s: f32, b: &[f32], a: &[f32], r: usize, n_in: usize) {
    w.par_chunks_mut(n_in).enumerate().for_each(|(i, row)| {
        let mut acc = vec![0.0f32; n_in];
        merge_row_dispatch(row, s, &b[i * r..][..r], a, &mut acc);
    });
}

/// Through an FMA-enabled copy where the CPU has FMA: without the target feature every
/// `mul_add` is a library call. Fused multiply-add is correctly rounded, so the values are
/// identical either way.
fn merge_row_dispatch(row: &mut [f32], s: f32, b: &[f32], a: &[f32], acc: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports FMA (checked above).
            return unsafe { merge_row_fma(row, s, b, a, acc) };
        }
    }
    merge_row(row, s, b, a, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn merge_row_fma(row: &mut [f32], s: f32, b: &[f32], a: &[f32], acc: &mut [f32]) {
    merge_row(row, s, b, a, acc)
}

/// One output row: k outer and j inner keeps each element's chain in ascending k while the
/// j loop vectorises.
#[inline(always)]
fn merge_row(row: &mut [f32], s: f32, b: &[f32], a: &[f32], acc: &mut [f32]) {
    let n_in = row.len();
    acc.fill(0.0);
    for (k, &bk) in b.iter().enumerate() {
        for (x, &v) in acc.iter_mut().zip(&a[k * n_in..][..n_in]) {
            *x = bk.mul_add(v, *x);
        }
    }
    for (w, &x) in row.iter_mut().zip(acc.iter()) {
        *w = s.mul_add(x, *w);
    }
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
        let tid = Param::Weight(site).tensor_id();
        // Uᵀ once per direction: the + and − segments of a direction share it.
        let seeds = distinct_seeds(segs);
        let uts: Vec<Vec<f32>> = seeds
            .par_iter()
            .map(|&seed| {
                let mut ut = vec![0.0; r * out];
                self.dist.fill(seed, tid, role::LOWRANK_U, 0, &mut ut);
                ut
            })
            .collect();
        // The shrink x·V, once per row that needs it, shared by the bank and every direction.
        // Vᵀ is read as [in][r] (element (j, k) at k·in + j).
        let mut xv = vec![0.0f32; rows * r];
        for rg in shrink_ranges(self.dirty, segs, rows) {
            let v = Mat::new(&st.vt, n_in, r, 1, n_in);
            gemm_acc(
                &mut xv[rg.start * r..rg.end * r],
                &x[rg.start * n_in..rg.end * n_in],
                v,
                1.0,
            );
        }
        if self.dirty {
            gemm_acc(y, &xv, Mat::new(&st.bank, r, out, out, 1), self.scale);
        }
        for seg in segs {
            let ut = &uts[seeds.iter().position(|&s| s == seg.seed).unwrap()];
            let rg = &seg.rows;
            gemm_acc(
                &mut y[rg.start * out..rg.end * out],
                &xv[rg.start * r..rg.end * r],
                Mat::new(ut, r, out, out, 1),
                self.scale * seg.scale,
            );
        }
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
        check_lowrank_rule(cfg)?;
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
        let (r, dist) = (self.rank, self.dist);
        let first = !self.momentum_started;
        let step = match self.momentum {
            None => BankStep::Plain(bank_coefs(rec)),
            Some(beta) => BankStep::Momentum {
                beta,
                neg_lr: -rec.lr,
                coefs: momentum_coefs(rec, beta, first),
            },
        };
        self.sites
            .par_iter()
            .zip(self.lin.par_iter_mut())
            .for_each(|(&site, st)| {
                let tid = Param::Weight(site).tensor_id();
                bank_update(dist, tid, r, &mut st.bank, &mut st.mom, &step);
            });
        self.dirty = true;
        self.momentum_started |= self.momentum.is_some();
        Ok(())
    }

    fn merged(&self, model: &Model) -> Result<Model> {
        let mut m = model.clone();
        for (&site, st) in self.sites.iter().zip(&self.lin) {
            let l = m.linear_at(site).ok_or_else(|| {
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

/// One step's bank update, coefficients computed as the module docs say.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq)]
pub enum BankStep {
    /// LoZO: `(seed_d, c_d)`, `c_d = -(lr * g_d) / q`.
    Plain(Vec<(u64, f32)>),
    /// LoZO-M: `m = β·m`, the `(seed_d, a_d)` chain on m, then `bank = fma(neg_lr, m, bank)`.
    Momentum {
        beta: f32,
        neg_lr: f32,
        coefs: Vec<(u64, f32)>,
    },
}

/// `(seed_d, c_d)` with `c_d = -(lr * g_d) / q`, directions in order.
#[doc(hidden)]
pub fn bank_coefs(rec: &StepRecord) -> Vec<(u64, f32)> {
    let q = rec.seeds.len() as f32;
    rec.seeds
        .iter()
        .zip(&rec.grads)
        .map(|(&s, &g)| (s, -(rec.lr * g) / q))
        .collect()
}

/// `(seed_d, a_d)` of LoZO-M: `a_d = g_d / q` on the first update of a run, else
/// `((1 - β) * g_d) / q`.
#[doc(hidden)]
pub fn momentum_coefs(rec: &StepRecord, beta: f32, first: bool) -> Vec<(u64, f32)> {
    let q = rec.seeds.len() as f32;
    rec.seeds
        .iter()
        .zip(&rec.grads)
        .map(|(&s, &g)| (s, if first { g / q } else { ((1.0 - beta) * g) / q }))
        .collect()
}

/// The bank (and momentum) update of one Linear, `bank`/`mom` r×out, `u_d` the elements of
/// `Uᵀ_d` (tensor `tid`, role LOWRANK_U); the order of the module docs.
#[doc(hidden)]
pub fn bank_update(
    dist: Dist,
    tid: u32,
    r: usize,
    bank: &mut [f32],
    mom: &mut [f32],
    step: &BankStep,
) {
    let mut ut = vec![0.0f32; bank.len()];
    debug_assert_eq!(bank.len() % r.max(1), 0);
    match step {
        BankStep::Plain(coefs) => {
            for &(seed, c) in coefs {
                dist.fill(seed, tid, role::LOWRANK_U, 0, &mut ut);
                for (b, &u) in bank.iter_mut().zip(&ut) {
                    *b = c.mul_add(u, *b);
                }
            }
        }
        BankStep::Momentum {
            beta,
            neg_lr,
            coefs,
        } => {
            mom.iter_mut().for_each(|m| *m *= beta);
            for &(seed, a) in coefs {
                dist.fill(seed, tid, role::LOWRANK_U, 0, &mut ut);
                for (m, &u) in mom.iter_mut().zip(&ut) {
                    *m = a.mul_add(u, *m);
                }
            }
            for (b, &m) in bank.iter_mut().zip(mom.iter()) {
                *b = neg_lr.mul_add(m, *b);
            }
        }
    }
}

/// `P = Vᵀ_old·Vᵀ_newᵀ / in` (r×r, element `k·r + l`), each sum an fma chain over ascending j.
#[doc(hidden)]
pub fn change_of_basis(old: &[f32], new: &[f32], r: usize, n_in: usize) -> Vec<f32> {
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
#[doc(hidden)]
pub fn project_momentum(mt: &[f32], p: &[f32], r: usize) -> Vec<f32> {
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

/// LoZO's update takes ZO-SGD only (its momentum is LoZO-M's, in the subspace of V).
pub(crate) fn check_lowrank_rule(cfg: &UpdateConfig) -> Result<()> {
    if cfg.rule.is_stateless() {
        return Ok(());
    }
    Err(Error::Unsupported(
        "the lowrank family keeps its momentum in the subspace of V (lozo-m, --momentum); \
         ZO-SGD momentum and ZO-Adam apply to the lora, dense and prefix families"
            .into(),
    ))
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

/// `dst += beta · lhs · rhs` with `dst` `[m][rhs.cols]` and `lhs` `[m][rhs.rows]`, both
/// row-major (forward-pass precision, not part of the bit-exact contract; each row's result is
/// independent of the other rows, see [`crate::matmul::gemm_rows`]).
pub(crate) fn gemm_acc(dst: &mut [f32], lhs: &[f32], rhs: Mat, beta: f32) {
    if rhs.rows == 0 || lhs.is_empty() {
        return;
    }
    crate::matmul::gemm_rows(dst, true, lhs, rhs, beta);
}

/// Row ranges whose shrink is needed: all rows when a trained term applies to every row,
/// else just the perturbed segments.
pub(crate) fn shrink_ranges(all: bool, segs: &[Segment], rows: usize) -> Vec<Range<usize>> {
    if all {
        std::iter::once(0..rows).collect()
    } else {
        segs.iter().map(|s| s.rows.clone()).collect()
    }
}

/// The row ranges of `0..rows` outside every segment (segments are sorted and disjoint).
pub(crate) fn complement(segs: &[Segment], rows: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    for s in segs {
        if s.rows.start > at {
            out.push(at..s.rows.start);
        }
        at = at.max(s.rows.end);
    }
    if at < rows {
        out.push(at..rows);
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

/// Every Linear of the transformer layers, layer-major in forward order.
pub(crate) fn block_sites(model: &Model) -> Vec<Site> {
    (0..model.layers.len())
        .flat_map(|l| model.layer_slots().iter().map(move |&s| Site::layer(l, s)))
        .filter(|&s| model.linear_at(s).is_some())
        .collect()
}

/// `layers.{l}.{slot}` (or the slot name for model-level sites).
pub(crate) fn site_name(site: Site) -> String {
    match site.layer {
        Some(l) => format!("layers.{l}.{}", site.slot.name()),
        None => site.slot.name().to_string(),
    }
}
