//! The tokenizers crate over tokenizer.json, with the model's BOS convention.
//!
//! Which special tokens surround a text is not hard-coded per architecture: the post-processor
//! stored in tokenizer.json carries it (OPT prepends `</s>`, Llama `<s>`, SmolLM2 nothing), and
//! `encode(.., add_special_tokens = true)` applies it exactly as HF does.

use std::path::{Path, PathBuf};

use crate::model::ModelConfig;
use crate::{Error, Result};

/// The file name HF uses for a fast tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    bos: Option<u32>,
    vocab_size: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size)
            .field("bos", &self.bos)
            .finish()
    }
}

impl Tokenizer {
    /// Loads `dir/tokenizer.json`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Tokenizer> {
        Self::from_file(dir.as_ref().join(TOKENIZER_FILE))
    }

    /// Loads a tokenizer.json file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| {
            Error::Tokenizer(format!("{}: cannot load tokenizer: {e}", path.display()))
        })?;
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&m| m as usize + 1);
        let bos = detect_bos(&inner);
        Ok(Tokenizer {
            inner,
            path: path.to_path_buf(),
            bos,
            vocab_size,
        })
    }

    /// The file this tokenizer was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying tokenizers-crate object, for anything not wrapped here.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Token ids of `text`; with `add_special_tokens`, the tokenizer's post-processor adds the
    /// model's BOS/EOS convention.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|enc| enc.get_ids().to_vec())
            .map_err(|e| {
                Error::Tokenizer(format!(
                    "{}: cannot encode {text:?}: {e}",
                    self.path.display()
                ))
            })
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("{}: cannot decode: {e}", self.path.display())))
    }

    /// Size of the id space: one past the largest id, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The single special token the post-processor puts before a text, if it puts exactly one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// Id of a token string (vocabulary or added token), e.g. a label word's piece.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Fails when the tokenizer can produce ids the model has no embedding row for. A smaller
    /// tokenizer is fine: models often pad their vocabulary to a multiple of 8 or 64.
    pub fn check_model(&self, config: &ModelConfig) -> Result<()> {
        if self.vocab_size > config.vocab_size {
            return Err(Error::Tokenizer(format!(
                "{}: vocabulary of {} ids (largest id {}) does not fit the model's vocab_size {}",
                self.path.display(),
                self.vocab_size,
                self.vocab_size - 1,
                config.vocab_size
            )));
        }
        Ok(())
    }
}

/// Finds what the post-processor prepends by encoding a probe with and without special tokens;
/// this works for every post-processor kind (template, RoBERTa, BERT, sequences of them).
fn detect_bos(tok: &tokenizers::Tokenizer) -> Option<u32> {
    for probe in ["a", "hello", "0", " "] {
        let (Ok(with), Ok(without)) = (tok.encode(probe, true), tok.encode(probe, false)) else {
            continue;
        };
        let (with, without) = (with.get_ids(), without.get_ids());
        if without.is_empty() || with.len() < without.len() {
            continue;
        }
        let start =
            (0..=with.len() - without.len()).find(|&k| &with[k..k + without.len()] == without)?;
        return match with[..start] {
            [bos] => Some(bos),
            _ => None,
        };
    }
    None
}
