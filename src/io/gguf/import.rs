//! GGUF → HF-layout directory: config.json, model.safetensors, tokenizer.json,
//! tokenizer_config.json.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use half::{bf16, f16};
use rayon::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use super::arch::{self, Dims};
use super::reader::GgufFile;
use super::tokenizer::{self, TokenizerSummary};
use super::types::GgmlType;
use crate::{Error, Result};

/// Storage dtype of the written safetensors.
///
/// The default is f32: it stores exactly what ggml's dequantization yields (a quantized value
/// `d * q + m` generally needs more mantissa bits than f16 or bf16 have), so the imported
/// weights equal any other GGUF loader's f32 weights bit for bit and the f32 CPU reference sees
/// the model the GGUF describes. f16/bf16 halve the size at the cost of one extra rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportDtype {
    #[default]
    F32,
    F16,
    BF16,
}

impl ImportDtype {
    pub fn torch_name(self) -> &'static str {
        match self {
            ImportDtype::F32 => "float32",
            ImportDtype::F16 => "float16",
            ImportDtype::BF16 => "bfloat16",
        }
    }

    fn safetensors(self) -> Dtype {
        match self {
            ImportDtype::F32 => Dtype::F32,
            ImportDtype::F16 => Dtype::F16,
            ImportDtype::BF16 => Dtype::BF16,
        }
    }

    /// Little-endian bytes, each value rounded once (to nearest even) from f32.
    fn encode(self, v: &[f32]) -> Vec<u8> {
        match self {
            ImportDtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ImportDtype::F16 => v
                .par_iter()
                .flat_map_iter(|&x| f16::from_f32(x).to_le_bytes())
                .collect(),
            ImportDtype::BF16 => v
                .par_iter()
                .flat_map_iter(|&x| bf16::from_f32(x).to_le_bytes())
                .collect(),
        }
    }
}

impl FromStr for ImportDtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(ImportDtype::F32),
            "f16" | "float16" => Ok(ImportDtype::F16),
            "bf16" | "bfloat16" => Ok(ImportDtype::BF16),
            _ => Err(Error::Unsupported(format!(
                "import dtype {s:?} (expected f32, f16 or bf16)"
            ))),
        }
    }
}

impl fmt::Display for ImportDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImportDtype::F32 => "f32",
            ImportDtype::F16 => "f16",
            ImportDtype::BF16 => "bf16",
        })
    }
}

/// What an import wrote.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub architecture: String,
    pub gguf_version: u32,
    pub out_dir: PathBuf,
    pub dtype: ImportDtype,
    pub files: Vec<PathBuf>,
    /// Tensors written to model.safetensors.
    pub n_tensors: usize,
    pub n_params: u64,
    /// How many source tensors had each GGUF type.
    pub source_types: BTreeMap<GgmlType, usize>,
    /// The written config.json.
    pub config: serde_json::Value,
    /// None when the file carries no tokenizer.
    pub tokenizer: Option<TokenizerSummary>,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let types: Vec<String> = self
            .source_types
            .iter()
            .map(|(t, n)| format!("{n} {t}"))
            .collect();
        writeln!(
            f,
            "imported {} (GGUF v{}; source tensors: {}) into {}",
            self.architecture,
            self.gguf_version,
            types.join(", "),
            self.out_dir.display()
        )?;
        let c = &self.config;
        writeln!(
            f,
            "  config.json: {} layers, hidden {}, {} heads ({} kv, dim {}), ffn {}, vocab {}, tied embeddings {}",
            c["num_hidden_layers"],
            c["hidden_size"],
            c["num_attention_heads"],
            c["num_key_value_heads"],
            c["head_dim"],
            c["intermediate_size"],
            c["vocab_size"],
            c["tie_word_embeddings"]
        )?;
        writeln!(
            f,
            "  model.safetensors: {} tensors, {:.1}M parameters, {}",
            self.n_tensors,
            self.n_params as f64 / 1e6,
            self.dtype
        )?;
        match &self.tokenizer {
            Some(t) => write!(
                f,
                "  tokenizer.json: byte-level BPE, {} tokens, {} merges, {} added tokens, pre-tokenizer {}, add BOS {}",
                t.vocab_size, t.n_merges, t.n_added, t.pre, t.add_bos_token
            ),
            None => write!(f, "  no tokenizer in the file (tokenizer.json not written)"),
        }
    }
}

/// Writes `bytes` to `dir/name` through a temporary file and a rename, so a reader never sees
/// a half-written file and an interrupted import leaves the previous file intact.
fn write_atomic(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let dest = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = write(&tmp).and_then(|()| {
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| dest)
}

fn write_json(dir: &Path, name: &str, v: &serde_json::Value) -> Result<PathBuf> {
    let text = serde_json::to_string_pretty(v).expect("JSON values serialize");
    write_atomic(dir, name, |tmp| {
        let mut f = fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .map_err(|e| Error::io(tmp, e))
    })
}

/// One converted tensor ready for safetensors.
struct Converted {
    name: String,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Imports a GGUF model into `out_dir` (created if needed) as an HF-layout directory.
pub fn import(input: &Path, out_dir: &Path, dtype: ImportDtype) -> Result<ImportReport> {
    let g = GgufFile::open(input)?;
    let spec = arch::spec_for(&g)?;
    let dims = Dims::read(&g, spec)?;
    // Build the tokenizer first: it is cheap, and a refusal should come before minutes of
    // dequantization.
    let tok = tokenizer::build(&g)?;
    if let Some(t) = &tok {
        let text = t.tokenizer_json.to_string();
        tokenizers::Tokenizer::from_str(&text).map_err(|e| {
            Error::Tokenizer(format!(
                "tokenizer.json built from {} does not load: {e}",
                input.display()
            ))
        })?;
    }

    let mut plan = Vec::with_capacity(g.tensors().len());
    let mut seen = HashSet::new();
    let mut source_types = BTreeMap::new();
    for info in g.tensors() {
        let m = arch::map_tensor(&info.name, spec, &dims)?;
        let shape = info.shape();
        if shape != m.shape {
            return Err(Error::tensor(
                &info.name,
                format!(
                    "shape {shape:?} (GGUF dims {:?} reversed), expected {:?} for {}",
                    info.dims, m.shape, m.hf_name
                ),
            ));
        }
        if !info.ggml_type.is_supported() {
            return Err(Error::Unsupported(format!(
                "tensor {} in {} has type {}, which cannot be dequantized",
                info.name,
                input.display(),
                info.ggml_type
            )));
        }
        *source_types.entry(info.ggml_type).or_insert(0) += 1;
        seen.insert(m.hf_name.clone());
        plan.push((info, m));
    }
    if let Some(missing) = arch::required_hf_names(&dims)
        .into_iter()
        .find(|n| !seen.contains(n))
    {
        return Err(Error::tensor(
            missing,
            format!(
                "missing from {} (no GGUF tensor maps to it)",
                input.display()
            ),
        ));
    }

    let mut converted = Vec::with_capacity(plan.len());
    let mut n_params = 0u64;
    for (info, m) in &plan {
        let mut values = g.tensor_f32(&info.name)?;
        if let Some(heads) = m.permuted_heads {
            let row_len = if m.shape.len() == 2 { m.shape[1] } else { 1 };
            values = arch::unpermute_rows(&values, heads, row_len);
        }
        n_params += values.len() as u64;
        converted.push(Converted {
            name: m.hf_name.clone(),
            shape: m.shape.clone(),
            bytes: dtype.encode(&values),
        });
    }

    fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let mut files = Vec::new();
    let views = converted
        .iter()
        .map(|c| {
            TensorView::new(dtype.safetensors(), c.shape.clone(), &c.bytes)
                .map(|v| (c.name.clone(), v))
                .map_err(|e| Error::tensor(&c.name, format!("cannot build safetensors view: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    files.push(write_atomic(out_dir, "model.safetensors", |tmp| {
        safetensors::tensor::serialize_to_file(views, Some(meta), tmp)
            .map_err(|e| Error::format(tmp, format!("writing safetensors failed: {e}")))
    })?);

    let summary = tok.as_ref().map(|t| t.summary.clone());
    let ids = |f: fn(&TokenizerSummary) -> Option<u32>| summary.as_ref().and_then(f);
    let config = arch::config_json(
        spec,
        &dims,
        dtype.torch_name(),
        ids(|s| s.bos_token_id),
        ids(|s| s.eos_token_id),
        ids(|s| s.pad_token_id),
    );
    files.push(write_json(out_dir, "config.json", &config)?);
    if let Some(t) = &tok {
        files.push(write_json(out_dir, "tokenizer.json", &t.tokenizer_json)?);
        files.push(write_json(
            out_dir,
            "tokenizer_config.json",
            &t.tokenizer_config,
        )?);
    }

    Ok(ImportReport {
        architecture: spec.gguf.to_string(),
        gguf_version: g.version(),
        out_dir: out_dir.to_path_buf(),
        dtype,
        files,
        n_tensors: converted.len(),
        n_params,
        source_types,
        config,
        tokenizer: summary,
    })
}
