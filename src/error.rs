//! One error type for the library. Every variant carries enough context (file, tensor, field)
//! for a user to see what is wrong and what was expected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An OS-level failure on a named file.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file whose bytes do not follow its format (truncated, corrupt, wrong magic).
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
    /// A configuration field that is missing, malformed or unsupported.
    #[error("config: {0}")]
    Config(String),
    /// A tensor with the wrong shape, dtype, or missing from a checkpoint.
    #[error("tensor {name}: {msg}")]
    Tensor { name: String, msg: String },
    /// Tokenizer problems (load failure, vocabulary that does not fit the model).
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Dataset and task problems (missing field, unknown label, empty split).
    #[error("data: {0}")]
    Data(String),
    /// A request the engine understands but does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A training run whose loss became non-finite or rose far above its start; the message
    /// says where the last good state was saved.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// A data-parallel run whose ranks disagree, fail or stop answering; the message names the
    /// rank.
    #[error("distributed: {0}")]
    Distributed(String),
    /// GPU problems: no driver, no device, launch failures.
    #[error("cuda: {0}")]
    Cuda(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub fn tensor(name: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Tensor {
            name: name.into(),
            msg: msg.into(),
        }
    }
}
