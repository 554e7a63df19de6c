//! Weight loading from an HF directory (config.json + safetensors) into [`super::Model`].
//!
//! Every tensor is read with the shape the config implies, so a checkpoint that does not match
//! its config fails here, naming the tensor, rather than producing garbage in a forward pass.

use std::path::Path;

use super::{Arch, Layer, Linear, Mlp, Model, ModelConfig, Norm, NormKind};
use crate::io::safetensors::TensorStore;
use crate::{Error, Result};

/// Loads `dir/config.json` and the safetensors checkpoint beside it.
pub fn load_model(dir: &Path) -> Result<Model> {
    let config = ModelConfig::from_file(dir.join("config.json"))?;
    let store = TensorStore::open(dir)?;
    load_from_store(config, &store)
}

/// Builds a model from an already parsed config and an open checkpoint.
pub fn load_from_store(config: ModelConfig, store: &TensorStore) -> Result<Model> {
    match config.arch {
        Arch::Llama => load_llama(config, store),
        Arch::Opt => load_opt(config, store),
    }
}

/// Reads tensors under one name prefix, which checkpoints spell differently.
struct Reader<'a> {
    store: &'a TensorStore,
    prefix: &'static str,
}

impl Reader<'_> {
    /// Picks the first prefix under which `probe` exists; errors name the expected full name.
    fn detect<'a>(
        store: &'a TensorStore,
        prefixes: &[&'static str],
        probe: &str,
    ) -> Result<Reader<'a>> {
        prefixes
            .iter()
            .find(|p| store.contains(&format!("{p}{probe}")))
            .map(|&prefix| Reader { store, prefix })
            .ok_or_else(|| {
                Error::tensor(
                    format!("{}{probe}", prefixes[0]),
                    format!(
                        "not found in {} (also looked for {})",
                        store.source().display(),
                        prefixes[1..]
                            .iter()
                            .map(|p| format!("{p}{probe}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.store.get_f32(&format!("{}{name}", self.prefix), shape)
    }

    fn linear(&self, name: &str, out_dim: usize, in_dim: usize, bias: bool) -> Result<Linear> {
        Ok(Linear {
            w: self.tensor(&format!("{name}.weight"), &[out_dim, in_dim])?,
            b: if bias {
                Some(self.tensor(&format!("{name}.bias"), &[out_dim])?)
            } else {
                None
            },
            out_dim,
            in_dim,
        })
    }

    fn rms_norm(&self, name: &str, dim: usize, eps: f32) -> Result<Norm> {
        Ok(Norm {
            w: Some(self.tensor(&format!("{name}.weight"), &[dim])?),
            b: None,
            eps,
            kind: NormKind::Rms,
        })
    }

    fn layer_norm(&self, name: &str, dim: usize, c: &ModelConfig) -> Result<Norm> {
        let (w, b) = if c.norm_affine {
            (
                Some(self.tensor(&format!("{name}.weight"), &[dim])?),
                Some(self.tensor(&format!("{name}.bias"), &[dim])?),
            )
        } else {
            (None, None)
        };
        Ok(Norm {
            w,
            b,
            eps: c.norm_eps,
            kind: NormKind::Layer,
        })
    }
}

fn load_llama(c: ModelConfig, store: &TensorStore) -> Result<Model> {
    let r = Reader::detect(store, &["model.", ""], "embed_tokens.weight")?;
    let h = c.hidden_size;
    let q_dim = c.num_heads * c.head_dim;
    let kv_dim = c.num_kv_heads * c.head_dim;
    let f = c.intermediate_size;
    let eps = c.norm_eps;
    let mut layers = Vec::with_capacity(c.num_layers);
    for i in 0..c.num_layers {
        let p = format!("layers.{i}.");
        let a = format!("{p}self_attn.");
        let m = format!("{p}mlp.");
        layers.push(Layer {
            attn_norm: r.rms_norm(&format!("{p}input_layernorm"), h, eps)?,
            q: r.linear(&format!("{a}q_proj"), q_dim, h, c.qkv_bias)?,
            k: r.linear(&format!("{a}k_proj"), kv_dim, h, c.qkv_bias)?,
            v: r.linear(&format!("{a}v_proj"), kv_dim, h, c.qkv_bias)?,
            o: r.linear(&format!("{a}o_proj"), h, q_dim, c.o_bias)?,
            mlp_norm: r.rms_norm(&format!("{p}post_attention_layernorm"), h, eps)?,
            mlp: Mlp::Gated {
                gate: r.linear(&format!("{m}gate_proj"), f, h, c.mlp_bias)?,
                up: r.linear(&format!("{m}up_proj"), f, h, c.mlp_bias)?,
                down: r.linear(&format!("{m}down_proj"), h, f, c.mlp_bias)?,
            },
        });
    }
    // A tied checkpoint may still carry a copy of the head; the config decides.
    let lm_head = if c.tie_word_embeddings {
        None
    } else {
        Some(store.get_f32("lm_head.weight", &[c.vocab_size, h])?)
    };
    Ok(Model {
        embed: r.tensor("embed_tokens.weight", &[c.vocab_size, h])?,
        pos_embed: None,
        project_in: None,
        project_out: None,
        layers,
        final_norm: Some(r.rms_norm("norm", h, eps)?),
        lm_head,
        config: c,
    })
}

fn load_opt(c: ModelConfig, store: &TensorStore) -> Result<Model> {
    let r = Reader::detect(
        store,
        &["model.decoder.", "decoder."],
        "embed_tokens.weight",
    )?;
    let h = c.hidden_size;
    let e = c.embed_dim;
    let f = c.intermediate_size;
    let bias = c.qkv_bias;
    let (project_in, project_out) = if e != h {
        (
            Some(r.linear("project_in", h, e, false)?),
            Some(r.linear("project_out", e, h, false)?),
        )
    } else {
        (None, None)
    };
    let mut layers = Vec::with_capacity(c.num_layers);
    for i in 0..c.num_layers {
        let p = format!("layers.{i}.");
        let a = format!("{p}self_attn.");
        layers.push(Layer {
            attn_norm: r.layer_norm(&format!("{p}self_attn_layer_norm"), h, &c)?,
            q: r.linear(&format!("{a}q_proj"), h, h, bias)?,
            k: r.linear(&format!("{a}k_proj"), h, h, bias)?,
            v: r.linear(&format!("{a}v_proj"), h, h, bias)?,
            o: r.linear(&format!("{a}out_proj"), h, h, c.o_bias)?,
            mlp_norm: r.layer_norm(&format!("{p}final_layer_norm"), h, &c)?,
            mlp: Mlp::Plain {
                fc1: r.linear(&format!("{p}fc1"), f, h, c.mlp_bias)?,
                fc2: r.linear(&format!("{p}fc2"), h, f, c.mlp_bias)?,
            },
        });
    }
    let final_norm = if c.final_norm {
        Some(r.layer_norm("final_layer_norm", h, &c)?)
    } else {
        None
    };
    let lm_head = if c.tie_word_embeddings {
        None
    } else {
        Some(store.get_f32("lm_head.weight", &[c.vocab_size, e])?)
    };
    Ok(Model {
        embed: r.tensor("embed_tokens.weight", &[c.vocab_size, e])?,
        // HF's OPT offsets learned positions by 2 (a fairseq leftover), hence the extra rows.
        pos_embed: Some(r.tensor(
            "embed_positions.weight",
            &[c.max_position_embeddings + 2, h],
        )?),
        project_in,
        project_out,
        layers,
        final_norm,
        lm_head,
        config: c,
    })
}
