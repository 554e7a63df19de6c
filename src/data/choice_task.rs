//! Multiple choice: every example brings its own candidates (COPA, ReCoRD and the like).
//!
//! ```json
//! {"name": "copa", "kind": "choice", "template": "{premise} {connector}",
//!  "choices_field": "choices", "choice_template": " {choice}"}
//! ```
//!
//! The example's `choices_field` holds a JSON list of strings; each choice, put through
//! `choice_template` (`{choice}` is the choice's text, other `{field}`s the example's), is one
//! candidate continuation of the prompt; the example's label is the gold choice's index.
//! Candidates may span several tokens: MeZO's loss takes each one's mean token log-prob.

use serde::Deserialize;

use super::example::Example;
use super::task::{spec_err, Rendered, Task, TaskKind};
use super::template::Template;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoiceTask {
    name: String,
    template: Template,
    choices_field: String,
    choice_template: Template,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    #[serde(default, rename = "kind")]
    _kind: Option<String>,
    name: String,
    template: String,
    choices_field: String,
    #[serde(default = "default_choice_template")]
    choice_template: String,
}

fn default_choice_template() -> String {
    " {choice}".into()
}

impl ChoiceTask {
    pub fn new(
        name: &str,
        template: &str,
        choices_field: &str,
        choice_template: &str,
    ) -> Result<Self> {
        if name.trim().is_empty() {
            return Err(Error::Data("task: empty name".into()));
        }
        if choices_field.is_empty() {
            return Err(Error::Data(format!("task {name:?}: empty choices_field")));
        }
        let choice_template = Template::parse(choice_template)?;
        if !choice_template.fields().contains(&"choice") {
            return Err(Error::Data(format!(
                "task {name:?}: choice_template {:?} never uses {{choice}}",
                choice_template.source()
            )));
        }
        Ok(ChoiceTask {
            name: name.into(),
            template: Template::parse(template)?,
            choices_field: choices_field.into(),
            choice_template,
        })
    }

    pub fn from_json(text: &str, source: &str) -> Result<Self> {
        let s: Spec = serde_json::from_str(text).map_err(|e| spec_err(source, e))?;
        ChoiceTask::new(&s.name, &s.template, &s.choices_field, &s.choice_template)
            .map_err(|e| spec_err(source, e))
    }
}

/// A field holding a JSON list of strings (how the loaders keep a list), or one plain string
/// when `single` allows it; `what` names the items in errors.
pub(super) fn string_list(
    ex: &Example,
    field: &str,
    what: &str,
    single: bool,
) -> Result<Vec<String>> {
    let at = ex.location();
    let raw = ex.field(field).ok_or_else(|| {
        let have: Vec<&str> = ex.fields.keys().map(String::as_str).collect();
        Error::Data(format!(
            "{at}: missing field `{field}` that holds the {what} (the example has: {})",
            have.join(", ")
        ))
    })?;
    let parsed: std::result::Result<Vec<String>, _> = serde_json::from_str(raw);
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if single && !raw.trim_start().starts_with('[') => Ok(vec![raw.to_string()]),
        Err(_) => Err(Error::Data(format!(
            "{at}: field `{field}` must be a JSON list of strings (the {what}), got {raw:?}"
        ))),
    }
}

impl Task for ChoiceTask {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> TaskKind {
        TaskKind::Choice
    }

    fn render(&self, ex: &Example) -> Result<Rendered> {
        let at = ex.location();
        let field = &self.choices_field;
        let choices = string_list(ex, field, "choices", false)?;
        if choices.len() < 2 {
            return Err(Error::Data(format!(
                "{at}: field `{field}` has {} choice(s); a multiple-choice example needs at \
                 least two",
                choices.len()
            )));
        }
        let mut candidates = Vec::with_capacity(choices.len());
        for (i, c) in choices.iter().enumerate() {
            if c.trim().is_empty() {
                return Err(Error::Data(format!(
                    "{at}: field `{field}`: choice {i} is empty"
                )));
            }
            let with = ex.clone().with_field("choice", c.clone());
            let cand = self.choice_template.render(&with)?;
            if candidates.contains(&cand) {
                return Err(Error::Data(format!(
                    "{at}: field `{field}`: choice {i} ({c:?}) repeats an earlier one"
                )));
            }
            candidates.push(cand);
        }
        if ex.label.is_empty() {
            return Err(Error::Data(format!(
                "{at}: missing field `label` (the index of the gold choice)"
            )));
        }
        let gold = ex
            .label
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&g| g < candidates.len())
            .ok_or_else(|| {
                Error::Data(format!(
                    "{at}: label {:?} must be the index of the gold choice, 0..{}",
                    ex.label,
                    candidates.len()
                ))
            })?;
        Ok(Rendered {
            prompt: self.template.render(ex)?,
            answers: vec![candidates[gold].clone()],
            candidates,
            gold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> ChoiceTask {
        ChoiceTask::from_json(
            r#"{"name": "copa", "kind": "choice", "template": "{premise} so",
                "choices_field": "choices"}"#,
            "spec",
        )
        .unwrap()
    }

    #[test]
    fn renders_each_choice_as_a_candidate() {
        let ex = Example::new("1")
            .with_field("premise", "It rained.")
            .with_field("choices", r#"["the sun shone.", "the grass got wet."]"#);
        let r = task().render(&ex).unwrap();
        assert_eq!(r.prompt, "It rained. so");
        assert_eq!(r.candidates, vec![" the sun shone.", " the grass got wet."]);
        assert_eq!(
            (r.gold, r.answers),
            (1, vec![" the grass got wet.".to_string()])
        );
    }

    #[test]
    fn bad_examples_name_the_field() {
        let t = task();
        let base = Example::new("0").with_field("premise", "p");
        for (choices, want) in [
            (None, "missing field `choices`"),
            (Some(r#"["only one"]"#), "has 1 choice(s)"),
            (Some("[]"), "has 0 choice(s)"),
            (Some(r#"["a", " "]"#), "choice 1 is empty"),
            (Some(r#"["a", "a"]"#), "repeats"),
            (Some("not a list"), "must be a JSON list"),
        ] {
            let ex = match choices {
                Some(c) => base.clone().with_field("choices", c),
                None => base.clone(),
            };
            let e = t.render(&ex).unwrap_err().to_string();
            assert!(e.contains(want), "{choices:?}: {e}");
        }
        let ex = Example::new("2")
            .with_field("premise", "p")
            .with_field("choices", r#"["a", "b"]"#);
        let e = t.render(&ex).unwrap_err().to_string();
        assert!(e.contains("index of the gold choice"), "{e}");
        let e = ChoiceTask::new("x", "{p}", "choices", "{other}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("never uses {choice}"), "{e}");
    }
}
