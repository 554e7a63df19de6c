//! Parameter counts and Linear shapes computed from a config alone, without weights: sizing
//! checks, FLOP models and GEMM-floor shapes for benchmarks of models too large to build.

use super::{Arch, ModelConfig, Slot};

/// One kind of Linear of the model: `count` copies of a `[out][in]` weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearShape {
    pub slot: Slot,
    pub out_dim: usize,
    pub in_dim: usize,
    pub bias: bool,
    /// How many the model holds (one per layer for layer slots).
    pub count: usize,
}

impl ModelConfig {
    /// The Linears applied to every token: per-layer slots, then OPT's project_in. OPT's
    /// project_out and the head run only at scoring rows and are not listed.
    pub fn token_linears(&self) -> Vec<LinearShape> {
        let h = self.hidden_size;
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let ffn = self.intermediate_size;
        let l = self.num_layers;
        let lin = |slot, out_dim, in_dim, bias| LinearShape {
            slot,
            out_dim,
            in_dim,
            bias,
            count: l,
        };
        let mut v = vec![
            lin(Slot::Q, q, h, self.qkv_bias),
            lin(Slot::K, kv, h, self.qkv_bias),
            lin(Slot::V, kv, h, self.qkv_bias),
            lin(Slot::O, h, q, self.o_bias),
        ];
        match self.arch {
            Arch::Llama => v.extend([
                lin(Slot::Gate, ffn, h, self.mlp_bias),
                lin(Slot::Up, ffn, h, self.mlp_bias),
                lin(Slot::Down, h, ffn, self.mlp_bias),
            ]),
            Arch::Opt => v.extend([
                lin(Slot::Fc1, ffn, h, self.mlp_bias),
                lin(Slot::Fc2, h, ffn, self.mlp_bias),
            ]),
        }
        if self.embed_dim != h {
            v.push(LinearShape {
                slot: Slot::ProjectIn,
                out_dim: h,
                in_dim: self.embed_dim,
                bias: false,
                count: 1,
            });
        }
        v
    }

    /// OPT's project_out (hidden → word_embed_proj_dim), applied at scoring rows only.
    pub fn project_out_shape(&self) -> Option<LinearShape> {
        (self.embed_dim != self.hidden_size).then_some(LinearShape {
            slot: Slot::ProjectOut,
            out_dim: self.embed_dim,
            in_dim: self.hidden_size,
            bias: false,
            count: 1,
        })
    }

    /// Weights (not biases) of the Linears applied to every token.
    pub fn token_linear_params(&self) -> u64 {
        self.token_linears()
            .iter()
            .map(|s| (s.out_dim * s.in_dim * s.count) as u64)
            .sum()
    }

    /// Every parameter of the model as HF counts them (`num_parameters()`): a tied head
    /// counts once.
    pub fn n_params(&self) -> u64 {
        let h = self.hidden_size as u64;
        let mut n: u64 = 0;
        for s in self
            .token_linears()
            .iter()
            .chain(self.project_out_shape().iter())
        {
            let b = if s.bias { s.out_dim } else { 0 };
            n += ((s.out_dim * s.in_dim + b) * s.count) as u64;
        }
        let norm = match self.arch {
            Arch::Llama => h,
            Arch::Opt if self.norm_affine => 2 * h,
            Arch::Opt => 0,
        };
        n += 2 * norm * self.num_layers as u64;
        if self.final_norm {
            n += norm;
        }
        let embed = (self.vocab_size * self.embed_dim) as u64;
        n += embed;
        if !self.tie_word_embeddings {
            n += embed;
        }
        if self.arch == Arch::Opt {
            n += (self.max_position_embeddings as u64 + 2) * h;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Model, ModelConfig};

    /// The count from the config equals the number of floats a built model holds.
    #[test]
    fn counts_match_built_models() {
        for c in [
            ModelConfig::tiny_llama(),
            ModelConfig::tiny_llama3(),
            ModelConfig::tiny_opt(),
            ModelConfig::tiny_opt_post_ln(),
        ] {
            let m = Model::random(c.clone(), 0);
            let lin = |l: &crate::model::Linear| l.w.len() + l.b.as_ref().map_or(0, Vec::len);
            let norm = |n: &crate::model::Norm| {
                n.w.as_ref().map_or(0, Vec::len) + n.b.as_ref().map_or(0, Vec::len)
            };
            let mut n = m.embed.len() + m.lm_head.as_ref().map_or(0, Vec::len);
            n += m.pos_embed.as_ref().map_or(0, Vec::len);
            n += m.project_in.as_ref().map_or(0, lin) + m.project_out.as_ref().map_or(0, lin);
            n += m.final_norm.as_ref().map_or(0, norm);
            for l in &m.layers {
                n += norm(&l.attn_norm) + norm(&l.mlp_norm);
                n += lin(&l.q) + lin(&l.k) + lin(&l.v) + lin(&l.o);
                n += match &l.mlp {
                    crate::model::Mlp::Gated { gate, up, down } => lin(gate) + lin(up) + lin(down),
                    crate::model::Mlp::Plain { fc1, fc2 } => lin(fc1) + lin(fc2),
                };
            }
            assert_eq!(c.n_params(), n as u64, "{c:?}");
        }
    }
}
