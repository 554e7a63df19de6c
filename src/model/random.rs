//! Seeded random weights for any config: tests, fixtures and benchmarks.
//!
//! Every tensor is drawn from its own stream, keyed by the model seed and the tensor's HF
//! name, so toggling an optional tensor (a bias, an untied head) leaves all the others
//! unchanged. Shapes follow the HF layouts exactly (Linear weights are [out][in]).

use rayon::prelude::*;

use super::{Arch, Layer, Linear, Mlp, Model, ModelConfig, Norm, NormKind};
use crate::model::{Activation, RopeScaling};

/// RNG role of synthetic weights (roles below this belong to the perturbation families).
pub const SYNTHETIC_ROLE: u32 = 8;

/// HF's `initializer_range` default.
pub const DEFAULT_STD: f32 = 0.02;

/// splitmix64: tiny, fast and good enough for test weights (not the perturbation RNG,
/// which is Philox in `crate::rng`).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1) from the top 24 bits, exact in f32.
    fn next_sym(&mut self) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        2.0 * u - 1.0
    }
}

/// FNV-1a: stable across runs and platforms, unlike `std`'s hasher.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01B3)
    })
}

struct Init {
    seed: u64,
    std: f32,
}

impl Init {
    fn stream(&self, name: &str) -> SplitMix64 {
        let mut s = SplitMix64(self.seed ^ name_hash(name));
        s.next_u64();
        s
    }

    /// `n` values, uniform with standard deviation `std` (a uniform on [-a, a] has std a/√3).
    fn fill(&self, name: &str, n: usize, std: f32) -> Vec<f32> {
        let mut s = self.stream(name);
        let a = std * 3f32.sqrt();
        (0..n).map(|_| a * s.next_sym()).collect()
    }

    fn weights(&self, name: &str, n: usize) -> Vec<f32> {
        self.fill(name, n, self.std)
    }

    fn bias(&self, name: &str, n: usize) -> Vec<f32> {
        self.fill(name, n, self.std)
    }

    fn linear(&self, name: &str, out_dim: usize, in_dim: usize, bias: bool) -> Linear {
        Linear {
            w: self.weights(&format!("{name}.weight"), out_dim * in_dim),
            b: bias.then(|| self.bias(&format!("{name}.bias"), out_dim)),
            out_dim,
            in_dim,
        }
    }

    /// Gains near 1 and small shifts, so a norm is neither the identity nor degenerate.
    fn norm(&self, name: &str, dim: usize, cfg: &ModelConfig) -> Norm {
        let (kind, affine, has_bias) = match cfg.arch {
            Arch::Llama => (NormKind::Rms, true, false),
            Arch::Opt => (NormKind::Layer, cfg.norm_affine, true),
        };
        let w = affine.then(|| {
            let mut w = self.fill(&format!("{name}.weight"), dim, 0.1);
            w.iter_mut().for_each(|x| *x += 1.0);
            w
        });
        let b = (affine && has_bias).then(|| self.fill(&format!("{name}.bias"), dim, 0.05));
        Norm {
            w,
            b,
            eps: cfg.norm_eps,
            kind,
        }
    }
}

impl Model {
    /// A model with every tensor drawn from `seed`, weights at HF's init std (0.02).
    pub fn random(config: ModelConfig, seed: u64) -> Model {
        Model::random_with_std(config, seed, DEFAULT_STD)
    }

    /// As [`Model::random`] with weight std `std`. Tiny test models want a larger std (≈0.2)
    /// so attention patterns and nonlinearities are far from their near-zero regime.
    pub fn random_with_std(config: ModelConfig, seed: u64, std: f32) -> Model {
        let init = Init { seed, std };
        let c = &config;
        let h = c.hidden_size;
        let q_dim = c.num_heads * c.head_dim;
        let kv_dim = c.num_kv_heads * c.head_dim;
        let (attn_norm, mlp_norm, prefix) = match c.arch {
            Arch::Llama => (
                "input_layernorm",
                "post_attention_layernorm",
                "model.layers",
            ),
            Arch::Opt => (
                "self_attn_layer_norm",
                "final_layer_norm",
                "model.decoder.layers",
            ),
        };
        // Each tensor has its own stream, so layers can be drawn in parallel with the same
        // values: multi-billion-parameter benchmark models are ready in seconds.
        let layers = (0..c.num_layers)
            .into_par_iter()
            .map(|i| {
                let p = format!("{prefix}.{i}");
                let lin = |n: &str, o, i, b| init.linear(&format!("{p}.{n}"), o, i, b);
                let mlp = match c.arch {
                    Arch::Llama => Mlp::Gated {
                        gate: lin("mlp.gate_proj", c.intermediate_size, h, c.mlp_bias),
                        up: lin("mlp.up_proj", c.intermediate_size, h, c.mlp_bias),
                        down: lin("mlp.down_proj", h, c.intermediate_size, c.mlp_bias),
                    },
                    Arch::Opt => Mlp::Plain {
                        fc1: lin("fc1", c.intermediate_size, h, c.mlp_bias),
                        fc2: lin("fc2", h, c.intermediate_size, c.mlp_bias),
                    },
                };
                Layer {
                    attn_norm: init.norm(&format!("{p}.{attn_norm}"), h, c),
                    q: lin("self_attn.q_proj", q_dim, h, c.qkv_bias),
                    k: lin("self_attn.k_proj", kv_dim, h, c.qkv_bias),
                    v: lin("self_attn.v_proj", kv_dim, h, c.qkv_bias),
                    o: lin("self_attn.o_proj", h, q_dim, c.o_bias),
                    mlp_norm: init.norm(&format!("{p}.{mlp_norm}"), h, c),
                    mlp,
                }
            })
            .collect();
        let e = c.embed_dim;
        let lm_head =
            (!c.tie_word_embeddings).then(|| init.weights("lm_head.weight", c.vocab_size * e));
        match c.arch {
            Arch::Llama => Model {
                embed: init.weights("model.embed_tokens.weight", c.vocab_size * e),
                pos_embed: None,
                project_in: None,
                project_out: None,
                layers,
                final_norm: Some(init.norm("model.norm", h, c)),
                lm_head,
                config,
            },
            Arch::Opt => {
                let projected = e != h;
                Model {
                    embed: init.weights("model.decoder.embed_tokens.weight", c.vocab_size * e),
                    pos_embed: Some(init.weights(
                        "model.decoder.embed_positions.weight",
                        (c.max_position_embeddings + 2) * h,
                    )),
                    project_in: projected
                        .then(|| init.linear("model.decoder.project_in", h, e, false)),
                    project_out: projected
                        .then(|| init.linear("model.decoder.project_out", e, h, false)),
                    layers,
                    final_norm: c
                        .final_norm
                        .then(|| init.norm("model.decoder.final_layer_norm", h, c)),
                    lm_head,
                    config,
                }
            }
        }
    }
}

impl ModelConfig {
    /// A small Llama-family config with GQA (4 query heads over 2 kv heads), untied head and
    /// no biases; tests flip the fields they exercise.
    pub fn tiny_llama() -> ModelConfig {
        ModelConfig {
            arch: Arch::Llama,
            model_type: "llama".into(),
            vocab_size: 97,
            hidden_size: 32,
            embed_dim: 32,
            intermediate_size: 48,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 8,
            max_position_embeddings: 128,
            norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            tie_word_embeddings: false,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            activation: Activation::Silu,
            pre_norm: true,
            final_norm: true,
            norm_affine: true,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
        }
    }

    /// [`ModelConfig::tiny_llama`] with Llama 3.x rope scaling, its original context short
    /// enough that the test positions cross all three frequency bands.
    pub fn tiny_llama3() -> ModelConfig {
        ModelConfig {
            rope_theta: 500_000.0,
            rope_scaling: Some(RopeScaling {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 64,
            }),
            ..ModelConfig::tiny_llama()
        }
    }

    /// A small pre-LN OPT (like opt-125m): biases everywhere, final LayerNorm, tied head.
    pub fn tiny_opt() -> ModelConfig {
        ModelConfig {
            arch: Arch::Opt,
            model_type: "opt".into(),
            vocab_size: 101,
            hidden_size: 32,
            embed_dim: 32,
            intermediate_size: 64,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 4,
            head_dim: 8,
            max_position_embeddings: 64,
            norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            tie_word_embeddings: true,
            qkv_bias: true,
            o_bias: true,
            mlp_bias: true,
            activation: Activation::Relu,
            pre_norm: true,
            final_norm: true,
            norm_affine: true,
            bos_token_id: Some(2),
            eos_token_id: Some(2),
        }
    }

    /// A small post-LN OPT with project_in/out (like opt-350m): word_embed_proj_dim 16 over
    /// hidden 32, no final LayerNorm.
    pub fn tiny_opt_post_ln() -> ModelConfig {
        ModelConfig {
            embed_dim: 16,
            pre_norm: false,
            final_norm: false,
            ..ModelConfig::tiny_opt()
        }
    }

    /// SmolLM2-135M's shape: the default model, for benchmarks with random weights.
    pub fn smollm2_135m() -> ModelConfig {
        ModelConfig {
            arch: Arch::Llama,
            model_type: "llama".into(),
            vocab_size: 49152,
            hidden_size: 576,
            embed_dim: 576,
            intermediate_size: 1536,
            num_layers: 30,
            num_heads: 9,
            num_kv_heads: 3,
            head_dim: 64,
            max_position_embeddings: 8192,
            norm_eps: 1e-5,
            rope_theta: 100_000.0,
            rope_scaling: None,
            tie_word_embeddings: true,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            activation: Activation::Silu,
            pre_norm: true,
            final_norm: true,
            norm_affine: true,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
        }
    }
}

impl Model {
    /// Synthetic weights that the GPU can make in place (csrc/init.cu) bit for bit: every
    /// weight matrix and embedding element is `std · gaussian(seed, tensor id,`
    /// [`SYNTHETIC_ROLE`]`, index)` (one f32 multiply; index row-major over the stored tensor),
    /// norm weights are 1, biases and norm biases 0. Benchmarks at any scale use this, so a
    /// GPU model and its CPU twin are the same model.
    pub fn synthetic(config: ModelConfig, seed: u64, std: f32) -> Model {
        use crate::model::Param;
        use rayon::prelude::*;
        let mut m = Model::random_with_std(config, seed, std);
        for t in crate::perturb::dense::model_tensors(&mut m) {
            match t.param {
                Param::NormWeight(_) => t.data.fill(1.0),
                Param::NormBias(_) | Param::Bias(_) => t.data.fill(0.0),
                _ => {
                    let id = t.tensor_id;
                    t.data
                        .par_chunks_mut(1 << 16)
                        .enumerate()
                        .for_each(|(c, chunk)| {
                            crate::rng::fill_gaussian(
                                seed,
                                id,
                                SYNTHETIC_ROLE,
                                (c << 16) as u64,
                                chunk,
                            );
                            chunk.iter_mut().for_each(|v| *v *= std);
                        });
                }
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_hf_layouts() {
        let mut c = ModelConfig::tiny_llama();
        c.qkv_bias = true;
        let m = Model::random(c.clone(), 1);
        assert_eq!(m.embed.len(), c.vocab_size * c.hidden_size);
        assert_eq!(
            m.lm_head.as_ref().unwrap().len(),
            c.vocab_size * c.hidden_size
        );
        let l = &m.layers[0];
        assert_eq!((l.q.out_dim, l.q.in_dim), (32, 32));
        assert_eq!((l.k.out_dim, l.k.in_dim), (16, 32));
        assert_eq!(l.k.w.len(), 16 * 32);
        assert_eq!(l.k.b.as_ref().unwrap().len(), 16);
        assert!(l.o.b.is_none());
        match &l.mlp {
            Mlp::Gated { gate, down, .. } => {
                assert_eq!((gate.out_dim, gate.in_dim), (48, 32));
                assert_eq!((down.out_dim, down.in_dim), (32, 48));
            }
            Mlp::Plain { .. } => panic!("llama has a gated MLP"),
        }
        assert!(l.attn_norm.b.is_none());

        let c = ModelConfig::tiny_opt_post_ln();
        let m = Model::random(c.clone(), 1);
        assert!(m.lm_head.is_none());
        assert!(m.final_norm.is_none());
        assert_eq!(m.embed.len(), c.vocab_size * 16);
        assert_eq!(m.pos_embed.as_ref().unwrap().len(), (64 + 2) * 32);
        let pin = m.project_in.as_ref().unwrap();
        assert_eq!((pin.out_dim, pin.in_dim, pin.b.is_some()), (32, 16, false));
        let pout = m.project_out.as_ref().unwrap();
        assert_eq!((pout.out_dim, pout.in_dim), (16, 32));
        assert_eq!(m.layers[1].attn_norm.b.as_ref().unwrap().len(), 32);
    }

    #[test]
    fn seeded_and_independent_per_tensor() {
        let a = Model::random(ModelConfig::tiny_llama(), 7);
        let b = Model::random(ModelConfig::tiny_llama(), 7);
        let c = Model::random(ModelConfig::tiny_llama(), 8);
        assert_eq!(a.layers[1].v.w, b.layers[1].v.w);
        assert_ne!(a.layers[1].v.w, c.layers[1].v.w);
        // Adding biases must not reshuffle the weights.
        let mut cfg = ModelConfig::tiny_llama();
        cfg.qkv_bias = true;
        let d = Model::random(cfg, 7);
        assert_eq!(a.layers[1].v.w, d.layers[1].v.w);
        assert_ne!(a.layers[0].q.w, a.layers[1].q.w);
    }

    #[test]
    fn init_statistics_match_the_requested_std() {
        let m = Model::random(ModelConfig::tiny_llama(), 3);
        let w = &m.embed;
        let n = w.len() as f64;
        let mean = w.iter().map(|&x| x as f64).sum::<f64>() / n;
        let std = (w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(mean.abs() < 0.003, "{mean}");
        assert!((std - 0.02).abs() < 0.002, "{std}");
        let g = m.final_norm.as_ref().unwrap().w.as_ref().unwrap();
        assert!(g.iter().all(|&x| (x - 1.0).abs() < 0.2));
    }

    #[test]
    fn opt_without_affine_has_no_norm_parameters() {
        let mut c = ModelConfig::tiny_opt();
        c.norm_affine = false;
        let m = Model::random(c, 1);
        let n = &m.layers[0].mlp_norm;
        assert!(n.w.is_none() && n.b.is_none());
        assert_eq!(n.kind, NormKind::Layer);
    }
}
