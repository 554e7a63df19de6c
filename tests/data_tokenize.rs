//! Rendering + tokenization with a real (word-level) tokenizers-format tokenizer whose
//! post-processor adds a BOS, as SmolLM2's and Llama's tokenizer.json files do.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use zo::data::{load_jsonl, tokenize_examples, ClassificationTask, Example, Task};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data")
        .join(name)
}

fn tokenizer() -> tokenizers::Tokenizer {
    let json = std::fs::read_to_string(fixture("wordlevel_tokenizer.json")).unwrap();
    tokenizers::Tokenizer::from_str(&json).unwrap()
}

fn encoder(tok: &tokenizers::Tokenizer) -> impl FnMut(&str, bool) -> zo::Result<Vec<u32>> + '_ {
    |text, special| {
        tok.encode(text, special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| zo::Error::Tokenizer(e.to_string()))
    }
}

#[test]
fn prompt_gets_bos_candidates_do_not() {
    let tok = tokenizer();
    let id = |w: &str| tok.token_to_id(w).unwrap();
    let ex = load_jsonl(&fixture("reviews.jsonl")).unwrap();
    let task = ClassificationTask::sentiment();
    let out = tokenize_examples(&task, &ex, encoder(&tok)).unwrap();
    assert_eq!(out.len(), 3);
    // "A great, moving film. It was"
    assert_eq!(
        out[0].prompt,
        ["<s>", "a", "great", ",", "moving", "film", ".", "it", "was"].map(id)
    );
    assert_eq!(
        out[0].candidates,
        vec![vec![id("terrible")], vec![id("great")]]
    );
    assert_eq!(out.iter().map(|t| t.gold).collect::<Vec<_>>(), [1, 0, 1]);
}

#[test]
fn render_errors_pass_through_and_empty_encodings_are_rejected() {
    let tok = tokenizer();
    let task = ClassificationTask::sentiment();
    let bad = [Example::new("1").with_field("sentence", "x")];
    let e = tokenize_examples(&task, &bad, encoder(&tok)).unwrap_err();
    assert!(e.to_string().contains("missing field `text`"), "{e}");

    // A label word the tokenizer turns into nothing cannot be scored.
    let blank = ClassificationTask::new(
        "blank",
        "{text} It was",
        vec![("0".into(), " ".into()), ("1".into(), " great".into())],
    )
    .unwrap();
    let ok = [Example::new("1").with_field("text", "fine")];
    let e = tokenize_examples(&blank, &ok, encoder(&tok))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("candidate \" \"") && e.contains("no tokens"),
        "{e}"
    );

    // Without special tokens an empty prompt encodes to nothing.
    let bare = ClassificationTask::new(
        "bare",
        "{text}",
        vec![("0".into(), " a".into()), ("1".into(), " b".into())],
    )
    .unwrap();
    let empty = [Example::new("1").with_field("text", "")];
    let e = tokenize_examples(&bare, &empty, |t, _| encoder(&tok)(t, false))
        .unwrap_err()
        .to_string();
    assert!(e.contains("prompt \"\"") && e.contains("no tokens"), "{e}");
    assert_eq!(bare.name(), "bare");
}
