//! Rendered examples → token ids.

use std::collections::HashMap;

use super::example::Example;
use super::task::Task;
use crate::plan::TokenizedExample;
use crate::{Error, Result};

/// Renders and tokenizes `examples` with `encode(text, add_special_tokens)`.
///
/// The prompt is encoded with special tokens, so the tokenizer's post-processor decides
/// whether a BOS goes first (the model's own convention). Each candidate is encoded on its own
/// without special tokens and appended after the prompt, as MeZO does: the label word carries
/// its leading space (" great") so it tokenizes as it would mid-sentence.
pub fn tokenize_examples<E>(
    task: &dyn Task,
    examples: &[Example],
    encode: E,
) -> Result<Vec<TokenizedExample>>
where
    E: FnMut(&str, bool) -> Result<Vec<u32>>,
{
    tokenize_within(task, examples, usize::MAX, encode)
}

/// [`tokenize_examples`] for a model of `context` positions: an example whose prompt plus
/// longest candidate does not fit is an error naming it (a generation task's candidate is its
/// LM target, the prompt plus response).
pub fn tokenize_within<E>(
    task: &dyn Task,
    examples: &[Example],
    context: usize,
    mut encode: E,
) -> Result<Vec<TokenizedExample>>
where
    E: FnMut(&str, bool) -> Result<Vec<u32>>,
{
    // Candidates repeat across examples (label words); encode each distinct one once.
    let mut cache: HashMap<String, Vec<u32>> = HashMap::new();
    let mut out = Vec::with_capacity(examples.len());
    for ex in examples {
        let r = task.render(ex)?;
        let prompt = encode(&r.prompt, true)?;
        if prompt.is_empty() {
            return Err(Error::Data(format!(
                "{}: prompt {:?} encodes to no tokens",
                ex.location(),
                r.prompt
            )));
        }
        let mut candidates = Vec::with_capacity(r.candidates.len());
        for c in &r.candidates {
            if c.is_empty() {
                return Err(Error::Data(format!(
                    "{}: an empty candidate",
                    ex.location()
                )));
            }
            let ids = match cache.get(c) {
                Some(ids) => ids.clone(),
                None => {
                    let ids = encode(c, false)?;
                    if ids.is_empty() {
                        return Err(Error::Data(format!(
                            "task {:?}: candidate {c:?} encodes to no tokens",
                            task.name()
                        )));
                    }
                    cache.insert(c.clone(), ids.clone());
                    ids
                }
            };
            candidates.push(ids);
        }
        let longest = candidates.iter().map(Vec::len).max().unwrap_or(0);
        if prompt.len() + longest > context {
            return Err(Error::Data(format!(
                "{}: the prompt ({} tokens) plus its longest {} ({longest} tokens) exceed the \
                 model's context of {context} positions; shorten the example or drop it",
                ex.location(),
                prompt.len(),
                if task.kind() == crate::data::TaskKind::Generation {
                    "answer"
                } else {
                    "candidate"
                }
            )));
        }
        out.push(TokenizedExample {
            prompt,
            candidates,
            gold: r.gold,
            answers: r.answers,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{GenerationDefaults, GenerationTask};

    /// One id per byte: lengths are easy to reason about.
    fn bytes(s: &str, _special: bool) -> Result<Vec<u32>> {
        Ok(s.bytes().map(u32::from).collect())
    }

    #[test]
    fn an_example_longer_than_the_context_is_named() {
        let defaults = GenerationDefaults {
            max_new_tokens: 4,
            stop: vec![],
        };
        let task =
            GenerationTask::new("sft", "{prompt}", "response", " {answer}", defaults).unwrap();
        let ex = |p: &str, line| {
            Example::new("")
                .with_field("prompt", p)
                .with_field("response", "abc")
                .with_origin(crate::data::Origin {
                    path: "sft.jsonl".into(),
                    line,
                })
        };
        // 6 prompt bytes + " abc" = 10 tokens.
        let ok = tokenize_within(&task, &[ex("123456", 1)], 10, bytes).unwrap();
        assert_eq!(
            ok[0].candidates,
            vec![b" abc".iter().map(|&b| b as u32).collect::<Vec<_>>()]
        );
        assert_eq!(ok[0].answers, vec!["abc"]);
        let e = tokenize_within(&task, &[ex("123456", 1), ex("1234567", 2)], 10, bytes)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sft.jsonl:2") && e.contains("context of 10"),
            "{e}"
        );
    }
}
