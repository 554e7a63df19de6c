//! GGUF v2/v3 reader, dequantization and import into an HF-layout directory.
//!
//! - [`GgufFile`] maps a file, parses its metadata and tensor directory, and decodes tensors
//!   to f32 on request ([`GgufFile::tensor_f32`]).
//! - [`import`] turns a llama/mistral/qwen2 GGUF into config.json + model.safetensors +
//!   tokenizer.json, the layout the rest of the crate loads.

pub mod arch;
pub mod dequant;
pub mod import;
pub mod reader;
pub mod tokenizer;
pub mod types;

pub use import::{import, ImportDtype, ImportReport};
pub use reader::{GgufFile, TensorInfo, Value};
pub use types::GgmlType;
