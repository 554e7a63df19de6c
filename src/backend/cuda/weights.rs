//! The model's weights on the GPU, laid out for the forward pass.
//!
//! - q/k/v are one weight `[q_dim + 2·kv_dim][ld]` (one GEMM), gate/up one `[2·inter][ld]`.
//! - A Linear whose family carries a rank-r adapter (lowrank, lora) owns a block of
//!   `(q+1)·r` extra columns past K in the weight of its GEMM; the matching columns of the
//!   GEMM input are written by the shrink kernel, so `y = x'·W'ᵀ` adds the trained state and
//!   every direction's perturbation inside the tensor-core GEMM (DESIGN §4). The row stride
//!   `ld` = round_up(K + blocks·(q+1)·r, 8) keeps 16-byte alignment for cuBLASLt.
//! - Weights and norm parameters are in the storage dtype; biases stay fp32 (the GEMM
//!   epilogue adds them in fp32).

use super::buffer::{DBuf, Place, ARENA_ALIGN};
use super::device::CudaDevice;
use super::kernels::init::{init, Init};
use super::streaming::{LayerStream, Residency};
use super::DType;
use crate::model::random::SYNTHETIC_ROLE;
use crate::model::{Arch, Linear, Model, ModelConfig, Norm, NormKind, NormSite, Param, Site, Slot};
use crate::{Error, Result};

/// Extra columns per adapter site: `(dirs + 1)·rank` (the trained-state block, then one block
/// per direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AugSpec {
    pub rank: usize,
    pub dirs: usize,
}

impl AugSpec {
    pub fn block(&self) -> usize {
        if self.rank == 0 {
            0
        } else {
            (self.dirs + 1) * self.rank
        }
    }
}

/// Where the weights come from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Host(&'a Model),
    /// [`Model::synthetic`] made in place on the device.
    Synthetic {
        seed: u64,
        std: f32,
    },
}

/// One GEMM: the stacked Linears of `sites`, input width `k`, row stride `ld`.
pub struct GroupLinear {
    pub sites: Vec<Site>,
    pub outs: Vec<usize>,
    /// Positions in `sites` of the sites that own an adapter column block, in block order.
    pub adapters: Vec<usize>,
    pub out: usize,
    pub k: usize,
    pub ld: usize,
    pub aug: AugSpec,
    /// `[out][ld]`, storage dtype.
    pub w: DBuf,
    /// `[out]` fp32 (zeros for sites without a bias), when any site has one.
    pub bias: Option<DBuf>,
}

impl GroupLinear {
    /// First row of site `g` (position in `sites`).
    pub fn row_offset(&self, g: usize) -> usize {
        self.outs[..g].iter().sum()
    }

    /// First column of adapter block `a`.
    pub fn block_col(&self, a: usize) -> usize {
        self.k + a * self.aug.block()
    }

    pub fn position(&self, site: Site) -> Option<usize> {
        self.sites.iter().position(|&s| s == site)
    }
}

pub struct DNorm {
    pub w: Option<DBuf>,
    pub b: Option<DBuf>,
    pub eps: f32,
    pub kind: NormKind,
    pub width: usize,
}

pub enum DMlp {
    Gated {
        gate_up: GroupLinear,
        down: GroupLinear,
        inter: usize,
    },
    Plain {
        fc1: GroupLinear,
        fc2: GroupLinear,
    },
}

pub struct DLayer {
    pub attn_norm: DNorm,
    pub qkv: GroupLinear,
    pub o: GroupLinear,
    pub mlp_norm: DNorm,
    pub mlp: DMlp,
}

impl DLayer {
    /// The layer's GEMMs in forward order.
    pub fn groups(&self) -> [&GroupLinear; 4] {
        let (first, second) = match &self.mlp {
            DMlp::Gated { gate_up, down, .. } => (gate_up, down),
            DMlp::Plain { fc1, fc2 } => (fc1, fc2),
        };
        [&self.qkv, &self.o, first, second]
    }
}

/// One GEMM's layout before it is built: its sites, input width and output widths.
struct GroupDef {
    sites: Vec<Site>,
    k: usize,
    outs: Vec<usize>,
}

/// Layer `li`'s GEMMs in forward order: q/k/v stacked, o, then the MLP's two.
fn layer_groups(c: &ModelConfig, li: usize) -> [GroupDef; 4] {
    let s = |slot| Site::layer(li, slot);
    let def = |sites: &[Site], k, outs: &[usize]| GroupDef {
        sites: sites.to_vec(),
        k,
        outs: outs.to_vec(),
    };
    let h = c.hidden_size;
    let (qd, kvd) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    let inter = c.intermediate_size;
    let (mlp_in, mlp_out) = match c.arch {
        Arch::Llama => (
            def(&[s(Slot::Gate), s(Slot::Up)], h, &[inter, inter]),
            def(&[s(Slot::Down)], inter, &[h]),
        ),
        Arch::Opt => (
            def(&[s(Slot::Fc1)], h, &[inter]),
            def(&[s(Slot::Fc2)], inter, &[h]),
        ),
    };
    [
        def(&[s(Slot::Q), s(Slot::K), s(Slot::V)], h, &[qd, kvd, kvd]),
        def(&[s(Slot::O)], qd, &[h]),
        mlp_in,
        mlp_out,
    ]
}

/// Row stride of a GEMM's weight: K, then `adapters` column blocks, rounded up to 8.
fn group_ld(k: usize, adapters: usize, aug: AugSpec) -> usize {
    (k + adapters * aug.block()).next_multiple_of(8)
}

/// `(out, ld)` of a layer's GEMMs in forward order (every layer is laid out alike).
pub fn layer_shapes(
    c: &ModelConfig,
    aug: AugSpec,
    adapter: &dyn Fn(Site) -> bool,
) -> [(usize, usize); 4] {
    layer_groups(c, 0).map(|g| {
        let adapters = g.sites.iter().filter(|&&s| adapter(s)).count();
        (g.outs.iter().sum(), group_ld(g.k, adapters, aug))
    })
}

/// Bytes one layer takes laid out in a stream buffer, counting a bias on every Linear and both
/// parameters of every norm (at most what any checkpoint of this config holds).
pub fn layer_bytes(
    c: &ModelConfig,
    dtype: DType,
    aug: AugSpec,
    adapter: &dyn Fn(Site) -> bool,
) -> usize {
    let slot = |bytes: usize| bytes.max(1).next_multiple_of(ARENA_ALIGN);
    let groups: usize = layer_shapes(c, aug, adapter)
        .iter()
        .map(|&(out, ld)| slot(out * ld * dtype.size()) + slot(out * 4))
        .sum();
    groups + 4 * slot(c.hidden_size * dtype.size())
}

/// Bytes of the adapter families' fp32 state over the model: per adapter site the shrink
/// factor (`[rank][k]`) and the state the pack writes (`[rank][out]`).
pub fn adapter_state_bytes(c: &ModelConfig, aug: AugSpec, adapter: &dyn Fn(Site) -> bool) -> usize {
    (0..c.num_layers)
        .flat_map(|li| layer_groups(c, li))
        .map(|g| {
            g.sites
                .iter()
                .zip(&g.outs)
                .filter(|(&s, _)| adapter(s))
                .map(|(_, &out)| aug.rank * (g.k + out) * 4)
                .sum::<usize>()
        })
        .sum()
}

/// Bytes of the tensors that stay on the device whatever the budget.
pub fn fixed_bytes(c: &ModelConfig, dtype: DType) -> usize {
    let (e, h) = (c.embed_dim, c.hidden_size);
    let mut n = c.vocab_size * e;
    if c.arch == Arch::Opt {
        n += (c.max_position_embeddings + 2) * h;
        if e != h {
            n += 2 * e * h.next_multiple_of(8).max(e.next_multiple_of(8));
        }
    }
    if !c.tie_word_embeddings {
        n += c.vocab_size * e;
    }
    // The final norm's weight and bias, and OPT projections' biases (fp32), at most.
    (n + 2 * h) * dtype.size() + 2 * 4 * e.max(h)
}

pub struct DeviceModel {
    pub config: ModelConfig,
    pub dtype: DType,
    /// `[vocab][embed_dim]`.
    pub embed: DBuf,
    /// OPT: `[max_pos + 2][hidden]`.
    pub pos: Option<DBuf>,
    pub project_in: Option<GroupLinear>,
    pub project_out: Option<GroupLinear>,
    pub layers: Vec<DLayer>,
    pub final_norm: Option<DNorm>,
    /// Untied head `[vocab][embed_dim]`; None: the embedding.
    pub head: Option<DBuf>,
    /// Which layers stay on the device (all of them without a budget).
    pub residency: Residency,
    /// Layers past the resident ones: their host copies and stream buffers.
    pub(crate) stream: Option<LayerStream>,
}

impl DeviceModel {
    pub fn head(&self) -> &DBuf {
        self.head.as_ref().unwrap_or(&self.embed)
    }

    /// Every GEMM of the model with the layer it belongs to.
    pub fn groups(&self) -> impl Iterator<Item = &GroupLinear> {
        let layers = self.layers.iter().flat_map(DLayer::groups);
        self.project_in
            .iter()
            .chain(self.project_out.iter())
            .chain(layers)
    }

    pub fn groups_mut(&mut self) -> Vec<&mut GroupLinear> {
        let mut out: Vec<&mut GroupLinear> = Vec::new();
        if let Some(p) = self.project_in.as_mut() {
            out.push(p);
        }
        if let Some(p) = self.project_out.as_mut() {
            out.push(p);
        }
        for l in &mut self.layers {
            out.push(&mut l.qkv);
            out.push(&mut l.o);
            match &mut l.mlp {
                DMlp::Gated { gate_up, down, .. } => {
                    out.push(gate_up);
                    out.push(down);
                }
                DMlp::Plain { fc1, fc2 } => {
                    out.push(fc1);
                    out.push(fc2);
                }
            }
        }
        out
    }

    /// The GEMM holding `site` and the site's position in it.
    pub fn group_of(&self, site: Site) -> Option<(&GroupLinear, usize)> {
        self.groups().find_map(|g| g.position(site).map(|p| (g, p)))
    }

    /// Device bytes of all weights: resident tensors and the stream buffers.
    pub fn bytes(&self) -> usize {
        let norms =
            |n: &DNorm| n.w.as_ref().map_or(0, DBuf::bytes) + n.b.as_ref().map_or(0, DBuf::bytes);
        let group = |g: &GroupLinear| g.w.bytes() + g.bias.as_ref().map_or(0, DBuf::bytes);
        let mut total = self.embed.bytes()
            + self.pos.as_ref().map_or(0, DBuf::bytes)
            + self.head.as_ref().map_or(0, DBuf::bytes)
            + self.final_norm.as_ref().map_or(0, norms)
            + self
                .project_in
                .iter()
                .chain(&self.project_out)
                .map(group)
                .sum::<usize>();
        for l in &self.layers[..self.residency.resident] {
            total += norms(&l.attn_norm) + norms(&l.mlp_norm);
            total += l.groups().into_iter().map(group).sum::<usize>();
        }
        total + self.stream.as_ref().map_or(0, LayerStream::device_bytes)
    }

    /// Whether layer `li`'s weights stream from the host.
    pub fn streams(&self, li: usize) -> bool {
        self.stream.as_ref().is_some_and(|s| s.holds(li))
    }

    /// Whether `g`'s weights are on the device all the time.
    pub fn resident(&self, g: &GroupLinear) -> bool {
        g.sites[0].layer.is_none_or(|li| !self.streams(li))
    }

    /// Makes layer `li`'s weights readable on the device now (a streamed layer is copied into
    /// its buffer, where it stays until the buffer's next layer comes).
    pub(crate) fn load_layer(&self, dev: &CudaDevice, li: usize) -> Result<()> {
        match &self.stream {
            Some(s) if s.holds(li) => s.load(dev, li),
            _ => Ok(()),
        }
    }

    /// Runs `edit` on every GEMM, in [`DeviceModel::groups`] order, with its weights on the
    /// device, and keeps what it wrote: a streamed layer is loaded into its buffer first and
    /// written back to its host copy after.
    pub(crate) fn edit_groups(
        &mut self,
        dev: &CudaDevice,
        edit: &mut dyn FnMut(&GroupLinear) -> Result<()>,
    ) -> Result<()> {
        let first = self.residency.resident;
        for g in self
            .groups()
            .filter(|g| g.sites[0].layer.is_none_or(|l| l < first))
        {
            edit(g)?;
        }
        for li in first..self.layers.len() {
            self.load_layer(dev, li)?;
            for g in self.layers[li].groups() {
                edit(g)?;
            }
            if let Some(s) = self.stream.as_mut() {
                s.store(dev, li)?;
            }
        }
        Ok(())
    }

    /// Uploads (or synthesises) the weights. `adapter(site)` says whether the family carries a
    /// rank-`aug.rank` adapter at `site`. Under a `budget` of device bytes for the weights, the
    /// layers that do not fit stream from host memory ([`Residency::plan`]).
    pub fn build(
        dev: &CudaDevice,
        config: &ModelConfig,
        dtype: DType,
        source: Source<'_>,
        aug: AugSpec,
        adapter: &dyn Fn(Site) -> bool,
        budget: Option<usize>,
    ) -> Result<DeviceModel> {
        let c = config;
        if let Source::Host(m) = &source {
            crate::backend::validate::model_shapes(m)?;
        }
        let residency = Residency::plan(
            fixed_bytes(c, dtype),
            layer_bytes(c, dtype, aug, adapter),
            c.num_layers,
            budget,
        )?;
        let b = Builder {
            dev,
            config: c,
            dtype,
            source: &source,
            aug,
            adapter,
            place: Place::Own,
        };
        let e = c.embed_dim;
        let embed = b.tensor(Param::Embed, c.vocab_size, e, |m| Some(&m.embed))?;
        let pos = if c.arch == Arch::Opt {
            let rows = c.max_position_embeddings + 2;
            Some(b.tensor(Param::PosEmbed, rows, c.hidden_size, |m| {
                m.pos_embed.as_ref()
            })?)
        } else {
            None
        };
        let opt_proj = c.arch == Arch::Opt && c.embed_dim != c.hidden_size;
        let project_in = if opt_proj {
            Some(b.group(&[Site::model(Slot::ProjectIn)], e, &[c.hidden_size])?)
        } else {
            None
        };
        let project_out = if opt_proj {
            Some(b.group(&[Site::model(Slot::ProjectOut)], c.hidden_size, &[e])?)
        } else {
            None
        };
        let h = c.hidden_size;
        let mut stream = match residency.streamed() {
            0 => None,
            _ => Some(LayerStream::new(
                dev,
                residency.resident,
                residency.layer_bytes,
            )?),
        };
        let mut layers = Vec::with_capacity(c.num_layers);
        for li in 0..c.num_layers {
            match stream.as_mut().filter(|_| li >= residency.resident) {
                None => layers.push(b.layer(li)?),
                // Built in its buffer (the same kernels and roundings as a resident layer),
                // then kept on the host; its tensors point into the buffer it lands in.
                Some(s) => {
                    let buffer = s.buffer(li);
                    buffer.reset();
                    layers.push(
                        Builder {
                            place: Place::In(buffer),
                            ..b
                        }
                        .layer(li)?,
                    );
                    s.keep(dev, li)?;
                }
            }
        }
        let has_final = match c.arch {
            Arch::Llama => true,
            Arch::Opt => c.final_norm,
        };
        let final_norm = if has_final {
            Some(b.norm(NormSite::Final, h, c)?)
        } else {
            None
        };
        let head = if c.tie_word_embeddings {
            None
        } else {
            Some(b.tensor(Param::Head, c.vocab_size, e, |m| m.lm_head.as_ref())?)
        };
        Ok(DeviceModel {
            config: c.clone(),
            dtype,
            embed,
            pos,
            project_in,
            project_out,
            layers,
            final_norm,
            head,
            residency,
            stream,
        })
    }
}

#[derive(Clone, Copy)]
struct Builder<'a> {
    dev: &'a CudaDevice,
    config: &'a ModelConfig,
    dtype: DType,
    source: &'a Source<'a>,
    aug: AugSpec,
    adapter: &'a dyn Fn(Site) -> bool,
    /// Where the tensors are allocated.
    place: Place<'a>,
}

impl Builder<'_> {
    fn layer(&self, li: usize) -> Result<DLayer> {
        let c = self.config;
        let [qkv, o, mlp_in, mlp_out] =
            layer_groups(c, li).map(|g| self.group(&g.sites, g.k, &g.outs));
        let (qkv, o, mlp_in, mlp_out) = (qkv?, o?, mlp_in?, mlp_out?);
        let mlp = match c.arch {
            Arch::Llama => DMlp::Gated {
                gate_up: mlp_in,
                down: mlp_out,
                inter: c.intermediate_size,
            },
            Arch::Opt => DMlp::Plain {
                fc1: mlp_in,
                fc2: mlp_out,
            },
        };
        let h = c.hidden_size;
        Ok(DLayer {
            attn_norm: self.norm(NormSite::Attn(li), h, c)?,
            qkv,
            o,
            mlp_norm: self.norm(NormSite::Mlp(li), h, c)?,
            mlp,
        })
    }

    fn zeros(&self, dtype: DType, len: usize) -> Result<DBuf> {
        DBuf::zeros_at(self.dev, self.place, dtype, len)
    }

    fn upload(&self, dtype: DType, host: &[f32]) -> Result<DBuf> {
        DBuf::from_f32_at(self.dev, self.place, dtype, host)
    }

    fn normal(&self, seed: u64, tensor: u32, std: f32) -> Init {
        Init::Normal {
            seed,
            tensor,
            role: SYNTHETIC_ROLE,
            std,
        }
    }

    /// A plain `[rows][cols]` weight tensor.
    fn tensor(
        &self,
        p: Param,
        rows: usize,
        cols: usize,
        host: impl Fn(&Model) -> Option<&Vec<f32>>,
    ) -> Result<DBuf> {
        match self.source {
            Source::Host(m) => {
                let data = host(m).ok_or_else(|| {
                    Error::Config(format!(
                        "the model has no {p:?} tensor but its config needs one"
                    ))
                })?;
                self.upload(self.dtype, data)
            }
            Source::Synthetic { seed, std } => {
                let buf = self.zeros(self.dtype, rows * cols)?;
                init(
                    self.dev,
                    buf.view(),
                    rows,
                    cols,
                    cols,
                    self.normal(*seed, p.tensor_id(), *std),
                )?;
                Ok(buf)
            }
        }
    }

    fn group(&self, sites: &[Site], k: usize, outs: &[usize]) -> Result<GroupLinear> {
        let adapters: Vec<usize> = (0..sites.len())
            .filter(|&g| (self.adapter)(sites[g]))
            .collect();
        let ld = group_ld(k, adapters.len(), self.aug);
        let out: usize = outs.iter().sum();
        let (w, bias) = match self.source {
            Source::Host(m) => {
                let mut host = vec![0.0f32; out * ld];
                let mut bias = vec![0.0f32; out];
                let mut any_bias = false;
                let mut row = 0;
                for (&site, &o) in sites.iter().zip(outs) {
                    let lin: &Linear = m.linear_at(site).ok_or_else(|| {
                        Error::Config(format!("the model has no Linear at {site:?}"))
                    })?;
                    if (lin.out_dim, lin.in_dim) != (o, k) {
                        return Err(Error::tensor(
                            format!("{site:?}"),
                            format!(
                                "weight is {}x{} but the config implies {o}x{k}",
                                lin.out_dim, lin.in_dim
                            ),
                        ));
                    }
                    for i in 0..o {
                        host[(row + i) * ld..][..k].copy_from_slice(&lin.w[i * k..][..k]);
                    }
                    if let Some(b) = &lin.b {
                        bias[row..row + o].copy_from_slice(b);
                        any_bias = true;
                    }
                    row += o;
                }
                let w = self.upload(self.dtype, &host)?;
                let bias = if any_bias {
                    Some(self.upload(DType::F32, &bias)?)
                } else {
                    None
                };
                (w, bias)
            }
            Source::Synthetic { seed, std } => {
                let w = self.zeros(self.dtype, out * ld)?;
                let mut row = 0;
                for (&site, &o) in sites.iter().zip(outs) {
                    let how = self.normal(*seed, Param::Weight(site).tensor_id(), *std);
                    init(self.dev, w.slice(row * ld..w.len), o, k, ld, how)?;
                    row += o;
                }
                // Synthetic biases are zero (the host twin's too), so none is added.
                (w, None)
            }
        };
        Ok(GroupLinear {
            sites: sites.to_vec(),
            outs: outs.to_vec(),
            adapters,
            out,
            k,
            ld,
            aug: self.aug,
            w,
            bias,
        })
    }

    fn norm(&self, site: NormSite, width: usize, c: &ModelConfig) -> Result<DNorm> {
        let kind = match c.arch {
            Arch::Llama => NormKind::Rms,
            Arch::Opt => NormKind::Layer,
        };
        let affine = c.arch == Arch::Llama || c.norm_affine;
        let (w, b) = match self.source {
            Source::Host(m) => {
                let n: &Norm = host_norm(m, site)
                    .ok_or_else(|| Error::Config(format!("the model has no norm at {site:?}")))?;
                (
                    n.w.as_ref()
                        .map(|w| self.upload(self.dtype, w))
                        .transpose()?,
                    n.b.as_ref()
                        .map(|b| self.upload(self.dtype, b))
                        .transpose()?,
                )
            }
            Source::Synthetic { .. } => {
                let ones = |v: f32| -> Result<DBuf> {
                    let buf = self.zeros(self.dtype, width)?;
                    init(self.dev, buf.view(), 1, width, width, Init::Const(v))?;
                    Ok(buf)
                };
                let w = if affine { Some(ones(1.0)?) } else { None };
                let b = if affine && kind == NormKind::Layer {
                    Some(self.zeros(self.dtype, width)?)
                } else {
                    None
                };
                (w, b)
            }
        };
        Ok(DNorm {
            w,
            b,
            eps: c.norm_eps,
            kind,
            width,
        })
    }
}

fn host_norm(m: &Model, site: NormSite) -> Option<&Norm> {
    match site {
        NormSite::Attn(l) => m.layers.get(l).map(|l| &l.attn_norm),
        NormSite::Mlp(l) => m.layers.get(l).map(|l| &l.mlp_norm),
        NormSite::Final => m.final_norm.as_ref(),
    }
}
