//! Tokenizer over hand-written tokenizer.json files: BOS conventions from the post-processor,
//! decoding, vocabulary checks against the model, and bad files.

use serde_json::{json, Value};
use std::path::Path;
use zo::io::tokenizer::Tokenizer;
use zo::model::ModelConfig;
use zo::Error;

fn added(id: u32, content: &str) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false,
        "rstrip": false, "normalized": false, "special": true})
}

/// A GPT-2-style byte-level BPE small enough to tokenize "hello world!" by hand:
/// "hello" → [18]; "Ġworld" → Ġw+or → "Ġwor" [21], "l" [8], "d" [13]; "!" → [14].
fn byte_bpe(post_processor: Value) -> Value {
    let vocab = json!({
        "<s>": 0, "</s>": 1, "<unk>": 2, "a": 3, "b": 4, "c": 5, "h": 6, "e": 7, "l": 8,
        "o": 9, "Ġ": 10, "w": 11, "r": 12, "d": 13, "!": 14, "he": 15, "ll": 16, "hell": 17,
        "hello": 18, "Ġw": 19, "or": 20, "Ġwor": 21
    });
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [added(0, "<s>"), added(1, "</s>"), added(2, "<unk>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false,
            "trim_offsets": true, "use_regex": true},
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
            "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false, "vocab": vocab,
            "merges": ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or"]}
    })
}

fn special(token: &str, id: u32) -> (Value, (String, Value)) {
    (
        json!({"SpecialToken": {"id": token, "type_id": 0}}),
        (
            token.to_string(),
            json!({"id": token, "ids": [id], "tokens": [token]}),
        ),
    )
}

/// A TemplateProcessing post-processor: `before` specials, $A, then `after` specials.
fn template(before: &[(&str, u32)], after: &[(&str, u32)]) -> Value {
    let mut single = Vec::new();
    let mut specials = serde_json::Map::new();
    for &(tok, id) in before {
        let (item, (k, v)) = special(tok, id);
        single.push(item);
        specials.insert(k, v);
    }
    single.push(json!({"Sequence": {"id": "A", "type_id": 0}}));
    for &(tok, id) in after {
        let (item, (k, v)) = special(tok, id);
        single.push(item);
        specials.insert(k, v);
    }
    let mut pair = single.clone();
    pair.push(json!({"Sequence": {"id": "B", "type_id": 1}}));
    json!({"type": "TemplateProcessing", "single": single, "pair": pair,
        "special_tokens": specials})
}

fn write(dir: &Path, tokenizer: &Value) -> Tokenizer {
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    Tokenizer::from_dir(dir).unwrap()
}

const HELLO: [u32; 5] = [18, 21, 8, 13, 14];

fn tiny_config(vocab_size: usize) -> ModelConfig {
    let json = json!({"model_type": "llama", "vocab_size": vocab_size, "hidden_size": 8,
        "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
        "max_position_embeddings": 32});
    ModelConfig::from_json_str(&json.to_string(), "config.json").unwrap()
}

#[test]
fn no_post_processor_adds_nothing() {
    // SmolLM2's convention: no BOS.
    let dir = tempfile::tempdir().unwrap();
    let tok = write(dir.path(), &byte_bpe(Value::Null));
    assert_eq!(tok.encode("hello world!", true).unwrap(), HELLO);
    assert_eq!(tok.encode("hello world!", false).unwrap(), HELLO);
    assert_eq!(tok.bos_id(), None);
    assert_eq!(tok.decode(&HELLO, false).unwrap(), "hello world!");
    assert_eq!(tok.vocab_size(), 22);
    assert_eq!(tok.token_id("Ġwor"), Some(21));
    assert_eq!(tok.path(), dir.path().join("tokenizer.json"));
}

#[test]
fn llama_style_bos() {
    let dir = tempfile::tempdir().unwrap();
    let tok = write(dir.path(), &byte_bpe(template(&[("<s>", 0)], &[])));
    assert_eq!(
        tok.encode("hello world!", true).unwrap(),
        [0, 18, 21, 8, 13, 14]
    );
    assert_eq!(tok.encode("hello world!", false).unwrap(), HELLO);
    assert_eq!(tok.bos_id(), Some(0));
    assert_eq!(
        tok.decode(&[0, 18, 21, 8, 13, 14], true).unwrap(),
        "hello world!"
    );
    assert!(tok
        .decode(&[0, 18, 21, 8, 13, 14], false)
        .unwrap()
        .starts_with("<s>"));
}

#[test]
fn opt_style_bos_is_eos_token() {
    let dir = tempfile::tempdir().unwrap();
    let tok = write(dir.path(), &byte_bpe(template(&[("</s>", 1)], &[])));
    assert_eq!(tok.encode("hello", true).unwrap(), [1, 18]);
    assert_eq!(tok.bos_id(), Some(1));
}

#[test]
fn bos_and_eos_template() {
    let dir = tempfile::tempdir().unwrap();
    let tok = write(
        dir.path(),
        &byte_bpe(template(&[("<s>", 0)], &[("</s>", 1)])),
    );
    assert_eq!(
        tok.encode("hello world!", true).unwrap(),
        [0, 18, 21, 8, 13, 14, 1]
    );
    assert_eq!(tok.bos_id(), Some(0));
}

#[test]
fn eos_only_template_has_no_bos() {
    let dir = tempfile::tempdir().unwrap();
    let tok = write(dir.path(), &byte_bpe(template(&[], &[("</s>", 1)])));
    assert_eq!(tok.encode("hello", true).unwrap(), [18, 1]);
    assert_eq!(tok.bos_id(), None);
}

#[test]
fn sequence_post_processor_like_llama3() {
    let pp = json!({"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        template(&[("<s>", 0)], &[])
    ]});
    let dir = tempfile::tempdir().unwrap();
    let tok = write(dir.path(), &byte_bpe(pp));
    assert_eq!(tok.encode("hello", true).unwrap(), [0, 18]);
    assert_eq!(tok.bos_id(), Some(0));
}

#[test]
fn vocab_size_counts_added_tokens_and_is_checked_against_the_model() {
    // Added tokens absent from the model's vocabulary take the next free ids, in file order.
    let mut t = byte_bpe(Value::Null);
    t["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(added(22, "<|extra|>"));
    let dir = tempfile::tempdir().unwrap();
    let tok = write(dir.path(), &t);
    assert_eq!(tok.vocab_size(), 23);
    assert_eq!(tok.token_id("<|extra|>"), Some(22));
    assert_eq!(tok.encode("hello<|extra|>", false).unwrap(), [18, 22]);
    // Models may pad their vocabulary beyond the tokenizer's.
    tok.check_model(&tiny_config(23)).unwrap();
    tok.check_model(&tiny_config(64)).unwrap();
    for small in [20, 22] {
        let err = tok.check_model(&tiny_config(small)).unwrap_err();
        assert!(matches!(err, Error::Tokenizer(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("23") && msg.contains(&format!("vocab_size {small}")),
            "{msg}"
        );
        assert!(msg.contains("tokenizer.json"), "{msg}");
    }
}

#[test]
fn corrupt_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, "{\"version\": \"1.0\", \"model\": ").unwrap();
    let err = Tokenizer::from_file(&path).unwrap_err();
    assert!(matches!(err, Error::Tokenizer(_)), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    // Valid JSON that is not a tokenizer.
    std::fs::write(&path, r#"{"model": {"type": "Nope"}}"#).unwrap();
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Tokenizer(_)), "{err:?}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn missing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.path().join("tokenizer.json").display().to_string()),
        "{msg}"
    );
}
