//! MeZO-prefix on the GPU: per layer fp32 prefix keys and values `[tokens][kv_width]`, which
//! the prefill attention kernel reads before each sequence's own tokens, perturbing them as it
//! loads them on the rows of a perturbed segment, so no ±ε copy of the prefix exists. The
//! initial state is the host family's (`perturb::prefix`, drawn from the run seed and scaled by
//! the host weights), uploaded as it is; the update is the dense seeded axpy on fp32 (or, for
//! momentum and Adam, the moments kernel), so the state stays bit-exact with the host.

use super::backend::StateTensors;
use super::buffer::{DBuf, View};
use super::device::CudaDevice;
use super::kernels::attention::DevicePrefix;
use super::kernels::update::{seeded_axpy, Strided, UpdateDirs};
use super::moments::{DeviceMoments, Trained};
use super::DType;
use crate::model::{Model, Param};
use crate::perturb::dense::update_terms;
use crate::perturb::prefix::Prefix;
use crate::perturb::{role, Dist, FamilyConfig, StepRecord, UpdateConfig};
use crate::Result;

pub(crate) struct GpuPrefix {
    tokens: usize,
    kv_width: usize,
    dist: Dist,
    /// Per layer `[tokens][kv_width]`.
    keys: Vec<DBuf>,
    values: Vec<DBuf>,
    /// Momentum / Adam state, when the run's rule keeps any.
    moments: DeviceMoments,
}

impl GpuPrefix {
    /// The host family's initial prefix for `model` and run `seed`, on the device.
    pub fn new(
        dev: &CudaDevice,
        model: &Model,
        cfg: &FamilyConfig,
        dist: Dist,
        seed: u64,
    ) -> Result<GpuPrefix> {
        let host = Prefix::new(cfg.clone(), dist, model, seed)?;
        let upload = |t: &[Vec<f32>]| -> Result<Vec<DBuf>> {
            t.iter()
                .map(|x| DBuf::from_f32(dev, DType::F32, x))
                .collect()
        };
        let c = &model.config;
        Ok(GpuPrefix {
            tokens: host.tokens(),
            kv_width: c.num_kv_heads * c.head_dim,
            dist,
            keys: upload(host.keys())?,
            values: upload(host.values())?,
            moments: DeviceMoments::default(),
        })
    }

    pub fn bytes(&self) -> usize {
        self.keys.iter().chain(&self.values).map(DBuf::bytes).sum()
    }

    /// Layer `layer`'s prefix as the attention launcher takes it.
    pub fn layer<'a>(&'a self, layer: usize, segments: Option<View<'a>>) -> DevicePrefix<'a> {
        DevicePrefix {
            k: self.keys[layer].view(),
            v: self.values[layer].view(),
            tokens: self.tokens,
            layer,
            dist: self.dist,
            segments,
        }
    }

    /// The host family's update: weight decay first (prefix positions count as weights), then
    /// the `c_d` chain in direction order, on every layer's keys and values.
    pub fn update(&mut self, dev: &CudaDevice, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        let u = update_terms("prefix", rec, cfg, self.dist)?;
        if !cfg.rule.is_stateless() {
            let n = self.tokens * self.kv_width;
            let mut tensors = Vec::with_capacity(2 * self.keys.len());
            for (li, (k, v)) in self.keys.iter().zip(&self.values).enumerate() {
                for (p, buf) in [(Param::PrefixKey(li), k), (Param::PrefixValue(li), v)] {
                    tensors.push(Trained {
                        tensor_id: p.tensor_id(),
                        data: buf.view(),
                        n,
                    });
                }
            }
            let m = &mut self.moments;
            m.apply(
                dev,
                cfg.rule,
                &tensors,
                role::PREFIX,
                self.dist,
                rec,
                u.decay,
            )?;
            m.finish_update();
            return Ok(());
        }
        let dirs = UpdateDirs::upload(dev, &u.terms)?;
        let n = self.tokens * self.kv_width;
        for (li, (k, v)) in self.keys.iter().zip(&self.values).enumerate() {
            for (p, buf) in [(Param::PrefixKey(li), k), (Param::PrefixValue(li), v)] {
                seeded_axpy(
                    dev,
                    buf.view(),
                    Strided::flat(n),
                    p.tensor_id(),
                    role::PREFIX,
                    self.dist,
                    &dirs,
                    u.decay,
                )?;
            }
        }
        // The dirs buffer must outlive the launches.
        dev.synchronize()
    }

    /// `layers.{l}.prefix_key` and `.prefix_value`, as the host family names and orders them.
    pub fn state_tensors(&self, dev: &CudaDevice) -> Result<StateTensors> {
        let shape = vec![self.tokens, self.kv_width];
        let mut out = Vec::with_capacity(2 * self.keys.len());
        for (li, (k, v)) in self.keys.iter().zip(&self.values).enumerate() {
            out.push((
                format!("layers.{li}.prefix_key"),
                shape.clone(),
                k.to_f32(dev)?,
            ));
            out.push((
                format!("layers.{li}.prefix_value"),
                shape.clone(),
                v.to_f32(dev)?,
            ));
        }
        Ok(out)
    }
}
