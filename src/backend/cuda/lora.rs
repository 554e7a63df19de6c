//! MeZO-LoRA state on the GPU, bit-exact with `perturb::lora` where the host is exact (the
//! init of A, the update of A and B): per target Linear an fp32 A `[r][in]` drawn on the device
//! from the run seed, and an fp32 B `[out][r]`, zero until the first update.
//!
//! The forward rides the K-augmented GEMM (csrc/params/adapter.h): per step the pack kernel
//! writes B (times 2^e) and each direction's Z_B,d into the weight's adapter columns; per
//! forward the shrink kernel writes (α/r)·x·(A + sc·Z_A,d)ᵀ into the input's adapter columns
//! (sub-block 0 on every row once B is live, sub-block 1 + d times sc on the rows of direction
//! d), so the GEMM adds (α/r)·x·(A + sc·Z_A)ᵀ·(B + sc·Z_B)ᵀ, the host family's exact product.

use super::backend::StateTensors;
use super::buffer::{DBuf, Init};
use super::device::CudaDevice;
use super::params::*;
use super::weights::{DeviceModel, GroupLinear};
use super::DType;
use crate::backend::device_plan::DevicePlan;
use crate::model::{Arch, Param, Site, Slot};
use crate::perturb::lowrank::{check_record, site_name};
use crate::perturb::{role, Dist, FamilyConfig, StepRecord, UpdateConfig};
use crate::{Error, Result};

struct SiteState {
    site: Site,
    out: usize,
    k: usize,
    /// `[r][k]` fp32, element `kk·k + j` (the host's A).
    a: DBuf,
    /// `[out][r]` fp32, element `i·r + kk` (the host's B).
    b: DBuf,
}

pub(crate) struct GpuLora {
    rank: usize,
    /// α/r.
    scale: f32,
    dist: Dist,
    sites: Vec<SiteState>,
    /// An update has landed, so B may be non-zero (the host's `b_live`).
    b_live: bool,
    /// Direction seeds (and B version) the weights' adapter columns hold now.
    packed: std::sync::Mutex<Option<(Vec<u64>, u64)>>,
    /// Bumped by every update: the packed B is stale when it differs.
    version: u64,
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

fn dist_code(d: Dist) -> u32 {
    match d {
        Dist::Gaussian => ZO_DIST_GAUSSIAN,
        Dist::Rademacher => ZO_DIST_RADEMACHER,
    }
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
                dev.init(
                    &a,
                    0,
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
                sites.push(SiteState {
                    site,
                    out,
                    k: g.k,
                    a,
                    b: DBuf::zeros(dev, DType::F32, out * rank)?,
                });
            }
        }
        if sites.is_empty() {
            return Err(Error::Config(
                "lora: the model has no Linear at any target".into(),
            ));
        }
        Ok(GpuLora {
            rank,
            scale,
            dist,
            sites,
            b_live: false,
            packed: std::sync::Mutex::new(None),
            version: 0,
        })
    }

    pub fn bytes(&self) -> usize {
        self.sites.iter().map(|s| s.a.bytes() + s.b.bytes()).sum()
    }

    /// `layers.{l}.{slot}.lora_a` `[r, in]` and `.lora_b` `[out, r]`, as the host family's
    /// `state_tensors` names and orders them.
    pub fn state_tensors(&self, dev: &CudaDevice) -> Result<StateTensors> {
        let mut out = Vec::with_capacity(2 * self.sites.len());
        for s in &self.sites {
            let name = site_name(s.site);
            let mut a = s.a.to_f32(dev)?;
            a.truncate(self.rank * s.k);
            let mut b = s.b.to_f32(dev)?;
            b.truncate(s.out * self.rank);
            out.push((format!("{name}.lora_a"), vec![self.rank, s.k], a));
            out.push((format!("{name}.lora_b"), vec![s.out, self.rank], b));
        }
        Ok(out)
    }

    /// Writes B and the plan's Z_B,d into every adapter block (skipped when the weights
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
                debug_assert_eq!(s.site, g.sites[pos]);
                let p = ZoPackParams {
                    out: s.out as u32,
                    ld: g.ld as u32,
                    row0: g.row_offset(pos) as u32,
                    col0: g.block_col(a) as u32,
                    rank: self.rank as u32,
                    dirs: dp.n_directions() as u32,
                    family: ZO_ADAPTER_LORA,
                    dist: dist_code(self.dist),
                    tensor: Param::Weight(s.site).tensor_id(),
                    scale_exp: scale_exp(g.w.dtype),
                };
                let (grid, block, _) = super::adapter::pack_launch_config(
                    s.out,
                    p.rank as usize * (p.dirs as usize + 1),
                );
                // SAFETY: W is out_total·ld (the site's rows and block columns inside it), B
                // out·r fp32, seeds dirs u64.
                unsafe {
                    dev.launch_raw(
                        super::forward::kernel_name("zo_adapter_pack", g.w.dtype),
                        grid,
                        block,
                        0,
                        &p,
                        &[g.w.ptr(), s.b.ptr(), seeds.ptr()],
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
            .ok_or_else(|| Error::Cuda("adapter site without lora state".into()))?;
        let used_end = g.k + g.adapters.len() * g.aug.block();
        for (a, &pos) in g.adapters.iter().enumerate() {
            let s = &self.sites[first + a];
            debug_assert_eq!(s.site, g.sites[pos]);
            let last = a + 1 == g.adapters.len();
            let p = ZoShrinkParams {
                rows: t as u32,
                k: g.k as u32,
                ld: g.ld as u32,
                col0: g.block_col(a) as u32,
                rank: self.rank as u32,
                dirs: g.aug.dirs as u32,
                n_segs: dp.segments.len() as u32,
                family: ZO_ADAPTER_LORA,
                live: self.b_live as u32,
                dist: dist_code(self.dist),
                tensor: Param::Weight(s.site).tensor_id(),
                vec: (g.ld * g.w.dtype.size()).is_multiple_of(16) as u32,
                pad_begin: if last { used_end as u32 } else { 0 },
                pad_end: if last { g.ld as u32 } else { 0 },
                scale: self.scale,
                scale_exp: scale_exp(g.w.dtype),
            };
            let (grid, block, smem) = super::adapter::shrink_launch_config(t, self.rank);
            // SAFETY: x is t·ld T, A r·k fp32, segments and their directions as uploaded.
            unsafe {
                dev.launch_raw(
                    super::forward::kernel_name("zo_adapter_shrink", g.w.dtype),
                    grid,
                    block,
                    smem,
                    &p,
                    &[x, s.a.ptr(), segs, seg_dir],
                )?;
            }
        }
        Ok(())
    }

    /// The host's update on A then B of every site: weight decay first (when non-zero), then
    /// the c_d chain in direction order, one seeded axpy per factor.
    pub fn update(&mut self, dev: &CudaDevice, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        check_record(rec, cfg, self.dist, "lora")?;
        let coefs = update_coefs(rec);
        let neg_decay = -(rec.lr * cfg.weight_decay);
        let dirs = DBuf::from_words(dev, &super::dense::dir_words(&rec.seeds, &coefs))?;
        for s in &self.sites {
            let tid = Param::Weight(s.site).tensor_id();
            for (buf, n, rl) in [
                (&s.a, self.rank * s.k, role::LORA_A),
                (&s.b, s.out * self.rank, role::LORA_B),
            ] {
                let p = ZoAxpyParams {
                    rows: 1,
                    cols: n as u64,
                    ld: n as u64,
                    tensor: tid,
                    role: rl,
                    dist: dist_code(self.dist),
                    dirs: rec.seeds.len() as u32,
                    decay: (cfg.weight_decay != 0.0) as u32,
                    neg_decay,
                };
                let (grid, block, _) = super::update::axpy_launch_config(n);
                // SAFETY: the factor holds n fp32; dirs holds q entries.
                unsafe {
                    dev.launch_raw(
                        "zo_seeded_axpy_f32",
                        grid,
                        block,
                        0,
                        &p,
                        &[buf.ptr(), dirs.ptr()],
                    )?;
                }
            }
        }
        // The dirs buffer must outlive the launches.
        dev.stream()
            .synchronize()
            .map_err(super::device::cuda_err("lora update"))?;
        self.b_live = true;
        self.version += 1;
        Ok(())
    }
}

/// Power-of-two split between B and its input columns: only fp16 needs it. B grows from 0 in
/// steps of lr·|g| (~1e-4, near fp16's subnormals) while (α/r)·x·Aᵀ is O(1), so e = 6 puts
/// both mid-range.
fn scale_exp(d: DType) -> i32 {
    match d {
        DType::F16 => 6,
        _ => 0,
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

    #[test]
    fn fp16_split_is_an_exact_power_of_two_pair() {
        for d in [DType::F32, DType::Bf16, DType::F16] {
            let e = scale_exp(d);
            assert!((0..=24).contains(&e));
            let (up, down) = (
                crate::perturb::augment::exp2(e),
                crate::perturb::augment::exp2(-e),
            );
            assert_eq!(up * down, 1.0);
        }
    }
}
