//! Dense MeZO on the GPU: θ itself is perturbed in place (+ε, −2ε, +ε) and updated, element
//! for element the host's `perturb::dense` (same tensor ids, indices and fma order). Biases
//! are fp32 on the device, weights and norms in the storage dtype (rounded once per call).

use super::buffer::DBuf;
use super::device::CudaDevice;
use super::kernels::update::{seeded_axpy, Strided, UpdateDirs};
use super::weights::DeviceModel;
use crate::model::{NormSite, Param};
use crate::perturb::{role, Dist, StepRecord, UpdateConfig};
use crate::Result;

/// One tensor: buffer, first element, rows × cols with row stride ld, its id, decayed or not.
struct Tensor<'a> {
    buf: &'a DBuf,
    offset: usize,
    rows: usize,
    cols: usize,
    ld: usize,
    param: Param,
    decay: bool,
}

fn tensors(m: &DeviceModel) -> Vec<Tensor<'_>> {
    let c = &m.config;
    let mut out = Vec::new();
    fn plain(buf: &DBuf, rows: usize, cols: usize, param: Param, decay: bool) -> Tensor<'_> {
        Tensor {
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
            out.push(Tensor {
                buf: &g.w,
                offset: row * g.ld,
                rows: o,
                cols: g.k,
                ld: g.ld,
                param: Param::Weight(site),
                decay: true,
            });
            if let Some(b) = &g.bias {
                out.push(Tensor {
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

/// The seeded axpy of `dirs` over every parameter, decaying those that decay by `decay`.
fn axpy(
    dev: &CudaDevice,
    m: &DeviceModel,
    dist: Dist,
    dirs: &UpdateDirs,
    decay: Option<f32>,
) -> Result<()> {
    for t in tensors(m) {
        let shape = Strided {
            rows: t.rows,
            cols: t.cols,
            ld: t.ld,
        };
        let end = t.offset + t.rows.saturating_sub(1) * t.ld + t.cols;
        seeded_axpy(
            dev,
            t.buf.slice(t.offset..end),
            shape,
            t.param.tensor_id(),
            role::DENSE,
            dist,
            dirs,
            decay.filter(|_| t.decay),
        )?;
    }
    // The dirs buffer must outlive the launches.
    dev.synchronize()
}

/// θ ← fma(scale, Z(seed), θ) over every parameter.
pub(crate) fn perturb_in_place(
    dev: &CudaDevice,
    m: &DeviceModel,
    seed: u64,
    scale: f32,
    dist: Dist,
) -> Result<()> {
    let dirs = UpdateDirs::upload(dev, &[(seed, scale)])?;
    axpy(dev, m, dist, &dirs, None)
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
    if !cfg.rule.is_stateless() {
        // Moments the size of the model; the run configuration refuses this pairing first.
        return Err(crate::Error::Unsupported(
            "in-place dense MeZO applies ZO-SGD only: momentum and Adam need the fused dense \
             family (--device cpu)"
                .into(),
        ));
    }
    let dirs = UpdateDirs::upload(dev, &u.terms)?;
    axpy(dev, m, dist, &dirs, u.decay)
}
