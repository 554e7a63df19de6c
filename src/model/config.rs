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

/// Typed access to one config.json object; every error names the field and the file.
struct Fields<'a> {
    obj: &'a serde_json::Map<String, Value>,
    origin: &'a str,
}

impl<'a> Fields<'a> {
    fn err(&self, field: &str, msg: impl std::fmt::Display) -> Error {
        Error::Config(format!("{}: field `{field}` {msg}", self.origin))
    }

    /// The field's value, treating JSON null like an absent field (HF writes `"head_dim": null`).
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn usize_opt(&self, field: &str) -> Result<Option<usize>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.err(field, format!("must be an unsigned integer, found {v}"))),
        }
    }

    fn usize(&self, field: &str) -> Result<usize> {
        self.usize_opt(field)?
            .ok_or_else(|| self.err(field, "is missing (expected an unsigned integer)"))
    }

    /// A required size that must also be non-zero.
    fn dim(&self, field: &str) -> Result<usize> {
        match self.usize(field)? {
            0 => Err(self.err(field, "must be positive, found 0")),
            n => Ok(n),
        }
    }

    fn f64_or(&self, field: &str, default: f64) -> Result<f64> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.err(field, format!("must be a number, found {v}"))),
        }
    }

    /// A required positive number.
    fn positive(&self, field: &str) -> Result<f32> {
        match self.get(field) {
            None => Err(self.err(field, "is missing (expected a positive number)")),
            Some(v) => match v.as_f64() {
                Some(x) if x > 0.0 && x.is_finite() => Ok(x as f32),
                _ => Err(self.err(field, format!("must be a positive number, found {v}"))),
            },
        }
    }

    fn bool_or(&self, field: &str, default: bool) -> Result<bool> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(field, format!("must be true or false, found {v}"))),
        }
    }

    fn str_or(&self, field: &str, default: &'a str) -> Result<&'a str> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_str()
                .ok_or_else(|| self.err(field, format!("must be a string, found {v}"))),
        }
    }

    /// A token id; HF allows a list for eos (Llama 3 Instruct), where the first is the primary.
    fn token_id(&self, field: &str) -> Result<Option<u32>> {
        let bad = |v: &Value| {
            self.err(
                field,
                format!("must be a token id or a list of them, found {v}"),
            )
        };
        let one = |v: &Value| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad(v))
        };
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) => {
                let ids = items.iter().map(one).collect::<Result<Vec<u32>>>()?;
                Ok(ids.first().copied())
            }
            Some(v) => one(v).map(Some),
        }
    }

    fn activation(&self, field: &str, default: &str) -> Result<Activation> {
        match self.str_or(field, default)? {
            "silu" | "swish" => Ok(Activation::Silu),
            "relu" => Ok(Activation::Relu),
            "gelu" => Ok(Activation::Gelu),
            other => Err(Error::Unsupported(format!(
                "{}: field `{field}` = \"{other}\" (supported: silu, relu, gelu)",
                self.origin
            ))),
        }
    }
}

impl ModelConfig {
    /// Parses an HF config.json. `origin` names the source (usually the file path) in errors.
    pub fn from_json_str(s: &str, origin: &str) -> Result<ModelConfig> {
        let value: Value = serde_json::from_str(s)
            .map_err(|e| Error::Config(format!("{origin}: not valid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| Error::Config(format!("{origin}: expected a JSON object")))?;
        let f = Fields { obj, origin };
        let model_type = match f.get("model_type") {
            None => {
                return Err(f.err(
                    "model_type",
                    "is missing (expected e.g. \"llama\" or \"opt\")",
                ))
            }
            Some(v) => v
                .as_str()
                .ok_or_else(|| f.err("model_type", format!("must be a string, found {v}")))?,
        };
        match model_type {
            "llama" | "mistral" | "qwen2" => parse_llama(&f, model_type),
            "opt" => parse_opt(&f),
            other => Err(f.err(
                "model_type",
                format!(
                    "= \"{other}\" is not a supported architecture (llama, mistral, qwen2, opt)"
                ),
            )),
        }
    }

    /// Reads and parses a config.json file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ModelConfig> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, &path.display().to_string())
    }
}

fn parse_llama(f: &Fields, model_type: &str) -> Result<ModelConfig> {
    let hidden_size = f.dim("hidden_size")?;
    let num_heads = f.dim("num_attention_heads")?;
    let num_kv_heads = f.usize_opt("num_key_value_heads")?.unwrap_or(num_heads);
    if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
        return Err(f.err(
            "num_key_value_heads",
            format!("= {num_kv_heads} must divide num_attention_heads = {num_heads}"),
        ));
    }
    let head_dim = match f.usize_opt("head_dim")? {
        Some(0) => return Err(f.err("head_dim", "must be positive, found 0")),
        Some(d) => d,
        None if hidden_size % num_heads == 0 => hidden_size / num_heads,
        None => {
            return Err(f.err(
                "hidden_size",
                format!("= {hidden_size} is not a multiple of num_attention_heads = {num_heads} and head_dim is not given"),
            ))
        }
    };
    // Qwen2's attention always has q/k/v bias and never o bias; Llama's flag covers all four.
    let (qkv_bias, o_bias) = if model_type == "qwen2" {
        (true, false)
    } else {
        let b = f.bool_or("attention_bias", false)?;
        (b, b)
    };
    if model_type == "qwen2" && f.bool_or("use_sliding_window", false)? {
        return Err(Error::Unsupported(format!(
            "{}: field `use_sliding_window` = true (sliding-window attention is not implemented)",
            f.origin
        )));
    }
    let (rope_theta, rope_scaling) = parse_rope(f)?;
    Ok(ModelConfig {
        arch: Arch::Llama,
        model_type: model_type.to_string(),
        vocab_size: f.dim("vocab_size")?,
        hidden_size,
        embed_dim: hidden_size,
        intermediate_size: f.dim("intermediate_size")?,
        num_layers: f.usize("num_hidden_layers")?,
        num_heads,
        num_kv_heads,
        head_dim,
        max_position_embeddings: f.dim("max_position_embeddings")?,
        norm_eps: f.f64_or("rms_norm_eps", 1e-6)? as f32,
        rope_theta,
        rope_scaling,
        tie_word_embeddings: f.bool_or("tie_word_embeddings", false)?,
        qkv_bias,
        o_bias,
        mlp_bias: f.bool_or("mlp_bias", false)?,
        activation: f.activation("hidden_act", "silu")?,
        pre_norm: true,
        final_norm: true,
        norm_affine: true,
        bos_token_id: f.token_id("bos_token_id")?,
        eos_token_id: f.token_id("eos_token_id")?,
    })
}

/// RoPE base and scaling. Files from transformers 5 nest both in `rope_parameters`; older ones
/// write a top-level `rope_theta` and an optional `rope_scaling`.
fn parse_rope(f: &Fields) -> Result<(f32, Option<RopeScaling>)> {
    let top_theta = f.f64_or("rope_theta", 10000.0)?;
    let (field, nested_default) = match f.get("rope_parameters") {
        Some(_) => ("rope_parameters", Some("default")),
        None => ("rope_scaling", None),
    };
    let Some(v) = f.get(field) else {
        return Ok((top_theta as f32, None));
    };
    let obj = v
        .as_object()
        .ok_or_else(|| f.err(field, format!("must be an object or null, found {v}")))?;
    let origin = format!("{} ({field})", f.origin);
    let s = Fields {
        obj,
        origin: &origin,
    };
    let theta = s.f64_or("rope_theta", top_theta)?;
    // rope_type in newer files, type in older ones.
    let kind = match (s.get("rope_type"), s.get("type"), nested_default) {
        (Some(_), _, _) => s.str_or("rope_type", "")?,
        (None, Some(_), _) => s.str_or("type", "")?,
        (None, None, Some(d)) => d,
        (None, None, None) => return Err(f.err(field, "has neither `rope_type` nor `type`")),
    };
    let scaling = match kind {
        // Plain RoPE written out explicitly.
        "default" => None,
        "llama3" => Some(RopeScaling {
            factor: s.positive("factor")?,
            low_freq_factor: s.positive("low_freq_factor")?,
            high_freq_factor: s.positive("high_freq_factor")?,
            original_max_position_embeddings: s.dim("original_max_position_embeddings")?,
        }),
        other => {
            return Err(Error::Unsupported(format!(
                "{}: {field} type \"{other}\" (only \"llama3\" and \"default\" are implemented)",
                f.origin
            )))
        }
    };
    Ok((theta as f32, scaling))
}

fn parse_opt(f: &Fields) -> Result<ModelConfig> {
    let hidden_size = f.dim("hidden_size")?;
    let num_heads = f.dim("num_attention_heads")?;
    if hidden_size % num_heads != 0 {
        return Err(f.err(
            "hidden_size",
            format!("= {hidden_size} is not a multiple of num_attention_heads = {num_heads}"),
        ));
    }
    let embed_dim = match f.usize_opt("word_embed_proj_dim")? {
        Some(0) => return Err(f.err("word_embed_proj_dim", "must be positive, found 0")),
        Some(d) => d,
        None => hidden_size,
    };
    let pre_norm = f.bool_or("do_layer_norm_before", true)?;
    let remove_final = f.bool_or("_remove_final_layer_norm", false)?;
    let bias = f.bool_or("enable_bias", true)?;
    Ok(ModelConfig {
        arch: Arch::Opt,
        model_type: "opt".to_string(),
        vocab_size: f.dim("vocab_size")?,
        hidden_size,
        embed_dim,
        intermediate_size: f.dim("ffn_dim")?,
        num_layers: f.usize("num_hidden_layers")?,
        num_heads,
        num_kv_heads: num_heads,
        head_dim: hidden_size / num_heads,
        max_position_embeddings: f.dim("max_position_embeddings")?,
        // HF's OPT builds every LayerNorm with torch's default eps.
        norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
        tie_word_embeddings: f.bool_or("tie_word_embeddings", true)?,
        qkv_bias: bias,
        o_bias: bias,
        mlp_bias: bias,
        activation: f.activation("activation_function", "relu")?,
        pre_norm,
        final_norm: pre_norm && !remove_final,
        norm_affine: f.bool_or("layer_norm_elementwise_affine", true)?,
        bos_token_id: f.token_id("bos_token_id")?,
        eos_token_id: f.token_id("eos_token_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            ModelConfig::from_json_str(
                include_str!(concat!("../../tests/fixtures/load/configs/", $name)),
                $name,
            )
            .unwrap()
        };
    }

    fn config_err(json: &str) -> String {
        match ModelConfig::from_json_str(json, "dir/config.json") {
            Err(e @ Error::Config(_)) => e.to_string(),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    fn unsupported(json: &str) -> String {
        match ModelConfig::from_json_str(json, "dir/config.json") {
            Err(e @ Error::Unsupported(_)) => e.to_string(),
            other => panic!("expected an unsupported error, got {other:?}"),
        }
    }

    /// `json` with one field replaced or removed (`None`).
    fn with_field(json: &str, field: &str, value: Option<Value>) -> String {
        let mut v: Value = serde_json::from_str(json).unwrap();
        let obj = v.as_object_mut().unwrap();
        match value {
            Some(x) => obj.insert(field.to_string(), x),
            None => obj.remove(field),
        };
        v.to_string()
    }

    /// A minimal Llama config with one field replaced or removed (`None`).
    fn llama_with(field: &str, value: Option<Value>) -> String {
        let json = include_str!("../../tests/fixtures/load/configs/smollm2-135m.json");
        with_field(json, field, value)
    }

    fn opt_with(field: &str, value: Option<Value>) -> String {
        let json = include_str!("../../tests/fixtures/load/configs/opt-125m.json");
        with_field(json, field, value)
    }

    #[test]
    fn opt_125m() {
        let c = fixture!("opt-125m.json");
        assert_eq!(c.arch, Arch::Opt);
        assert_eq!(c.model_type, "opt");
        assert_eq!(
            (
                c.vocab_size,
                c.hidden_size,
                c.embed_dim,
                c.intermediate_size
            ),
            (50272, 768, 768, 3072)
        );
        assert_eq!(
            (c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim),
            (12, 12, 12, 64)
        );
        assert_eq!(c.max_position_embeddings, 2048);
        assert_eq!(c.norm_eps, 1e-5);
        assert!(c.pre_norm && c.final_norm && c.norm_affine);
        assert!(c.qkv_bias && c.o_bias && c.mlp_bias);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.activation, Activation::Relu);
        assert_eq!(c.rope_scaling, None);
        assert_eq!((c.bos_token_id, c.eos_token_id), (Some(2), Some(2)));
    }

    #[test]
    fn opt_350m_is_post_ln_with_projections() {
        let c = fixture!("opt-350m.json");
        assert_eq!((c.hidden_size, c.embed_dim), (1024, 512));
        assert_eq!((c.num_layers, c.num_heads, c.head_dim), (24, 16, 64));
        assert_eq!(c.intermediate_size, 4096);
        assert!(!c.pre_norm);
        // HF builds the final LayerNorm only for pre-LN models.
        assert!(!c.final_norm);
    }

    #[test]
    fn opt_13b() {
        let c = fixture!("opt-13b.json");
        assert_eq!(
            (c.hidden_size, c.embed_dim, c.intermediate_size),
            (5120, 5120, 20480)
        );
        assert_eq!((c.num_layers, c.num_heads, c.head_dim), (40, 40, 128));
        assert!(c.pre_norm && c.final_norm);
    }

    #[test]
    fn opt_flags() {
        let c = ModelConfig::from_json_str(
            &opt_with("_remove_final_layer_norm", Some(Value::Bool(true))),
            "x",
        )
        .unwrap();
        assert!(c.pre_norm && !c.final_norm);
        let c = ModelConfig::from_json_str(&opt_with("enable_bias", Some(Value::Bool(false))), "x")
            .unwrap();
        assert!(!c.qkv_bias && !c.o_bias && !c.mlp_bias);
        let c = ModelConfig::from_json_str(
            &opt_with("layer_norm_elementwise_affine", Some(Value::Bool(false))),
            "x",
        )
        .unwrap();
        assert!(!c.norm_affine);
        let c = ModelConfig::from_json_str(&opt_with("word_embed_proj_dim", None), "x").unwrap();
        assert_eq!(c.embed_dim, 768);
        let c = ModelConfig::from_json_str(&opt_with("do_layer_norm_before", None), "x").unwrap();
        assert!(c.pre_norm);
    }

    #[test]
    fn llama_2_7b() {
        let c = fixture!("llama-2-7b.json");
        assert_eq!(c.arch, Arch::Llama);
        assert_eq!(
            (c.vocab_size, c.hidden_size, c.intermediate_size),
            (32000, 4096, 11008)
        );
        assert_eq!(
            (c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim),
            (32, 32, 32, 128)
        );
        assert_eq!(c.norm_eps, 1e-5);
        assert_eq!(c.rope_theta, 10000.0);
        assert_eq!(c.rope_scaling, None);
        assert!(!c.tie_word_embeddings);
        assert!(!c.qkv_bias && !c.o_bias && !c.mlp_bias);
        assert_eq!(c.activation, Activation::Silu);
        assert!(c.pre_norm && c.final_norm);
        assert_eq!((c.bos_token_id, c.eos_token_id), (Some(1), Some(2)));
    }

    #[test]
    fn llama_3_1_8b_has_llama3_scaling() {
        let c = fixture!("llama-3.1-8b.json");
        assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (32, 8, 128));
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(
            c.rope_scaling,
            Some(RopeScaling {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192
            })
        );
        assert_eq!(c.vocab_size, 128256);
        // A list of eos ids keeps the first.
        assert_eq!(
            (c.bos_token_id, c.eos_token_id),
            (Some(128000), Some(128001))
        );
    }

    #[test]
    fn smollm2_135m() {
        let c = fixture!("smollm2-135m.json");
        assert_eq!(
            (c.vocab_size, c.hidden_size, c.intermediate_size),
            (49152, 576, 1536)
        );
        assert_eq!(
            (c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim),
            (30, 9, 3, 64)
        );
        assert_eq!(c.rope_theta, 100000.0);
        assert_eq!(c.max_position_embeddings, 8192);
        assert!(c.tie_word_embeddings);
    }

    #[test]
    fn mistral_7b() {
        let c = fixture!("mistral-7b.json");
        assert_eq!(c.arch, Arch::Llama);
        assert_eq!(c.model_type, "mistral");
        assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (32, 8, 128));
        assert_eq!(c.intermediate_size, 14336);
        assert!(!c.tie_word_embeddings && !c.qkv_bias);
    }

    #[test]
    fn qwen2_0_5b_has_qkv_bias_only() {
        let c = fixture!("qwen2-0.5b.json");
        assert_eq!(c.model_type, "qwen2");
        assert_eq!(
            (c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim),
            (896, 14, 2, 64)
        );
        assert!(c.qkv_bias && !c.o_bias && !c.mlp_bias);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.norm_eps, 1e-6);
        assert_eq!(c.rope_theta, 1e6);
    }

    #[test]
    fn llama_defaults() {
        let json = r#"{"model_type": "llama", "vocab_size": 100, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "max_position_embeddings": 256, "head_dim": null}"#;
        let c = ModelConfig::from_json_str(json, "x").unwrap();
        assert_eq!((c.num_kv_heads, c.head_dim), (4, 16));
        assert_eq!(c.rope_theta, 10000.0);
        assert_eq!(c.norm_eps, 1e-6);
        assert!(!c.tie_word_embeddings);
        assert_eq!(c.activation, Activation::Silu);
        assert_eq!((c.bos_token_id, c.eos_token_id), (None, None));
    }

    #[test]
    fn llama_explicit_head_dim_and_biases() {
        let c = ModelConfig::from_json_str(&llama_with("head_dim", Some(32.into())), "x").unwrap();
        assert_eq!(c.head_dim, 32);
        let c = ModelConfig::from_json_str(&llama_with("attention_bias", Some(true.into())), "x")
            .unwrap();
        assert!(c.qkv_bias && c.o_bias && !c.mlp_bias);
        let c =
            ModelConfig::from_json_str(&llama_with("mlp_bias", Some(true.into())), "x").unwrap();
        assert!(c.mlp_bias);
        let c = ModelConfig::from_json_str(&llama_with("hidden_act", Some("gelu".into())), "x")
            .unwrap();
        assert_eq!(c.activation, Activation::Gelu);
        let c = ModelConfig::from_json_str(
            &llama_with(
                "rope_scaling",
                Some(serde_json::json!({"rope_type": "default"})),
            ),
            "x",
        )
        .unwrap();
        assert_eq!(c.rope_scaling, None);
        // Older files write `type` instead of `rope_type`.
        let old = serde_json::json!({"type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
        let c = ModelConfig::from_json_str(&llama_with("rope_scaling", Some(old)), "x").unwrap();
        assert_eq!(c.rope_scaling.unwrap().factor, 32.0);
    }

    #[test]
    fn transformers5_rope_parameters() {
        let params = serde_json::json!({"rope_theta": 500000.0, "rope_type": "llama3",
            "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192});
        let c =
            ModelConfig::from_json_str(&llama_with("rope_parameters", Some(params)), "x").unwrap();
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(
            c.rope_scaling.unwrap().original_max_position_embeddings,
            8192
        );
        let params = serde_json::json!({"rope_theta": 1234.0, "rope_type": "default"});
        let c =
            ModelConfig::from_json_str(&llama_with("rope_parameters", Some(params)), "x").unwrap();
        assert_eq!((c.rope_theta, c.rope_scaling), (1234.0, None));
        let params = serde_json::json!({"rope_theta": 1e4, "rope_type": "yarn", "factor": 4.0});
        let msg = unsupported(&llama_with("rope_parameters", Some(params)));
        assert!(
            msg.contains("yarn") && msg.contains("rope_parameters"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_model_type_names_it_and_the_file() {
        let msg = config_err(&llama_with("model_type", Some("gpt2".into())));
        assert!(
            msg.contains("dir/config.json") && msg.contains("model_type"),
            "{msg}"
        );
        assert!(msg.contains("gpt2"), "{msg}");
        let msg = config_err(&llama_with("model_type", None));
        assert!(
            msg.contains("dir/config.json") && msg.contains("model_type"),
            "{msg}"
        );
    }

    #[test]
    fn missing_or_mistyped_fields_are_named() {
        for field in [
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "max_position_embeddings",
        ] {
            let msg = config_err(&llama_with(field, None));
            assert!(
                msg.contains(field) && msg.contains("dir/config.json"),
                "{msg}"
            );
            assert!(msg.contains("missing"), "{msg}");
        }
        for field in ["ffn_dim", "num_hidden_layers", "vocab_size", "hidden_size"] {
            let msg = config_err(&opt_with(field, None));
            assert!(msg.contains(field) && msg.contains("missing"), "{msg}");
        }
        let msg = config_err(&llama_with("hidden_size", Some("576".into())));
        assert!(
            msg.contains("hidden_size") && msg.contains("unsigned integer"),
            "{msg}"
        );
        let msg = config_err(&llama_with("rms_norm_eps", Some("tiny".into())));
        assert!(
            msg.contains("rms_norm_eps") && msg.contains("number"),
            "{msg}"
        );
        let msg = config_err(&llama_with("tie_word_embeddings", Some(1.into())));
        assert!(msg.contains("tie_word_embeddings"), "{msg}");
        let msg = config_err(&opt_with("do_layer_norm_before", Some("yes".into())));
        assert!(msg.contains("do_layer_norm_before"), "{msg}");
        let msg = config_err(&llama_with("num_key_value_heads", Some(2.into())));
        assert!(msg.contains("num_key_value_heads"), "{msg}");
        let msg = config_err(&llama_with("eos_token_id", Some((-1).into())));
        assert!(msg.contains("eos_token_id"), "{msg}");
        let msg = config_err("{not json");
        assert!(msg.contains("dir/config.json"), "{msg}");
        let msg = config_err("[1, 2]");
        assert!(msg.contains("object"), "{msg}");
    }

    #[test]
    fn unsupported_rope_scaling_and_activation() {
        for kind in ["linear", "dynamic", "yarn"] {
            let scaling = serde_json::json!({"rope_type": kind, "factor": 2.0});
            let msg = unsupported(&llama_with("rope_scaling", Some(scaling)));
            assert!(msg.contains(kind) && msg.contains("rope_scaling"), "{msg}");
        }
        let scaling = serde_json::json!({"type": "linear", "factor": 2.0});
        assert!(unsupported(&llama_with("rope_scaling", Some(scaling))).contains("linear"));
        let msg = unsupported(&llama_with("hidden_act", Some("gelu_new".into())));
        assert!(
            msg.contains("gelu_new") && msg.contains("hidden_act"),
            "{msg}"
        );
        let msg = unsupported(&opt_with("activation_function", Some("tanh".into())));
        assert!(msg.contains("activation_function"), "{msg}");
        let mut qwen: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/load/configs/qwen2-0.5b.json"
        ))
        .unwrap();
        qwen["use_sliding_window"] = true.into();
        assert!(unsupported(&qwen.to_string()).contains("use_sliding_window"));
    }

    #[test]
    fn incomplete_llama3_scaling_names_the_field() {
        let scaling = serde_json::json!({"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "original_max_position_embeddings": 8192});
        let msg = config_err(&llama_with("rope_scaling", Some(scaling)));
        assert!(
            msg.contains("high_freq_factor") && msg.contains("rope_scaling"),
            "{msg}"
        );
    }

    #[test]
    fn from_file_reads_and_names_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            include_str!("../../tests/fixtures/load/configs/opt-350m.json"),
        )
        .unwrap();
        assert_eq!(ModelConfig::from_file(&path).unwrap().embed_dim, 512);
        let missing = dir.path().join("nope.json");
        let err = ModelConfig::from_file(&missing).unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().contains("nope.json"), "{err}");
        std::fs::write(&path, r#"{"model_type": "bloom"}"#).unwrap();
        let msg = ModelConfig::from_file(&path).unwrap_err().to_string();
        assert!(
            msg.contains("config.json") && msg.contains("bloom"),
            "{msg}"
        );
    }
}
