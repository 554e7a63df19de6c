//! End-to-end import of tiny GGUF models into HF-layout directories.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::Value as Json;
use zo::io::gguf::{import, GgufFile, ImportDtype};
use zo::Error;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name)
}

fn read_json(path: &Path) -> Json {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Ids of tokens looked up by their spelling in the file's own token list.
fn ids_of(g: &GgufFile, spellings: &[&str]) -> Vec<u32> {
    let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap();
    spellings
        .iter()
        .map(|s| tokens.iter().position(|t| t == s).unwrap() as u32)
        .collect()
}

#[test]
fn tiny_llama_imports_with_hf_names_shapes_and_unpermuted_qk() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let report = import(&fixture("tiny_llama.gguf"), &out, ImportDtype::F32).unwrap();
    assert_eq!(report.architecture, "llama");
    assert_eq!(report.n_tensors, 2 + 2 * 9);

    let c = read_json(&out.join("config.json"));
    let want = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 269,
        "hidden_size": 32, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
        "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": "float32",
    });
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&c[k], v, "config.json {k}");
    }

    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut want_names = BTreeSet::from([
        "model.embed_tokens.weight".to_string(),
        "model.norm.weight".to_string(),
    ]);
    for n in 0..2 {
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
            want_names.insert(format!("model.layers.{n}.{leaf}.weight"));
        }
    }
    let names: BTreeSet<String> = st.names().into_iter().map(String::from).collect();
    assert_eq!(names, want_names, "tied embeddings: no lm_head.weight");

    let g = GgufFile::open(fixture("tiny_llama.gguf")).unwrap();
    let expected = GgufFile::open(fixture("tiny_llama_expected.gguf")).unwrap();
    let shape = |n: &str| st.tensor(n).unwrap().shape().to_vec();
    assert_eq!(shape("model.embed_tokens.weight"), vec![269, 32]);
    assert_eq!(
        shape("model.layers.0.self_attn.q_proj.weight"),
        vec![32, 32]
    );
    assert_eq!(
        shape("model.layers.0.self_attn.k_proj.weight"),
        vec![16, 32]
    );
    assert_eq!(shape("model.layers.1.mlp.gate_proj.weight"), vec![256, 32]);
    assert_eq!(shape("model.layers.1.mlp.down_proj.weight"), vec![32, 256]);
    assert_eq!(shape("model.norm.weight"), vec![32]);

    for n in 0..2 {
        for (hf, gguf) in [
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.o_proj", "attn_output"),
            ("mlp.gate_proj", "ffn_gate"),
            ("mlp.up_proj", "ffn_up"),
            ("mlp.down_proj", "ffn_down"),
            ("input_layernorm", "attn_norm"),
            ("post_attention_layernorm", "ffn_norm"),
        ] {
            let name = format!("model.layers.{n}.{hf}.weight");
            let t = st.tensor(&name).unwrap();
            assert_eq!(t.dtype(), Dtype::F32);
            let got = f32s(t.data());
            let want = if hf == "self_attn.q_proj" || hf == "self_attn.k_proj" {
                // Rows in HF order, computed in Python from the converter's forward permutation.
                let w = expected.tensor_f32(&name).unwrap();
                assert_ne!(w, g.tensor_f32(&format!("blk.{n}.{gguf}.weight")).unwrap());
                w
            } else {
                g.tensor_f32(&format!("blk.{n}.{gguf}.weight")).unwrap()
            };
            assert_eq!(got, want, "{name}");
        }
    }
    let embed = f32s(st.tensor("model.embed_tokens.weight").unwrap().data());
    assert_eq!(embed, g.tensor_f32("token_embd.weight").unwrap());
}

#[test]
fn tiny_llama_tokenizer_matches_hand_tokenization() {
    let dir = tempfile::tempdir().unwrap();
    import(&fixture("tiny_llama.gguf"), dir.path(), ImportDtype::F32).unwrap();
    let tok = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    let g = GgufFile::open(fixture("tiny_llama.gguf")).unwrap();

    // add_bos_token is true in this file: BOS (<|im_start|>) first. "smollm" splits digits one
    // by one, so the merge "4 2" never applies; " the" merges through "Ġt" + "he"; special and
    // user-defined tokens stay whole; "é" falls back to its two UTF-8 byte tokens.
    let text = "the cat the 42é<|im_end|><think>";
    let enc = tok.encode(text, true).unwrap();
    let want = ids_of(
        &g,
        &[
            "<|im_start|>",
            "t",
            "he",
            "Ġcat",
            "Ġthe",
            "Ġ",
            "4",
            "2",
            "Ã",
            "©",
            "<|im_end|>",
            "<think>",
        ],
    );
    assert_eq!(enc.get_ids(), want.as_slice());
    let dec = tok.decode(enc.get_ids(), true).unwrap();
    assert_eq!(
        dec, "the cat the 42é<think>",
        "special tokens skipped, text restored"
    );

    let cfg = read_json(&dir.path().join("tokenizer_config.json"));
    assert_eq!(cfg["add_bos_token"], true);
    assert_eq!(cfg["bos_token"], "<|im_start|>");
    assert_eq!(cfg["eos_token"], "<|im_end|>");
    assert_eq!(cfg["pad_token"], "<|endoftext|>");
}

#[test]
fn tiny_qwen2_keeps_rows_biases_and_untied_head() {
    let dir = tempfile::tempdir().unwrap();
    let report = import(&fixture("tiny_qwen2.gguf"), dir.path(), ImportDtype::F32).unwrap();
    assert_eq!(report.architecture, "qwen2");
    let c = read_json(&dir.path().join("config.json"));
    assert_eq!(c["model_type"], "qwen2");
    assert_eq!(c["architectures"][0], "Qwen2ForCausalLM");
    assert_eq!(c["tie_word_embeddings"], false);

    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let g = GgufFile::open(fixture("tiny_qwen2.gguf")).unwrap();
    let get = |n: &str| f32s(st.tensor(n).unwrap().data());
    assert_eq!(
        get("lm_head.weight"),
        g.tensor_f32("output.weight").unwrap()
    );
    // No permutation for qwen2: rows as stored.
    assert_eq!(
        get("model.layers.0.self_attn.q_proj.weight"),
        g.tensor_f32("blk.0.attn_q.weight").unwrap()
    );
    assert_eq!(
        get("model.layers.0.self_attn.k_proj.bias"),
        g.tensor_f32("blk.0.attn_k.bias").unwrap()
    );
    assert_eq!(
        st.tensor("model.layers.0.self_attn.v_proj.bias")
            .unwrap()
            .shape(),
        &[16]
    );

    // add_bos_token false: no BOS; the qwen2 split keeps digits apart too.
    let tok = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    let enc = tok.encode(" the 42", true).unwrap();
    assert_eq!(
        enc.get_ids(),
        ids_of(&g, &["Ġthe", "Ġ", "4", "2"]).as_slice()
    );
}

#[test]
fn half_precision_imports_round_once_from_f32() {
    let dir = tempfile::tempdir().unwrap();
    let g = GgufFile::open(fixture("tiny_llama.gguf")).unwrap();
    let want = g.tensor_f32("blk.0.ffn_gate.weight").unwrap();
    for (dtype, st_dtype, torch) in [
        (ImportDtype::F16, Dtype::F16, "float16"),
        (ImportDtype::BF16, Dtype::BF16, "bfloat16"),
    ] {
        let out = dir.path().join(dtype.to_string());
        import(&fixture("tiny_llama.gguf"), &out, dtype).unwrap();
        assert_eq!(read_json(&out.join("config.json"))["torch_dtype"], torch);
        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let t = st.tensor("model.layers.0.mlp.gate_proj.weight").unwrap();
        assert_eq!(t.dtype(), st_dtype);
        let got: Vec<u16> = t
            .data()
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let rounded: Vec<u16> = match dtype {
            ImportDtype::F16 => want
                .iter()
                .map(|&x| half::f16::from_f32(x).to_bits())
                .collect(),
            _ => want
                .iter()
                .map(|&x| half::bf16::from_f32(x).to_bits())
                .collect(),
        };
        assert_eq!(got, rounded, "{dtype}");
    }
    assert_eq!("BF16".parse::<ImportDtype>().unwrap(), ImportDtype::BF16);
    assert!(matches!(
        "int8".parse::<ImportDtype>(),
        Err(Error::Unsupported(_))
    ));
}

/// Copies the tiny llama with `from` replaced by `to` (same length) and imports it.
fn import_patched(from: &[u8], to: &[u8]) -> (Error, PathBuf, tempfile::TempDir) {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(fixture("tiny_llama.gguf")).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern in fixture");
    bytes[at..at + to.len()].copy_from_slice(to);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("patched.gguf");
    std::fs::write(&input, bytes).unwrap();
    let out = dir.path().join("out");
    let err = import(&input, &out, ImportDtype::F32).unwrap_err();
    (err, out, dir)
}

#[test]
fn unsupported_inputs_are_refused_before_writing() {
    // The architecture value follows its key, type (string) and length.
    let mut from = b"general.architecture".to_vec();
    from.extend(8u32.to_le_bytes());
    from.extend(5u64.to_le_bytes());
    let mut to = from.clone();
    from.extend(b"llama");
    to.extend(b"bloom");
    let (err, out, _d) = import_patched(&from, &to);
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("\"bloom\""), "{err}");
    assert!(!out.exists(), "nothing written on refusal");

    let (err, out, _d) = import_patched(b"smollm", b"smolxx");
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(
        err.to_string().contains("tokenizer.ggml.pre = \"smolxx\""),
        "{err}"
    );
    assert!(!out.exists());

    let (err, _, _d) = import_patched(b"blk.1.ffn_up.weight", b"blk.1.ffn_xx.weight");
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("blk.1.ffn_xx.weight"), "{err}");

    let (err, _, _d) = import_patched(b"blk.1.ffn_up.weight", b"blk.7.ffn_up.weight");
    assert!(err.to_string().contains("blk.7.ffn_up.weight"), "{err}");

    let (err, _, _d) = import_patched(
        b"tokenizer.ggml.model\x08\0\0\0\x04\0\0\0\0\0\0\0gpt2",
        b"tokenizer.ggml.model\x08\0\0\0\x04\0\0\0\0\0\0\0bert",
    );
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("\"bert\""), "{err}");
}

#[test]
fn cli_import_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_zo-run"))
            .args(args)
            .output()
            .unwrap()
    };
    let input = fixture("tiny_llama.gguf");
    let out = dir.path().join("m");
    let o = run(&[
        "import-gguf",
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        "--dtype",
        "bf16",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("imported llama") && stdout.contains("bf16"),
        "{stdout}"
    );
    assert!(out.join("model.safetensors").exists());

    let o = run(&["import-gguf", "missing.gguf", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.gguf"));
}
