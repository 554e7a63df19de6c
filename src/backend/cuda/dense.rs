//! Dense MeZO on the GPU: θ itself is perturbed in place (+ε, −2ε, +ε) and updated, element
//! for element the host's `perturb::dense` (same tensor ids, indices and fma order). Biases
//! are fp32 on the device, weights and norms in the storage dtype (rounded once per call).

use super::buffer::DBuf;
use super::device::CudaDevice;
use super::params::*;
use super::weights::DeviceModel;
use crate::model::{NormSite, Param};
use crate::perturb::{role, Dist, StepRecord, UpdateConfig};
use crate::Result;

/// One tensor: buffer, first element, rows × cols with row stride ld, its id, decayed or not.
struct View<'a> {
    buf: &'a DBuf,
    offset: usize,
    rows: usize,
    cols: usize,
    ld: usize,
    param: Param,
    decay: bool,
}

fn views(m: &DeviceModel) -> Vec<View<'_>> {
    let c = &m.config;
    let mut out = Vec::new();
    fn plain(buf: &DBuf, rows: usize, cols: usize, param: Param, decay: bool) -> View<'_> {
        View {
            buf,
            offset: 0,
            rows,
            cols,
            ld: cols,
            param,
            decay,
        }
    }
    out.push(plain(
        &m.embed,
        c.vocab_size,
        c.embed_dim,
        Param::Embed,
        true,
    ));
    if let Some(p) = &m.pos {
        out.push(plain(
            p,
            c.max_position_embeddings + 2,
            c.hidden_size,
            Param::PosEmbed,
            true,
        ));
    }
    if let Some(h) = &m.head {
        out.push(plain(h, c.vocab_size, c.embed_dim, Param::Head, true));
    }
    for (li, l) in m.layers.iter().enumerate() {
        for (n, site) in [
            (&l.attn_norm, NormSite::Attn(li)),
            (&l.mlp_norm, NormSite::Mlp(li)),
        ] {
            if let Some(w) = &n.w {
                out.push(plain(w, 1, n.width, Param::NormWeight(site), false));
            }
            if let Some(b) = &n.b {
                out.push(plain(b, 1, n.width, Param::NormBias(site), false));
            }
        }
    }
    if let Some(n) = &m.final_norm {
        if let Some(w) = &n.w {
            out.push(plain(
                w,
                1,
                n.width,
                Param::NormWeight(NormSite::Final),
                false,
            ));
        }
        if let Some(b) = &n.b {
            out.push(plain(
                b,
                1,
                n.width,
                Param::NormBias(NormSite::Final),
                false,
            ));
        }
    }
    for g in m.groups() {
        let mut row = 0;
        for (&site, &o) in g.sites.iter().zip(&g.outs) {
            out.push(View {
                buf: &g.w,
                offset: row * g.ld,
                rows: o,
                cols: g.k,
                ld: g.ld,
                param: Param::Weight(site),
                decay: true,
            });
            if let Some(b) = &g.bias {
                out.push(View {
                    buf: b,
                    offset: row,
                    rows: 1,
                    cols: o,
                    ld: o,
                    param: Param::Bias(site),
                    decay: false,
                });
            }
            row += o;
        }
    }
    out
}

fn axpy(
    dev: &CudaDevice,
    m: &DeviceModel,
    dist: Dist,
    dirs: &DBuf,
    n_dirs: usize,
    neg_decay: Option<f32>,
) -> Result<()> {
    for v in views(m) {
        let p = ZoAxpyParams {
            rows: v.rows as u64,
            cols: v.cols as u64,
            ld: v.ld as u64,
            tensor: v.param.tensor_id(),
            role: role::DENSE,
            dist: match dist {
                Dist::Gaussian => ZO_DIST_GAUSSIAN,
                Dist::Rademacher => ZO_DIST_RADEMACHER,
            },
            dirs: n_dirs as u32,
            decay: (v.decay && neg_decay.is_some()) as u32,
            neg_decay: neg_decay.unwrap_or(0.0),
        };
        let (grid, block, _) = super::update::axpy_launch_config(v.rows * v.cols);
        let name = super::forward::kernel_name("zo_seeded_axpy", v.buf.dtype);
        // SAFETY: the view lies inside its buffer (rows·ld from offset); dirs holds n_dirs.
        unsafe {
            dev.launch_raw(name, grid, block, 0, &p, &[v.buf.at(v.offset), dirs.ptr()])?;
        }
    }
    dev.stream()
        .synchronize()
        .map_err(super::device::cuda_err("dense seeded update"))
}

/// `ZoUpdateDir` words (seed lo, seed hi, coefficient bits, 0) per direction.
pub(super) fn dir_words(seeds: &[u64], coefs: &[f32]) -> Vec<u32> {
    seeds
        .iter()
        .zip(coefs)
        .flat_map(|(&s, &c)| [s as u32, (s >> 32) as u32, c.to_bits(), 0])
        .collect()
}

/// θ ← fma(scale, Z(seed), θ) over every parameter.
pub(crate) fn perturb_in_place(
    dev: &CudaDevice,
    m: &DeviceModel,
    seed: u64,
    scale: f32,
    dist: Dist,
) -> Result<()> {
    let dirs = DBuf::from_words(dev, &dir_words(&[seed], &[scale]))?;
    axpy(dev, m, dist, &dirs, 1, None)
}

/// The dense update of one record (weight decay first on weights and embeddings).
pub(crate) fn update(
    dev: &CudaDevice,
    m: &DeviceModel,
    dist: Dist,
    rec: &StepRecord,
    cfg: &UpdateConfig,
) -> Result<()> {
    let u = crate::perturb::dense::update_terms("dense", rec, cfg, dist)?;
    let (seeds, coefs): (Vec<u64>, Vec<f32>) = u.terms.iter().copied().unzip();
    let dirs = DBuf::from_words(dev, &dir_words(&seeds, &coefs))?;
    axpy(dev, m, dist, &dirs, seeds.len(), u.decay.map(|d| -d))
}
