//! Split loaders: GLUE SST-2 TSV, JSONL, and the errors bad files give.

use std::path::{Path, PathBuf};

use zo::data::{load_file, load_jsonl, load_split, load_tsv, Task};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data")
        .join(name)
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn err(r: zo::Result<Vec<zo::data::Example>>) -> String {
    match r {
        Ok(v) => panic!("expected an error, loaded {} examples", v.len()),
        Err(e) => {
            assert!(
                matches!(e, zo::Error::Data(_) | zo::Error::Io { .. }),
                "{e:?}"
            );
            e.to_string()
        }
    }
}

#[test]
fn glue_sst2_tsv_renames_sentence_to_text() {
    let path = fixture("sst2_dev.tsv");
    let ex = load_tsv(&path).unwrap();
    assert_eq!(ex.len(), 3, "the blank line is skipped");
    assert_eq!(
        ex[0].field("text"),
        Some("it 's a charming and often affecting journey . ")
    );
    assert_eq!(ex[0].field("sentence"), None);
    assert_eq!(
        ex.iter().map(|e| e.label.as_str()).collect::<Vec<_>>(),
        ["1", "0", "1"]
    );
    // Line numbers count the header and the blank line.
    let o = ex[2].origin.as_ref().unwrap();
    assert_eq!((o.path.as_path(), o.line), (path.as_path(), 5));
}

#[test]
fn jsonl_keeps_fields_and_normalises_labels() {
    let ex = load_jsonl(&fixture("reviews.jsonl")).unwrap();
    assert_eq!(ex.len(), 3);
    assert_eq!(ex[0].field("text"), Some("A great, moving film."));
    // Int and string labels read the same.
    assert_eq!(ex[0].label, "1");
    assert_eq!(ex[2].label, "1");
    assert_eq!(ex[1].label, "0");
    assert_eq!(ex[2].field("source"), Some("fixture"));
    assert_eq!(ex[2].field("stars"), Some("4"));
    assert_eq!(ex[2].field("label"), None);
    assert_eq!(ex[2].origin.as_ref().unwrap().line, 4);
}

#[test]
fn load_split_finds_jsonl_then_tsv() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir, "dev.tsv", "sentence\tlabel\nok .\t1\n");
    write(&dir, "test.jsonl", "{\"text\": \"fine\", \"label\": 0}\n");
    assert_eq!(
        load_split(dir.path(), "dev").unwrap()[0].field("text"),
        Some("ok .")
    );
    assert_eq!(load_split(dir.path(), "test").unwrap()[0].label, "0");
    let e = err(load_split(dir.path(), "train"));
    assert!(e.contains("train.jsonl") && e.contains("train.tsv"), "{e}");
}

#[test]
fn malformed_json_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "bad.jsonl",
        "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": \n",
    );
    let e = err(load_jsonl(&p));
    assert!(e.contains(&format!("{}:2:", p.display())), "{e}");
    assert!(e.contains("malformed JSON"), "{e}");
}

#[test]
fn jsonl_lines_must_be_objects_with_well_typed_labels() {
    let dir = tempfile::tempdir().unwrap();
    for (body, want) in [
        ("[1, 2]\n", "expected a JSON object"),
        ("{\"text\": \"a\", \"label\": 0.5}\n", "integer or a string"),
        (
            "{\"text\": \"a\", \"label\": null}\n",
            "integer or a string",
        ),
    ] {
        let p = write(&dir, "x.jsonl", body);
        let e = err(load_jsonl(&p));
        assert!(e.contains(":1: ") && e.contains(want), "{body}: {e}");
    }
    // Generation data needs no label; a label task refuses the line, naming it.
    let p = write(&dir, "y.jsonl", "{\"text\": \"a\"}\n");
    let ex = load_jsonl(&p).unwrap();
    assert_eq!(ex[0].label, "");
    let e = zo::data::ClassificationTask::sentiment()
        .render(&ex[0])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("y.jsonl:1") && e.contains("missing field `label`"),
        "{e}"
    );
}

#[test]
fn tsv_rows_must_match_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "x.tsv", "sentence\tlabel\ngood\t1\ntoo\tmany\t1\n");
    let e = err(load_tsv(&p));
    assert!(e.contains(":3: ") && e.contains("expected 2"), "{e}");

    // GLUE's unlabelled test file has no label column.
    let p = write(&dir, "y.tsv", "index\tsentence\n0\tfine\n");
    let e = err(load_tsv(&p));
    assert!(e.contains(":1: ") && e.contains("no `label` column"), "{e}");

    let p = write(&dir, "z.tsv", "sentence\tlabel\nfine\t \n");
    let e = err(load_tsv(&p));
    assert!(e.contains(":2: ") && e.contains("empty `label`"), "{e}");
}

#[test]
fn empty_splits_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "e.jsonl", "\n  \n");
    assert!(err(load_jsonl(&p)).contains("no examples"));
    let p = write(&dir, "e.tsv", "sentence\tlabel\n");
    assert!(err(load_tsv(&p)).contains("no examples"));
    let p = write(&dir, "h.tsv", "");
    assert!(err(load_tsv(&p)).contains("no header"));
}

#[test]
fn unknown_extension_and_missing_file() {
    let e = err(load_file(Path::new("data.csv")));
    assert!(
        e.contains("data.csv") && e.contains(".jsonl or .tsv"),
        "{e}"
    );
    let e = err(load_file(&fixture("absent.jsonl")));
    assert!(e.contains("absent.jsonl"), "{e}");
}
