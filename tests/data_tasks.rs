//! Tasks: the built-in sentiment prompt, JSON specs, and rendering errors.

use std::path::{Path, PathBuf};

use zo::data::{load_jsonl, resolve_task, ClassificationTask, Example, Task};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data")
        .join(name)
}

#[test]
fn sentiment_is_mezo_sst2_prompt() {
    let t = ClassificationTask::sentiment();
    assert_eq!(t.name(), "sentiment");
    let r = t
        .render(&Example::new("1").with_field("text", "A gem."))
        .unwrap();
    assert_eq!(r.prompt, "A gem. It was");
    assert_eq!(r.candidates, [" terrible", " great"]);
    assert_eq!(r.gold, 1);
    let r = t
        .render(&Example::new("0").with_field("text", "Dull."))
        .unwrap();
    assert_eq!(r.gold, 0);
}

#[test]
fn unknown_label_names_it_the_known_ones_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.jsonl");
    std::fs::write(
        &p,
        "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": \"positive\"}\n",
    )
    .unwrap();
    let ex = load_jsonl(&p).unwrap();
    let t = ClassificationTask::sentiment();
    assert!(t.render(&ex[0]).is_ok());
    let e = t.render(&ex[1]).unwrap_err();
    assert!(matches!(e, zo::Error::Data(_)));
    let e = e.to_string();
    assert!(e.contains(&format!("{}:2", p.display())), "{e}");
    assert!(
        e.contains("\"positive\"") && e.contains("\"0\", \"1\""),
        "{e}"
    );
}

#[test]
fn missing_field_names_it_and_the_line() {
    let t = ClassificationTask::from_file(&fixture("nli_task.json")).unwrap();
    let ex = load_jsonl(&fixture("reviews.jsonl")).unwrap();
    let e = t.render(&ex[1]).unwrap_err().to_string();
    assert!(e.contains("reviews.jsonl:2"), "{e}");
    assert!(e.contains("missing field `premise`"), "{e}");
    assert!(e.contains("text"), "lists the fields the example has: {e}");
}

#[test]
fn spec_with_string_labels_keeps_file_order() {
    let t = ClassificationTask::from_file(&fixture("nli_task.json")).unwrap();
    assert_eq!(t.name(), "nli");
    assert_eq!(t.labels(), ["entailment", "neutral", "contradiction"]);
    assert_eq!(t.label_words(), [" Yes", " Maybe", " No"]);
    let ex = load_jsonl(&fixture("nli.jsonl")).unwrap();
    let r = t.render(&ex[1]).unwrap();
    assert_eq!(
        r.prompt,
        "A dog runs in the park. Question: The dog is asleep. Yes, No or Maybe? Answer:"
    );
    assert_eq!(r.candidates[r.gold], " No");
    assert_eq!(t.render(&ex[2]).unwrap().gold, 1);
}

#[test]
fn spec_label_words_as_a_list_index_the_labels() {
    let t = ClassificationTask::from_file(&fixture("sentiment_list_task.json")).unwrap();
    assert_eq!(t.labels(), ["0", "1"]);
    let ex = load_jsonl(&fixture("reviews.jsonl")).unwrap();
    let s = ClassificationTask::sentiment();
    for e in &ex {
        assert_eq!(
            t.render(e).unwrap().candidates,
            s.render(e).unwrap().candidates
        );
        assert_eq!(t.render(e).unwrap().gold, s.render(e).unwrap().gold);
    }
}

#[test]
fn spec_order_decides_candidate_order() {
    let t = ClassificationTask::from_json(
        r#"{"name": "flip", "template": "{text} It was", "label_words": {"1": " great", "0": " terrible"}}"#,
        "inline",
    )
    .unwrap();
    let r = t
        .render(&Example::new("0").with_field("text", "x"))
        .unwrap();
    assert_eq!(r.candidates, [" great", " terrible"]);
    assert_eq!(r.gold, 1);
}

#[test]
fn to_json_round_trips() {
    let t = ClassificationTask::from_file(&fixture("nli_task.json")).unwrap();
    let back = ClassificationTask::from_json(&t.to_json(), "round trip").unwrap();
    assert_eq!(back, t);
}

#[test]
fn bad_specs_are_rejected_with_the_source_named() {
    let cases = [
        ("{", "task spec"),
        (
            r#"{"name": "x", "template": "{text}", "label_words": [" a"], "extra": 1}"#,
            "unknown field",
        ),
        (r#"{"name": "x", "template": "{text}"}"#, "label_words"),
        (
            r#"{"name": "x", "template": "{text}", "label_words": 3}"#,
            "label_words",
        ),
        (
            r#"{"name": "x", "template": "{text}", "label_words": [" a"]}"#,
            "at least two",
        ),
        (
            r#"{"name": "x", "template": "{text}", "label_words": [" a", " a"]}"#,
            "more than one label",
        ),
        (
            r#"{"name": "x", "template": "{text}", "label_words": {"0": " a", "1": ""}}"#,
            "empty label word",
        ),
        (
            r#"{"name": "x", "template": "{text It was", "label_words": [" a", " b"]}"#,
            "character ' ' in the field name",
        ),
        (
            r#"{"name": "", "template": "{text}", "label_words": [" a", " b"]}"#,
            "empty name",
        ),
    ];
    for (spec, want) in cases {
        let e = ClassificationTask::from_json(spec, "spec.json").unwrap_err();
        assert!(matches!(e, zo::Error::Data(_)), "{spec}: {e:?}");
        let e = e.to_string();
        assert!(e.contains("spec.json") && e.contains(want), "{spec}: {e}");
    }
}

#[test]
fn resolve_task_takes_a_name_or_a_spec_path() {
    assert_eq!(resolve_task("sentiment").unwrap().name(), "sentiment");
    let p = fixture("nli_task.json");
    assert_eq!(resolve_task(p.to_str().unwrap()).unwrap().name(), "nli");
    let e = resolve_task("sst5").unwrap_err().to_string();
    assert!(e.contains("sst5") && e.contains("sentiment"), "{e}");
}
