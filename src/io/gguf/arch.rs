//! Architecture knowledge: GGUF metadata → HF config.json, GGUF tensor names → HF names, and
//! the shapes each tensor must have.

use serde_json::{json, Value as Json};

use super::reader::GgufFile;
use crate::{Error, Result};

/// How one GGUF architecture maps onto an HF model class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchSpec {
    /// `general.architecture`, also the prefix of its metadata keys.
    pub gguf: &'static str,
    pub model_type: &'static str,
    pub hf_class: &'static str,
    /// llama.cpp's converter reorders Q/K rows of these (see [`unpermute_rows`]).
    pub permuted_qk: bool,
}

const ARCHS: &[ArchSpec] = &[
    ArchSpec {
        gguf: "llama",
        model_type: "llama",
        hf_class: "LlamaForCausalLM",
        permuted_qk: true,
    },
    ArchSpec {
        gguf: "mistral",
        model_type: "mistral",
        hf_class: "MistralForCausalLM",
        permuted_qk: true,
    },
    // Qwen2 runs NeoX-style RoPE in llama.cpp, so its converter leaves Q/K rows as HF has them.
    ArchSpec {
        gguf: "qwen2",
        model_type: "qwen2",
        hf_class: "Qwen2ForCausalLM",
        permuted_qk: false,
    },
];

pub fn spec_for(g: &GgufFile) -> Result<&'static ArchSpec> {
    let arch = g.require_str("general.architecture")?;
    ARCHS.iter().find(|s| s.gguf == arch).ok_or_else(|| {
        Error::Unsupported(format!(
            "{}: GGUF architecture {arch:?} cannot be imported (supported: llama, mistral, qwen2)",
            g.path().display()
        ))
    })
}

/// The model dimensions read from metadata (and the embedding tensor for the vocabulary).
#[derive(Debug, Clone, PartialEq)]
pub struct Dims {
    pub vocab: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub context: usize,
    pub norm_eps: f32,
    pub rope_theta: f32,
    pub tied: bool,
}

impl Dims {
    pub fn read(g: &GgufFile, spec: &ArchSpec) -> Result<Dims> {
        let a = spec.gguf;
        let path = g.path();
        let req = |k: &str| -> Result<usize> {
            let key = format!("{a}.{k}");
            let v = g.require_u64(&key)?;
            if v == 0 || v > 1 << 24 {
                return Err(Error::format(
                    path,
                    format!("{key} = {v} is not a sane size"),
                ));
            }
            Ok(v as usize)
        };
        let hidden = req("embedding_length")?;
        let heads = req("attention.head_count")?;
        let kv_heads = match g.get_u64(&format!("{a}.attention.head_count_kv"))? {
            Some(v) => v as usize,
            None => heads,
        };
        if kv_heads == 0 || heads % kv_heads != 0 {
            return Err(Error::format(
                path,
                format!(
                    "{a}.attention.head_count_kv = {kv_heads} does not divide head_count {heads}"
                ),
            ));
        }
        let head_dim = match g.get_u64(&format!("{a}.attention.key_length"))? {
            Some(v) => v as usize,
            None if hidden % heads == 0 => hidden / heads,
            None => {
                return Err(Error::format(
                    path,
                    format!("embedding_length {hidden} is not a multiple of head_count {heads}"),
                ))
            }
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(Error::format(
                path,
                format!("head dimension {head_dim} must be even and non-zero"),
            ));
        }
        if let Some(rot) = g.get_u64(&format!("{a}.rope.dimension_count"))? {
            if rot as usize != head_dim {
                return Err(Error::Unsupported(format!(
                    "{}: partial rotary embedding ({a}.rope.dimension_count = {rot}, head dim {head_dim})",
                    path.display()
                )));
            }
        }
        if let Some(kind) = g.get_str(&format!("{a}.rope.scaling.type"))? {
            if kind != "none" {
                return Err(Error::Unsupported(format!(
                    "{}: RoPE scaling {kind:?} ({a}.rope.scaling.type)",
                    path.display()
                )));
            }
        }
        if g.tensor("rope_freqs.weight").is_some() {
            return Err(Error::Unsupported(format!(
                "{}: per-frequency RoPE factors (rope_freqs.weight, Llama 3.1-style scaling)",
                path.display()
            )));
        }
        let embed = g.tensor("token_embd.weight").ok_or_else(|| {
            Error::tensor(
                "token_embd.weight",
                format!("missing from {}", path.display()),
            )
        })?;
        let vocab = match embed.dims.as_slice() {
            [h, v] if *h as usize == hidden => *v as usize,
            d => {
                return Err(Error::tensor(
                    "token_embd.weight",
                    format!("dims {d:?} (ne0 first), expected [{hidden}, vocab]"),
                ))
            }
        };
        let eps_key = format!("{a}.attention.layer_norm_rms_epsilon");
        Ok(Dims {
            vocab,
            hidden,
            ffn: req("feed_forward_length")?,
            layers: req("block_count")?,
            heads,
            kv_heads,
            head_dim,
            context: req("context_length")?,
            norm_eps: g.require_f64(&eps_key)? as f32,
            rope_theta: g
                .get_f64(&format!("{a}.rope.freq_base"))?
                .unwrap_or(10000.0) as f32,
            tied: g.tensor("output.weight").is_none(),
        })
    }
}

/// An f32 as the JSON number with the fewest digits that reads back as the same f32
/// (so 1e-5 stays 1e-5 instead of 9.999999747378752e-6).
fn short_f32(x: f32) -> Json {
    let v: f64 = x.to_string().parse().expect("Display of f32 parses");
    json!(v)
}

pub fn config_json(
    spec: &ArchSpec,
    d: &Dims,
    torch_dtype: &str,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
) -> Json {
    let mut c = json!({
        "architectures": [spec.hf_class],
        "model_type": spec.model_type,
        "vocab_size": d.vocab,
        "hidden_size": d.hidden,
        "intermediate_size": d.ffn,
        "num_hidden_layers": d.layers,
        "num_attention_heads": d.heads,
        "num_key_value_heads": d.kv_heads,
        "head_dim": d.head_dim,
        "max_position_embeddings": d.context,
        "rms_norm_eps": short_f32(d.norm_eps),
        "rope_theta": short_f32(d.rope_theta),
        "rope_scaling": null,
        "hidden_act": "silu",
        "tie_word_embeddings": d.tied,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": torch_dtype,
        "use_cache": true,
    });
    if let Some(p) = pad {
        c["pad_token_id"] = json!(p);
    }
    match spec.model_type {
        "llama" => {
            c["attention_bias"] = json!(false);
            c["mlp_bias"] = json!(false);
        }
        "mistral" => c["sliding_window"] = Json::Null,
        _ => {}
    }
    c
}

/// What a GGUF tensor becomes: its HF name, the row-major shape it must have, and whether its
/// rows are head-permuted (Some(number of heads)).
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub hf_name: String,
    pub shape: Vec<usize>,
    pub permuted_heads: Option<usize>,
}

/// Maps one GGUF tensor name; unknown names are an error rather than silently dropped weights.
pub fn map_tensor(name: &str, spec: &ArchSpec, d: &Dims) -> Result<Mapped> {
    let (h, q, kv) = (d.hidden, d.heads * d.head_dim, d.kv_heads * d.head_dim);
    let mapped = |hf: String, shape: Vec<usize>, heads: Option<usize>| Mapped {
        hf_name: hf,
        shape,
        permuted_heads: heads.filter(|_| spec.permuted_qk),
    };
    let unknown = || {
        Error::Unsupported(format!(
            "tensor {name} has no {} equivalent in the importer",
            spec.hf_class
        ))
    };
    Ok(match name {
        "token_embd.weight" => mapped("model.embed_tokens.weight".into(), vec![d.vocab, h], None),
        "output_norm.weight" => mapped("model.norm.weight".into(), vec![h], None),
        "output.weight" => mapped("lm_head.weight".into(), vec![d.vocab, h], None),
        _ => {
            let rest = name.strip_prefix("blk.").ok_or_else(unknown)?;
            let (layer, leaf) = rest.split_once('.').ok_or_else(unknown)?;
            let n: usize = layer.parse().map_err(|_| unknown())?;
            if n >= d.layers || layer != n.to_string() {
                return Err(Error::tensor(
                    name,
                    format!(
                        "layer {layer} is outside the {} layers of the model",
                        d.layers
                    ),
                ));
            }
            let p = format!("model.layers.{n}");
            let (module, kind) = leaf.rsplit_once('.').ok_or_else(unknown)?;
            let bias = match kind {
                "weight" => false,
                "bias" => true,
                _ => return Err(unknown()),
            };
            let (hf, out, inp, heads) = match module {
                "attn_norm" if !bias => (format!("{p}.input_layernorm"), h, 0, None),
                "ffn_norm" if !bias => (format!("{p}.post_attention_layernorm"), h, 0, None),
                "attn_q" => (format!("{p}.self_attn.q_proj"), q, h, Some(d.heads)),
                "attn_k" => (format!("{p}.self_attn.k_proj"), kv, h, Some(d.kv_heads)),
                "attn_v" => (format!("{p}.self_attn.v_proj"), kv, h, None),
                "attn_output" => (format!("{p}.self_attn.o_proj"), h, q, None),
                "ffn_gate" => (format!("{p}.mlp.gate_proj"), d.ffn, h, None),
                "ffn_up" => (format!("{p}.mlp.up_proj"), d.ffn, h, None),
                "ffn_down" => (format!("{p}.mlp.down_proj"), h, d.ffn, None),
                _ => return Err(unknown()),
            };
            let shape = if bias || inp == 0 {
                vec![out]
            } else {
                vec![out, inp]
            };
            mapped(format!("{hf}.{kind}"), shape, heads)
        }
    })
}

/// The HF names every model of this shape must have (used to report what a file lacks).
pub fn required_hf_names(d: &Dims) -> Vec<String> {
    let mut v = vec![
        "model.embed_tokens.weight".to_string(),
        "model.norm.weight".to_string(),
    ];
    for n in 0..d.layers {
        for leaf in [
            "input_layernorm",
            "post_attention_layernorm",
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ] {
            v.push(format!("model.layers.{n}.{leaf}.weight"));
        }
    }
    v
}

/// Undoes llama.cpp's Q/K row order. Its converter stores, within each head of `head_dim`
/// rows, HF row `s * head_dim/2 + i` (s = which rotary half) at row `2 * i + s`, so that the
/// rotary pairs are adjacent. `data` holds `rows` rows of `row_len` values; heads divide rows.
pub fn unpermute_rows(data: &[f32], heads: usize, row_len: usize) -> Vec<f32> {
    let rows = data.len() / row_len;
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![0f32; data.len()];
    for (r, dst) in out.chunks_exact_mut(row_len).enumerate() {
        let (head, within) = (r / head_dim, r % head_dim);
        let (s, i) = (within / half, within % half);
        let src = head * head_dim + 2 * i + s;
        dst.copy_from_slice(&data[src * row_len..(src + 1) * row_len]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_the_interleave() {
        // One head of dim 4, rows of length 1: GGUF order is [h0, h2, h1, h3] of HF rows.
        let gguf = [10.0, 12.0, 11.0, 13.0];
        assert_eq!(unpermute_rows(&gguf, 1, 1), vec![10.0, 11.0, 12.0, 13.0]);
    }

    #[test]
    fn short_f32_keeps_decimal_spelling() {
        // The f64 nearest to decimal 1e-5, not the widened f32 (9.99999974e-6).
        assert_eq!(short_f32(1e-5).as_f64(), Some(1e-5));
        assert_eq!(short_f32(100000.0).to_string(), "100000.0");
    }
}
