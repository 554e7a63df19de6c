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
        out.push(TokenizedExample {
            prompt,
            candidates,
            gold: r.gold,
        });
    }
    Ok(out)
}
