//! The CUDA backend: the model's weights and the family's trained state on one GPU, a
//! forward pass over a [`Plan`] that never builds a ±ε weight copy, and the seeded updates.
//!
//! Families on the GPU (decided by [`crate::backend::gpu_support::refusal`]): none
//! (evaluation), lowrank (LoZO, LoZO-M) and lora (MeZO-LoRA) through the K-augmented GEMMs (see
//! `weights.rs` and [`GpuAdapterFamily`]), prefix (MeZO-prefix) through the attention kernel,
//! and dense through in-place seeded perturbation (MeZO's +ε, −2ε, +ε) with the dense update. The device is a GPU or its CPU emulation
//! ([`Target`]); the code is the same. [`Backend::decoder`] decodes over a paged KV cache kept
//! on the device (`decode.rs`).

use std::sync::{Arc, Mutex};

use super::adapter_sites::GpuAdapterFamily;
use super::device::{CudaDevice, Target};
use super::forward::{Forward, Workspace};
use super::lora::GpuLora;
use super::lowrank::GpuLowRank;
use super::prefix::GpuPrefix;
use super::weights::{AugSpec, DeviceModel, Source};
use super::DType;
use crate::backend::{Backend, Scores, ZoBackend};
use crate::model::{Model, ModelConfig};
use crate::perturb::{Dist, FamilyConfig, StepRecord, UpdateConfig};
use crate::plan::Plan;
use crate::{Error, Result};

/// The family state the GPU holds.
pub(crate) enum GpuFamily {
    None,
    /// lowrank or lora: rides the K-augmented GEMMs.
    Adapter(Box<dyn GpuAdapterFamily>),
    /// MeZO-prefix: trainable attention positions the attention kernel perturbs as it loads
    /// them.
    Prefix(Box<GpuPrefix>),
    /// In-place MeZO: θ itself is perturbed and updated.
    Dense {
        dist: Dist,
    },
}

pub struct CudaBackend {
    pub(crate) dev: Arc<CudaDevice>,
    pub(crate) model: DeviceModel,
    pub(crate) family: GpuFamily,
    pub(crate) inv_freq: Vec<f32>,
    pub(crate) ws: Mutex<Workspace>,
}

/// Named f32 tensors with their shapes, as `Family::state_tensors` gives them.
pub use crate::backend::StateTensors;

/// What to build a CUDA backend from.
pub struct CudaOptions {
    pub target: Target,
    pub dtype: DType,
    /// Directions per step the weights leave room for (the estimator's q).
    pub directions: usize,
    /// Device bytes the weights may take (None: all resident); layers past it stream from
    /// host memory (see [`super::Residency`]).
    pub memory_budget: Option<usize>,
}

impl CudaBackend {
    /// The base model on the device `opts.target`, with `family` (None: evaluation only). Trained
    /// state that starts random (LoRA A) is drawn from run seed 0, `TrainConfig`'s default;
    /// [`CudaBackend::new_seeded`] takes the seed.
    pub fn new(
        model: &Model,
        family: Option<(&FamilyConfig, Dist)>,
        opts: &CudaOptions,
    ) -> Result<CudaBackend> {
        Self::new_seeded(model, family, 0, opts)
    }

    /// [`CudaBackend::new`] with the run seed that initialises the family's trained state (LoRA
    /// A), the `seed` the host family is built with (`perturb::build`), so both start equal.
    pub fn new_seeded(
        model: &Model,
        family: Option<(&FamilyConfig, Dist)>,
        seed: u64,
        opts: &CudaOptions,
    ) -> Result<CudaBackend> {
        Self::build(&model.config, Source::Host(model), family, seed, opts)
    }

    /// [`Model::synthetic`] of `config` from `seed`, made on the GPU (benchmarks at any scale).
    /// The family's trained state starts from run seed 0, as with [`CudaBackend::new`].
    pub fn synthetic(
        config: &ModelConfig,
        seed: u64,
        family: Option<(&FamilyConfig, Dist)>,
        opts: &CudaOptions,
    ) -> Result<CudaBackend> {
        let std = crate::model::random::DEFAULT_STD;
        Self::build(config, Source::Synthetic { seed, std }, family, 0, opts)
    }

    fn build(
        config: &ModelConfig,
        source: Source<'_>,
        family: Option<(&FamilyConfig, Dist)>,
        family_seed: u64,
        opts: &CudaOptions,
    ) -> Result<CudaBackend> {
        // Checked before anything is allocated on the device.
        if let Some(why) = crate::backend::gpu_support::refusal(family.map(|f| f.0), Some(config)) {
            return Err(Error::Unsupported(format!("{why}; use --device cpu")));
        }
        let (aug, adapter) = adapter_layout(family.map(|f| f.0), config, opts.directions)?;
        let dev = Arc::new(CudaDevice::open(opts.target)?);
        let model = DeviceModel::build(
            &dev,
            config,
            opts.dtype,
            source,
            aug,
            &adapter,
            opts.memory_budget,
        )?;
        if model.stream.is_some() && matches!(family, Some((FamilyConfig::Dense { .. }, _))) {
            let r = &model.residency;
            return Err(Error::Unsupported(format!(
                "in-place dense MeZO under --gpu-memory-budget: it rewrites every weight four \
                 times a step, so each of the {} streamed layers would cross the bus eight \
                 times; train the lowrank or lora family, or give a budget of at least {} \
                 bytes ({}), the whole model",
                r.streamed(),
                r.fixed_bytes + r.layers * r.layer_bytes,
                super::gib(r.fixed_bytes + r.layers * r.layer_bytes)
            )));
        }
        let family = match family {
            None => GpuFamily::None,
            Some((cfg @ FamilyConfig::LowRank { .. }, dist)) => {
                GpuFamily::Adapter(Box::new(GpuLowRank::new(&dev, &model, cfg, dist)?))
            }
            Some((cfg @ FamilyConfig::Lora { .. }, dist)) => GpuFamily::Adapter(Box::new(
                GpuLora::new(&dev, &model, cfg, dist, family_seed)?,
            )),
            Some((FamilyConfig::Dense { .. }, dist)) => GpuFamily::Dense { dist },
            Some((cfg @ FamilyConfig::Prefix { .. }, dist)) => match source {
                Source::Host(m) => {
                    GpuFamily::Prefix(Box::new(GpuPrefix::new(&dev, m, cfg, dist, family_seed)?))
                }
                // The initial prefix is scaled by the host weights (perturb::prefix).
                Source::Synthetic { .. } => {
                    return Err(Error::Unsupported(
                        "the prefix family on synthetic device weights: its initial state is \
                         scaled by the host weights; build the model on the host"
                            .into(),
                    ))
                }
            },
        };
        let inv_freq = match config.arch {
            crate::model::Arch::Llama => crate::backend::rope::rope_inv_freq(
                config.head_dim,
                config.rope_theta,
                config.rope_scaling.as_ref(),
            ),
            crate::model::Arch::Opt => Vec::new(),
        };
        Ok(CudaBackend {
            dev,
            model,
            family,
            inv_freq,
            ws: Mutex::new(Workspace::default()),
        })
    }

    pub fn device(&self) -> &CudaDevice {
        &self.dev
    }

    pub fn dtype(&self) -> DType {
        self.model.dtype
    }

    /// Bytes of weights and family state on the GPU.
    pub fn weight_bytes(&self) -> usize {
        self.model.bytes()
            + match &self.family {
                GpuFamily::Adapter(f) => f.bytes(),
                GpuFamily::Prefix(p) => p.bytes(),
                _ => 0,
            }
    }

    /// Waits for every queued kernel (benchmarks time whole steps).
    pub fn synchronize(&self) -> Result<()> {
        self.dev.synchronize()
    }

    /// Full-vocabulary log-probs are not needed by training; scoring goes through
    /// [`Backend::score`]. This gives the raw per-query log-probs for tests.
    pub fn query_logprobs(&self, plan: &Plan) -> Result<Vec<f32>> {
        Ok(self.score(plan)?.query_logprobs)
    }

    /// Reads the weights back as an f32 buffer of one GEMM (tests).
    pub fn group_weights(&self, site: crate::model::Site) -> Result<(Vec<f32>, usize, usize)> {
        let (g, _) = self
            .model
            .group_of(site)
            .ok_or_else(|| Error::Config(format!("no GEMM holds {site:?}")))?;
        if let Some(li) = site.layer {
            self.model.load_layer(&self.dev, li)?;
        }
        Ok((g.w.to_f32(&self.dev)?, g.out, g.ld))
    }

    /// Which layers stay on the device and which stream from host memory.
    pub fn residency(&self) -> super::Residency {
        self.model.residency
    }

    /// Bytes of weights that cross the bus per forward (0: all resident).
    pub fn streamed_bytes(&self) -> usize {
        self.model
            .stream
            .as_ref()
            .map_or(0, super::streaming::LayerStream::streamed_bytes)
    }

    /// The family's trained state outside the weights, named, shaped and ordered as the host
    /// family's `Family::state_tensors` (lora: A and B of every target; tests compare them
    /// bit for bit). Empty for no family and in-place dense, whose state is the weights.
    pub fn family_state(&self) -> Result<StateTensors> {
        match &self.family {
            GpuFamily::Adapter(f) => f.state_tensors(&self.dev),
            GpuFamily::Prefix(p) => p.state_tensors(&self.dev),
            GpuFamily::None | GpuFamily::Dense { .. } => Ok(Vec::new()),
        }
    }

    /// Bytes of activation buffers held for the largest plan scored so far.
    pub fn workspace_bytes(&self) -> usize {
        self.ws.lock().map_or(0, |w| w.bytes())
    }
}

/// Which sites of the model carry an adapter column block.
pub type AdapterSites = Box<dyn Fn(crate::model::Site) -> bool>;

/// The adapter columns `family` adds to the weights: each block's rank and direction capacity
/// (`directions`, at least 1), and which sites carry one (lowrank: every block Linear; lora:
/// its target slots in every layer; none for the other families).
pub fn adapter_layout(
    family: Option<&FamilyConfig>,
    config: &ModelConfig,
    directions: usize,
) -> Result<(AugSpec, AdapterSites)> {
    let dirs = directions.max(1);
    Ok(match family {
        Some(FamilyConfig::LowRank { rank, .. }) => (
            AugSpec { rank: *rank, dirs },
            Box::new(|site| site.layer.is_some()),
        ),
        Some(cfg @ FamilyConfig::Lora { rank, .. }) => {
            let targets = super::lora::lora_targets(cfg, config.arch)?.2;
            (
                AugSpec { rank: *rank, dirs },
                Box::new(move |site| site.layer.is_some() && targets.contains(&site.slot)),
            )
        }
        _ => (AugSpec::default(), Box::new(|_| false)),
    })
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn score(&self, plan: &Plan) -> Result<Scores> {
        crate::backend::validate::plan_for_config(plan, &self.model.config)?;
        let mut ws = self
            .ws
            .lock()
            .map_err(|_| Error::Cuda("workspace poisoned by an earlier panic".into()))?;
        let fwd = Forward {
            b: self,
            ws: &mut ws,
        };
        fwd.score(plan)
    }

    fn decoder<'a>(
        &'a self,
        batch: crate::backend::decode::DecodeBatch,
    ) -> Result<Box<dyn crate::backend::decode::Decoder + 'a>> {
        Ok(Box::new(super::decode::CudaDecoder::new(self, batch)?))
    }
}

impl ZoBackend for CudaBackend {
    fn begin_step(&mut self, step: u64, period_seed: Option<u64>) -> Result<()> {
        match &mut self.family {
            GpuFamily::Adapter(f) => {
                let (dev, model) = (&self.dev, &mut self.model);
                super::profile::region(dev, "begin_step", || {
                    f.begin_step(dev, model, step, period_seed)
                })
            }
            GpuFamily::None | GpuFamily::Prefix(_) | GpuFamily::Dense { .. } => Ok(()),
        }
    }

    fn update(&mut self, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        let dev = self.dev.clone();
        super::profile::region(&dev, "update", || self.update_family(rec, cfg))
    }

    fn perturb_in_place(&mut self, seed: u64, scale: f32, dist: Dist) -> Result<()> {
        super::profile::region(&self.dev, "perturb_in_place", || {
            super::dense::perturb_in_place(&self.dev, &self.model, seed, scale, dist)
        })
    }

    fn family_state(&self) -> Result<StateTensors> {
        CudaBackend::family_state(self)
    }
}

impl CudaBackend {
    fn update_family(&mut self, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        match &mut self.family {
            GpuFamily::Adapter(f) => f.update(&self.dev, rec, cfg),
            GpuFamily::Prefix(p) => p.update(&self.dev, rec, cfg),
            GpuFamily::Dense { dist } => {
                super::dense::update(&self.dev, &self.model, *dist, rec, cfg)
            }
            GpuFamily::None => Err(Error::Unsupported(
                "update needs a perturbation family on the backend".into(),
            )),
        }
    }
}
