//! Checks that a plan fits a model, and that a model's tensors fit its config, before any
//! indexing: bad input becomes an error naming the offending field, never a panic. Both
//! backends run these checks.

use crate::model::{Arch, Linear, Mlp, Model, Norm};
use crate::plan::Plan;
use crate::{Error, Result};

fn data(msg: String) -> Error {
    Error::Data(format!("plan: {msg}"))
}

/// Everything the forward pass reads: tokens, positions, sequence boundaries, variants.
/// `perturbable`: whether perturbed variants can be scored (a family is set).
pub fn forward_inputs(plan: &Plan, model: &Model, perturbable: bool) -> Result<()> {
    forward_inputs_for(plan, &model.config, perturbable)
}

/// Everything a forward pass and its scoring read, for a model of config `c`.
pub fn plan_for_config(plan: &Plan, c: &crate::model::ModelConfig) -> Result<()> {
    forward_inputs_for(plan, c, true)?;
    scoring_inputs_for(plan, c.vocab_size)
}

fn forward_inputs_for(plan: &Plan, c: &crate::model::ModelConfig, perturbable: bool) -> Result<()> {
    let t = plan.n_tokens();
    if plan.positions.len() != t {
        return Err(data(format!(
            "{} positions for {t} tokens; expected one per token",
            plan.positions.len()
        )));
    }
    if plan.cu_seqlens.len() < 2 {
        return Err(data(format!(
            "cu_seqlens has {} entries; expected n_seqs + 1 ≥ 2",
            plan.cu_seqlens.len()
        )));
    }
    if plan.cu_seqlens[0] != 0 {
        return Err(data(format!(
            "cu_seqlens starts at {}; expected 0",
            plan.cu_seqlens[0]
        )));
    }
    for (s, w) in plan.cu_seqlens.windows(2).enumerate() {
        if w[1] <= w[0] {
            return Err(data(format!(
                "sequence {s} spans cu_seqlens {}..{}; expected at least one token",
                w[0], w[1]
            )));
        }
    }
    let last = *plan.cu_seqlens.last().unwrap() as usize;
    if last != t {
        return Err(data(format!(
            "cu_seqlens ends at {last} but the plan has {t} tokens"
        )));
    }
    if let Some((i, &tok)) = plan
        .tokens
        .iter()
        .enumerate()
        .find(|(_, &tok)| tok as usize >= c.vocab_size)
    {
        return Err(data(format!(
            "token {tok} at row {i} is outside the vocabulary of {}",
            c.vocab_size
        )));
    }
    if let Some((i, &p)) = plan
        .positions
        .iter()
        .enumerate()
        .find(|(_, &p)| p as usize >= c.max_position_embeddings)
    {
        return Err(data(format!(
            "position {p} at row {i} exceeds max_position_embeddings {}",
            c.max_position_embeddings
        )));
    }
    // An empty seq_variant means every sequence runs the unperturbed model.
    if !plan.seq_variant.is_empty() && plan.seq_variant.len() != plan.n_seqs() {
        return Err(data(format!(
            "seq_variant has {} entries for {} sequences",
            plan.seq_variant.len(),
            plan.n_seqs()
        )));
    }
    for (s, &v) in plan.seq_variant.iter().enumerate() {
        let Some(var) = plan.variants.get(v as usize) else {
            return Err(data(format!(
                "sequence {s} uses variant {v} but the plan has {} variants",
                plan.variants.len()
            )));
        };
        if !(-1..=1).contains(&var.sign) || !var.eps.is_finite() || var.eps < 0.0 {
            return Err(data(format!(
                "variant {v} has sign {} and eps {}; expected sign -1, 0 or 1 and a finite eps >= 0",
                var.sign, var.eps
            )));
        }
        if !perturbable && var.sign != 0 && var.eps != 0.0 {
            return Err(Error::Unsupported(format!(
                "variant {v} (sign {}, eps {}) is perturbed but this backend has no \
                 perturbation family; set one with CpuBackend::with_family",
                var.sign, var.eps
            )));
        }
    }
    contexts(plan)
}

/// Shared contexts: each names an earlier sequence of the same variant that has none of its
/// own, and at most its length in rows.
fn contexts(plan: &Plan) -> Result<()> {
    if plan.seq_context.is_empty() {
        return Ok(());
    }
    let n = plan.n_seqs();
    if plan.seq_context.len() != n {
        return Err(data(format!(
            "seq_context has {} entries for {n} sequences",
            plan.seq_context.len()
        )));
    }
    let variant = |s: usize| plan.seq_variant.get(s).copied().unwrap_or(0);
    for (s, c) in plan.seq_context.iter().enumerate() {
        let Some(c) = c else { continue };
        let p = c.parent as usize;
        if p >= s {
            return Err(data(format!(
                "sequence {s} reads the context of sequence {p}; a context must be an earlier \
                 sequence"
            )));
        }
        if plan.context(p).is_some() {
            return Err(data(format!(
                "sequence {s} reads sequence {p}, which reads a context itself"
            )));
        }
        if variant(p) != variant(s) {
            return Err(data(format!(
                "sequence {s} (variant {}) reads the context of sequence {p} (variant {})",
                variant(s),
                variant(p)
            )));
        }
        let plen = plan.seq_range(p).len();
        if c.len == 0 || c.len as usize > plen {
            return Err(data(format!(
                "sequence {s} reads {} rows of sequence {p}, which has {plen}",
                c.len
            )));
        }
    }
    Ok(())
}

/// The scoring part: queries and the example groups over them.
pub fn scoring_inputs(plan: &Plan, model: &Model) -> Result<()> {
    scoring_inputs_for(plan, model.config.vocab_size)
}

fn scoring_inputs_for(plan: &Plan, vocab: usize) -> Result<()> {
    let t = plan.n_tokens();
    for (i, q) in plan.queries.iter().enumerate() {
        if q.row as usize >= t {
            return Err(data(format!(
                "query {i} reads row {} but the plan has {t} tokens",
                q.row
            )));
        }
        if q.token as usize >= vocab {
            return Err(data(format!(
                "query {i} scores token {} outside the vocabulary of {vocab}",
                q.token
            )));
        }
    }
    let nq = plan.queries.len() as u32;
    for (e, g) in plan.examples.iter().enumerate() {
        if g.variant as usize >= plan.variants.len() {
            return Err(data(format!(
                "example {e} uses variant {} but the plan has {} variants",
                g.variant,
                plan.variants.len()
            )));
        }
        if g.candidates.is_empty() || g.gold as usize >= g.candidates.len() {
            return Err(data(format!(
                "example {e} has gold {} among {} candidates",
                g.gold,
                g.candidates.len()
            )));
        }
        for (c, r) in g.candidates.iter().enumerate() {
            if r.start >= r.end || r.end > nq {
                return Err(data(format!(
                    "example {e} candidate {c} owns queries {}..{}; expected a non-empty range \
                     within the plan's {nq} queries",
                    r.start, r.end
                )));
            }
        }
    }
    Ok(())
}

fn tensor_len(name: &str, got: usize, want: usize, shape: &str) -> Result<()> {
    if got != want {
        return Err(Error::tensor(
            name,
            format!("has {got} elements; expected {shape} = {want}"),
        ));
    }
    Ok(())
}

fn linear(name: &str, l: &Linear, out_dim: usize, in_dim: usize, bias: bool) -> Result<()> {
    if (l.out_dim, l.in_dim) != (out_dim, in_dim) {
        return Err(Error::tensor(
            name,
            format!(
                "is [{}][{}]; expected [{out_dim}][{in_dim}]",
                l.out_dim, l.in_dim
            ),
        ));
    }
    tensor_len(
        name,
        l.w.len(),
        out_dim * in_dim,
        &format!("[{out_dim}][{in_dim}]"),
    )?;
    match (&l.b, bias) {
        (Some(b), true) => tensor_len(&format!("{name}.bias"), b.len(), out_dim, "[out]"),
        (None, false) => Ok(()),
        (Some(_), false) => Err(Error::tensor(
            name,
            "has a bias the config does not declare",
        )),
        (None, true) => Err(Error::tensor(name, "lacks the bias the config declares")),
    }
}

fn norm(name: &str, n: &Norm, dim: usize) -> Result<()> {
    for (part, v) in [("weight", &n.w), ("bias", &n.b)] {
        if let Some(v) = v {
            tensor_len(&format!("{name}.{part}"), v.len(), dim, "[hidden]")?;
        }
    }
    Ok(())
}

/// Shapes of every tensor against the config. Loaders check these too; the forward pass
/// re-checks because models can also be built in code.
pub fn model_shapes(m: &Model) -> Result<()> {
    let c = &m.config;
    if c.num_kv_heads == 0 || !c.num_heads.is_multiple_of(c.num_kv_heads) {
        return Err(Error::Config(format!(
            "num_attention_heads {} is not a multiple of num_key_value_heads {}",
            c.num_heads, c.num_kv_heads
        )));
    }
    if c.arch == Arch::Llama && !c.head_dim.is_multiple_of(2) {
        return Err(Error::Config(format!(
            "head_dim {} must be even for rotary embeddings",
            c.head_dim
        )));
    }
    if m.layers.len() != c.num_layers {
        return Err(Error::Config(format!(
            "model has {} layers; num_hidden_layers is {}",
            m.layers.len(),
            c.num_layers
        )));
    }
    let (h, e, v) = (c.hidden_size, c.embed_dim, c.vocab_size);
    tensor_len("embed_tokens", m.embed.len(), v * e, "[vocab][embed_dim]")?;
    if let Some(head) = &m.lm_head {
        tensor_len("lm_head", head.len(), v * e, "[vocab][embed_dim]")?;
    }
    if c.arch == Arch::Opt {
        let Some(pos) = &m.pos_embed else {
            return Err(Error::tensor("embed_positions", "missing for an OPT model"));
        };
        tensor_len(
            "embed_positions",
            pos.len(),
            (c.max_position_embeddings + 2) * h,
            "[max_positions + 2][hidden]",
        )?;
    }
    match (&m.project_in, &m.project_out) {
        (Some(pi), Some(po)) => {
            linear("project_in", pi, h, e, false)?;
            linear("project_out", po, e, h, false)?;
        }
        (None, None) if e == h => {}
        _ => {
            return Err(Error::tensor(
                "project_in/project_out",
                format!("needed together exactly when embed_dim {e} != hidden {h}"),
            ))
        }
    }
    if let Some(n) = &m.final_norm {
        norm("final_norm", n, h)?;
    }
    let q_dim = c.num_heads * c.head_dim;
    let kv_dim = c.num_kv_heads * c.head_dim;
    let ffn = c.intermediate_size;
    for (i, l) in m.layers.iter().enumerate() {
        let p = |n: &str| format!("layers.{i}.{n}");
        norm(&p("attn_norm"), &l.attn_norm, h)?;
        norm(&p("mlp_norm"), &l.mlp_norm, h)?;
        linear(&p("q_proj"), &l.q, q_dim, h, c.qkv_bias)?;
        linear(&p("k_proj"), &l.k, kv_dim, h, c.qkv_bias)?;
        linear(&p("v_proj"), &l.v, kv_dim, h, c.qkv_bias)?;
        linear(&p("o_proj"), &l.o, h, q_dim, c.o_bias)?;
        match &l.mlp {
            Mlp::Gated { gate, up, down } => {
                linear(&p("gate_proj"), gate, ffn, h, c.mlp_bias)?;
                linear(&p("up_proj"), up, ffn, h, c.mlp_bias)?;
                linear(&p("down_proj"), down, h, ffn, c.mlp_bias)?;
            }
            Mlp::Plain { fc1, fc2 } => {
                linear(&p("fc1"), fc1, ffn, h, c.mlp_bias)?;
                linear(&p("fc2"), fc2, h, ffn, c.mlp_bias)?;
            }
        }
    }
    Ok(())
}
