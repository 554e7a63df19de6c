//! One forward pass of a plan on the GPU: embeddings → layers → final norm at the scoring
//! rows → head → candidate log-probs. Every Linear is one cuBLASLt GEMM on a K-augmented
//! input (the family's shrink fills the extra columns), attention reads a paged fp32 KV
//! cache, and only the query log-probs come back to the host, where MeZO's classification
//! loss is formed exactly as on the CPU.

use super::backend::{CudaBackend, GpuFamily};
use super::buffer::DBuf;
use super::params::*;
use super::profile::region;
use super::weights::{DMlp, DNorm, GroupLinear};
use super::{DType, GemmShape};
use crate::backend::device_plan::DevicePlan;
use crate::backend::Scores;
use crate::model::{Activation, Arch, NormKind};
use crate::plan::{classification_scores, Plan};
use crate::{Error, Result};

/// Activation buffers, grown to the largest plan seen and reused (one allocation per shape
/// bucket, not per step).
#[derive(Default)]
pub struct Workspace {
    tokens: usize,
    rows: usize,
    bufs: Vec<(String, DBuf)>,
}

impl Workspace {
    /// The buffer `name` with room for `len` elements of `dtype`, (re)allocated when smaller.
    fn get(&mut self, b: &CudaBackend, name: &str, dtype: DType, len: usize) -> Result<&DBuf> {
        let i = match self.bufs.iter().position(|(n, _)| n == name) {
            Some(i) if self.bufs[i].1.len >= len && self.bufs[i].1.dtype == dtype => i,
            Some(i) => {
                self.bufs[i].1 = DBuf::zeros(&b.dev, dtype, len.next_multiple_of(4096))?;
                i
            }
            None => {
                let d = DBuf::zeros(&b.dev, dtype, len.next_multiple_of(4096))?;
                self.bufs.push((name.to_string(), d));
                self.bufs.len() - 1
            }
        };
        Ok(&self.bufs[i].1)
    }

    /// Peak bytes held by the workspace.
    pub fn bytes(&self) -> usize {
        self.bufs.iter().map(|(_, d)| d.bytes()).sum()
    }
}

pub(crate) struct Forward<'a> {
    pub b: &'a CudaBackend,
    pub ws: &'a mut Workspace,
}

/// Device addresses of one plan's arrays.
struct PlanBufs {
    _keep: Vec<DBuf>,
    tokens: u64,
    positions: u64,
    cu_seqlens: u64,
    ctx_lens: u64,
    block_tables: u64,
    slots: u64,
    segs: u64,
    seg_dir: u64,
    cos: u64,
    sin: u64,
    scoring_rows: u64,
    /// (index into the scoring rows, token) per query.
    query_row: u64,
}

fn act_code(a: Activation) -> Result<u32> {
    Ok(match a {
        Activation::Silu => ZO_ACT_SILU,
        Activation::Relu => ZO_ACT_RELU,
        Activation::Gelu => ZO_ACT_GELU,
    })
}

impl Forward<'_> {
    fn k(&self, base: &'static str) -> &'static str {
        kernel_name(base, self.b.model.dtype)
    }

    fn upload(&self, dp: &DevicePlan) -> Result<PlanBufs> {
        let dev = &self.b.dev;
        let words = |v: &[u32]| DBuf::from_words(dev, if v.is_empty() { &[0u32] } else { v });
        let segs: Vec<ZoSegment> = dp.segments.iter().map(ZoSegment::from).collect();
        let seg_words: Vec<u32> = segs
            .iter()
            .flat_map(|s| {
                [
                    s.row_start,
                    s.row_end,
                    s.seed_lo,
                    s.seed_hi,
                    s.scale.to_bits(),
                    s.reserved,
                ]
            })
            .collect();
        let (cos, sin) = if self.b.inv_freq.is_empty() {
            (vec![0.0f32], vec![0.0f32])
        } else {
            crate::backend::cpu::rope_tables(&dp.positions, &self.b.inv_freq)
        };
        let keep = vec![
            words(&dp.tokens)?,
            words(&dp.positions)?,
            words(&dp.cu_seqlens)?,
            words(&dp.ctx_lens)?,
            words(&dp.block_tables)?,
            words(&dp.slot_mapping)?,
            words(&seg_words)?,
            words(&dp.segment_direction)?,
            DBuf::from_words(dev, &cos)?,
            DBuf::from_words(dev, &sin)?,
            words(&dp.scoring_rows)?,
            words(
                &dp.query_row
                    .iter()
                    .zip(&dp.query_token)
                    .flat_map(|(&r, &t)| [r, t])
                    .collect::<Vec<u32>>(),
            )?,
        ];
        let p = |i: usize| keep[i].ptr();
        Ok(PlanBufs {
            tokens: p(0),
            positions: p(1),
            cu_seqlens: p(2),
            ctx_lens: p(3),
            block_tables: p(4),
            slots: p(5),
            segs: p(6),
            seg_dir: p(7),
            cos: p(8),
            sin: p(9),
            scoring_rows: p(10),
            query_row: p(11),
            _keep: keep,
        })
    }

    pub fn score(self, plan: &Plan) -> Result<Scores> {
        let b = self.b;
        let c = &b.model.config;
        let dp = region(&b.dev, "device_plan", || DevicePlan::new(plan))?;
        if dp.scoring_rows.is_empty() {
            return Ok(Scores {
                query_logprobs: Vec::new(),
                examples: Vec::new(),
            });
        }
        match &b.family {
            GpuFamily::LowRank(l) => l.check_plan(&dp)?,
            // The direction count is checked against the layout when packing.
            GpuFamily::Lora(_) => {}
            GpuFamily::None | GpuFamily::Dense { .. } if !dp.segments.is_empty() => {
                return Err(Error::Unsupported(
                    "this CUDA backend's family scores no perturbed variants (dense MeZO runs \
                     in place on the GPU)"
                        .into(),
                ));
            }
            GpuFamily::None | GpuFamily::Dense { .. } => {}
        }
        let t = dp.n_tokens;
        let pb = region(&b.dev, "upload", || self.upload(&dp))?;
        self.ws.tokens = self.ws.tokens.max(t);
        self.ws.rows = self.ws.rows.max(dp.scoring_rows.len());
        match &b.family {
            GpuFamily::LowRank(l) => region(&b.dev, "pack", || l.pack(&b.dev, &b.model, &dp))?,
            GpuFamily::Lora(l) => region(&b.dev, "pack", || l.pack(&b.dev, &b.model, &dp))?,
            GpuFamily::None | GpuFamily::Dense { .. } => {}
        }

        let h = c.hidden_size;
        let dt = b.model.dtype;
        let x = self.ws.get(b, "x", DType::F32, t * h)?.ptr();
        region(&b.dev, "embed", || self.embed(&pb, t, x))?;
        let (qd, kvd) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let slots = dp.n_pages * crate::backend::device_plan::PAGE_SIZE;
        let kc = self.ws.get(b, "k_cache", DType::F32, slots * kvd)?.ptr();
        let vc = self.ws.get(b, "v_cache", DType::F32, slots * kvd)?.ptr();
        for layer in &b.model.layers {
            // Attention block.
            let xa = self.ws.get(b, "xa", dt, t * layer.qkv.ld)?.ptr();
            region(&b.dev, "norm", || {
                self.norm(&layer.attn_norm, x, t, None, xa, layer.qkv.ld)
            })?;
            region(&b.dev, "shrink", || {
                self.shrink(&layer.qkv, xa, t, &pb, &dp)
            })?;
            let qkv_w = layer.qkv.out;
            let qkv = self.ws.get(b, "qkv", DType::F32, t * qkv_w)?.ptr();
            region(&b.dev, "gemm.qkv", || {
                self.gemm(&layer.qkv, xa, t, qkv, qkv_w, false)
            })?;
            if c.arch == Arch::Llama {
                region(&b.dev, "rope", || self.rope(qkv, qkv_w, t, qd, &pb))?;
            }
            region(&b.dev, "kv_write", || {
                self.kv_write(qkv, qkv_w, t, qd, kvd, slots, kc, vc, &pb)
            })?;
            let ao = self.ws.get(b, "ao", dt, t * layer.o.ld)?.ptr();
            region(&b.dev, "attention", || {
                self.attention(qkv, qkv_w, t, &dp, &pb, kc, vc, ao, layer.o.ld)
            })?;
            region(&b.dev, "shrink", || self.shrink(&layer.o, ao, t, &pb, &dp))?;
            region(&b.dev, "gemm.o", || self.gemm(&layer.o, ao, t, x, h, true))?;
            // MLP block.
            let (first, second) = match &layer.mlp {
                DMlp::Gated { gate_up, down, .. } => (gate_up, down),
                DMlp::Plain { fc1, fc2 } => (fc1, fc2),
            };
            let xm = self.ws.get(b, "xm", dt, t * first.ld)?.ptr();
            region(&b.dev, "norm", || {
                self.norm(&layer.mlp_norm, x, t, None, xm, first.ld)
            })?;
            region(&b.dev, "shrink", || self.shrink(first, xm, t, &pb, &dp))?;
            let mid = self.ws.get(b, "mid", DType::F32, t * first.out)?.ptr();
            region(&b.dev, "gemm.mlp_in", || {
                self.gemm(first, xm, t, mid, first.out, false)
            })?;
            let am = self.ws.get(b, "am", dt, t * second.ld)?.ptr();
            let gated = matches!(layer.mlp, DMlp::Gated { .. });
            region(&b.dev, "act", || {
                self.act(mid, first.out, t, second.k, gated, am, second.ld)
            })?;
            region(&b.dev, "shrink", || self.shrink(second, am, t, &pb, &dp))?;
            region(&b.dev, "gemm.mlp_out", || {
                self.gemm(second, am, t, x, h, true)
            })?;
        }
        // Final norm at the scoring rows only, then the head on those rows.
        let r = dp.scoring_rows.len();
        let e = c.embed_dim;
        let ld_e = e.next_multiple_of(8);
        let hf = self.ws.get(b, "hf", dt, r * ld_e)?.ptr();
        match &b.model.final_norm {
            Some(n) => self.norm(n, x, t, Some((pb.scoring_rows, r)), hf, ld_e)?,
            None => self.gather_convert(x, t, pb.scoring_rows, r, hf, ld_e)?,
        }
        let v = c.vocab_size;
        let logits = self.ws.get(b, "logits", DType::F32, r * v)?.ptr();
        let shape = GemmShape {
            dtype: dt,
            rows: r,
            out: v,
            k: e,
            ld_x: ld_e,
            ld_w: e,
            ld_y: v,
            bias: false,
            accumulate: false,
            store_y: false,
        };
        // SAFETY: hf holds r·ld_e, the head v·e, logits r·v elements (sized above).
        region(&b.dev, "gemm.head", || unsafe {
            b.gemm.run(&shape, hf, b.model.head().ptr(), logits, None)
        })?;
        let nq = dp.query_token.len();
        let out = self.ws.get(b, "qlp", DType::F32, nq)?;
        let out_ptr = out.ptr();
        let p = ZoLogprobParams {
            rows: r as u32,
            vocab: v as u32,
            ld: v as u32,
            n_queries: nq as u32,
            write_lse: 0,
            reserved: 0,
        };
        let d = crate::backend::launch::logprob_launch_config(r, v);
        let (grid, block, smem) = (d.grid.0, d.block.0, d.smem);
        // SAFETY: logits r·v, query pairs nq, output nq; lse unused (write_lse = 0).
        unsafe {
            b.dev.launch_raw(
                "zo_candidate_logprobs",
                (grid, 1, 1),
                (block, 1, 1),
                smem,
                &p,
                &[logits, pb.query_row, 0, out_ptr],
            )?
        };
        let all = region(&b.dev, "readback", || {
            self.ws.get(b, "qlp", DType::F32, nq)?.to_f32(&b.dev)
        })?;
        let query_logprobs = all[..nq].to_vec();
        let examples = classification_scores(plan, &query_logprobs);
        Ok(Scores {
            query_logprobs,
            examples,
        })
    }

    fn embed(&self, pb: &PlanBufs, t: usize, x: u64) -> Result<()> {
        let m = &self.b.model;
        let c = &m.config;
        let mut flags = ZO_EMBED_TOKENS;
        let (pos_ptr, n_pos) = match &m.pos {
            Some(p) => {
                flags |= ZO_EMBED_POSITIONS;
                (p.ptr(), c.max_position_embeddings + 2)
            }
            None => (0, 0),
        };
        let p = ZoEmbedParams {
            n_tokens: t as u32,
            width: c.hidden_size as u32,
            ld: c.hidden_size as u32,
            vocab: c.vocab_size as u32,
            n_pos: n_pos as u32,
            pos_offset: 2,
            flags,
            reserved: 0,
        };
        // SAFETY: x holds t·hidden fp32; tables as uploaded; ids checked in the kernel.
        unsafe {
            self.b.dev.launch_raw(
                self.k("zo_embed"),
                (t as u32, 1, 1),
                crate::backend::launch::row_launch_config(t, c.hidden_size).block,
                0,
                &p,
                &[pb.tokens, pb.positions, m.embed.ptr(), pos_ptr, x],
            )
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn norm(
        &self,
        n: &DNorm,
        x: u64,
        t: usize,
        gather: Option<(u64, usize)>,
        out: u64,
        ld_out: usize,
    ) -> Result<()> {
        let mut flags = 0;
        if n.w.is_some() {
            flags |= ZO_NORM_HAS_W;
        }
        if n.b.is_some() {
            flags |= ZO_NORM_HAS_B;
        }
        let (rows, idx) = match gather {
            Some((idx, r)) => {
                flags |= ZO_NORM_GATHER;
                (r, idx)
            }
            None => (t, 0),
        };
        let p = ZoNormParams {
            rows: rows as u32,
            width: n.width as u32,
            ld_in: n.width as u32,
            ld_out: ld_out as u32,
            n_src_rows: t as u32,
            kind: match n.kind {
                NormKind::Rms => ZO_NORM_RMS,
                NormKind::Layer => ZO_NORM_LAYER,
            },
            flags,
            eps: n.eps,
        };
        let d = crate::backend::launch::norm_launch_config(rows, n.width);
        let (grid, block, smem) = (d.grid.0, d.block.0, d.smem);
        // SAFETY: x holds t rows of width fp32, out rows·ld_out T; w/b width T or null.
        unsafe {
            self.b.dev.launch_raw(
                self.k("zo_norm"),
                (grid, 1, 1),
                (block, 1, 1),
                smem,
                &p,
                &[
                    idx,
                    n.w.as_ref().map_or(0, DBuf::ptr),
                    n.b.as_ref().map_or(0, DBuf::ptr),
                    x,
                    out,
                ],
            )
        }
    }

    fn gather_convert(
        &self,
        x: u64,
        t: usize,
        idx: u64,
        r: usize,
        out: u64,
        ld: usize,
    ) -> Result<()> {
        let _ = (x, t, idx, r, out, ld);
        Err(Error::Unsupported(
            "models without a final norm on the CUDA backend".into(),
        ))
    }

    /// The family's extra GEMM-input columns of `g` (nothing for groups without adapters).
    fn shrink(
        &self,
        g: &GroupLinear,
        x: u64,
        t: usize,
        pb: &PlanBufs,
        dp: &DevicePlan,
    ) -> Result<()> {
        match &self.b.family {
            GpuFamily::LowRank(l) if !g.adapters.is_empty() => {
                l.shrink(&self.b.dev, g, x, t, pb.segs, pb.seg_dir, dp)
            }
            GpuFamily::Lora(l) if !g.adapters.is_empty() => {
                l.shrink(&self.b.dev, g, x, t, pb.segs, pb.seg_dir, dp)
            }
            _ => Ok(()),
        }
    }

    fn gemm(
        &self,
        g: &GroupLinear,
        x: u64,
        t: usize,
        y: u64,
        ld_y: usize,
        accumulate: bool,
    ) -> Result<()> {
        let shape = GemmShape {
            dtype: g.w.dtype,
            rows: t,
            out: g.out,
            k: g.ld,
            ld_x: g.ld,
            ld_w: g.ld,
            ld_y,
            bias: g.bias.is_some(),
            accumulate,
            store_y: false,
        };
        // SAFETY: x holds t·ld, W out·ld, y t·ld_y elements; bias out fp32.
        unsafe {
            self.b
                .gemm
                .run(&shape, x, g.w.ptr(), y, g.bias.as_ref().map(DBuf::ptr))
        }
    }

    fn rope(&self, qkv: u64, ld: usize, t: usize, qd: usize, pb: &PlanBufs) -> Result<()> {
        let c = &self.b.model.config;
        let p = ZoRopeParams {
            rows: t as u32,
            ld: ld as u32,
            q_col: 0,
            q_heads: c.num_heads as u32,
            k_col: qd as u32,
            k_heads: c.num_kv_heads as u32,
            head_dim: c.head_dim as u32,
            reserved: 0,
        };
        let (grid, block, _) =
            super::attention::rope_launch_config(t, c.num_heads, c.num_kv_heads, c.head_dim);
        // SAFETY: qkv holds t·ld fp32; the tables t·head_dim/2 each.
        unsafe {
            self.b
                .dev
                .launch_raw("zo_rope", grid, block, 0, &p, &[qkv, pb.cos, pb.sin])
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn kv_write(
        &self,
        qkv: u64,
        ld: usize,
        t: usize,
        qd: usize,
        kvd: usize,
        slots: usize,
        kc: u64,
        vc: u64,
        pb: &PlanBufs,
    ) -> Result<()> {
        let p = ZoKvWriteParams {
            rows: t as u32,
            ld: ld as u32,
            k_col: qd as u32,
            v_col: (qd + kvd) as u32,
            kv_width: kvd as u32,
            num_slots: slots as u32,
        };
        let (grid, block, _) = super::attention::kv_write_launch_config(t);
        // SAFETY: qkv t·ld fp32; caches slots·kvd fp32; slots array t entries.
        unsafe {
            self.b
                .dev
                .launch_raw("zo_kv_write", grid, block, 0, &p, &[qkv, pb.slots, kc, vc])
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        qkv: u64,
        ld: usize,
        t: usize,
        dp: &DevicePlan,
        pb: &PlanBufs,
        kc: u64,
        vc: u64,
        out: u64,
        ld_out: usize,
    ) -> Result<()> {
        let c = &self.b.model.config;
        let hd = c.head_dim;
        let layout = super::attention::QkvLayout::fused(t, c.num_heads, c.num_kv_heads, hd);
        debug_assert_eq!(layout.ld, ld);
        let p = super::attention::attention_params(
            &layout,
            dp.n_seqs,
            dp.max_pages,
            dp.n_pages,
            ld_out,
            (hd as f64).powf(-0.5) as f32,
            None,
        );
        let name = super::attention::attention_kernel_name(hd, self.b.model.dtype);
        let (grid, block, smem) = super::attention::attention_launch_config(
            c.num_heads,
            c.num_kv_heads,
            hd,
            dp.n_seqs,
            dp.max_seq_len(),
        );
        // SAFETY: buffers sized from the same plan; no prefix (null pointers, prefix_len 0).
        unsafe {
            self.b.dev.launch_raw(
                name,
                grid,
                block,
                smem,
                &p,
                &[
                    qkv,
                    kc,
                    vc,
                    pb.cu_seqlens,
                    pb.ctx_lens,
                    pb.block_tables,
                    0,
                    0,
                    pb.segs,
                    out,
                ],
            )
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn act(
        &self,
        mid: u64,
        ld_in: usize,
        t: usize,
        width: usize,
        gated: bool,
        out: u64,
        ld_out: usize,
    ) -> Result<()> {
        let p = ZoActParams {
            rows: t as u32,
            width: width as u32,
            ld_in: ld_in as u32,
            ld_out: ld_out as u32,
            act: act_code(self.b.model.config.activation)?,
            gated: gated as u32,
        };
        let d = crate::backend::launch::row_launch_config(t, width);
        let (grid, block, smem) = (d.grid.0, d.block.0, d.smem);
        // SAFETY: mid t·ld_in fp32, out t·ld_out T.
        unsafe {
            self.b.dev.launch_raw(
                self.k("zo_act"),
                (grid, 1, 1),
                (block, 1, 1),
                smem,
                &p,
                &[mid, out],
            )
        }
    }
}

/// `base_<dtype suffix>` as a static name (kernel names are looked up by &'static str).
pub(crate) fn kernel_name(base: &'static str, dt: DType) -> &'static str {
    macro_rules! names {
        ($($b:literal),*) => {
            match (base, dt) {
                $(
                    ($b, DType::F32) => concat!($b, "_f32"),
                    ($b, DType::Bf16) => concat!($b, "_bf16"),
                    ($b, DType::F16) => concat!($b, "_f16"),
                )*
                _ => base,
            }
        };
    }
    names!(
        "zo_embed",
        "zo_norm",
        "zo_act",
        "zo_adapter_shrink",
        "zo_adapter_pack",
        "zo_seeded_axpy",
        "zo_factor_merge",
        "zo_attn_prefill",
        "zo_to_storage",
        "zo_init"
    )
}
