//! The tokenizers crate over tokenizer.json, with the model's BOS convention.
