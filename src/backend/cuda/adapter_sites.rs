//! What the GPU's adapter families (lowrank, lora) share: per adapter site a fp32 factor
//! (lowrank `Vᵀ`, lora A; `[rank][k]`) feeding the shrink and a fp32 state (lowrank `bankᵀ`,
//! lora B) feeding the pack, and the pack/shrink of every site of a plan through the adapter
//! kernels. Each family adds its own state and updates behind [`GpuAdapterFamily`].

use std::sync::Mutex;

use super::backend::StateTensors;
use super::buffer::{DBuf, View};
use super::device::CudaDevice;
use super::kernels::adapter::{self, DeviceSegments};
use super::weights::{DeviceModel, GroupLinear};
use super::DType;
use crate::model::{Param, Site};
use crate::perturb::adapter::{AugFamily, AugSite};
use crate::perturb::{Dist, StepRecord, UpdateConfig};
use crate::{Error, Result};

pub(crate) struct AdapterSite {
    pub site: Site,
    pub out: usize,
    pub k: usize,
    /// `[rank][k]` fp32: what the shrink multiplies x by.
    pub factor: DBuf,
    /// fp32 trained state the pack writes into sub-block 0 of W'.
    pub state: DBuf,
}

/// The sites of one adapter family, in the order of the model's groups and their adapters.
pub(crate) struct AdapterSites {
    pub family: AugFamily,
    pub rank: usize,
    pub dist: Dist,
    /// lowrank `s`, lora `α/r`.
    pub scale: f32,
    /// The power-of-two split between state and input columns in fp16 (0 otherwise).
    pub f16_scale_exp: i32,
    pub sites: Vec<AdapterSite>,
    /// Direction seeds and state version the weights' adapter columns hold now.
    packed: Mutex<Option<(Vec<u64>, u64)>>,
}

impl AdapterSites {
    pub fn new(
        family: AugFamily,
        rank: usize,
        dist: Dist,
        scale: f32,
        f16_scale_exp: i32,
        sites: Vec<AdapterSite>,
    ) -> AdapterSites {
        AdapterSites {
            family,
            rank,
            dist,
            scale,
            f16_scale_exp,
            sites,
            packed: Mutex::new(None),
        }
    }

    pub fn bytes(&self) -> usize {
        self.sites
            .iter()
            .map(|s| s.factor.bytes() + s.state.bytes())
            .sum()
    }

    pub fn scale_exp(&self, dtype: DType) -> i32 {
        match dtype {
            DType::F16 => self.f16_scale_exp,
            _ => 0,
        }
    }

    /// Site `s`'s block in group `g` (adapter `a` of the group), laid out for the group's
    /// direction capacity.
    fn aug(&self, g: &GroupLinear, a: usize, s: &AdapterSite, live: bool) -> AugSite {
        AugSite {
            family: self.family,
            k: g.k,
            ld: g.ld,
            col0: g.block_col(a),
            rank: self.rank,
            dirs: g.aug.dirs,
            live,
            scale: self.scale,
            scale_exp: self.scale_exp(g.w.dtype),
            tensor_id: Param::Weight(s.site).tensor_id(),
            dist: self.dist,
        }
    }

    /// Writes the state and the plan's direction factors into every adapter block of the
    /// resident weights, skipped when they already hold exactly these (`version` counts state
    /// changes). Streamed layers are packed as they land ([`AdapterSites::pack_layer`]).
    pub fn pack(
        &self,
        dev: &CudaDevice,
        model: &DeviceModel,
        segs: &DeviceSegments,
        seeds: &[u64],
        version: u64,
        live: bool,
    ) -> Result<()> {
        let key = (seeds.to_vec(), version);
        let mut packed = self
            .packed
            .lock()
            .map_err(|_| Error::Cuda("pack state poisoned".into()))?;
        if packed.as_ref() == Some(&key) {
            return Ok(());
        }
        self.pack_where(dev, model, segs, live, &|g| model.resident(g))?;
        *packed = Some(key);
        Ok(())
    }

    /// [`AdapterSites::pack`] for streamed layer `li`, just landed in its buffer (which held
    /// another layer's columns before).
    pub fn pack_layer(
        &self,
        dev: &CudaDevice,
        model: &DeviceModel,
        li: usize,
        segs: &DeviceSegments,
        live: bool,
    ) -> Result<()> {
        self.pack_where(dev, model, segs, live, &|g| g.sites[0].layer == Some(li))
    }

    fn pack_where(
        &self,
        dev: &CudaDevice,
        model: &DeviceModel,
        segs: &DeviceSegments,
        live: bool,
        want: &dyn Fn(&GroupLinear) -> bool,
    ) -> Result<()> {
        let mut si = 0;
        for g in model.groups() {
            if g.adapters.is_empty() {
                continue;
            }
            if !want(g) {
                si += g.adapters.len();
                continue;
            }
            if segs.dirs() > g.aug.dirs {
                return Err(Error::Unsupported(format!(
                    "the plan has {} directions but the GPU weights were laid out for {}; \
                     build the backend with directions >= the estimator's q",
                    segs.dirs(),
                    g.aug.dirs
                )));
            }
            for (a, &pos) in g.adapters.iter().enumerate() {
                let s = &self.sites[si];
                si += 1;
                debug_assert_eq!(s.site, g.sites[pos]);
                let site = self.aug(g, a, s, live);
                adapter::pack(
                    dev,
                    &site,
                    s.out,
                    g.row_offset(pos),
                    g.w.view(),
                    s.state.view(),
                    segs,
                )?;
            }
        }
        Ok(())
    }

    /// The adapter columns of `g`'s input `x` (`[t][g.ld]`, columns `[0, g.k)` written); the
    /// last site also zeroes the group's padding columns.
    pub fn shrink(
        &self,
        dev: &CudaDevice,
        g: &GroupLinear,
        x: View<'_>,
        t: usize,
        segs: &DeviceSegments,
        live: bool,
    ) -> Result<()> {
        let first = self
            .sites
            .iter()
            .position(|s| s.site == g.sites[g.adapters[0]])
            .ok_or_else(|| Error::Cuda("adapter site without family state".into()))?;
        let used_end = g.k + g.adapters.len() * g.aug.block();
        for (a, &pos) in g.adapters.iter().enumerate() {
            let s = &self.sites[first + a];
            debug_assert_eq!(s.site, g.sites[pos]);
            let pad = if a + 1 == g.adapters.len() {
                used_end..g.ld
            } else {
                0..0
            };
            let site = self.aug(g, a, s, live);
            adapter::shrink(dev, &site, t, x, s.factor.view(), segs, pad)?;
        }
        Ok(())
    }
}

/// A family whose perturbation rides the K-augmented GEMMs (lowrank, lora): the forward packs
/// and shrinks through [`AdapterSites`], the backend forwards steps and updates.
pub(crate) trait GpuAdapterFamily: Send + Sync {
    fn sites(&self) -> &AdapterSites;
    /// The state is non-zero (sub-block 0 must be written by the shrink).
    fn live(&self) -> bool;
    /// Bumped by every change of the state the pack writes.
    fn version(&self) -> u64;
    fn bytes(&self) -> usize;
    fn begin_step(
        &mut self,
        dev: &CudaDevice,
        model: &mut DeviceModel,
        step: u64,
        period_seed: Option<u64>,
    ) -> Result<()>;
    fn update(&mut self, dev: &CudaDevice, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()>;
    /// The trained state outside the weights, as the host family's `state_tensors`.
    fn state_tensors(&self, dev: &CudaDevice) -> Result<StateTensors>;
}
