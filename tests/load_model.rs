//! load_model on tiny random HF directories: every tensor lands in the right field with the
//! right values, and every bad input names the file, tensor or field.

mod load_util;

use load_util::*;
use safetensors::Dtype;
use serde_json::{json, Value};
use std::path::Path;
use zo::model::load::load_model;
use zo::model::{Linear, Mlp, Model, Norm, NormKind};
use zo::Error;

type Spec = Vec<(String, Vec<usize>)>;

fn t(name: String, shape: &[usize]) -> (String, Vec<usize>) {
    (name, shape.to_vec())
}

fn llama_config() -> Value {
    // head_dim 6 is deliberately not hidden/heads, so a loader that derives it is caught.
    json!({
        "model_type": "llama", "vocab_size": 16, "hidden_size": 8, "intermediate_size": 12,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "head_dim": 6, "max_position_embeddings": 32, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": false
    })
}

/// HF tensor names and shapes of the tiny Llama, written out independently of the loader.
fn llama_spec(c: &Value, prefix: &str) -> Spec {
    let (v, h, f) = (16, 8, 12);
    let (q, kv) = (12, 6);
    let qkv_bias = c["model_type"] == "qwen2" || c["attention_bias"] == true;
    let o_bias = c["attention_bias"] == true;
    let mut s = vec![
        t(format!("{prefix}embed_tokens.weight"), &[v, h]),
        t(format!("{prefix}norm.weight"), &[h]),
    ];
    if c["tie_word_embeddings"] != true {
        s.push(t("lm_head.weight".into(), &[v, h]));
    }
    for i in 0..2 {
        let p = format!("{prefix}layers.{i}.");
        s.push(t(format!("{p}input_layernorm.weight"), &[h]));
        s.push(t(format!("{p}post_attention_layernorm.weight"), &[h]));
        for (n, out, inp) in [("q", q, h), ("k", kv, h), ("v", kv, h), ("o", h, q)] {
            s.push(t(format!("{p}self_attn.{n}_proj.weight"), &[out, inp]));
            if (n != "o" && qkv_bias) || (n == "o" && o_bias) {
                s.push(t(format!("{p}self_attn.{n}_proj.bias"), &[out]));
            }
        }
        for (n, out, inp) in [("gate", f, h), ("up", f, h), ("down", h, f)] {
            s.push(t(format!("{p}mlp.{n}_proj.weight"), &[out, inp]));
        }
    }
    s
}

fn opt_config(hidden: usize, embed: usize, pre_norm: bool) -> Value {
    json!({
        "model_type": "opt", "vocab_size": 20, "hidden_size": hidden, "ffn_dim": 16,
        "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 10,
        "word_embed_proj_dim": embed, "do_layer_norm_before": pre_norm,
        "_remove_final_layer_norm": false, "activation_function": "relu",
        "enable_bias": true, "layer_norm_elementwise_affine": true,
        "tie_word_embeddings": true
    })
}

fn opt_spec(c: &Value, prefix: &str) -> Spec {
    let h = c["hidden_size"].as_u64().unwrap() as usize;
    let e = c["word_embed_proj_dim"].as_u64().unwrap() as usize;
    let (v, f) = (20, 16);
    let mut s = vec![
        t(format!("{prefix}embed_tokens.weight"), &[v, e]),
        t(format!("{prefix}embed_positions.weight"), &[12, h]),
    ];
    if e != h {
        s.push(t(format!("{prefix}project_in.weight"), &[h, e]));
        s.push(t(format!("{prefix}project_out.weight"), &[e, h]));
    }
    if c["do_layer_norm_before"] == true {
        s.push(t(format!("{prefix}final_layer_norm.weight"), &[h]));
        s.push(t(format!("{prefix}final_layer_norm.bias"), &[h]));
    }
    for i in 0..2 {
        let p = format!("{prefix}layers.{i}.");
        for n in ["self_attn_layer_norm", "final_layer_norm"] {
            s.push(t(format!("{p}{n}.weight"), &[h]));
            s.push(t(format!("{p}{n}.bias"), &[h]));
        }
        for n in ["q", "k", "v", "out"] {
            s.push(t(format!("{p}self_attn.{n}_proj.weight"), &[h, h]));
            s.push(t(format!("{p}self_attn.{n}_proj.bias"), &[h]));
        }
        s.push(t(format!("{p}fc1.weight"), &[f, h]));
        s.push(t(format!("{p}fc1.bias"), &[f]));
        s.push(t(format!("{p}fc2.weight"), &[h, f]));
        s.push(t(format!("{p}fc2.bias"), &[h]));
    }
    s
}

fn raws(spec: &Spec, dtype: Dtype) -> Vec<Raw> {
    spec.iter().map(|(n, s)| Raw::float(n, s, dtype)).collect()
}

fn write_dir(dir: &Path, config: &Value, spec: &Spec, dtype: Dtype) {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    write_safetensors(&dir.join("model.safetensors"), &raws(spec, dtype));
}

fn weight<'a>(l: &'a Linear, part: &str) -> Option<&'a [f32]> {
    match part {
        "weight" => Some(&l.w),
        "bias" => l.b.as_deref(),
        _ => None,
    }
}

fn norm_part<'a>(n: &'a Norm, part: &str) -> Option<&'a [f32]> {
    match part {
        "weight" => n.w.as_deref(),
        "bias" => n.b.as_deref(),
        _ => None,
    }
}

/// Where an HF tensor name must end up in [`Model`] (prefix already stripped).
fn field<'a>(m: &'a Model, name: &str) -> Option<&'a [f32]> {
    let (path, part) = name.rsplit_once('.').unwrap();
    match path {
        "embed_tokens" => return Some(&m.embed),
        "embed_positions" => return m.pos_embed.as_deref(),
        "lm_head" => return m.lm_head.as_deref(),
        "project_in" => return weight(m.project_in.as_ref()?, part),
        "project_out" => return weight(m.project_out.as_ref()?, part),
        "norm" | "final_layer_norm" => return norm_part(m.final_norm.as_ref()?, part),
        _ => {}
    }
    let rest = path.strip_prefix("layers.")?;
    let (i, sub) = rest.split_once('.')?;
    let l = &m.layers[i.parse::<usize>().ok()?];
    let lin = match (sub, &l.mlp) {
        ("input_layernorm" | "self_attn_layer_norm", _) => return norm_part(&l.attn_norm, part),
        ("post_attention_layernorm" | "final_layer_norm", _) => {
            return norm_part(&l.mlp_norm, part)
        }
        ("self_attn.q_proj", _) => &l.q,
        ("self_attn.k_proj", _) => &l.k,
        ("self_attn.v_proj", _) => &l.v,
        ("self_attn.o_proj" | "self_attn.out_proj", _) => &l.o,
        ("mlp.gate_proj", Mlp::Gated { gate, .. }) => gate,
        ("mlp.up_proj", Mlp::Gated { up, .. }) => up,
        ("mlp.down_proj", Mlp::Gated { down, .. }) => down,
        ("fc1", Mlp::Plain { fc1, .. }) => fc1,
        ("fc2", Mlp::Plain { fc2, .. }) => fc2,
        _ => return None,
    };
    weight(lin, part)
}

/// Every tensor of `spec` is in its field with exactly the stored (rounded) values.
fn check_values(m: &Model, spec: &Spec, prefix: &str, dtype: Dtype) {
    for (name, shape) in spec {
        let short = name.strip_prefix(prefix).unwrap_or(name);
        let got = field(m, short).unwrap_or_else(|| panic!("{name} not loaded"));
        let n = shape.iter().product();
        assert_bits_eq(got, &rounded(dtype, &values(name, n)));
    }
}

fn load_err(dir: &Path) -> (Error, String) {
    let e = load_model(dir).expect_err("load should fail");
    let msg = e.to_string();
    (e, msg)
}

#[test]
fn tiny_llama_f32_untied() {
    let dir = tempfile::tempdir().unwrap();
    let c = llama_config();
    let spec = llama_spec(&c, "model.");
    write_dir(dir.path(), &c, &spec, Dtype::F32);
    let m = load_model(dir.path()).unwrap();
    check_values(&m, &spec, "model.", Dtype::F32);
    assert_eq!(m.layers.len(), 2);
    let l = &m.layers[1];
    assert_eq!((l.q.out_dim, l.q.in_dim), (12, 8));
    assert_eq!((l.k.out_dim, l.k.in_dim), (6, 8));
    assert_eq!((l.o.out_dim, l.o.in_dim), (8, 12));
    assert!(l.q.b.is_none() && l.o.b.is_none());
    assert_eq!((l.attn_norm.kind, l.attn_norm.eps), (NormKind::Rms, 1e-5));
    assert!(l.attn_norm.b.is_none());
    let Mlp::Gated { down, .. } = &l.mlp else {
        panic!("llama has a gated MLP")
    };
    assert_eq!((down.out_dim, down.in_dim), (8, 12));
    assert!(m.pos_embed.is_none() && m.project_in.is_none() && m.project_out.is_none());
    assert_eq!(m.final_norm.as_ref().unwrap().kind, NormKind::Rms);
    assert_eq!(m.head(), &values("lm_head.weight", 16 * 8)[..]);
    assert_eq!(m.config.head_dim, 6);
}

#[test]
fn tiny_llama_tied_ignores_a_stored_head() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = llama_config();
    c["tie_word_embeddings"] = true.into();
    let mut spec = llama_spec(&c, "model.");
    write_dir(dir.path(), &c, &spec, Dtype::BF16);
    let m = load_model(dir.path()).unwrap();
    check_values(&m, &spec, "model.", Dtype::BF16);
    assert!(m.lm_head.is_none());
    assert_eq!(m.head(), &m.embed[..]);

    // A tied checkpoint that still stores lm_head.weight loads the same way.
    spec.push(t("lm_head.weight".into(), &[16, 8]));
    write_dir(dir.path(), &c, &spec, Dtype::BF16);
    assert!(load_model(dir.path()).unwrap().lm_head.is_none());
}

#[test]
fn qwen2_biases_are_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = llama_config();
    c["model_type"] = "qwen2".into();
    let spec = llama_spec(&c, "model.");
    assert!(spec.iter().any(|(n, _)| n.ends_with("k_proj.bias")));
    write_dir(dir.path(), &c, &spec, Dtype::F16);
    let m = load_model(dir.path()).unwrap();
    check_values(&m, &spec, "model.", Dtype::F16);
    assert_eq!(m.layers[0].k.b.as_ref().unwrap().len(), 6);
    assert!(m.layers[0].o.b.is_none());
}

#[test]
fn llama_attention_bias_covers_o_proj() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = llama_config();
    c["attention_bias"] = true.into();
    let spec = llama_spec(&c, "model.");
    write_dir(dir.path(), &c, &spec, Dtype::F32);
    let m = load_model(dir.path()).unwrap();
    check_values(&m, &spec, "model.", Dtype::F32);
    assert!(m.layers[1].o.b.is_some());
}

#[test]
fn sharded_llama_loads() {
    let dir = tempfile::tempdir().unwrap();
    let c = llama_config();
    let spec = llama_spec(&c, "model.");
    std::fs::write(dir.path().join("config.json"), c.to_string()).unwrap();
    let all = raws(&spec, Dtype::F16);
    let mut first = Vec::new();
    let mut second = Vec::new();
    for (i, r) in all.into_iter().enumerate() {
        if i % 3 == 0 { &mut first } else { &mut second }.push(r);
    }
    write_sharded(dir.path(), &[first, second, Vec::new()]);
    let m = load_model(dir.path()).unwrap();
    check_values(&m, &spec, "model.", Dtype::F16);
}

#[test]
fn opt_pre_ln_same_dims_f16() {
    let dir = tempfile::tempdir().unwrap();
    let c = opt_config(8, 8, true);
    let spec = opt_spec(&c, "model.decoder.");
    write_dir(dir.path(), &c, &spec, Dtype::F16);
    let m = load_model(dir.path()).unwrap();
    check_values(&m, &spec, "model.decoder.", Dtype::F16);
    assert!(m.project_in.is_none() && m.project_out.is_none());
    let norm = m.final_norm.as_ref().unwrap();
    assert_eq!((norm.kind, norm.eps), (NormKind::Layer, 1e-5));
    assert!(m.lm_head.is_none());
    let l = &m.layers[0];
    assert!(l.q.b.is_some() && l.o.b.is_some());
    let Mlp::Plain { fc1, fc2 } = &l.mlp else {
        panic!("OPT has a plain MLP")
    };
    assert_eq!(
        (fc1.out_dim, fc1.in_dim, fc2.out_dim, fc2.in_dim),
        (16, 8, 8, 16)
    );
    assert_eq!(m.pos_embed.as_ref().unwrap().len(), 12 * 8);
}

#[test]
fn opt_post_ln_with_projections_sharded_bf16_decoder_prefix() {
    // opt-350m's shape: post-LN, no final norm, word_embed_proj_dim < hidden, names without
    // the leading "model.".
    let dir = tempfile::tempdir().unwrap();
    let c = opt_config(8, 4, false);
    let spec = opt_spec(&c, "decoder.");
    std::fs::write(dir.path().join("config.json"), c.to_string()).unwrap();
    let all = raws(&spec, Dtype::BF16);
    let half = all.len() / 2;
    let mut all = all.into_iter();
    let first: Vec<_> = all.by_ref().take(half).collect();
    write_sharded(dir.path(), &[first, all.collect()]);
    let m = load_model(dir.path()).unwrap();
    check_values(&m, &spec, "decoder.", Dtype::BF16);
    assert!(m.final_norm.is_none());
    let pin = m.project_in.as_ref().unwrap();
    assert_eq!((pin.out_dim, pin.in_dim), (8, 4));
    let pout = m.project_out.as_ref().unwrap();
    assert_eq!((pout.out_dim, pout.in_dim), (4, 8));
    assert!(pin.b.is_none());
    assert_eq!(m.embed.len(), 20 * 4);
}

#[test]
fn opt_without_affine_norms_or_biases() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = opt_config(8, 8, true);
    c["enable_bias"] = false.into();
    c["layer_norm_elementwise_affine"] = false.into();
    let spec: Spec = opt_spec(&c, "model.decoder.")
        .into_iter()
        .filter(|(n, _)| n.ends_with("weight") && !n.contains("norm"))
        .collect();
    write_dir(dir.path(), &c, &spec, Dtype::F32);
    let m = load_model(dir.path()).unwrap();
    check_values(&m, &spec, "model.decoder.", Dtype::F32);
    let l = &m.layers[1];
    assert!(l.attn_norm.w.is_none() && l.attn_norm.b.is_none());
    assert!(l.q.b.is_none());
    assert!(m.final_norm.as_ref().unwrap().w.is_none());
}

#[test]
fn missing_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert!(msg.contains("config.json"), "{msg}");
}

#[test]
fn unknown_architecture_names_the_field_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = llama_config();
    c["model_type"] = "gpt_neox".into();
    write_dir(
        dir.path(),
        &c,
        &llama_spec(&llama_config(), "model."),
        Dtype::F32,
    );
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert!(
        msg.contains("model_type") && msg.contains("gpt_neox"),
        "{msg}"
    );
    assert!(msg.contains("config.json"), "{msg}");
}

#[test]
fn missing_config_field_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = opt_config(8, 8, true);
    c.as_object_mut().unwrap().remove("ffn_dim");
    write_dir(
        dir.path(),
        &c,
        &opt_spec(&opt_config(8, 8, true), "model.decoder."),
        Dtype::F32,
    );
    let (_, msg) = load_err(dir.path());
    assert!(
        msg.contains("ffn_dim") && msg.contains("config.json"),
        "{msg}"
    );
}

#[test]
fn wrong_tensor_shape_names_tensor_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let c = llama_config();
    let mut spec = llama_spec(&c, "model.");
    let name = "model.layers.1.self_attn.k_proj.weight";
    spec.iter_mut().find(|(n, _)| n == name).unwrap().1 = vec![8, 8];
    write_dir(dir.path(), &c, &spec, Dtype::F32);
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, Error::Tensor { .. }), "{e:?}");
    assert!(msg.contains(name), "{msg}");
    assert!(msg.contains("[6, 8]") && msg.contains("[8, 8]"), "{msg}");
}

#[test]
fn config_disagreeing_with_checkpoint_is_caught() {
    // A config claiming a bigger vocabulary than the stored embedding.
    let dir = tempfile::tempdir().unwrap();
    let spec = opt_spec(&opt_config(8, 8, true), "model.decoder.");
    let mut c = opt_config(8, 8, true);
    c["vocab_size"] = 24.into();
    write_dir(dir.path(), &c, &spec, Dtype::F32);
    let (_, msg) = load_err(dir.path());
    assert!(msg.contains("model.decoder.embed_tokens.weight"), "{msg}");
    assert!(msg.contains("[24, 8]") && msg.contains("[20, 8]"), "{msg}");
}

#[test]
fn missing_tensor_is_named() {
    let c = llama_config();
    for missing in [
        "model.layers.1.mlp.up_proj.weight",
        "model.layers.0.post_attention_layernorm.weight",
        "model.norm.weight",
        "lm_head.weight",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let spec: Spec = llama_spec(&c, "model.")
            .into_iter()
            .filter(|(n, _)| n != missing)
            .collect();
        write_dir(dir.path(), &c, &spec, Dtype::F32);
        let (e, msg) = load_err(dir.path());
        assert!(matches!(e, Error::Tensor { .. }), "{e:?}");
        assert!(
            msg.contains(missing) && msg.contains("model.safetensors"),
            "{msg}"
        );
    }
    // A bias the config asks for but the checkpoint lacks.
    let dir = tempfile::tempdir().unwrap();
    let mut q = llama_config();
    q["model_type"] = "qwen2".into();
    write_dir(dir.path(), &q, &llama_spec(&c, "model."), Dtype::F32);
    let (_, msg) = load_err(dir.path());
    assert!(
        msg.contains("model.layers.0.self_attn.q_proj.bias"),
        "{msg}"
    );
}

#[test]
fn missing_embedding_names_every_prefix_tried() {
    let dir = tempfile::tempdir().unwrap();
    let c = opt_config(8, 8, true);
    let spec = opt_spec(&c, "transformer.");
    write_dir(dir.path(), &c, &spec, Dtype::F32);
    let (_, msg) = load_err(dir.path());
    assert!(msg.contains("model.decoder.embed_tokens.weight"), "{msg}");
    assert!(msg.contains("decoder.embed_tokens.weight"), "{msg}");
}

#[test]
fn truncated_checkpoint_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = llama_config();
    write_dir(dir.path(), &c, &llama_spec(&c, "model."), Dtype::F32);
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, Error::Format { .. }), "{e:?}");
    assert!(
        msg.contains("model.safetensors") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn corrupt_header_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = llama_config();
    write_dir(dir.path(), &c, &llama_spec(&c, "model."), Dtype::F32);
    let path = dir.path().join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[12..20].copy_from_slice(b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8");
    std::fs::write(&path, &bytes).unwrap();
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, Error::Format { .. }), "{e:?}");
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn missing_shard_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let c = opt_config(8, 4, false);
    let all = raws(&opt_spec(&c, "model.decoder."), Dtype::F32);
    std::fs::write(dir.path().join("config.json"), c.to_string()).unwrap();
    let mut all = all.into_iter();
    let first: Vec<_> = all.by_ref().take(5).collect();
    write_sharded(dir.path(), &[first, all.collect()]);
    std::fs::remove_file(dir.path().join("model-00001-of-00002.safetensors")).unwrap();
    let (_, msg) = load_err(dir.path());
    assert!(msg.contains("model-00001-of-00002.safetensors"), "{msg}");
    assert!(msg.contains("model.safetensors.index.json"), "{msg}");
}

#[test]
fn no_weights_names_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), llama_config().to_string()).unwrap();
    let (_, msg) = load_err(dir.path());
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("model.safetensors"), "{msg}");
}
