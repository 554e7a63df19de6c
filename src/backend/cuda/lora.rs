//! MeZO-LoRA state on the GPU, bit-exact with `perturb::lora` where the host is exact (the
//! init of A, the update of A and B): per target Linear an fp32 A `[r][in]` drawn on the device
//! from the run seed, and an fp32 B `[out][r]`, zero until the first update.
//!
//! The forward rides the K-augmented GEMM (csrc/params/adapter.h): per step the pack kernel
//! writes B (times 2^e) and each direction's Z_B,d into the weight's adapter columns; per
//! forward the shrink kernel writes (α/r)·x·(A + sc·Z_A,d)ᵀ into the input's adapter columns
//! (sub-block 0 on every row once B is live, sub-block 1 + d times sc on the rows of direction
//! d), so the GEMM adds (α/r)·x·(A + sc·Z_A)ᵀ·(B + sc·Z_B)ᵀ, the host family's exact product.

use super::adapter_sites::{AdapterSite, AdapterSites, GpuAdapterFamily};
use super::backend::StateTensors;
use super::buffer::DBuf;
use super::device::CudaDevice;
use super::kernels::init::{init, Init};
use super::kernels::update::{seeded_axpy, Strided, UpdateDirs};
use super::moments::{DeviceMoments, Trained};
use super::weights::DeviceModel;
use super::DType;
use crate::model::{Arch, Param, Slot};
use crate::perturb::adapter::AugFamily;
use crate::perturb::lowrank::{check_record, site_name};
use crate::perturb::{role, Dist, FamilyConfig, StepRecord, UpdateConfig};
use crate::{Error, Result};

/// Power-of-two split between B and its input columns in fp16: B grows from 0 in steps of
/// lr·|g| (~1e-4, near fp16's subnormals) while (α/r)·x·Aᵀ is O(1), so e = 6 puts both
/// mid-range.
pub(crate) const F16_SCALE_EXP: i32 = 6;

/// Per site the shared factor is A (`[r][k]` fp32, element `kk·k + j`, the host's A) and the
/// state B (`[out][r]` fp32, element `i·r + kk`, the host's B).
pub(crate) struct GpuLora {
    sites: AdapterSites,
    /// An update has landed, so B may be non-zero (the host's `b_live`).
    b_live: bool,
    /// Bumped by every update: the packed B is stale when it differs.
    version: u64,
    /// Momentum / Adam state of A and B, when the run's rule keeps any.
    moments: DeviceMoments,
}

/// The Linears of a decoder layer in forward order (the host's `Model::layer_slots`).
fn layer_slots(arch: Arch) -> &'static [Slot] {
    use Slot::*;
    match arch {
        Arch::Llama => &[Q, K, V, O, Gate, Up, Down],
        Arch::Opt => &[Q, K, V, O, Fc1, Fc2],
    }
}

/// A lora config checked as the host family checks it: `(rank, α/r, targets)` with the
/// targets in forward order whatever order the config lists. The rank is checked per site
/// against its weight in [`GpuLora::new`].
pub(crate) fn lora_targets(cfg: &FamilyConfig, arch: Arch) -> Result<(usize, f32, Vec<Slot>)> {
    let FamilyConfig::Lora {
        rank,
        alpha,
        ref targets,
    } = *cfg
    else {
        return Err(Error::Config(format!(
            "the lora family was given a {} configuration",
            cfg.name()
        )));
    };
    if targets.is_empty() {
        return Err(Error::Config(
            "lora: no target modules; expected at least one of the layer's Linears".into(),
        ));
    }
    if !alpha.is_finite() {
        return Err(Error::Config(format!("lora: alpha {alpha} is not finite")));
    }
    if rank == 0 {
        return Err(Error::Config("lora: rank must be at least 1".into()));
    }
    let allowed = layer_slots(arch);
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
    let ordered = allowed
        .iter()
        .copied()
        .filter(|s| targets.contains(s))
        .collect();
    Ok((rank, alpha / rank as f32, ordered))
}

/// `-(lr·g_d)/q` per direction, the host's coefficient expression.
fn update_coefs(rec: &StepRecord) -> Vec<f32> {
    let q = rec.seeds.len() as f32;
    rec.grads.iter().map(|&g| -(rec.lr * g) / q).collect()
}

impl GpuLora {
    /// A and B of every adapter site of `model` (the sites `lora_targets` selected when the
    /// weights were laid out). A is drawn from `seed` on the device exactly as the host draws
    /// it; B starts at zero.
    pub fn new(
        dev: &CudaDevice,
        model: &DeviceModel,
        cfg: &FamilyConfig,
        dist: Dist,
        seed: u64,
    ) -> Result<Self> {
        let (rank, scale, _) = lora_targets(cfg, model.config.arch)?;
        let mut sites = Vec::new();
        for g in model.groups() {
            for &a in &g.adapters {
                let (site, out) = (g.sites[a], g.outs[a]);
                let max = out.min(g.k);
                if rank > max {
                    return Err(Error::Config(format!(
                        "lora: rank {rank} does not fit {} ({out}×{} weight); expected 1..={max}",
                        site_name(site),
                        g.k
                    )));
                }
                let a = DBuf::zeros(dev, DType::F32, rank * g.k)?;
                // The host's init_a: bound = 1/√in as one f32 sqrt and divide.
                let bound = 1.0 / (g.k as f32).sqrt();
                init(
                    dev,
                    a.view(),
                    1,
                    rank * g.k,
                    rank * g.k,
                    Init::Uniform {
                        seed,
                        tensor: Param::Weight(site).tensor_id(),
                        role: role::LORA_INIT,
                        bound,
                    },
                )?;
                sites.push(AdapterSite {
                    site,
                    out,
                    k: g.k,
                    factor: a,
                    state: DBuf::zeros(dev, DType::F32, out * rank)?,
                });
            }
        }
        if sites.is_empty() {
            return Err(Error::Config(
                "lora: the model has no Linear at any target".into(),
            ));
        }
        Ok(GpuLora {
            sites: AdapterSites::new(AugFamily::Lora, rank, dist, scale, F16_SCALE_EXP, sites),
            b_live: false,
            version: 0,
            moments: DeviceMoments::default(),
        })
    }
}

impl GpuAdapterFamily for GpuLora {
    fn sites(&self) -> &AdapterSites {
        &self.sites
    }

    fn live(&self) -> bool {
        self.b_live
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn bytes(&self) -> usize {
        self.sites.bytes()
    }

    /// lora has nothing to do at a step's start, like its host family.
    fn begin_step(
        &mut self,
        _: &CudaDevice,
        _: &mut DeviceModel,
        _: u64,
        _: Option<u64>,
    ) -> Result<()> {
        Ok(())
    }

    /// `layers.{l}.{slot}.lora_a` `[r, in]` and `.lora_b` `[out, r]`, as the host family's
    /// `state_tensors` names and orders them.
    fn state_tensors(&self, dev: &CudaDevice) -> Result<StateTensors> {
        let rank = self.sites.rank;
        let mut out = Vec::with_capacity(2 * self.sites.sites.len());
        for s in &self.sites.sites {
            let name = site_name(s.site);
            let mut a = s.factor.to_f32(dev)?;
            a.truncate(rank * s.k);
            let mut b = s.state.to_f32(dev)?;
            b.truncate(s.out * rank);
            out.push((format!("{name}.lora_a"), vec![rank, s.k], a));
            out.push((format!("{name}.lora_b"), vec![s.out, rank], b));
        }
        Ok(out)
    }

    /// The host's update on A then B of every site: weight decay first (when non-zero), then
    /// the c_d chain in direction order, one seeded axpy per factor.
    fn update(&mut self, dev: &CudaDevice, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        let (rank, dist) = (self.sites.rank, self.sites.dist);
        check_record(rec, cfg, dist, "lora")?;
        let decay = (cfg.weight_decay != 0.0).then_some(rec.lr * cfg.weight_decay);
        if !cfg.rule.is_stateless() {
            // The host's order: every A under LORA_A, then every B under LORA_B.
            for (rl, a_side) in [(role::LORA_A, true), (role::LORA_B, false)] {
                let tensors: Vec<Trained<'_>> = self
                    .sites
                    .sites
                    .iter()
                    .map(|s| {
                        let (buf, n) = if a_side {
                            (&s.factor, rank * s.k)
                        } else {
                            (&s.state, s.out * rank)
                        };
                        Trained {
                            tensor_id: Param::Weight(s.site).tensor_id(),
                            data: buf.view(),
                            n,
                        }
                    })
                    .collect();
                self.moments
                    .apply(dev, cfg.rule, &tensors, rl, dist, rec, decay)?;
            }
            self.moments.finish_update();
            self.b_live = true;
            self.version += 1;
            return Ok(());
        }
        let coefs = update_coefs(rec);
        let terms: Vec<(u64, f32)> = rec.seeds.iter().copied().zip(coefs).collect();
        let dirs = UpdateDirs::upload(dev, &terms)?;
        for s in &self.sites.sites {
            let tid = Param::Weight(s.site).tensor_id();
            for (buf, n, rl) in [
                (&s.factor, rank * s.k, role::LORA_A),
                (&s.state, s.out * rank, role::LORA_B),
            ] {
                seeded_axpy(
                    dev,
                    buf.view(),
                    Strided::flat(n),
                    tid,
                    rl,
                    dist,
                    &dirs,
                    decay,
                )?;
            }
        }
        // The dirs buffer must outlive the launches.
        dev.synchronize()?;
        self.b_live = true;
        self.version += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, ModelConfig};

    fn lora(rank: usize, alpha: f32, targets: Vec<Slot>) -> FamilyConfig {
        FamilyConfig::Lora {
            rank,
            alpha,
            targets,
        }
    }

    #[test]
    fn layer_slots_are_the_host_models() {
        for cfg in [ModelConfig::tiny_llama(), ModelConfig::tiny_opt()] {
            let arch = cfg.arch;
            let m = Model::random(cfg, 1);
            assert_eq!(layer_slots(arch), m.layer_slots(), "{arch:?}");
        }
    }

    #[test]
    fn targets_come_back_in_forward_order_with_the_hosts_scale() {
        let (r, s, t) = lora_targets(&lora(8, 16.0, vec![Slot::V, Slot::Q]), Arch::Llama).unwrap();
        assert_eq!((r, t), (8, vec![Slot::Q, Slot::V]));
        assert_eq!(s.to_bits(), (16.0f32 / 8.0).to_bits());
        let (_, s, _) = lora_targets(&lora(3, 1.0, vec![Slot::Fc2]), Arch::Opt).unwrap();
        assert_eq!(s.to_bits(), (1.0f32 / 3.0).to_bits());
    }

    #[test]
    fn bad_configs_are_refused_as_the_host_refuses_them() {
        let err = |cfg: FamilyConfig, arch| lora_targets(&cfg, arch).unwrap_err().to_string();
        assert!(err(lora(2, 1.0, vec![]), Arch::Llama).contains("no target"));
        assert!(err(lora(2, f32::NAN, vec![Slot::Q]), Arch::Llama).contains("not finite"));
        assert!(err(lora(0, 1.0, vec![Slot::Q]), Arch::Llama).contains("at least 1"));
        assert!(err(lora(2, 1.0, vec![Slot::Fc1]), Arch::Llama).contains("not a Linear"));
        assert!(err(lora(2, 1.0, vec![Slot::Gate]), Arch::Opt).contains("not a Linear"));
        assert!(err(lora(2, 1.0, vec![Slot::Q, Slot::Q]), Arch::Opt).contains("twice"));
        let dense = FamilyConfig::Dense { in_place: true };
        assert!(err(dense, Arch::Opt).contains("dense configuration"));
    }

    #[test]
    fn coefficients_are_the_hosts() {
        let rec = StepRecord {
            step: 0,
            seeds: vec![1, 2, 3],
            grads: vec![3.0, -2.0, 0.7],
            lr: 1e-4,
            period_seed: None,
        };
        let q = 3.0f32;
        let want: Vec<u32> = rec
            .grads
            .iter()
            .map(|&g| (-(rec.lr * g) / q).to_bits())
            .collect();
        let got: Vec<u32> = update_coefs(&rec).iter().map(|c| c.to_bits()).collect();
        assert_eq!(got, want);
    }
}
