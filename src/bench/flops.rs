//! The FLOP model of a ZO step and the GEMM shapes of its compute floor.
//!
//! Per forward pass over packed sequences of lengths `L_s` (all variants of the step):
//!
//! - Linears on every token: `2 · P_lin · Σ L_s`, with `P_lin` the weights of every per-layer
//!   Linear (q, k, v, o and the MLP) plus OPT's project_in;
//! - the head at the scoring rows: `2 · R · (vocab · embed + [OPT project_out] hidden · embed)`,
//!   with `R` the rows that are scored (one per sequence for single-token label words);
//! - causal attention: `2 · layers · heads · head_dim · Σ L_s (L_s + 1)`, QKᵀ and PV over the
//!   `L(L+1)/2` (query, key) pairs of each sequence.
//!
//! Perturbation terms, norms, activations and the update are not counted: they are the
//! overhead the kernels try to hide, not useful work. The compute floor is the Linears and
//! the head as plain GEMMs of the same shapes (attention excluded).

use super::backend::GemmShape;
use crate::model::ModelConfig;
use crate::plan::Plan;

/// The work of one scored plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PassWork {
    pub seq_lens: Vec<usize>,
    pub scoring_rows: usize,
}

impl PassWork {
    pub fn of(plan: &Plan) -> PassWork {
        PassWork {
            seq_lens: (0..plan.n_seqs())
                .map(|s| plan.seq_range(s).len())
                .collect(),
            scoring_rows: plan.scoring_rows().len(),
        }
    }

    pub fn tokens(&self) -> usize {
        self.seq_lens.iter().sum()
    }
}

/// Head weights applied per scoring row (and OPT's project_out).
fn head_params(c: &ModelConfig) -> f64 {
    let mut p = (c.vocab_size * c.embed_dim) as f64;
    if let Some(po) = c.project_out_shape() {
        p += (po.out_dim * po.in_dim) as f64;
    }
    p
}

/// FLOPs of one forward over `w` (see the module doc).
pub fn pass_flops(c: &ModelConfig, w: &PassWork) -> f64 {
    let lin = 2.0 * c.token_linear_params() as f64 * w.tokens() as f64;
    let head = 2.0 * w.scoring_rows as f64 * head_params(c);
    let pairs: f64 = w.seq_lens.iter().map(|&l| (l * (l + 1)) as f64).sum();
    let attn = 2.0 * (c.num_layers * c.num_heads * c.head_dim) as f64 * pairs;
    lin + head + attn
}

/// The GEMMs of `passes` forwards of `tokens` packed rows and `scoring_rows` scored rows.
pub fn gemm_shapes(
    c: &ModelConfig,
    tokens: usize,
    scoring_rows: usize,
    passes: usize,
) -> Vec<GemmShape> {
    let mut v: Vec<GemmShape> = c
        .token_linears()
        .iter()
        .map(|s| GemmShape {
            m: tokens,
            n: s.out_dim,
            k: s.in_dim,
            count: s.count * passes,
        })
        .collect();
    if let Some(po) = c.project_out_shape() {
        v.push(GemmShape {
            m: scoring_rows,
            n: po.out_dim,
            k: po.in_dim,
            count: passes,
        });
    }
    v.push(GemmShape {
        m: scoring_rows,
        n: c.vocab_size,
        k: c.embed_dim,
        count: passes,
    });
    v
}

/// The formula, for reports.
pub const FLOP_MODEL: &str = "per forward: 2*P_lin*tokens + 2*scored_rows*(vocab*embed [+ OPT \
    project_out]) + 2*layers*heads*head_dim*sum_s L_s*(L_s+1); P_lin = weights of the \
    per-layer Linears (+ OPT project_in); perturbation, norms and update not counted";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_part_is_two_flops_per_weight_per_token() {
        let c = ModelConfig::tiny_llama();
        let w = PassWork {
            seq_lens: vec![3, 5],
            scoring_rows: 0,
        };
        let attn = 2.0 * (2 * 4 * 8) as f64 * (12 + 30) as f64;
        let lin = 2.0 * c.token_linear_params() as f64 * 8.0;
        assert_eq!(pass_flops(&c, &w), lin + attn);
        let shapes = gemm_shapes(&c, 8, 2, 1);
        let gemm: f64 = shapes.iter().map(GemmShape::flops).sum();
        assert_eq!(gemm, lin + 2.0 * 2.0 * (97 * 32) as f64);
    }
}
