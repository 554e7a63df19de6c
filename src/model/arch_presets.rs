//! Built-in architectures: the HF config.json of well-known checkpoints, written out so that a
//! model of that shape can be built (with synthetic weights) without downloading anything.
//!
//! Each entry is config.json text and goes through [`ModelConfig::from_json_str`], so presets
//! get exactly the validation a file on disk gets. Only the fields the parser reads (plus the
//! identifying ones) are kept; their values are those of the hub files.

use super::ModelConfig;
use crate::{Error, Result};

/// An OPT config.json: (hidden, ffn, layers, heads, word_embed_proj_dim, do_layer_norm_before).
/// Every OPT checkpoint shares the rest (vocab 50272, 2048 positions, ReLU, biases, tied head).
macro_rules! opt {
    ($h:literal, $ffn:literal, $layers:literal, $heads:literal, $proj:literal, $pre:literal) => {
        concat!(
            r#"{"model_type": "opt", "hidden_size": "#,
            $h,
            r#", "ffn_dim": "#,
            $ffn,
            r#", "num_hidden_layers": "#,
            $layers,
            r#", "num_attention_heads": "#,
            $heads,
            r#", "word_embed_proj_dim": "#,
            $proj,
            r#", "do_layer_norm_before": "#,
            $pre,
            r#", "vocab_size": 50272, "max_position_embeddings": 2048,
            "activation_function": "relu", "enable_bias": true,
            "layer_norm_elementwise_affine": true, "_remove_final_layer_norm": false,
            "tie_word_embeddings": true, "bos_token_id": 2, "eos_token_id": 2,
            "pad_token_id": 1}"#
        )
    };
}

/// (name, hub id, config.json text).
const PRESETS: &[(&str, &str, &str)] = &[
    (
        "opt-125m",
        "facebook/opt-125m",
        opt!(768, 3072, 12, 12, 768, true),
    ),
    (
        "opt-350m",
        "facebook/opt-350m",
        opt!(1024, 4096, 24, 16, 512, false),
    ),
    (
        "opt-1.3b",
        "facebook/opt-1.3b",
        opt!(2048, 8192, 24, 32, 2048, true),
    ),
    (
        "opt-2.7b",
        "facebook/opt-2.7b",
        opt!(2560, 10240, 32, 32, 2560, true),
    ),
    (
        "opt-6.7b",
        "facebook/opt-6.7b",
        opt!(4096, 16384, 32, 32, 4096, true),
    ),
    (
        "opt-13b",
        "facebook/opt-13b",
        opt!(5120, 20480, 40, 40, 5120, true),
    ),
    (
        "opt-30b",
        "facebook/opt-30b",
        opt!(7168, 28672, 48, 56, 7168, true),
    ),
    (
        "opt-66b",
        "facebook/opt-66b",
        opt!(9216, 36864, 64, 72, 9216, true),
    ),
    (
        "llama2-7b",
        "meta-llama/Llama-2-7b-hf",
        r#"{"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
        "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "rope_scaling": null, "tie_word_embeddings": false,
        "hidden_act": "silu", "attention_bias": false, "bos_token_id": 1, "eos_token_id": 2}"#,
    ),
    (
        "llama2-13b",
        "meta-llama/Llama-2-13b-hf",
        r#"{"model_type": "llama", "hidden_size": 5120, "intermediate_size": 13824,
        "num_hidden_layers": 40, "num_attention_heads": 40, "num_key_value_heads": 40,
        "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "rope_scaling": null, "tie_word_embeddings": false,
        "hidden_act": "silu", "attention_bias": false, "bos_token_id": 1, "eos_token_id": 2}"#,
    ),
    (
        "llama3-8b",
        "meta-llama/Meta-Llama-3-8B",
        r#"{"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "vocab_size": 128256, "max_position_embeddings": 8192, "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0, "rope_scaling": null, "tie_word_embeddings": false,
        "hidden_act": "silu", "attention_bias": false, "bos_token_id": 128000,
        "eos_token_id": 128001}"#,
    ),
    (
        "llama-3.2-1b",
        "meta-llama/Llama-3.2-1B",
        r#"{"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 64, "vocab_size": 128256, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "tie_word_embeddings": true, "hidden_act": "silu", "attention_bias": false,
        "mlp_bias": false, "bos_token_id": 128000, "eos_token_id": 128001}"#,
    ),
    (
        "smollm2-135m",
        "HuggingFaceTB/SmolLM2-135M",
        r#"{"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "vocab_size": 49152, "max_position_embeddings": 8192, "rms_norm_eps": 1e-05,
        "rope_theta": 100000, "rope_scaling": null, "tie_word_embeddings": true,
        "hidden_act": "silu", "attention_bias": false, "mlp_bias": false,
        "bos_token_id": 0, "eos_token_id": 0}"#,
    ),
    (
        "smollm2-360m",
        "HuggingFaceTB/SmolLM2-360M",
        r#"{"model_type": "llama", "hidden_size": 960, "intermediate_size": 2560,
        "num_hidden_layers": 32, "num_attention_heads": 15, "num_key_value_heads": 5,
        "vocab_size": 49152, "max_position_embeddings": 8192, "rms_norm_eps": 1e-05,
        "rope_theta": 100000, "rope_scaling": null, "tie_word_embeddings": true,
        "hidden_act": "silu", "attention_bias": false, "mlp_bias": false,
        "bos_token_id": 0, "eos_token_id": 0}"#,
    ),
    (
        "smollm2-1.7b",
        "HuggingFaceTB/SmolLM2-1.7B",
        r#"{"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 24, "num_attention_heads": 32, "num_key_value_heads": 32,
        "vocab_size": 49152, "max_position_embeddings": 8192, "rms_norm_eps": 1e-05,
        "rope_theta": 130000, "rope_scaling": null, "tie_word_embeddings": true,
        "hidden_act": "silu", "attention_bias": false, "mlp_bias": false,
        "bos_token_id": 0, "eos_token_id": 0}"#,
    ),
    (
        "mistral-7b",
        "mistralai/Mistral-7B-v0.1",
        r#"{"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "vocab_size": 32000, "max_position_embeddings": 32768, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false,
        "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}"#,
    ),
    (
        "qwen2.5-0.5b",
        "Qwen/Qwen2.5-0.5B",
        r#"{"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
        "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
        "vocab_size": 151936, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 32768, "max_window_layers": 24,
        "use_sliding_window": false, "tie_word_embeddings": true, "hidden_act": "silu",
        "bos_token_id": 151643, "eos_token_id": 151643}"#,
    ),
    (
        "qwen2.5-1.5b",
        "Qwen/Qwen2.5-1.5B",
        r#"{"model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960,
        "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
        "vocab_size": 151936, "max_position_embeddings": 131072, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 131072, "max_window_layers": 28,
        "use_sliding_window": false, "tie_word_embeddings": true, "hidden_act": "silu",
        "bos_token_id": 151643, "eos_token_id": 151643}"#,
    ),
    (
        "qwen2.5-3b",
        "Qwen/Qwen2.5-3B",
        r#"{"model_type": "qwen2", "hidden_size": 2048, "intermediate_size": 11008,
        "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
        "vocab_size": 151936, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 32768, "max_window_layers": 36,
        "use_sliding_window": false, "tie_word_embeddings": true, "hidden_act": "silu",
        "bos_token_id": 151643, "eos_token_id": 151643}"#,
    ),
    (
        "qwen2.5-7b",
        "Qwen/Qwen2.5-7B",
        r#"{"model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
        "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
        "vocab_size": 152064, "max_position_embeddings": 131072, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 131072, "max_window_layers": 28,
        "use_sliding_window": false, "tie_word_embeddings": false, "hidden_act": "silu",
        "bos_token_id": 151643, "eos_token_id": 151643}"#,
    ),
];

/// Names accepted by [`ModelConfig::builtin`], in table order.
pub fn builtin_names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.0).collect()
}

/// The hub checkpoint a built-in name mirrors.
pub fn builtin_hub_id(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|p| p.0 == name).map(|p| p.1)
}

/// The config.json text of a built-in architecture.
pub fn builtin_json(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|p| p.0 == name).map(|p| p.2)
}

impl ModelConfig {
    /// A built-in architecture by name (`opt-13b`, `llama2-7b`, ...); the error lists the
    /// valid names.
    pub fn builtin(name: &str) -> Result<ModelConfig> {
        match builtin_json(name) {
            Some(json) => ModelConfig::from_json_str(json, &format!("built-in arch {name}")),
            None => Err(Error::Config(format!(
                "unknown arch {name:?}; built-in archs are {} (or pass --config path/config.json)",
                builtin_names().join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses() {
        for name in builtin_names() {
            let c = ModelConfig::builtin(name).unwrap();
            assert!(c.num_layers > 0, "{name}");
            assert!(builtin_hub_id(name).is_some());
        }
    }

    /// Parameter counts of the hub checkpoints (as reported by `model.num_parameters()` in
    /// transformers), within 1%.
    #[test]
    fn parameter_counts_match_the_published_sizes() {
        for (name, published) in [
            ("opt-125m", 125.2e6),
            ("opt-350m", 331.2e6),
            ("opt-1.3b", 1.316e9),
            ("opt-2.7b", 2.652e9),
            ("opt-6.7b", 6.658e9),
            ("opt-13b", 12.853e9),
            ("opt-30b", 29.97e9),
            ("opt-66b", 65.7e9),
            ("llama2-7b", 6.738e9),
            ("llama2-13b", 13.016e9),
            ("llama3-8b", 8.030e9),
            ("llama-3.2-1b", 1.236e9),
            ("smollm2-135m", 134.5e6),
            ("smollm2-360m", 361.8e6),
            ("smollm2-1.7b", 1.711e9),
            ("mistral-7b", 7.242e9),
            ("qwen2.5-0.5b", 494.0e6),
            ("qwen2.5-1.5b", 1.544e9),
            ("qwen2.5-3b", 3.086e9),
            ("qwen2.5-7b", 7.616e9),
        ] {
            let n = ModelConfig::builtin(name).unwrap().n_params() as f64;
            let rel = (n - published).abs() / published;
            assert!(
                rel < 0.01,
                "{name}: {n} parameters vs published {published}"
            );
        }
    }

    #[test]
    fn presets_agree_with_the_fixture_files() {
        for (name, fixture) in [
            (
                "opt-125m",
                include_str!("../../tests/fixtures/load/configs/opt-125m.json"),
            ),
            (
                "opt-350m",
                include_str!("../../tests/fixtures/load/configs/opt-350m.json"),
            ),
            (
                "opt-13b",
                include_str!("../../tests/fixtures/load/configs/opt-13b.json"),
            ),
            (
                "llama2-7b",
                include_str!("../../tests/fixtures/load/configs/llama-2-7b.json"),
            ),
            (
                "mistral-7b",
                include_str!("../../tests/fixtures/load/configs/mistral-7b.json"),
            ),
        ] {
            let a = ModelConfig::builtin(name).unwrap();
            let b = ModelConfig::from_json_str(fixture, name).unwrap();
            assert_eq!(a, b, "{name}");
        }
        let smol = ModelConfig::builtin("smollm2-135m").unwrap();
        let shape = ModelConfig::smollm2_135m();
        assert_eq!(
            (
                smol.hidden_size,
                smol.num_layers,
                smol.num_kv_heads,
                smol.rope_theta
            ),
            (
                shape.hidden_size,
                shape.num_layers,
                shape.num_kv_heads,
                shape.rope_theta
            )
        );
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let e = ModelConfig::builtin("opt-14b").unwrap_err().to_string();
        assert!(
            e.contains("opt-14b") && e.contains("opt-13b") && e.contains("llama2-7b"),
            "{e}"
        );
    }
}
