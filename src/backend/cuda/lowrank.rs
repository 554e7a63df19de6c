//! LoZO / LoZO-M state on the GPU, bit-exact with `perturb::lowrank` (same seeds, same fma
//! orders): per block Linear an fp32 Vᵀ `[r][in]` drawn per period, the fp32 bank
//! `[r][out]` (and momentum), merged into W at a period switch.
//!
//! Per step the pack kernel writes the bank and the step's Uᵀ_d (generated from the direction
//! seeds) into the weight's adapter columns; per forward the shrink kernel writes s·x·V (and
//! its signed copies for each direction's rows) into the input's adapter columns.

use super::adapter_sites::{AdapterSite, AdapterSites, GpuAdapterFamily};
use super::backend::StateTensors;
use super::buffer::DBuf;
use super::device::CudaDevice;
use super::kernels::rng::{self, Draw};
use super::kernels::update::{self, LeftFactor, Strided, UpdateDirs};
use super::weights::DeviceModel;
use super::DType;
use crate::model::Param;
use crate::perturb::adapter::AugFamily;
use crate::perturb::lowrank::{bank_coefs, momentum_coefs, BankStep};
use crate::perturb::{role, Dist, FamilyConfig, LowRankScale, StepRecord, UpdateConfig};
use crate::rng::Stream;
use crate::{Error, Result};

/// Power-of-two split between the bank and its input columns in fp16: the bank is ~1e-6,
/// subnormal in fp16, while s·x·V is O(√K).
pub(crate) const F16_SCALE_EXP: i32 = 12;

/// Per site the shared factor is Vᵀ (`[r][in]`, drawn per period) and the state the bank
/// `bankᵀ` (`[r][out]`), with LoZO-M's momentum beside it.
pub(crate) struct GpuLowRank {
    sites: AdapterSites,
    period: u64,
    momentum: Option<f32>,
    /// Per site, LoZO-M's momentum (same shape as the bank).
    moms: Vec<Option<DBuf>>,
    period_seed: u64,
    dirty: bool,
    momentum_started: bool,
    /// Bumped by every update and merge: the packed bank is stale when it differs.
    version: u64,
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
        let mut moms = Vec::new();
        for g in model.groups() {
            for &a in &g.adapters {
                let (site, out) = (g.sites[a], g.outs[a]);
                if rank > out.min(g.k) {
                    return Err(Error::Config(format!(
                        "lowrank: rank {rank} does not fit the {out}x{} weight at {site:?}",
                        g.k
                    )));
                }
                sites.push(AdapterSite {
                    site,
                    out,
                    k: g.k,
                    factor: DBuf::zeros(dev, DType::F32, rank * g.k)?,
                    state: DBuf::zeros(dev, DType::F32, rank * out)?,
                });
                moms.push(match momentum {
                    Some(_) => Some(DBuf::zeros(dev, DType::F32, rank * out)?),
                    None => None,
                });
            }
        }
        let scale = match scale {
            LowRankScale::Plain => 1.0,
            LowRankScale::InvSqrtRank => 1.0 / (rank as f32).sqrt(),
        };
        let l = GpuLowRank {
            sites: AdapterSites::new(AugFamily::LowRank, rank, dist, scale, F16_SCALE_EXP, sites),
            period,
            momentum,
            moms,
            period_seed: 0,
            dirty: false,
            momentum_started: false,
            version: 0,
        };
        for s in &l.sites.sites {
            l.draw_v(dev, s, &s.factor, 0)?;
        }
        Ok(l)
    }

    /// Vᵀ of `s` from `seed` into `into`, exactly the host's `fresh_v`.
    fn draw_v(&self, dev: &CudaDevice, s: &AdapterSite, into: &DBuf, seed: u64) -> Result<()> {
        let tid = Param::Weight(s.site).tensor_id();
        let stream = Stream::new(seed, tid, role::LOWRANK_V);
        rng::draw(dev, stream, 0, Draw::from(self.sites.dist), into.view())
    }

    fn merge(&self, dev: &CudaDevice, model: &mut DeviceModel) -> Result<()> {
        let (rank, scale) = (self.sites.rank, self.sites.scale);
        let mut sites = self.sites.sites.iter();
        model.edit_groups(dev, &mut |g| {
            for &pos in &g.adapters {
                let s = sites
                    .next()
                    .ok_or_else(|| Error::Cuda("an adapter block without family state".into()))?;
                let row0 = g.row_offset(pos) * g.ld;
                let shape = Strided {
                    rows: s.out,
                    cols: s.k,
                    ld: g.ld,
                };
                update::factor_merge(
                    dev,
                    g.w.slice(row0..g.w.len),
                    shape,
                    scale,
                    s.state.view(),
                    LeftFactor::Transposed,
                    s.factor.view(),
                    rank,
                )?;
            }
            Ok(())
        })
    }
}

impl GpuAdapterFamily for GpuLowRank {
    fn sites(&self) -> &AdapterSites {
        &self.sites
    }

    fn live(&self) -> bool {
        self.dirty
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn bytes(&self) -> usize {
        self.sites.bytes() + self.moms.iter().flatten().map(DBuf::bytes).sum::<usize>()
    }

    fn state_tensors(&self, _: &CudaDevice) -> Result<StateTensors> {
        Err(Error::Unsupported(
            "reading the low-rank state back from the GPU".into(),
        ))
    }

    /// Start of a step: at a new period seed, merge the bank into W, zero it, project the
    /// momentum onto the new V and redraw V (the host family's order).
    fn begin_step(
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
        let rank = self.sites.rank;
        if self.dirty {
            self.merge(dev, model)?;
            for s in &self.sites.sites {
                dev.zero(&s.state)?;
            }
        }
        for (s, mom) in self.sites.sites.iter().zip(&self.moms) {
            let fresh = DBuf::zeros(dev, DType::F32, rank * s.k)?;
            self.draw_v(dev, s, &fresh, seed)?;
            if self.momentum_started {
                let mom = mom.as_ref().expect("momentum state");
                let pm = DBuf::zeros(dev, DType::F32, rank * rank)?;
                let newm = DBuf::zeros(dev, DType::F32, rank * s.out)?;
                update::lowrank_change_of_basis(
                    dev,
                    pm.view(),
                    s.factor.view(),
                    fresh.view(),
                    rank,
                    s.k,
                )?;
                update::lowrank_project_momentum(
                    dev,
                    newm.view(),
                    mom.view(),
                    pm.view(),
                    rank,
                    s.out,
                )?;
                dev.copy(&newm, mom)?;
            }
            dev.copy(&fresh, &s.factor)?;
        }
        // The temporaries must outlive the launches.
        dev.synchronize()?;
        self.period_seed = seed;
        self.dirty = false;
        self.version += 1;
        Ok(())
    }

    fn update(&mut self, dev: &CudaDevice, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        let (rank, dist) = (self.sites.rank, self.sites.dist);
        crate::perturb::lowrank::check_lowrank_rule(cfg)?;
        crate::perturb::lowrank::check_record(rec, cfg, dist, "lowrank")?;
        if cfg.weight_decay != 0.0 {
            return Err(Error::Unsupported(format!(
                "lowrank: weight decay {} (LoZO trains without weight decay; set it to 0)",
                cfg.weight_decay
            )));
        }
        let step = match self.momentum {
            None => BankStep::Plain(bank_coefs(rec)),
            Some(beta) => BankStep::Momentum {
                beta,
                neg_lr: -rec.lr,
                coefs: momentum_coefs(rec, beta, !self.momentum_started),
            },
        };
        let coefs = match &step {
            BankStep::Plain(c) | BankStep::Momentum { coefs: c, .. } => c,
        };
        let dirs = UpdateDirs::upload(dev, coefs)?;
        for (s, mom) in self.sites.sites.iter().zip(&self.moms) {
            let tid = Param::Weight(s.site).tensor_id();
            update::lowrank_bank_update(
                dev,
                s.state.view(),
                mom.as_ref().map(DBuf::view),
                rank * s.out,
                tid,
                dist,
                &step,
                &dirs,
            )?;
        }
        // The dirs buffer must outlive the launches.
        dev.synchronize()?;
        self.dirty = true;
        self.momentum_started |= self.momentum.is_some();
        self.version += 1;
        Ok(())
    }
}
