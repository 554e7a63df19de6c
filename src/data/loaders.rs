//! Split files → [`Example`]s. Two formats:
//!
//! - JSONL: one object per line with a `label` (int or string) and any text fields, e.g.
//!   `{"text": "A gem.", "label": 1}`.
//! - TSV with a header line, as GLUE ships SST-2 (`sentence\tlabel`): every column but `label`
//!   is a field, and GLUE's `sentence` is renamed `text` so the same templates apply.
//!
//! Blank lines are skipped; any other malformed line is an error naming file and line.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::example::{Example, Origin};
use crate::{Error, Result};

fn data_err(path: &Path, line: usize, msg: impl std::fmt::Display) -> Error {
    Error::Data(format!("{}:{line}: {msg}", path.display()))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

fn non_empty(path: &Path, examples: Vec<Example>) -> Result<Vec<Example>> {
    if examples.is_empty() {
        return Err(Error::Data(format!("{}: no examples", path.display())));
    }
    Ok(examples)
}

pub fn load_jsonl(path: &Path) -> Result<Vec<Example>> {
    let text = read(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| data_err(path, n, format!("malformed JSON: {e}")))?;
        let Value::Object(obj) = v else {
            return Err(data_err(path, n, "expected a JSON object"));
        };
        let label = match obj.get("label") {
            // Generation data has no label; label and choice tasks refuse an empty one.
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(x)) if x.is_i64() || x.is_u64() => x.to_string(),
            Some(other) => {
                return Err(data_err(
                    path,
                    n,
                    format!("`label` must be an integer or a string, got {other}"),
                ))
            }
        };
        let mut ex = Example::new(label).with_origin(Origin {
            path: path.to_path_buf(),
            line: n,
        });
        for (k, v) in obj {
            if k == "label" {
                continue;
            }
            // Templates splice text; a non-string value is spliced as its JSON text.
            let s = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            ex.fields.insert(k, s);
        }
        out.push(ex);
    }
    non_empty(path, out)
}

pub fn load_tsv(path: &Path) -> Result<Vec<Example>> {
    let text = read(path)?;
    let mut lines = text.lines().enumerate();
    let header: Vec<String> = loop {
        match lines.next() {
            None => return Err(Error::Data(format!("{}: no header line", path.display()))),
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((i, l)) => {
                let cols: Vec<String> = l
                    .trim_end_matches('\r')
                    .split('\t')
                    .map(|c| match c.trim() {
                        "sentence" => "text".to_string(),
                        c => c.to_string(),
                    })
                    .collect();
                for (j, c) in cols.iter().enumerate() {
                    if c.is_empty() || cols[..j].contains(c) {
                        return Err(data_err(
                            path,
                            i + 1,
                            format!("header has an empty or repeated column name {c:?}"),
                        ));
                    }
                }
                if !cols.iter().any(|c| c == "label") {
                    return Err(data_err(
                        path,
                        i + 1,
                        format!(
                            "header has no `label` column (columns: {})",
                            cols.join(", ")
                        ),
                    ));
                }
                break cols;
            }
        }
    };
    let mut out = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split('\t').collect();
        if cells.len() != header.len() {
            return Err(data_err(
                path,
                n,
                format!(
                    "expected {} tab-separated columns ({}), found {}",
                    header.len(),
                    header.join(", "),
                    cells.len()
                ),
            ));
        }
        let mut label = None;
        let mut ex = Example::new("").with_origin(Origin {
            path: path.to_path_buf(),
            line: n,
        });
        for (name, cell) in header.iter().zip(cells) {
            if name == "label" {
                label = Some(cell.trim().to_string());
            } else {
                ex.fields.insert(name.clone(), cell.to_string());
            }
        }
        ex.label = label.unwrap_or_default();
        if ex.label.is_empty() {
            return Err(data_err(path, n, "empty `label`"));
        }
        out.push(ex);
    }
    non_empty(path, out)
}

/// Loads by extension: `.jsonl` or `.tsv`.
pub fn load_file(path: &Path) -> Result<Vec<Example>> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => load_jsonl(path),
        Some("tsv") => load_tsv(path),
        _ => Err(Error::Data(format!(
            "{}: unknown data format (expected .jsonl or .tsv)",
            path.display()
        ))),
    }
}

/// Loads split `name` (train, dev, test) from `dir`: `<name>.jsonl`, else `<name>.tsv`.
pub fn load_split(dir: &Path, name: &str) -> Result<Vec<Example>> {
    let candidates: Vec<PathBuf> = ["jsonl", "tsv"]
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .collect();
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => load_file(p),
        None => Err(Error::Data(format!(
            "split {name:?} not found: neither {} nor {} exists",
            candidates[0].display(),
            candidates[1].display()
        ))),
    }
}
