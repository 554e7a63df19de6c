//! The f32 reference backend: rayon-parallel, readable, the oracle for every GPU kernel.
//!
//! All sequences of a plan run as one packed `[T][hidden]` matrix: every Linear is one GEMM
//! over all tokens, attention is causal within each sequence, and logits are formed only at
//! the rows a query reads. Operation order follows the HF implementations so log-probs match
//! them to ~1e-4.

#[doc(hidden)]
pub mod attention;
mod decode;
#[doc(hidden)]
pub mod ops;

use rayon::prelude::*;

use self::attention::{
    causal_attention, causal_attention_with_prefix, AttnShape, LayerPrefixes, PrefixKv,
};
use crate::backend::{Backend, Scores};
use crate::matmul::matmul_wt;
use crate::model::{Arch, Layer, Linear, Mlp, Model, Norm, NormSite, Site, Slot};
use crate::perturb::{segments, Family, Perturbation, Segment, StepRecord, UpdateConfig};
use crate::plan::{classification_scores, Plan};
use crate::{Error, Result};

use crate::backend::validate;

/// Logits are formed this many rows at a time, bounding memory to rows × vocab floats.
const LOGIT_ROWS: usize = 64;

/// Scores plans. A plan may leave `seq_variant` empty (every sequence runs the base model);
/// perturbed variants need a perturbation family, which also holds the trained state.
pub struct CpuBackend {
    model: Model,
    /// RoPE inverse frequencies (Llama family only).
    inv_freq: Vec<f32>,
    family: Option<Box<dyn Family>>,
}

impl CpuBackend {
    /// Takes ownership of the weights. Tensor shapes are checked against the config when a
    /// plan is scored, so a malformed model yields an error rather than a panic.
    pub fn new(model: Model) -> CpuBackend {
        let c = &model.config;
        let inv_freq = match c.arch {
            Arch::Llama => ops::rope_inv_freq(c.head_dim, c.rope_theta, c.rope_scaling.as_ref()),
            Arch::Opt => Vec::new(),
        };
        CpuBackend {
            model,
            inv_freq,
            family: None,
        }
    }

    /// A backend whose forward applies `family`'s trained state and perturbed variants.
    pub fn with_family(model: Model, family: Box<dyn Family>) -> CpuBackend {
        let mut b = CpuBackend::new(model);
        b.family = Some(family);
        b
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn family(&self) -> Option<&dyn Family> {
        self.family.as_deref()
    }

    /// Weights and family, both mutable (in-place perturbation, replay, tests).
    pub fn parts_mut(&mut self) -> (&mut Model, Option<&mut Box<dyn Family>>) {
        (&mut self.model, self.family.as_mut())
    }

    pub fn into_parts(self) -> (Model, Option<Box<dyn Family>>) {
        (self.model, self.family)
    }

    /// Start of step `step`: the family may fold state into the weights (low-rank merge).
    pub fn begin_step(&mut self, step: u64, period_seed: Option<u64>) {
        if let Some(f) = self.family.as_mut() {
            f.begin_step(&mut self.model, step, period_seed);
        }
    }

    /// The ZO update of one step, regenerated from its record.
    pub fn update(&mut self, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        match self.family.as_mut() {
            Some(f) => f.update(&mut self.model, rec, cfg),
            None => Err(Error::Unsupported(
                "update needs a perturbation family on the backend".into(),
            )),
        }
    }

    /// Full-vocabulary logits at the given packed rows, in the order given.
    pub fn logits_at(&self, plan: &Plan, rows: &[u32]) -> Result<Vec<Vec<f32>>> {
        validate::model_shapes(&self.model)?;
        validate::forward_inputs(plan, &self.model, self.family.is_some())?;
        if let Some(&r) = rows.iter().find(|&&r| r as usize >= plan.n_tokens()) {
            return Err(Error::Data(format!(
                "plan: logits requested at row {r} but the plan has {} tokens",
                plan.n_tokens()
            )));
        }
        let pass = Pass::new(self, plan);
        let hidden = pass.hidden_states();
        let vocab = self.model.config.vocab_size;
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(LOGIT_ROWS) {
            let logits = pass.logits(&hidden, chunk);
            out.extend(logits.chunks_exact(vocab).map(<[f32]>::to_vec));
        }
        Ok(out)
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn score(&self, plan: &Plan) -> Result<Scores> {
        self.score_split(plan).map(|(s, _)| s)
    }

    fn decoder<'a>(
        &'a self,
        batch: crate::backend::decode::DecodeBatch,
    ) -> Result<Box<dyn crate::backend::decode::Decoder + 'a>> {
        Ok(Box::new(decode::CpuDecoder::new(self, batch)?))
    }
}

impl CpuBackend {
    /// [`Backend::score`] with its wall time split in two: the forward up to the last hidden
    /// states, and what follows (final norm, head at the scoring rows, log-softmax, losses).
    pub fn score_split(&self, plan: &Plan) -> Result<(Scores, [std::time::Duration; 2])> {
        let start = std::time::Instant::now();
        validate::model_shapes(&self.model)?;
        validate::forward_inputs(plan, &self.model, self.family.is_some())?;
        validate::scoring_inputs(plan, &self.model)?;
        let rows = plan.scoring_rows();
        if rows.is_empty() {
            let scores = Scores {
                query_logprobs: Vec::new(),
                examples: Vec::new(),
            };
            return Ok((scores, [start.elapsed(), Default::default()]));
        }
        // Queries grouped by the index of their row in `rows`.
        let mut by_row = vec![Vec::new(); rows.len()];
        for (qi, q) in plan.queries.iter().enumerate() {
            let r = rows
                .binary_search(&q.row)
                .expect("scoring_rows covers every query");
            by_row[r].push(qi);
        }
        let pass = Pass::new(self, plan);
        let hidden = pass.hidden_states();
        let forward = start.elapsed();
        let vocab = self.model.config.vocab_size;
        let mut query_logprobs = vec![0.0f32; plan.queries.len()];
        for (ci, chunk) in rows.chunks(LOGIT_ROWS).enumerate() {
            let logits = pass.logits(&hidden, chunk);
            let lse: Vec<f64> = logits.par_chunks(vocab).map(ops::log_sum_exp).collect();
            for (j, row) in logits.chunks_exact(vocab).enumerate() {
                for &qi in &by_row[ci * LOGIT_ROWS + j] {
                    let tok = plan.queries[qi].token as usize;
                    query_logprobs[qi] = (row[tok] as f64 - lse[j]) as f32;
                }
            }
        }
        let examples = classification_scores(plan, &query_logprobs);
        let scores = Scores {
            query_logprobs,
            examples,
        };
        Ok((scores, [forward, start.elapsed() - forward]))
    }
}

/// One forward pass of one plan.
struct Pass<'a> {
    model: &'a Model,
    plan: &'a Plan,
    inv_freq: &'a [f32],
    pert: Option<&'a dyn Perturbation>,
    /// Perturbed row ranges of the plan (empty without a family).
    segs: Vec<Segment>,
    /// Decoding: the keys and values sequence `s` continues at layer `l` (its earlier rows).
    cache: Option<&'a CacheRead<'a>>,
    /// Decoding: where each layer's keys and values of this pass's rows are left.
    written: Option<std::sync::Mutex<Vec<LayerKv>>>,
}

/// One layer's keys and values of a pass's rows.
type LayerKv = (Vec<f32>, Vec<f32>);

/// `(sequence, layer) → (keys, values)` of the rows a sequence has already been fed.
pub(crate) type CacheRead<'a> = dyn Fn(usize, usize) -> (&'a [f32], &'a [f32]) + Sync + 'a;

impl<'a> Pass<'a> {
    fn new(backend: &'a CpuBackend, plan: &'a Plan) -> Self {
        let pert = backend.family.as_deref().map(|f| f as &dyn Perturbation);
        Pass {
            model: &backend.model,
            plan,
            inv_freq: &backend.inv_freq,
            segs: if pert.is_some() {
                segments(plan)
            } else {
                Vec::new()
            },
            pert,
            cache: None,
            written: None,
        }
    }

    /// A pass that continues cached sequences and keeps its own keys and values.
    fn continuing(backend: &'a CpuBackend, plan: &'a Plan, cache: &'a CacheRead<'a>) -> Self {
        let layers = backend.model.layers.len();
        Pass {
            cache: Some(cache),
            written: Some(std::sync::Mutex::new(vec![Default::default(); layers])),
            ..Pass::new(backend, plan)
        }
    }

    /// `y = x·Wᵀ + b` over all packed rows. Every Linear of the model goes through here, so
    /// per-variant terms can later be added per sequence segment.
    fn linear(&self, x: &[f32], lin: &Linear, site: Site) -> Vec<f32> {
        let rows = x.len() / lin.in_dim;
        debug_assert_eq!(rows * lin.in_dim, x.len(), "{site:?}: ragged input");
        let mut y = matmul_wt(x, &lin.w, lin.b.as_deref(), rows, lin.in_dim, lin.out_dim);
        if let Some(p) = self.pert {
            p.linear(site, lin, x, &mut y, &self.segs);
        }
        y
    }

    /// [`Pass::linear`] on gathered packed `rows` (the logits path, any order): segments are
    /// re-expressed as runs of the gathered buffer's rows.
    fn linear_rows(&self, x: &[f32], lin: &Linear, site: Site, rows: &[u32]) -> Vec<f32> {
        let n = rows.len();
        let mut y = matmul_wt(x, &lin.w, lin.b.as_deref(), n, lin.in_dim, lin.out_dim);
        if let Some(p) = self.pert {
            p.linear(site, lin, x, &mut y, &self.gathered_segments(rows));
        }
        y
    }

    /// Segments over a gathered buffer whose row `i` is packed row `rows[i]`.
    fn gathered_segments(&self, rows: &[u32]) -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::new();
        for (i, &r) in rows.iter().enumerate() {
            let r = r as usize;
            let k = self.segs.partition_point(|s| s.rows.end <= r);
            let Some(seg) = self.segs.get(k).filter(|s| s.rows.contains(&r)) else {
                continue;
            };
            match out.last_mut() {
                Some(last) if last.variant == seg.variant && last.rows.end == i => {
                    last.rows.end = i + 1
                }
                _ => out.push(Segment {
                    rows: i..i + 1,
                    ..seg.clone()
                }),
            }
        }
        out
    }

    /// Normalises every `width`-wide row of `x` in place. Buffer row `i` is packed row
    /// `packed_row(i)`; rows inside a segment whose family perturbs this norm use the
    /// segment's norm parameters.
    fn norm_rows(
        &self,
        x: &mut [f32],
        width: usize,
        norm: &Norm,
        site: NormSite,
        packed_row: impl Fn(usize) -> usize + Sync,
    ) {
        let effective: Vec<Option<Norm>> = match self.pert {
            Some(p) => self.segs.iter().map(|s| p.norm(site, norm, s)).collect(),
            None => Vec::new(),
        };
        if effective.iter().all(Option::is_none) {
            ops::norm_rows_in_place(x, width, norm);
            return;
        }
        x.par_chunks_mut(width).enumerate().for_each(|(i, row)| {
            let r = packed_row(i);
            let seg = self.segs.partition_point(|s| s.rows.end <= r);
            let n = match effective.get(seg) {
                Some(Some(eff)) if self.segs[seg].rows.contains(&r) => eff,
                _ => norm,
            };
            ops::norm_row(row, n);
        });
    }

    /// A normalised copy of the packed `[T][hidden]` stream (the residual keeps `x`).
    fn norm(&self, x: &[f32], norm: &Norm, site: NormSite) -> Vec<f32> {
        let mut y = x.to_vec();
        self.norm_rows(&mut y, self.model.config.hidden_size, norm, site, |i| i);
        y
    }

    fn norm_in_place(&self, x: &mut [f32], norm: &Norm, site: NormSite) {
        self.norm_rows(x, self.model.config.hidden_size, norm, site, |i| i);
    }

    /// The residual stream after the last layer, `[T][hidden]`, before any final norm.
    fn hidden_states(&self) -> Vec<f32> {
        let m = self.model;
        let c = &m.config;
        let plan = self.plan;
        let e = c.embed_dim;
        let mut x = Vec::with_capacity(plan.n_tokens() * e);
        for &t in &plan.tokens {
            x.extend_from_slice(&m.embed[t as usize * e..][..e]);
        }
        if let Some(p) = self.pert {
            p.embed(&plan.tokens, &mut x, &self.segs);
        }
        if let Some(pi) = &m.project_in {
            x = self.linear(&x, pi, Site::model(Slot::ProjectIn));
        }
        if let Some(pos) = &m.pos_embed {
            // OPT's learned positions are offset by 2 (a fairseq legacy).
            let h = c.hidden_size;
            x.par_chunks_mut(h)
                .zip(plan.positions.par_iter())
                .for_each(|(row, &p)| {
                    let pe = &pos[(p as usize + 2) * h..][..h];
                    row.iter_mut().zip(pe).for_each(|(a, b)| *a += b);
                });
            if let Some(p) = self.pert {
                p.pos_embed(&plan.positions, &mut x, &self.segs);
            }
        }
        let rope =
            (c.arch == Arch::Llama).then(|| ops::rope_tables(&plan.positions, self.inv_freq));
        // Llama is always pre-norm; OPT says which.
        let pre_norm = c.arch == Arch::Llama || c.pre_norm;
        for (li, layer) in m.layers.iter().enumerate() {
            if pre_norm {
                let n = self.norm(&x, &layer.attn_norm, NormSite::Attn(li));
                let a = self.attention(&n, layer, li, rope.as_ref());
                ops::add_in_place(&mut x, &a);
                let n = self.norm(&x, &layer.mlp_norm, NormSite::Mlp(li));
                let f = self.mlp(&n, layer, li);
                ops::add_in_place(&mut x, &f);
            } else {
                let a = self.attention(&x, layer, li, rope.as_ref());
                ops::add_in_place(&mut x, &a);
                self.norm_in_place(&mut x, &layer.attn_norm, NormSite::Attn(li));
                let f = self.mlp(&x, layer, li);
                ops::add_in_place(&mut x, &f);
                self.norm_in_place(&mut x, &layer.mlp_norm, NormSite::Mlp(li));
            }
        }
        x
    }

    fn attention(
        &self,
        x: &[f32],
        layer: &Layer,
        li: usize,
        rope: Option<&(Vec<f32>, Vec<f32>)>,
    ) -> Vec<f32> {
        let c = &self.model.config;
        let hd = c.head_dim;
        let mut q = self.linear(x, &layer.q, Site::layer(li, Slot::Q));
        let mut k = self.linear(x, &layer.k, Site::layer(li, Slot::K));
        let v = self.linear(x, &layer.v, Site::layer(li, Slot::V));
        let inv_sqrt = (hd as f64).powf(-0.5) as f32;
        let scale = match rope {
            Some((cos, sin)) => {
                ops::apply_rope(&mut q, layer.q.out_dim, hd, cos, sin);
                ops::apply_rope(&mut k, layer.k.out_dim, hd, cos, sin);
                inv_sqrt
            }
            None => {
                // OPT scales the projected queries (bias included) rather than the scores.
                q.par_chunks_mut(16_384)
                    .for_each(|c| c.iter_mut().for_each(|v| *v *= inv_sqrt));
                1.0
            }
        };
        let shape = AttnShape {
            heads: c.num_heads,
            kv_heads: c.num_kv_heads,
            head_dim: hd,
        };
        let cu = &self.plan.cu_seqlens;
        // A prefix family's keys/values: per segment, so each variant reads its own.
        let prefixes = self
            .pert
            .and_then(|p| LayerPrefixes::new(p, li, &self.segs));
        let kv_width = c.num_kv_heads * hd;
        let a = if self.plan.has_contexts() || self.cache.is_some() {
            let leading = self.leading_kv(li, &k, &v, kv_width, prefixes.as_ref());
            causal_attention_with_prefix(&q, &k, &v, cu, shape, scale, |s| {
                leading[s].as_ref().map(|(k, v)| PrefixKv { k, v })
            })
        } else {
            match &prefixes {
                Some(px) => causal_attention_with_prefix(&q, &k, &v, cu, shape, scale, |s| {
                    px.at_row(cu[s] as usize)
                }),
                None => causal_attention(&q, &k, &v, cu, shape, scale),
            }
        };
        if let Some(out) = &self.written {
            out.lock().expect("kv sink is never poisoned")[li] = (k, v);
        }
        self.linear(&a, &layer.o, Site::layer(li, Slot::O))
    }

    /// What each sequence attends to before its own rows, in order: the family's prefix, the
    /// rows of a cache it continues, and the rows of a shared context sequence.
    fn leading_kv(
        &self,
        li: usize,
        k: &[f32],
        v: &[f32],
        kv_width: usize,
        prefixes: Option<&LayerPrefixes>,
    ) -> Vec<Option<(Vec<f32>, Vec<f32>)>> {
        let plan = self.plan;
        (0..plan.n_seqs())
            .map(|s| {
                let start = plan.cu_seqlens[s] as usize;
                let mut lk = Vec::new();
                let mut lv = Vec::new();
                if let Some(p) = prefixes.and_then(|px| px.at_row(start)) {
                    lk.extend_from_slice(p.k);
                    lv.extend_from_slice(p.v);
                }
                if let Some(cache) = self.cache {
                    let (ck, cv) = cache(s, li);
                    lk.extend_from_slice(ck);
                    lv.extend_from_slice(cv);
                }
                if let Some(c) = plan.context(s) {
                    let p0 = plan.cu_seqlens[c.parent as usize] as usize;
                    let rows = p0 * kv_width..(p0 + c.len as usize) * kv_width;
                    lk.extend_from_slice(&k[rows.clone()]);
                    lv.extend_from_slice(&v[rows]);
                }
                (!lk.is_empty()).then_some((lk, lv))
            })
            .collect()
    }

    fn mlp(&self, x: &[f32], layer: &Layer, li: usize) -> Vec<f32> {
        let act = self.model.config.activation;
        match &layer.mlp {
            Mlp::Gated { gate, up, down } => {
                let mut g = self.linear(x, gate, Site::layer(li, Slot::Gate));
                let u = self.linear(x, up, Site::layer(li, Slot::Up));
                ops::gated_in_place(&mut g, &u, act);
                self.linear(&g, down, Site::layer(li, Slot::Down))
            }
            Mlp::Plain { fc1, fc2 } => {
                let mut a = self.linear(x, fc1, Site::layer(li, Slot::Fc1));
                ops::activate_in_place(&mut a, act);
                self.linear(&a, fc2, Site::layer(li, Slot::Fc2))
            }
        }
    }

    /// `[rows][vocab]` logits: final norm and projection on just these rows, then the head.
    fn logits(&self, hidden: &[f32], rows: &[u32]) -> Vec<f32> {
        let m = self.model;
        let c = &m.config;
        let h = c.hidden_size;
        let mut x = Vec::with_capacity(rows.len() * h);
        for &r in rows {
            x.extend_from_slice(&hidden[r as usize * h..][..h]);
        }
        if let Some(n) = &m.final_norm {
            self.norm_rows(&mut x, h, n, NormSite::Final, |i| rows[i] as usize);
        }
        if let Some(po) = &m.project_out {
            x = self.linear_rows(&x, po, Site::model(Slot::ProjectOut), rows);
        }
        let mut logits = matmul_wt(&x, m.head(), None, rows.len(), c.embed_dim, c.vocab_size);
        if let Some(p) = self.pert {
            p.head(m, &x, rows, &mut logits, &self.segs);
        }
        logits
    }
}
