//! File formats: safetensors (memmap, sharded), GGUF import, tokenizer.

pub mod gguf;
pub mod safetensors;
pub mod tokenizer;
