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

#[test]
fn choice_specs_load_by_kind_and_bad_examples_name_line_and_field() {
    let t = resolve_task(fixture("choice/task.json").to_str().unwrap()).unwrap();
    assert_eq!(t.kind(), zo::data::TaskKind::Choice);
    let ex = load_jsonl(&fixture("choice/examples.jsonl")).unwrap();
    let r = t.render(&ex[0]).unwrap();
    assert_eq!(r.prompt, "The man broke his toe. because");
    assert_eq!(
        r.candidates,
        vec![
            " he dropped a hammer on his foot.",
            " he got a hole in his sock."
        ]
    );
    assert_eq!(r.gold, 0);
    for (i, want) in [
        (1, "has 1 choice(s)"),
        (2, "missing field `choices`"),
        (3, "index of the gold choice"),
    ] {
        let e = t.render(&ex[i]).unwrap_err().to_string();
        assert!(e.contains(want), "line {}: {e}", i + 1);
        assert!(e.contains(&format!("examples.jsonl:{}", i + 1)), "{e}");
    }
}

#[test]
fn generation_specs_keep_every_answer_and_refuse_empty_ones() {
    let t = resolve_task(fixture("qa/task.json").to_str().unwrap()).unwrap();
    assert_eq!(t.kind(), zo::data::TaskKind::Generation);
    assert_eq!(t.generation().stop, vec!["\n"]);
    assert_eq!(t.generation().max_new_tokens, 6);
    let ex = load_jsonl(&fixture("qa/examples.jsonl")).unwrap();
    let r = t.render(&ex[0]).unwrap();
    assert_eq!(r.candidates, vec![" Paris"]);
    assert_eq!(r.answers, vec!["Paris", "in Paris"]);
    // A line without `label` is fine for a task that does not read one.
    assert_eq!(t.render(&ex[1]).unwrap().answers, vec!["100 degrees"]);
    for (i, want) in [
        (2, "no reference answer"),
        (3, "answer 0 is empty"),
        (4, "missing field `answers`"),
    ] {
        let e = t.render(&ex[i]).unwrap_err().to_string();
        assert!(e.contains(want), "line {}: {e}", i + 1);
    }
}

#[test]
fn specs_with_unknown_kinds_or_fields_are_refused() {
    let e = zo::data::task_from_json(r#"{"name": "x", "kind": "ranking"}"#, "s.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown kind \"ranking\""), "{e}");
    let e = zo::data::task_from_json(
        r#"{"name": "x", "kind": "choice", "template": "{q}", "choice_field": "c"}"#,
        "s.json",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("s.json") && e.contains("choice_field"), "{e}");
    // Label words keep their file order through the kind dispatch.
    let t = zo::data::task_from_json(
        r#"{"kind": "classification", "name": "x", "template": "{text}",
            "label_words": {"pos": " yes", "neg": " no"}}"#,
        "s.json",
    )
    .unwrap();
    let r = t
        .render(&Example::new("neg").with_field("text", "t"))
        .unwrap();
    assert_eq!(
        (r.candidates, r.gold),
        (vec![" yes".into(), " no".into()], 1)
    );
}

#[test]
fn objectives_that_a_task_cannot_judge_are_refused() {
    use zo::engine::Objective;
    let qa = resolve_task(fixture("qa/task.json").to_str().unwrap()).unwrap();
    let sent = resolve_task("sentiment").unwrap();
    let e = Objective::F1
        .resolve(sent.kind(), sent.name())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no reference answers"), "{e}");
    assert_eq!(
        Objective::Auto.resolve(qa.kind(), qa.name()).unwrap(),
        Objective::Lm
    );
    assert!(Objective::Classification
        .resolve(qa.kind(), qa.name())
        .is_err());
}
