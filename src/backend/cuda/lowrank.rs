//! LoZO / LoZO-M state on the GPU, bit-exact with `perturb::lowrank` (same seeds, same fma
//! orders): per block Linear an fp32 Vᵀ `[r][in]` drawn per period, the fp32 bank
//! `[r][out]` (and momentum), merged into W at a period switch.
//!
//! Per step the pack kernel writes the bank and the step's Uᵀ_d (generated from the direction
//! seeds) into the weight's adapter columns; per forward the shrink kernel writes s·x·V (and
//! its signed copies for each direction's rows) into the input's adapter columns.

use super::buffer::DBuf;
use super::device::CudaDevice;
use super::params::*;
use super::weights::{DeviceModel, GroupLinear};
use super::DType;
use crate::backend::device_plan::DevicePlan;
use crate::model::{Param, Site};
use crate::perturb::{role, Dist, FamilyConfig, LowRankScale, StepRecord, UpdateConfig};
use crate::{Error, Result};

struct SiteState {
    site: Site,
    out: usize,
    k: usize,
    vt: DBuf,
    bank: DBuf,
    mom: Option<DBuf>,
}

pub(crate) struct GpuLowRank {
    rank: usize,
    period: u64,
    scale: f32,
    momentum: Option<f32>,
    dist: Dist,
    sites: Vec<SiteState>,
    period_seed: u64,
    dirty: bool,
    momentum_started: bool,
    /// Direction seeds (and bank version) the weights' adapter columns hold now.
    packed: std::sync::Mutex<Option<(Vec<u64>, u64)>>,
    /// Bumped by every update and merge: the packed bank is stale when it differs.
    version: u64,
    /// An error from `begin_step`, which cannot return one; reported by the next score.
    poisoned: std::sync::Mutex<Option<Error>>,
}

fn dist_code(d: Dist) -> u32 {
    match d {
        Dist::Gaussian => ZO_DIST_GAUSSIAN,
        Dist::Rademacher => ZO_DIST_RADEMACHER,
    }
}

impl GpuLowRank {
    pub fn new(
        dev: &CudaDevice,
        model: &DeviceModel,
        cfg: &FamilyConfig,
        dist: Dist,
    ) -> Result<Self> {
        let FamilyConfig::LowRank {
            rank,
            period,
            scale,
            momentum,
        } = *cfg
        else {
            return Err(Error::Config("GpuLowRank needs a lowrank config".into()));
        };
        if period == 0 || rank == 0 {
            return Err(Error::Config(
                "lowrank: rank and period must be at least 1".into(),
            ));
        }
        let mut sites = Vec::new();
        for g in model.groups() {
            for &a in &g.adapters {
                let (site, out) = (g.sites[a], g.outs[a]);
                if rank > out.min(g.k) {
                    return Err(Error::Config(format!(
                        "lowrank: rank {rank} does not fit the {out}x{} weight at {site:?}",
                        g.k
                    )));
                }
                sites.push(SiteState {
                    site,
                    out,
                    k: g.k,
                    vt: DBuf::zeros(dev, DType::F32, rank * g.k)?,
                    bank: DBuf::zeros(dev, DType::F32, rank * out)?,
                    mom: match momentum {
                        Some(_) => Some(DBuf::zeros(dev, DType::F32, rank * out)?),
                        None => None,
                    },
                });
            }
        }
        let l = GpuLowRank {
            rank,
            period,
            scale: match scale {
                LowRankScale::Plain => 1.0,
                LowRankScale::InvSqrtRank => 1.0 / (rank as f32).sqrt(),
            },
            momentum,
            dist,
            sites,
            period_seed: 0,
            dirty: false,
            momentum_started: false,
            packed: std::sync::Mutex::new(None),
            version: 0,
            poisoned: std::sync::Mutex::new(None),
        };
        for s in &l.sites {
            l.draw_v(dev, s, &s.vt, 0)?;
        }
        Ok(l)
    }

    pub fn bytes(&self) -> usize {
        self.sites
            .iter()
            .map(|s| s.vt.bytes() + s.bank.bytes() + s.mom.as_ref().map_or(0, DBuf::bytes))
            .sum()
    }

    pub fn poison(&self, e: Error) {
        if let Ok(mut p) = self.poisoned.lock() {
            p.get_or_insert(e);
        }
    }

    /// Vᵀ of `s` from `seed` into `into`, exactly the host's `fresh_v`.
    fn draw_v(&self, dev: &CudaDevice, s: &SiteState, into: &DBuf, seed: u64) -> Result<()> {
        let tid = Param::Weight(s.site).tensor_id();
        dev.rng_fill(into, seed, tid, role::LOWRANK_V, self.dist)
    }

    /// Plans this state can score: at most the directions the weights leave room for.
    pub fn check_plan(&self, dp: &DevicePlan) -> Result<()> {
        if let Some(e) = self.poisoned.lock().ok().and_then(|mut p| p.take()) {
            return Err(e);
        }
        Ok(()).and_then(|_| {
            let cap = self.sites.first().map_or(usize::MAX, |_| usize::MAX);
            if dp.n_directions() > cap {
                return Err(Error::Unsupported("too many directions".into()));
            }
            Ok(())
        })
    }

    /// Writes the bank and the plan's Uᵀ_d into every adapter block (skipped when the weights
    /// already hold exactly these).
    pub fn pack(&self, dev: &CudaDevice, model: &DeviceModel, dp: &DevicePlan) -> Result<()> {
        let key = (dp.direction_seeds.clone(), self.version);
        let mut packed = self
            .packed
            .lock()
            .map_err(|_| Error::Cuda("pack state poisoned".into()))?;
        if packed.as_ref() == Some(&key) {
            return Ok(());
        }
        let seeds: Vec<u32> = dp
            .direction_seeds
            .iter()
            .flat_map(|&x| [x as u32, (x >> 32) as u32])
            .collect();
        let seeds = DBuf::from_words(dev, if seeds.is_empty() { &[0u32, 0] } else { &seeds })?;
        let mut si = 0;
        for g in model.groups() {
            if g.adapters.is_empty() {
                continue;
            }
            if dp.n_directions() > g.aug.dirs {
                return Err(Error::Unsupported(format!(
                    "the plan has {} directions but the GPU weights were laid out for {}; \
                     build the backend with directions >= the estimator's q",
                    dp.n_directions(),
                    g.aug.dirs
                )));
            }
            for (a, &pos) in g.adapters.iter().enumerate() {
                let s = &self.sites[si];
                si += 1;
                let p = ZoPackParams {
                    out: s.out as u32,
                    ld: g.ld as u32,
                    row0: g.row_offset(pos) as u32,
                    col0: g.block_col(a) as u32,
                    rank: self.rank as u32,
                    dirs: dp.n_directions() as u32,
                    family: ZO_ADAPTER_LOWRANK,
                    dist: dist_code(self.dist),
                    tensor: Param::Weight(s.site).tensor_id(),
                    scale_exp: scale_exp(g.w.dtype),
                };
                let (grid, block, _) = super::adapter::pack_launch_config(
                    s.out,
                    p.rank as usize * (p.dirs as usize + 1),
                );
                // SAFETY: W is out_total·ld, the bank r·out fp32, seeds dirs u64.
                unsafe {
                    dev.launch_raw(
                        super::forward::kernel_name("zo_adapter_pack", g.w.dtype),
                        grid,
                        block,
                        0,
                        &p,
                        &[g.w.ptr(), s.bank.ptr(), seeds.ptr()],
                    )?;
                }
            }
        }
        // The seeds buffer must outlive the launches: wait once before it is dropped.
        dev.stream()
            .synchronize()
            .map_err(super::device::cuda_err("packing adapter columns"))?;
        *packed = Some(key);
        Ok(())
    }

    /// The adapter columns of `g`'s input `x` (`[t][g.ld]`, columns `[0, g.k)` written).
    #[allow(clippy::too_many_arguments)]
    pub fn shrink(
        &self,
        dev: &CudaDevice,
        g: &GroupLinear,
        x: u64,
        t: usize,
        segs: u64,
        seg_dir: u64,
        dp: &DevicePlan,
    ) -> Result<()> {
        let first = self
            .sites
            .iter()
            .position(|s| s.site == g.sites[g.adapters[0]])
            .ok_or_else(|| Error::Cuda("adapter site without lowrank state".into()))?;
        let used_end = g.k + g.adapters.len() * g.aug.block();
        for (a, _) in g.adapters.iter().enumerate() {
            let s = &self.sites[first + a];
            let last = a + 1 == g.adapters.len();
            let p = ZoShrinkParams {
                rows: t as u32,
                k: g.k as u32,
                ld: g.ld as u32,
                col0: g.block_col(a) as u32,
                rank: self.rank as u32,
                dirs: g.aug.dirs as u32,
                n_segs: dp.segments.len() as u32,
                family: ZO_ADAPTER_LOWRANK,
                live: self.dirty as u32,
                dist: dist_code(self.dist),
                tensor: Param::Weight(s.site).tensor_id(),
                vec: (g.ld * g.w.dtype.size()).is_multiple_of(16) as u32,
                pad_begin: if last { used_end as u32 } else { 0 },
                pad_end: if last { g.ld as u32 } else { 0 },
                scale: self.scale,
                scale_exp: scale_exp(g.w.dtype),
            };
            let (grid, block, smem) = super::adapter::shrink_launch_config(t, self.rank);
            // SAFETY: x is t·ld T, Vᵀ r·k fp32, segments and their directions as uploaded.
            unsafe {
                dev.launch_raw(
                    super::forward::kernel_name("zo_adapter_shrink", g.w.dtype),
                    grid,
                    block,
                    smem,
                    &p,
                    &[x, s.vt.ptr(), segs, seg_dir],
                )?;
            }
        }
        Ok(())
    }

    /// Start of a step: at a new period seed, merge the bank into W, zero it, project the
    /// momentum onto the new V and redraw V (the host family's order).
    pub fn begin_step(
        &mut self,
        dev: &CudaDevice,
        model: &mut DeviceModel,
        step: u64,
        period_seed: Option<u64>,
    ) -> Result<()> {
        let seed = period_seed.unwrap_or(step / self.period);
        if seed == self.period_seed {
            return Ok(());
        }
        if self.dirty {
            self.merge(dev, model)?;
            for s in &self.sites {
                dev.zero(&s.bank)?;
            }
        }
        for s in &self.sites {
            let fresh = DBuf::zeros(dev, DType::F32, self.rank * s.k)?;
            self.draw_v(dev, s, &fresh, seed)?;
            if self.momentum_started {
                let mom = s.mom.as_ref().expect("momentum state");
                let p = ZoBasisParams {
                    rank: self.rank as u32,
                    k_in: s.k as u32,
                    out: s.out as u32,
                    reserved: 0,
                };
                let pm = DBuf::zeros(dev, DType::F32, self.rank * self.rank)?;
                let newm = DBuf::zeros(dev, DType::F32, self.rank * s.out)?;
                let (g1, b1, _) = super::update::basis_launch_config(self.rank * self.rank);
                let (g2, b2, _) = super::update::basis_launch_config(self.rank * s.out);
                // SAFETY: sizes as allocated above.
                unsafe {
                    dev.launch_raw(
                        "zo_lowrank_basis",
                        g1,
                        b1,
                        0,
                        &p,
                        &[pm.ptr(), s.vt.ptr(), fresh.ptr()],
                    )?;
                    dev.launch_raw(
                        "zo_lowrank_project",
                        g2,
                        b2,
                        0,
                        &p,
                        &[newm.ptr(), mom.ptr(), pm.ptr()],
                    )?;
                }
                dev.copy(&newm, mom)?;
            }
            dev.copy(&fresh, &s.vt)?;
        }
        dev.stream()
            .synchronize()
            .map_err(super::device::cuda_err("switching the low-rank period"))?;
        self.period_seed = seed;
        self.dirty = false;
        self.version += 1;
        Ok(())
    }

    fn merge(&self, dev: &CudaDevice, model: &mut DeviceModel) -> Result<()> {
        let mut si = 0;
        for g in model.groups() {
            for &pos in &g.adapters {
                let s = &self.sites[si];
                si += 1;
                let p = ZoMergeParams {
                    out: s.out as u32,
                    k: s.k as u32,
                    ld: g.ld as u32,
                    rank: self.rank as u32,
                    b_si: 1,
                    b_sk: s.out as u32,
                    scale: self.scale,
                    reserved: 0,
                };
                let (grid, block, _) = super::update::merge_launch_config(s.out, s.k);
                let w = g.w.at(g.row_offset(pos) * g.ld);
                // SAFETY: the site's rows of W (out·ld from its first row), bank r·out, Vᵀ r·k.
                unsafe {
                    dev.launch_raw(
                        super::forward::kernel_name("zo_factor_merge", g.w.dtype),
                        grid,
                        block,
                        0,
                        &p,
                        &[w, s.bank.ptr(), s.vt.ptr()],
                    )?;
                }
            }
        }
        Ok(())
    }

    pub fn update(&mut self, dev: &CudaDevice, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        crate::perturb::lowrank::check_record(rec, cfg, self.dist, "lowrank")?;
        if cfg.weight_decay != 0.0 {
            return Err(Error::Unsupported(format!(
                "lowrank: weight decay {} (LoZO trains without weight decay; set it to 0)",
                cfg.weight_decay
            )));
        }
        let q = rec.seeds.len() as f32;
        let lr = rec.lr;
        let first = !self.momentum_started;
        let coefs: Vec<f32> = match self.momentum {
            None => rec.grads.iter().map(|&g| -(lr * g) / q).collect(),
            Some(beta) => rec
                .grads
                .iter()
                .map(|&g| if first { g / q } else { ((1.0 - beta) * g) / q })
                .collect(),
        };
        let dirs = DBuf::from_words(dev, &super::dense::dir_words(&rec.seeds, &coefs))?;
        for s in &self.sites {
            let tid = Param::Weight(s.site).tensor_id();
            let n = self.rank * s.out;
            match (self.momentum, &s.mom) {
                (None, _) => {
                    let p = ZoAxpyParams {
                        rows: 1,
                        cols: n as u64,
                        ld: n as u64,
                        tensor: tid,
                        role: role::LOWRANK_U,
                        dist: dist_code(self.dist),
                        dirs: rec.seeds.len() as u32,
                        decay: 0,
                        neg_decay: 0.0,
                    };
                    let (grid, block, _) = super::update::axpy_launch_config(n);
                    // SAFETY: the bank holds n fp32; dirs holds q entries.
                    unsafe {
                        dev.launch_raw(
                            "zo_seeded_axpy_f32",
                            grid,
                            block,
                            0,
                            &p,
                            &[s.bank.ptr(), dirs.ptr()],
                        )?;
                    }
                }
                (Some(beta), Some(mom)) => {
                    let p = ZoMomentumParams {
                        n: n as u64,
                        tensor: tid,
                        dist: dist_code(self.dist),
                        dirs: rec.seeds.len() as u32,
                        beta,
                        neg_lr: -lr,
                        reserved: 0,
                    };
                    let (grid, block, _) = super::update::axpy_launch_config(n);
                    // SAFETY: bank and momentum hold n fp32; dirs q entries.
                    unsafe {
                        dev.launch_raw(
                            "zo_lowrank_momentum",
                            grid,
                            block,
                            0,
                            &p,
                            &[s.bank.ptr(), mom.ptr(), dirs.ptr()],
                        )?;
                    }
                }
                (Some(_), None) => unreachable!("momentum state is allocated with the family"),
            }
        }
        dev.stream()
            .synchronize()
            .map_err(super::device::cuda_err("low-rank update"))?;
        self.dirty = true;
        self.momentum_started |= self.momentum.is_some();
        self.version += 1;
        Ok(())
    }
}

/// Power-of-two split between the bank and its input columns: only fp16 needs it (the bank
/// is ~1e-6, subnormal in fp16, while s·x·V is O(√K)).
fn scale_exp(d: DType) -> i32 {
    match d {
        DType::F16 => 12,
        _ => 0,
    }
}
