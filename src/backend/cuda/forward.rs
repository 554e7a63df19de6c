//! One forward pass of a plan on the device: embeddings (OPT-350m: then project_in) → pre- or
//! post-LN layers → final norm (post-LN: none) at the scoring rows → project_out → head →
//! candidate log-probs. Every Linear is one GEMM on a K-augmented input (the
//! adapter family's shrink fills the extra columns), attention reads a paged fp32 KV cache,
//! and only the query log-probs come back to the host, where MeZO's classification loss is
//! formed exactly as on the CPU. Every kernel goes through its family's checked launcher.
//!
//! Scoring and decoding share everything up to the head's logits ([`Forward::begin`],
//! [`Forward::logits`]): scoring keeps one workspace KV cache that every layer overwrites,
//! the decoder passes a persistent cache per layer that its sequences continue. Only the
//! attention kernel differs ([`Attend`]): a decoding step past the prompt has one query row per
//! sequence, which the split-K decode kernel spreads over the keys where the prefill kernel
//! would give each sequence one block.

use super::backend::{CudaBackend, GpuFamily};
use super::buffer::{DBuf, View};
use super::device::Arrival;
use super::gemm::{linear, GemmShape};
use super::kernels::adapter::DeviceSegments;
use super::kernels::attention::{
    attention_prefill, kv_write, rope_in_place, PrefillAttention, QkvLayout, SeqTables, PAGE,
};
use super::kernels::decode::{
    decode_attention, decode_splits, decode_workspace_len, DecodeAttention,
};
use super::kernels::loss::{candidate_logprobs, Logits};
use super::kernels::ops::{self, NormWeights, Positions, RowShape, Table};
use super::profile::region;
use super::streaming::STREAM_BUFFERS;
use super::weights::{DMlp, DNorm, GroupLinear};
use super::DType;
use crate::backend::device_plan::DevicePlan;
use crate::backend::Scores;
use crate::model::Arch;
use crate::plan::{classification_scores, Plan};
use crate::{Error, Result};

/// Activation buffers, grown to the largest plan seen and reused (one allocation per shape
/// bucket, not per step).
#[derive(Default)]
pub struct Workspace {
    bufs: Vec<(&'static str, DBuf)>,
}

impl Workspace {
    /// Makes room for `len` elements of `dtype` in buffer `name` ((re)allocated when smaller).
    pub(super) fn ensure(
        &mut self,
        b: &CudaBackend,
        name: &'static str,
        dtype: DType,
        len: usize,
    ) -> Result<()> {
        let fits = |d: &DBuf| d.len >= len && d.dtype == dtype;
        match self.bufs.iter().position(|(n, _)| *n == name) {
            Some(i) if fits(&self.bufs[i].1) => {}
            Some(i) => self.bufs[i].1 = DBuf::zeros(&b.dev, dtype, len.next_multiple_of(4096))?,
            None => {
                let d = DBuf::zeros(&b.dev, dtype, len.next_multiple_of(4096))?;
                self.bufs.push((name, d));
            }
        }
        Ok(())
    }

    /// The first `len` elements of buffer `name` (made room for by [`Workspace::ensure`]).
    pub(super) fn view(&self, name: &str, len: usize) -> View<'_> {
        let (_, d) = self
            .bufs
            .iter()
            .find(|(n, _)| *n == name)
            .expect("workspace buffer ensured before use");
        d.slice(0..len)
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

/// The attention kernel of a forward's layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attend {
    /// Paged prefill attention: any number of rows per sequence, shared contexts read through
    /// `own_starts`.
    Prefill,
    /// Split-K decode attention: exactly one row per sequence, continuing its cached tokens
    /// (no shared context); the row's own key is written before it attends.
    Decode,
}

/// What the decode kernel reads beyond the plan's tables.
struct DecodeCtx {
    /// `[n_seqs]`: cached tokens plus the row's own.
    ctx_lens: DBuf,
    max_ctx: usize,
    /// fp32 elements of the split workspace.
    ws_len: usize,
}

/// One plan's arrays on the device.
pub(crate) struct PlanBufs {
    tokens: DBuf,
    positions: DBuf,
    cu_seqlens: DBuf,
    ctx_lens: DBuf,
    own_starts: DBuf,
    block_tables: DBuf,
    slots: DBuf,
    cos: DBuf,
    sin: DBuf,
    scoring_rows: DBuf,
    /// (index into the scoring rows, token) per query.
    queries: DBuf,
    segs: DeviceSegments,
    /// Some: the layers attend with the decode kernel.
    decode: Option<DecodeCtx>,
}

/// The sizes of every activation buffer of one plan.
struct Sizes {
    t: usize,
    rows: usize,
    slots: usize,
    queries: usize,
    /// fp32 elements of the decode kernel's split workspace (0: prefill attention).
    decode_ws: usize,
}

impl Forward<'_> {
    fn upload(&self, dp: &DevicePlan, attend: Attend) -> Result<PlanBufs> {
        let dev = &self.b.dev;
        let words = |v: &[u32]| DBuf::from_words(dev, if v.is_empty() { &[0u32] } else { v });
        let (cos, sin) = if self.b.inv_freq.is_empty() {
            (vec![0.0f32], vec![0.0f32])
        } else {
            crate::backend::rope::rope_tables(&dp.positions, &self.b.inv_freq)
        };
        let queries: Vec<u32> = dp
            .query_row
            .iter()
            .zip(&dp.query_token)
            .flat_map(|(&r, &t)| [r, t])
            .collect();
        Ok(PlanBufs {
            tokens: words(&dp.tokens)?,
            positions: words(&dp.positions)?,
            cu_seqlens: words(&dp.cu_seqlens)?,
            ctx_lens: words(&dp.ctx_lens)?,
            own_starts: words(&dp.own_starts)?,
            block_tables: words(&dp.block_tables)?,
            slots: words(&dp.slot_mapping)?,
            cos: DBuf::from_words(dev, &cos)?,
            sin: DBuf::from_words(dev, &sin)?,
            scoring_rows: words(&dp.scoring_rows)?,
            queries: words(&queries)?,
            segs: DeviceSegments::upload(dev, &dp.segments, &dp.direction_seeds)?,
            decode: match attend {
                Attend::Prefill => None,
                Attend::Decode => Some(self.decode_ctx(dp)?),
            },
        })
    }

    /// The decode kernel's context lengths and workspace for `dp`, which must have one row per
    /// sequence and no shared contexts (the kernel reads block-table positions `0..ctx_len`).
    fn decode_ctx(&self, dp: &DevicePlan) -> Result<DecodeCtx> {
        let one_row = dp.cu_seqlens.windows(2).all(|w| w[1] == w[0] + 1);
        if !one_row || dp.ctx_lens != dp.own_starts {
            return Err(Error::Data(
                "forward: decode attention needs one row per sequence continuing its own cache"
                    .into(),
            ));
        }
        let ctx: Vec<u32> = dp.ctx_lens.iter().map(|&c| c + 1).collect();
        let max_ctx = ctx.iter().copied().max().unwrap_or(0) as usize;
        let b = self.b;
        let c = &b.model.config;
        let prefix_tokens = match &b.family {
            GpuFamily::Prefix(p) if !b.model.layers.is_empty() => p.layer(0, None).tokens,
            _ => 0,
        };
        let splits = decode_splits(prefix_tokens, max_ctx.min(dp.max_pages * PAGE));
        Ok(DecodeCtx {
            ctx_lens: DBuf::from_words(&b.dev, if ctx.is_empty() { &[0u32] } else { &ctx })?,
            max_ctx,
            ws_len: decode_workspace_len(dp.n_seqs, c.num_heads, c.head_dim, splits),
        })
    }

    /// Makes room for every buffer the forward of a plan of these sizes writes (the workspace
    /// KV cache only when `s.slots` > 0).
    fn reserve(&mut self, s: &Sizes) -> Result<()> {
        let b = self.b;
        // Every layer is laid out alike (one config), so the first sizes them all.
        let shapes = b
            .model
            .layers
            .first()
            .map(|l| l.groups().map(|g| (g.out, g.ld)));
        let need = workspace_need(&b.model.config, b.model.dtype, shapes, s);
        for (name, dtype, len) in need {
            self.ws.ensure(b, name, dtype, len)?;
        }
        Ok(())
    }

    pub fn score(mut self, plan: &Plan) -> Result<Scores> {
        let b = self.b;
        let dev = &*b.dev;
        let dp = region(dev, "device_plan", || DevicePlan::new(plan))?;
        if dp.scoring_rows.is_empty() {
            return Ok(Scores {
                query_logprobs: Vec::new(),
                examples: Vec::new(),
            });
        }
        let slots = dp.n_pages * PAGE;
        let pb = self.begin(&dp, slots, Attend::Prefill)?;
        let ws = &*self.ws;
        let c = &b.model.config;
        let kvd = c.num_kv_heads * c.head_dim;
        // One cache for every layer: each layer writes all of its rows before it reads any.
        let cache = (
            ws.view("k_cache", slots * kvd),
            ws.view("v_cache", slots * kvd),
        );
        let caches = vec![cache; b.model.layers.len()];
        let logits = self.logits(&dp, &pb, &caches)?;
        let nq = dp.query_token.len();
        let out = ws.view("qlp", nq);
        let logits = Logits {
            data: logits,
            rows: dp.scoring_rows.len(),
            vocab: c.vocab_size,
            ld: c.vocab_size,
        };
        candidate_logprobs(dev, logits, pb.queries.slice(0..2 * nq), None, out)?;
        let query_logprobs = region(dev, "readback", || out.to_f32(dev))?;
        let examples = classification_scores(plan, &query_logprobs);
        Ok(Scores {
            query_logprobs,
            examples,
        })
    }

    /// Checks that the backend can run `dp` with `attend`, uploads it, makes room for its
    /// activations (and a workspace KV cache of `cache_slots` slots, 0: none) and packs the
    /// family's adapter columns for its directions.
    pub(crate) fn begin(
        &mut self,
        dp: &DevicePlan,
        cache_slots: usize,
        attend: Attend,
    ) -> Result<PlanBufs> {
        let b = self.b;
        let dev = &*b.dev;
        if matches!(b.family, GpuFamily::None | GpuFamily::Dense { .. }) && !dp.segments.is_empty()
        {
            return Err(Error::Unsupported(
                "this CUDA backend's family scores no perturbed variants (dense MeZO runs in \
                 place on the GPU)"
                    .into(),
            ));
        }
        let pb = region(dev, "upload", || self.upload(dp, attend))?;
        self.reserve(&Sizes {
            t: dp.n_tokens,
            rows: dp.scoring_rows.len(),
            slots: cache_slots,
            queries: dp.query_token.len(),
            // At least one element: the launcher takes a view even when one split needs none.
            decode_ws: pb.decode.as_ref().map_or(0, |d| d.ws_len.max(1)),
        })?;
        if let GpuFamily::Adapter(f) = &b.family {
            region(dev, "pack", || {
                f.sites().pack(
                    dev,
                    &b.model,
                    &pb.segs,
                    &dp.direction_seeds,
                    f.version(),
                    f.live(),
                )
            })?;
        }
        Ok(pb)
    }

    /// The forward of `dp` (after [`Forward::begin`]) up to the head: the full-vocabulary
    /// logits of its scoring rows, `[rows][vocab]` f32 in the workspace. Layer `l` writes its
    /// keys and values through the slot mapping into `caches[l]` and attends over them.
    pub(crate) fn logits(
        &self,
        dp: &DevicePlan,
        pb: &PlanBufs,
        caches: &[(View<'_>, View<'_>)],
    ) -> Result<View<'_>> {
        let b = self.b;
        let c = &b.model.config;
        let dev = &*b.dev;
        if caches.len() != b.model.layers.len() {
            return Err(Error::Data(format!(
                "forward: {} KV caches for {} layers",
                caches.len(),
                b.model.layers.len()
            )));
        }
        // OPT-350m is post-LN: each block normalises the residual after adding to it, so the
        // next GEMM reads the residual as it stands and there is no final norm.
        let pre_norm = c.arch == Arch::Llama || c.pre_norm;
        let prefix = match &b.family {
            GpuFamily::Prefix(p) => Some(p),
            _ => None,
        };
        let t = dp.n_tokens;
        let r = dp.scoring_rows.len();
        let ws = &*self.ws;
        let h = c.hidden_size;
        let x = ws.view("x", t * h);
        region(dev, "embed", || self.embed(pb, t, x))?;
        let qd = c.num_heads * c.head_dim;
        let seqs = SeqTables {
            cu_seqlens: pb.cu_seqlens.view(),
            ctx_lens: pb.ctx_lens.view(),
            own_starts: Some(pb.own_starts.view()),
            block_tables: pb.block_tables.view(),
            max_pages: dp.max_pages,
            max_seqlen: dp.max_seq_len(),
        };
        // Streamed layers: the first two copies start now, behind whatever compute is queued
        // (the resident layers run while they cross); each later one starts once the layer
        // two before it, in the same buffer, is queued.
        let mut landing = LayerLanding::start(b)?;
        for (li, (layer, &(k_cache, v_cache))) in b.model.layers.iter().zip(caches).enumerate() {
            landing.wait(b, li, &pb.segs)?;
            // Attention block. Post-LN: the previous layer's last norm wrote this input.
            let xa = ws.view("xa", t * layer.qkv.ld);
            if pre_norm {
                region(dev, "norm", || {
                    norm(b, &layer.attn_norm, x, t, xa, layer.qkv.ld, false)
                })?;
            } else if li == 0 {
                let shape = RowShape::dense(t, h).with_ld(h, layer.qkv.ld);
                region(dev, "cast", || ops::cast_rows(dev, shape, None, x, xa))?;
            }
            region(dev, "shrink", || self.shrink(&layer.qkv, xa, t, pb))?;
            let qkv_w = layer.qkv.out;
            let qkv = ws.view("qkv", t * qkv_w);
            region(dev, "gemm.qkv", || {
                gemm(b, &layer.qkv, xa, t, qkv, qkv_w, false)
            })?;
            let layout = QkvLayout::fused(t, c.num_heads, c.num_kv_heads, c.head_dim);
            debug_assert_eq!(layout.ld, qkv_w);
            debug_assert_eq!(layout.k_col, qd);
            if c.arch == Arch::Llama {
                region(dev, "rope", || {
                    rope_in_place(dev, qkv, &layout, pb.cos.view(), pb.sin.view())
                })?;
            }
            region(dev, "kv_write", || {
                kv_write(dev, qkv, &layout, pb.slots.view(), k_cache, v_cache)
            })?;
            let ao = ws.view("ao", t * layer.o.ld);
            // With one row per sequence the segments' token rows are its sequence indices,
            // as the decode kernel reads them.
            let layer_prefix = prefix.map(|p| p.layer(li, Some(pb.segs.segments())));
            let scale = (c.head_dim as f64).powf(-0.5) as f32;
            match &pb.decode {
                None => {
                    let attn = PrefillAttention {
                        qkv,
                        layout,
                        k_cache,
                        v_cache,
                        seqs,
                        prefix: layer_prefix,
                        scale,
                    };
                    region(dev, "attention", || {
                        attention_prefill(dev, &attn, ao, layer.o.ld)
                    })?;
                }
                Some(d) => {
                    let attn = DecodeAttention {
                        qkv,
                        layout,
                        k_cache,
                        v_cache,
                        ctx_lens: d.ctx_lens.view(),
                        block_tables: pb.block_tables.view(),
                        max_pages: dp.max_pages,
                        max_ctx: d.max_ctx,
                        prefix: layer_prefix,
                        scale,
                    };
                    let split_ws = ws.view("decode_ws", d.ws_len.max(1));
                    region(dev, "attention.decode", || {
                        decode_attention(dev, &attn, split_ws, ao, layer.o.ld)
                    })?;
                }
            }
            region(dev, "shrink", || self.shrink(&layer.o, ao, t, pb))?;
            region(dev, "gemm.o", || gemm(b, &layer.o, ao, t, x, h, true))?;
            // MLP block.
            let [_, _, first, second] = layer.groups();
            let xm = ws.view("xm", t * first.ld);
            if pre_norm {
                region(dev, "norm", || {
                    norm(b, &layer.mlp_norm, x, t, xm, first.ld, false)
                })?;
            } else {
                region(dev, "norm", || {
                    norm(b, &layer.attn_norm, x, t, xm, first.ld, true)
                })?;
            }
            region(dev, "shrink", || self.shrink(first, xm, t, pb))?;
            let mid = ws.view("mid", t * first.out);
            region(dev, "gemm.mlp_in", || {
                gemm(b, first, xm, t, mid, first.out, false)
            })?;
            let am = ws.view("am", t * second.ld);
            let gated = matches!(layer.mlp, DMlp::Gated { .. });
            let shape = RowShape::dense(t, second.k).with_ld(first.out, second.ld);
            region(dev, "act", || {
                ops::activation(dev, c.activation, gated, shape, mid, am)
            })?;
            region(dev, "shrink", || self.shrink(second, am, t, pb))?;
            region(dev, "gemm.mlp_out", || gemm(b, second, am, t, x, h, true))?;
            if !pre_norm {
                region(dev, "norm", || {
                    norm(b, &layer.mlp_norm, x, t, xa, layer.qkv.ld, true)
                })?;
            }
            landing.refill(b, li)?;
        }
        // The scoring rows only from here: the final norm (or, post-LN, the residual as it
        // is), OPT's project_out, then the head.
        let e = c.embed_dim;
        let ld_e = e.next_multiple_of(8);
        let hf = ws.view("hf", r * ld_e);
        let po = b.model.project_out.as_ref();
        let (rows_in, ld_in) = match po {
            Some(po) => (ws.view("hpo", r * po.ld), po.ld),
            None => (hf, ld_e),
        };
        let shape = RowShape::dense(r, h).with_ld(h, ld_in);
        let scoring = pb.scoring_rows.view();
        match &b.model.final_norm {
            Some(n) => ops::norm_gather(dev, &weights(n), shape, scoring, x, rows_in)?,
            None => ops::cast_rows(dev, shape, Some(scoring), x, rows_in)?,
        }
        if let Some(po) = po {
            // No family puts adapter columns on the model-level projections.
            debug_assert!(po.adapters.is_empty());
            let y = ws.view("po_y", r * e);
            region(dev, "gemm.project_out", || {
                gemm(b, po, rows_in, r, y, e, false)
            })?;
            let shape = RowShape::dense(r, e).with_ld(e, ld_e);
            ops::cast_rows(dev, shape, None, y, hf)?;
        }
        let v = c.vocab_size;
        let logits = ws.view("logits", r * v);
        let head = GemmShape {
            dtype: b.model.dtype,
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
        region(dev, "gemm.head", || {
            linear(dev, &head, hf, b.model.head().view(), logits, None)
        })?;
        Ok(logits)
    }

    fn embed(&self, pb: &PlanBufs, t: usize, x: View<'_>) -> Result<()> {
        let m = &self.b.model;
        let c = &m.config;
        let words = Table {
            data: m.embed.view(),
            rows: c.vocab_size,
        };
        let positions = m.pos.as_ref().map(|p| Positions {
            positions: pb.positions.slice(0..t),
            table: Table {
                data: p.view(),
                rows: c.max_position_embeddings + 2,
            },
            offset: 2,
        });
        let dev = &*self.b.dev;
        let tokens = pb.tokens.slice(0..t);
        let Some(pi) = &m.project_in else {
            return ops::embed(dev, c.hidden_size, tokens, words, positions, x);
        };
        // OPT-350m: the embed_dim-wide token rows go through project_in, then the positions
        // are added at the hidden width.
        let e = c.embed_dim;
        let xe = self.ws.view("xe", t * e);
        ops::embed(dev, e, tokens, words, None, xe)?;
        let xpi = self.ws.view("xpi", t * pi.ld);
        ops::cast_rows(dev, RowShape::dense(t, e).with_ld(e, pi.ld), None, xe, xpi)?;
        debug_assert!(pi.adapters.is_empty());
        gemm(self.b, pi, xpi, t, x, c.hidden_size, false)?;
        match positions {
            Some(p) => ops::add_positions(dev, c.hidden_size, p, x),
            None => Ok(()),
        }
    }

    /// The adapter family's extra GEMM-input columns of `g` (nothing for groups without
    /// adapters).
    fn shrink(&self, g: &GroupLinear, x: View<'_>, t: usize, pb: &PlanBufs) -> Result<()> {
        match &self.b.family {
            GpuFamily::Adapter(f) if !g.adapters.is_empty() => {
                f.sites().shrink(&self.b.dev, g, x, t, &pb.segs, f.live())
            }
            _ => Ok(()),
        }
    }
}

/// Every activation buffer a forward of `s` writes, from the layers' GEMM shapes (`(out, ld)`
/// in forward order, as [`super::weights::layer_shapes`] gives them).
fn workspace_need(
    c: &crate::model::ModelConfig,
    dt: DType,
    shapes: Option<[(usize, usize); 4]>,
    s: &Sizes,
) -> Vec<(&'static str, DType, usize)> {
    let kvd = c.num_kv_heads * c.head_dim;
    let mut need: Vec<(&'static str, DType, usize)> = vec![
        ("x", DType::F32, s.t * c.hidden_size),
        ("hf", dt, s.rows * c.embed_dim.next_multiple_of(8)),
        ("logits", DType::F32, s.rows * c.vocab_size),
        ("qlp", DType::F32, s.queries.max(1)),
    ];
    if s.decode_ws > 0 {
        need.push(("decode_ws", DType::F32, s.decode_ws));
    }
    if c.arch == Arch::Opt && c.embed_dim != c.hidden_size {
        // project_in's and project_out's inputs (no adapter columns) and outputs.
        let (e, h) = (c.embed_dim, c.hidden_size);
        need.extend([
            ("xe", DType::F32, s.t * e),
            ("xpi", dt, s.t * e.next_multiple_of(8)),
            ("hpo", dt, s.rows * h.next_multiple_of(8)),
            ("po_y", DType::F32, s.rows * e),
        ]);
    }
    if s.slots > 0 {
        need.extend([
            ("k_cache", DType::F32, s.slots * kvd),
            ("v_cache", DType::F32, s.slots * kvd),
        ]);
    }
    if let Some([(qkv_out, qkv_ld), (_, o_ld), (in_out, in_ld), (_, out_ld)]) = shapes {
        need.extend([
            ("xa", dt, s.t * qkv_ld),
            ("qkv", DType::F32, s.t * qkv_out),
            ("ao", dt, s.t * o_ld),
            ("xm", dt, s.t * in_ld),
            ("mid", DType::F32, s.t * in_out),
            ("am", dt, s.t * out_ld),
        ]);
    }
    need
}

/// Activation bytes of one scoring forward over `tokens` packed tokens in `seqs` sequences
/// (one scored row each, every sequence's cache rounded up to whole pages), as the workspace
/// would hold them.
pub fn workspace_bytes(
    c: &crate::model::ModelConfig,
    dt: DType,
    shapes: [(usize, usize); 4],
    tokens: usize,
    seqs: usize,
) -> usize {
    let s = Sizes {
        t: tokens,
        rows: seqs,
        slots: tokens + seqs * PAGE,
        queries: seqs,
        decode_ws: 0,
    };
    workspace_need(c, dt, Some(shapes), &s)
        .into_iter()
        .map(|(_, d, len)| len.next_multiple_of(4096) * d.size())
        .sum()
}

/// The copies of streamed layers in flight during one forward, by stream buffer.
struct LayerLanding {
    pending: Vec<(usize, Arrival)>,
}

impl LayerLanding {
    fn start(b: &CudaBackend) -> Result<LayerLanding> {
        let mut pending = Vec::new();
        if let Some(s) = &b.model.stream {
            for li in (s.first..b.model.layers.len()).take(STREAM_BUFFERS) {
                pending.push((li, s.fetch(&b.dev, li)?));
            }
        }
        Ok(LayerLanding { pending })
    }

    /// Before layer `li` computes: waits for its copy and packs the adapter family's columns
    /// into the buffer it landed in.
    fn wait(&mut self, b: &CudaBackend, li: usize, segs: &DeviceSegments) -> Result<()> {
        if !b.model.streams(li) {
            return Ok(());
        }
        let at = self
            .pending
            .iter()
            .position(|(l, _)| *l == li)
            .ok_or_else(|| Error::Cuda(format!("streamed layer {li} was never fetched")))?;
        let (_, arrival) = self.pending.swap_remove(at);
        let dev = &*b.dev;
        region(dev, "stream.wait", || dev.api().arrive(arrival))?;
        if let GpuFamily::Adapter(f) = &b.family {
            region(dev, "pack", || {
                f.sites().pack_layer(dev, &b.model, li, segs, f.live())
            })?;
        }
        Ok(())
    }

    /// After layer `li`'s work is queued: starts the copy of the layer that shares its buffer.
    fn refill(&mut self, b: &CudaBackend, li: usize) -> Result<()> {
        let next = li + STREAM_BUFFERS;
        if let Some(s) = b
            .model
            .stream
            .as_ref()
            .filter(|s| s.holds(li) && s.holds(next))
        {
            self.pending.push((next, s.fetch(&b.dev, next)?));
        }
        Ok(())
    }
}

fn weights(n: &DNorm) -> NormWeights<'_> {
    NormWeights {
        kind: n.kind,
        eps: n.eps,
        w: n.w.as_ref().map(DBuf::view),
        b: n.b.as_ref().map(DBuf::view),
    }
}

/// The norm of the fp32 residual `x` (`[t][width]`) into a GEMM input of row stride `ld_out`;
/// with `in_place` (OPT's post-LN) the residual itself is normalised too.
fn norm(
    b: &CudaBackend,
    n: &DNorm,
    x: View<'_>,
    t: usize,
    out: View<'_>,
    ld_out: usize,
    in_place: bool,
) -> Result<()> {
    let shape = RowShape::dense(t, n.width).with_ld(n.width, ld_out);
    let launch = if in_place {
        ops::norm_in_place
    } else {
        ops::norm
    };
    launch(&b.dev, &weights(n), shape, x, out)
}

/// `y (+)= x'·W'ᵀ (+ bias)` of one group over its augmented K.
fn gemm(
    b: &CudaBackend,
    g: &GroupLinear,
    x: View<'_>,
    t: usize,
    y: View<'_>,
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
    linear(
        &b.dev,
        &shape,
        x,
        g.w.view(),
        y,
        g.bias.as_ref().map(DBuf::view),
    )
}
