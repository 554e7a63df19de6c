//! The f32 reference backend: rayon-parallel, readable, the oracle for every GPU kernel.
//!
//! All sequences of a plan run as one packed `[T][hidden]` matrix: every Linear is one GEMM
//! over all tokens, attention is causal within each sequence, and logits are formed only at
//! the rows a query reads. Operation order follows the HF implementations so log-probs match
//! them to ~1e-4.

mod attention;
mod gemm;
mod ops;
mod validate;

use rayon::prelude::*;

use self::attention::{causal_attention, AttnShape};
use self::gemm::matmul_wt;
use crate::backend::{Backend, Scores};
use crate::model::{Arch, Layer, Linear, Mlp, Model, Site, Slot};
use crate::plan::{classification_scores, Plan};
use crate::{Error, Result};

/// Logits are formed this many rows at a time, bounding memory to rows × vocab floats.
const LOGIT_ROWS: usize = 64;

/// Scores plans with the unperturbed model. A plan may leave `seq_variant` empty (every
/// sequence runs the base model); variants with a nonzero sign and ε are rejected as
/// unsupported until perturbation families exist.
pub struct CpuBackend {
    model: Model,
    /// RoPE inverse frequencies (Llama family only).
    inv_freq: Vec<f32>,
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
        CpuBackend { model, inv_freq }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Full-vocabulary logits at the given packed rows, in the order given.
    pub fn logits_at(&self, plan: &Plan, rows: &[u32]) -> Result<Vec<Vec<f32>>> {
        validate::model_shapes(&self.model)?;
        validate::forward_inputs(plan, &self.model)?;
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
        validate::model_shapes(&self.model)?;
        validate::forward_inputs(plan, &self.model)?;
        validate::scoring_inputs(plan, &self.model)?;
        let rows = plan.scoring_rows();
        if rows.is_empty() {
            return Ok(Scores {
                query_logprobs: Vec::new(),
                examples: Vec::new(),
            });
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
        Ok(Scores {
            query_logprobs,
            examples,
        })
    }
}

/// One forward pass of one plan.
struct Pass<'a> {
    model: &'a Model,
    plan: &'a Plan,
    inv_freq: &'a [f32],
}

impl<'a> Pass<'a> {
    fn new(backend: &'a CpuBackend, plan: &'a Plan) -> Self {
        Pass {
            model: &backend.model,
            plan,
            inv_freq: &backend.inv_freq,
        }
    }

    /// `y = x·Wᵀ + b` over all packed rows. Every Linear of the model goes through here, so
    /// per-variant terms can later be added per sequence segment.
    fn linear(&self, x: &[f32], lin: &Linear, site: Site) -> Vec<f32> {
        let rows = x.len() / lin.in_dim;
        debug_assert_eq!(rows * lin.in_dim, x.len(), "{site:?}: ragged input");
        matmul_wt(x, &lin.w, lin.b.as_deref(), rows, lin.in_dim, lin.out_dim)
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
        }
        let rope =
            (c.arch == Arch::Llama).then(|| ops::rope_tables(&plan.positions, self.inv_freq));
        // Llama is always pre-norm; OPT says which.
        let pre_norm = c.arch == Arch::Llama || c.pre_norm;
        let h = c.hidden_size;
        for (li, layer) in m.layers.iter().enumerate() {
            if pre_norm {
                let n = ops::norm_rows(&x, h, &layer.attn_norm);
                let a = self.attention(&n, layer, li, rope.as_ref());
                ops::add_in_place(&mut x, &a);
                let n = ops::norm_rows(&x, h, &layer.mlp_norm);
                let f = self.mlp(&n, layer, li);
                ops::add_in_place(&mut x, &f);
            } else {
                let a = self.attention(&x, layer, li, rope.as_ref());
                ops::add_in_place(&mut x, &a);
                ops::norm_rows_in_place(&mut x, h, &layer.attn_norm);
                let f = self.mlp(&x, layer, li);
                ops::add_in_place(&mut x, &f);
                ops::norm_rows_in_place(&mut x, h, &layer.mlp_norm);
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
        let a = causal_attention(&q, &k, &v, &self.plan.cu_seqlens, shape, scale);
        self.linear(&a, &layer.o, Site::layer(li, Slot::O))
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
            ops::norm_rows_in_place(&mut x, h, n);
        }
        if let Some(po) = &m.project_out {
            x = self.linear(&x, po, Site::model(Slot::ProjectOut));
        }
        matmul_wt(&x, m.head(), None, rows.len(), c.embed_dim, c.vocab_size)
    }
}
