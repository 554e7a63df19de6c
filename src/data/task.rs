//! Tasks: how an example becomes a prompt and candidate continuations.
//!
//! A classification task is a template plus one label word per label, MeZO-style: the model
//! scores each label word as the continuation of the rendered prompt. Specs are small JSON
//! files:
//!
//! ```json
//! {"name": "sentiment", "template": "{text} It was",
//!  "label_words": {"0": " terrible", "1": " great"}}
//! ```
//!
//! `label_words` may also be a list, in which case label `i` is the `i`-th word.
//!
//! A spec's `"kind"` picks the task type: `"classification"` (the default, above),
//! `"choice"` (per-example candidates, [`super::choice_task`]) or `"generation"` (reference
//! answers, [`super::generation_task`]).

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::example::Example;
use super::template::Template;
use crate::{Error, Result};

/// A rendered example: the prompt, each candidate continuation, which one is right, and the
/// reference answers a generated continuation is judged against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub prompt: String,
    /// Scored continuations; a generation task has one, its first reference answer as the LM
    /// loss's target.
    pub candidates: Vec<String>,
    pub gold: usize,
    /// The gold candidate (label and choice tasks) or every reference answer (generation).
    pub answers: Vec<String>,
}

/// What a task's examples hold, and so which objectives and metrics apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Fixed label words shared by every example.
    Classification,
    /// Each example's own candidates.
    Choice,
    /// Reference answers to generate.
    Generation,
}

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Classification => "classification",
            TaskKind::Choice => "choice",
            TaskKind::Generation => "generation",
        }
    }
}

/// How a task's continuations are generated: at most `max_new_tokens`, cut at the first stop
/// string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationDefaults {
    pub max_new_tokens: usize,
    pub stop: Vec<String>,
}

pub trait Task: Send + Sync + fmt::Debug {
    fn name(&self) -> &str;
    fn render(&self, ex: &Example) -> Result<Rendered>;
    fn kind(&self) -> TaskKind;
    /// Generation settings; label and choice tasks generate a label: a few tokens, one line.
    fn generation(&self) -> GenerationDefaults {
        GenerationDefaults {
            max_new_tokens: 8,
            stop: vec!["\n".into()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassificationTask {
    name: String,
    template: Template,
    labels: Vec<String>,
    words: Vec<String>,
}

impl ClassificationTask {
    /// `label_words` pairs each label (as it appears in the data) with its candidate word;
    /// their order is the candidate order.
    pub fn new(name: &str, template: &str, label_words: Vec<(String, String)>) -> Result<Self> {
        let bad = |msg: String| Error::Data(format!("task {name:?}: {msg}"));
        if name.trim().is_empty() {
            return Err(Error::Data("task: empty name".into()));
        }
        let template = Template::parse(template)?;
        if label_words.len() < 2 {
            return Err(bad(format!(
                "needs at least two label words, got {}",
                label_words.len()
            )));
        }
        let (labels, words): (Vec<String>, Vec<String>) = label_words.into_iter().unzip();
        for (i, l) in labels.iter().enumerate() {
            if labels[..i].contains(l) {
                return Err(bad(format!("label {l:?} is listed twice")));
            }
            if words[i].is_empty() {
                return Err(bad(format!("label {l:?} has an empty label word")));
            }
            if words[..i].contains(&words[i]) {
                // Two labels with one word could never be told apart.
                return Err(bad(format!(
                    "label word {:?} is used for more than one label",
                    words[i]
                )));
            }
        }
        Ok(ClassificationTask {
            name: name.to_string(),
            template,
            labels,
            words,
        })
    }

    /// MeZO's SST-2 prompt: `<text> It was` followed by ` terrible` (0) or ` great` (1).
    pub fn sentiment() -> Self {
        ClassificationTask::new(
            "sentiment",
            "{text} It was",
            vec![
                ("0".into(), " terrible".into()),
                ("1".into(), " great".into()),
            ],
        )
        .expect("the built-in sentiment task is valid")
    }

    /// Parses a JSON spec; `source` names it in errors (usually the file path).
    pub fn from_json(text: &str, source: &str) -> Result<Self> {
        let spec: Spec = serde_json::from_str(text)
            .map_err(|e| Error::Data(format!("{source}: task spec: {e}")))?;
        ClassificationTask::new(&spec.name, &spec.template, spec.label_words.0)
            .map_err(|e| Error::Data(format!("{source}: {}", strip_data(e))))
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// The spec as JSON, in the format [`ClassificationTask::from_json`] reads.
    pub fn to_json(&self) -> String {
        // Written by hand because serde_json's map would sort the labels, and their order is
        // the candidate order.
        let q = |s: &str| serde_json::to_string(s).expect("strings serialize");
        let words: Vec<String> = self
            .labels
            .iter()
            .zip(&self.words)
            .map(|(l, w)| format!("{}: {}", q(l), q(w)))
            .collect();
        format!(
            "{{\"name\": {}, \"template\": {}, \"label_words\": {{{}}}}}",
            q(&self.name),
            q(self.template.source()),
            words.join(", ")
        )
    }

    pub fn template(&self) -> &Template {
        &self.template
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn label_words(&self) -> &[String] {
        &self.words
    }
}

impl Task for ClassificationTask {
    fn name(&self) -> &str {
        &self.name
    }

    fn render(&self, ex: &Example) -> Result<Rendered> {
        let prompt = self.template.render(ex)?;
        if ex.label.is_empty() {
            return Err(Error::Data(format!(
                "{}: missing field `label` (task {:?} needs one of: {})",
                ex.location(),
                self.name,
                self.labels.join(", ")
            )));
        }
        let gold = self
            .labels
            .iter()
            .position(|l| *l == ex.label)
            .ok_or_else(|| {
                Error::Data(format!(
                    "{}: unknown label {:?} for task {:?} (known labels: {})",
                    ex.location(),
                    ex.label,
                    self.name,
                    self.labels
                        .iter()
                        .map(|l| format!("{l:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        Ok(Rendered {
            prompt,
            candidates: self.words.clone(),
            gold,
            answers: vec![self.words[gold].clone()],
        })
    }

    fn kind(&self) -> TaskKind {
        TaskKind::Classification
    }
}

/// `sentiment` is the built-in task; anything else is read as a JSON spec file.
pub fn resolve_task(name_or_path: &str) -> Result<Box<dyn Task>> {
    if name_or_path == "sentiment" {
        return Ok(Box::new(ClassificationTask::sentiment()));
    }
    let path = Path::new(name_or_path);
    if !path.exists() {
        return Err(Error::Data(format!(
            "unknown task {name_or_path:?}: not a built-in task (sentiment) and no such spec file"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    task_from_json(&text, &path.display().to_string())
}

/// Any task spec, by its `"kind"` (see the module docs).
pub fn task_from_json(text: &str, source: &str) -> Result<Box<dyn Task>> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::Data(format!("{source}: task spec: {e}")))?;
    let kind = match v.get("kind") {
        None => "classification",
        Some(serde_json::Value::String(k)) => k.as_str(),
        Some(other) => {
            return Err(Error::Data(format!(
                "{source}: task spec: `kind` must be a string, got {other}"
            )))
        }
    };
    // Each type's parser refuses unknown fields and accepts (and ignores) `kind`.
    Ok(match kind {
        "classification" => Box::new(ClassificationTask::from_json(text, source)?),
        "choice" => Box::new(super::choice_task::ChoiceTask::from_json(text, source)?),
        "generation" => Box::new(super::generation_task::GenerationTask::from_json(
            text, source,
        )?),
        other => {
            return Err(Error::Data(format!(
                "{source}: task spec: unknown kind {other:?}; expected classification, choice \
                 or generation"
            )))
        }
    })
}

/// A spec field's error with the spec named.
pub(super) fn spec_err(source: &str, e: impl fmt::Display) -> Error {
    Error::Data(format!("{source}: task spec: {e}"))
}

fn strip_data(e: Error) -> String {
    match e {
        Error::Data(m) => m,
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    #[serde(default, rename = "kind")]
    _kind: Option<String>,
    name: String,
    template: String,
    label_words: LabelWords,
}

/// Label words as written, in file order (a plain JSON map would sort the keys, and the order
/// is the candidate order).
struct LabelWords(Vec<(String, String)>);

impl<'de> Deserialize<'de> for LabelWords {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LabelWords;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object {label: word} or a list of words")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(LabelWords(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(w) = s.next_element::<String>()? {
                    out.push((out.len().to_string(), w));
                }
                Ok(LabelWords(out))
            }
        }
        d.deserialize_any(V)
            .map_err(|e: D::Error| de::Error::custom(format!("label_words: {e}")))
    }
}
