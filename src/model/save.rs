//! Writing a [`Model`] back out as an HF directory: the inverse of [`super::load`].
//!
//! Tensor names are those HF uses (and `load` reads first): Llama
//! `model.layers.N.self_attn.q_proj.weight`, OPT `model.decoder.layers.N.fc1.weight`, …; a
//! tied head is not written. config.json and the tokenizer files are copied from the source
//! model directory. Every file is written atomically (temporary file + fsync + rename).

use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::tensor::TensorView;

use super::{Arch, Linear, Mlp, Model, Norm};
use crate::engine::checkpoint::write_atomic;
use crate::io::gguf::ImportDtype;
use crate::{Error, Result};

/// Files copied verbatim from the source directory when present (config.json is rewritten).
pub const COPIED_FILES: [&str; 8] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
];

type Named<'a> = (String, Vec<usize>, &'a [f32]);

fn push_linear<'a>(out: &mut Vec<Named<'a>>, name: &str, lin: &'a Linear) {
    out.push((
        format!("{name}.weight"),
        vec![lin.out_dim, lin.in_dim],
        &lin.w,
    ));
    if let Some(b) = &lin.b {
        out.push((format!("{name}.bias"), vec![lin.out_dim], b));
    }
}

fn push_norm<'a>(out: &mut Vec<Named<'a>>, name: &str, n: &'a Norm) {
    if let Some(w) = &n.w {
        out.push((format!("{name}.weight"), vec![w.len()], w));
    }
    if let Some(b) = &n.b {
        out.push((format!("{name}.bias"), vec![b.len()], b));
    }
}

/// Every tensor of `model` with its HF name and shape, in a fixed order (embeddings, layers
/// in order, final norm, head). This order is also the canonical order of the model hash.
pub fn hf_tensors(model: &Model) -> Vec<Named<'_>> {
    let c = &model.config;
    let mut out = Vec::new();
    let (p, attn_norm, mlp_norm, o_name) = match c.arch {
        Arch::Llama => (
            "model.",
            "input_layernorm",
            "post_attention_layernorm",
            "o_proj",
        ),
        Arch::Opt => (
            "model.decoder.",
            "self_attn_layer_norm",
            "final_layer_norm",
            "out_proj",
        ),
    };
    out.push((
        format!("{p}embed_tokens.weight"),
        vec![c.vocab_size, c.embed_dim],
        &model.embed[..],
    ));
    if let Some(pos) = &model.pos_embed {
        out.push((
            format!("{p}embed_positions.weight"),
            vec![pos.len() / c.hidden_size, c.hidden_size],
            &pos[..],
        ));
    }
    if let Some(pi) = &model.project_in {
        push_linear(&mut out, &format!("{p}project_in"), pi);
    }
    if let Some(po) = &model.project_out {
        push_linear(&mut out, &format!("{p}project_out"), po);
    }
    for (i, l) in model.layers.iter().enumerate() {
        let lp = format!("{p}layers.{i}.");
        push_norm(&mut out, &format!("{lp}{attn_norm}"), &l.attn_norm);
        push_linear(&mut out, &format!("{lp}self_attn.q_proj"), &l.q);
        push_linear(&mut out, &format!("{lp}self_attn.k_proj"), &l.k);
        push_linear(&mut out, &format!("{lp}self_attn.v_proj"), &l.v);
        push_linear(&mut out, &format!("{lp}self_attn.{o_name}"), &l.o);
        push_norm(&mut out, &format!("{lp}{mlp_norm}"), &l.mlp_norm);
        match &l.mlp {
            Mlp::Gated { gate, up, down } => {
                push_linear(&mut out, &format!("{lp}mlp.gate_proj"), gate);
                push_linear(&mut out, &format!("{lp}mlp.up_proj"), up);
                push_linear(&mut out, &format!("{lp}mlp.down_proj"), down);
            }
            Mlp::Plain { fc1, fc2 } => {
                push_linear(&mut out, &format!("{lp}fc1"), fc1);
                push_linear(&mut out, &format!("{lp}fc2"), fc2);
            }
        }
    }
    if let Some(n) = &model.final_norm {
        let name = match c.arch {
            Arch::Llama => "norm",
            Arch::Opt => "final_layer_norm",
        };
        push_norm(&mut out, &format!("{p}{name}"), n);
    }
    if let Some(h) = &model.lm_head {
        out.push((
            "lm_head.weight".into(),
            vec![c.vocab_size, c.embed_dim],
            &h[..],
        ));
    }
    out
}

/// f32 values in a safetensors dtype, little-endian, rounded to nearest even.
pub fn encode(dtype: ImportDtype, v: &[f32]) -> Vec<u8> {
    match dtype {
        ImportDtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ImportDtype::F16 => v
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect(),
        ImportDtype::BF16 => v
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
            .collect(),
    }
}

fn st_dtype(dtype: ImportDtype) -> safetensors::Dtype {
    match dtype {
        ImportDtype::F32 => safetensors::Dtype::F32,
        ImportDtype::F16 => safetensors::Dtype::F16,
        ImportDtype::BF16 => safetensors::Dtype::BF16,
    }
}

/// Serializes named f32 tensors into one safetensors file at `path`, atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    dtype: ImportDtype,
) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, v)| encode(dtype, v)).collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(st_dtype(dtype), shape.clone(), b)
            .map_err(|e| Error::tensor(name, format!("cannot build a safetensors view: {e}")))?;
        views.push((name.clone(), view));
    }
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let data = safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| Error::format(path, format!("serializing safetensors failed: {e}")))?;
    write_atomic(path, &data)
}

/// Writes `model` to `out_dir` as model.safetensors (in `dtype`) plus config.json and the
/// tokenizer files of `src_dir`. Returns the files written.
pub fn save_hf(
    model: &Model,
    src_dir: &Path,
    out_dir: &Path,
    dtype: ImportDtype,
) -> Result<Vec<PathBuf>> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(src_dir, out_dir) {
        return Err(Error::Config(format!(
            "export directory {} is the source model directory; choose another",
            out_dir.display()
        )));
    }
    let src_config = src_dir.join("config.json");
    let text = std::fs::read_to_string(&src_config).map_err(|e| Error::io(&src_config, e))?;
    let mut config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(&src_config, format!("not valid JSON: {e}")))?;
    // Refuse to pair weights with a config that describes another shape.
    let parsed = super::ModelConfig::from_json_str(&text, &src_config.display().to_string())?;
    if parsed != model.config {
        return Err(Error::Config(format!(
            "{} does not describe the model being exported",
            src_config.display()
        )));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let mut written = Vec::new();

    let st = out_dir.join(crate::io::safetensors::SINGLE_FILE);
    write_safetensors(&st, &hf_tensors(model), dtype)?;
    written.push(st);

    if let Some(obj) = config.as_object_mut() {
        obj.insert("torch_dtype".into(), dtype.torch_name().into());
    }
    let cfg_out = out_dir.join("config.json");
    let json = serde_json::to_vec_pretty(&config).expect("JSON values serialize");
    write_atomic(&cfg_out, &json)?;
    written.push(cfg_out);

    for name in COPIED_FILES {
        let src = src_dir.join(name);
        if src.is_file() {
            let bytes = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
            let dst = out_dir.join(name);
            write_atomic(&dst, &bytes)?;
            written.push(dst);
        }
    }
    Ok(written)
}
