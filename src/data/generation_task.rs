//! Generation: the model writes a continuation, judged against reference answers (extractive
//! QA, SFT on prompt/response pairs).
//!
//! ```json
//! {"name": "squad", "kind": "generation",
//!  "template": "{context}\nQuestion: {question}\nAnswer:", "answers_field": "answers",
//!  "answer_template": " {answer}", "stop": ["\n"], "max_new_tokens": 16}
//! ```
//!
//! `answers_field` holds a JSON list of reference answers (or one plain string). The first,
//! through `answer_template`, is the target of the LM loss; exact match and F1 take the best
//! over all of them.

use serde::Deserialize;

use super::choice_task::string_list;
use super::example::Example;
use super::task::{spec_err, GenerationDefaults, Rendered, Task, TaskKind};
use super::template::Template;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationTask {
    name: String,
    template: Template,
    answers_field: String,
    answer_template: Template,
    defaults: GenerationDefaults,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    #[serde(default, rename = "kind")]
    _kind: Option<String>,
    name: String,
    template: String,
    answers_field: String,
    #[serde(default = "default_answer_template")]
    answer_template: String,
    #[serde(default)]
    stop: Vec<String>,
    #[serde(default = "default_max_new")]
    max_new_tokens: usize,
}

fn default_answer_template() -> String {
    " {answer}".into()
}

fn default_max_new() -> usize {
    32
}

impl GenerationTask {
    pub fn new(
        name: &str,
        template: &str,
        answers_field: &str,
        answer_template: &str,
        defaults: GenerationDefaults,
    ) -> Result<Self> {
        let bad = |m: String| Err(Error::Data(format!("task {name:?}: {m}")));
        if name.trim().is_empty() {
            return Err(Error::Data("task: empty name".into()));
        }
        if answers_field.is_empty() {
            return bad("empty answers_field".into());
        }
        if defaults.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1".into());
        }
        if defaults.stop.iter().any(String::is_empty) {
            return bad("an empty stop string would end every generation at once".into());
        }
        let answer_template = Template::parse(answer_template)?;
        if !answer_template.fields().contains(&"answer") {
            return bad(format!(
                "answer_template {:?} never uses {{answer}}",
                answer_template.source()
            ));
        }
        Ok(GenerationTask {
            name: name.into(),
            template: Template::parse(template)?,
            answers_field: answers_field.into(),
            answer_template,
            defaults,
        })
    }

    pub fn from_json(text: &str, source: &str) -> Result<Self> {
        let s: Spec = serde_json::from_str(text).map_err(|e| spec_err(source, e))?;
        let defaults = GenerationDefaults {
            max_new_tokens: s.max_new_tokens,
            stop: s.stop,
        };
        GenerationTask::new(
            &s.name,
            &s.template,
            &s.answers_field,
            &s.answer_template,
            defaults,
        )
        .map_err(|e| spec_err(source, e))
    }
}

impl Task for GenerationTask {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> TaskKind {
        TaskKind::Generation
    }

    fn generation(&self) -> GenerationDefaults {
        self.defaults.clone()
    }

    fn render(&self, ex: &Example) -> Result<Rendered> {
        let at = ex.location();
        let field = &self.answers_field;
        let answers = string_list(ex, field, "reference answers", true)?;
        if answers.is_empty() {
            return Err(Error::Data(format!(
                "{at}: field `{field}` has no reference answer"
            )));
        }
        if let Some(i) = answers.iter().position(|a| a.trim().is_empty()) {
            return Err(Error::Data(format!(
                "{at}: field `{field}`: answer {i} is empty"
            )));
        }
        let target = self
            .answer_template
            .render(&ex.clone().with_field("answer", answers[0].clone()))?;
        Ok(Rendered {
            prompt: self.template.render(ex)?,
            candidates: vec![target],
            gold: 0,
            answers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"{"name": "qa", "kind": "generation",
        "template": "{context}\nQ: {question}\nA:", "answers_field": "answers",
        "stop": ["\n"], "max_new_tokens": 8}"#;

    #[test]
    fn renders_the_first_answer_as_target_and_keeps_all() {
        let t = GenerationTask::from_json(SPEC, "spec").unwrap();
        assert_eq!(t.generation().max_new_tokens, 8);
        let ex = Example::new("")
            .with_field("context", "C")
            .with_field("question", "Who?")
            .with_field("answers", r#"["Ann", "Ann B."]"#);
        let r = t.render(&ex).unwrap();
        assert_eq!(r.prompt, "C\nQ: Who?\nA:");
        assert_eq!(r.candidates, vec![" Ann"]);
        assert_eq!(r.answers, vec!["Ann", "Ann B."]);
        // A plain string is one answer (SFT's response field).
        let r = t.render(&ex.clone().with_field("answers", "Bob")).unwrap();
        assert_eq!(r.answers, vec!["Bob"]);
    }

    #[test]
    fn bad_examples_and_specs_are_named() {
        let t = GenerationTask::from_json(SPEC, "spec").unwrap();
        let ex = Example::new("")
            .with_field("context", "C")
            .with_field("question", "q");
        let e = t.render(&ex).unwrap_err().to_string();
        assert!(e.contains("missing field `answers`"), "{e}");
        let e = t
            .render(&ex.clone().with_field("answers", "[]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no reference answer"), "{e}");
        let e = t
            .render(&ex.clone().with_field("answers", r#"[""]"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("answer 0 is empty"), "{e}");
        let e = GenerationTask::from_json(&SPEC.replace("answers_field", "answer_field"), "s.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.json") && e.contains("answer_field"), "{e}");
        let e = GenerationTask::from_json(&SPEC.replace("[\"\\n\"]", "[\"\"]"), "s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty stop string"), "{e}");
    }
}
