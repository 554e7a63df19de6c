//! HF config.json → one [`ModelConfig`] for both families.

use serde_json::Value;
use std::path::Path;

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama, SmolLM2, Mistral-style, Qwen2 (q/k/v bias): RMSNorm, RoPE, gated SiLU MLP.
    Llama,
    /// OPT 125m–66B: LayerNorm, learned positions with offset 2, ReLU MLP, biases.
    Opt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    Relu,
    /// tanh-free erf GELU as HF's "gelu".
    Gelu,
}

/// rope_scaling of Llama 3.x ("llama3"); others are rejected at parse time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    /// HF model_type as written ("llama", "mistral", "qwen2", "opt", ...).
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// OPT's word_embed_proj_dim (== hidden_size when there is no project_in/out).
    pub embed_dim: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub norm_eps: f32,
    pub rope_theta: f32,
    pub rope_scaling: Option<RopeScaling>,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections (Qwen2: true; Llama `attention_bias`: q/k/v/o).
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    pub activation: Activation,
    /// OPT: pre-LN (true) or post-LN (false, opt-350m).
    pub pre_norm: bool,
    /// OPT: whether the decoder has a final LayerNorm.
    pub final_norm: bool,
    /// OPT: layer_norm_elementwise_affine.
    pub norm_affine: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}
