//! `zo-run export`: replay a seed log onto its base weights and write the result as an HF
//! directory (merged weights), plus a PEFT adapter for the lora family.

use std::path::{Path, PathBuf};

use super::checkpoint::Checkpoint;
use super::replay::replay;
use crate::io::gguf::ImportDtype;
use crate::model::save::{save_hf, write_safetensors};
use crate::perturb::lora::Lora;
use crate::{Error, Result};

/// Sub-folder of an export that holds the PEFT adapter (lora family).
pub const ADAPTER_DIR: &str = "adapter";

/// Which state of the log to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportState {
    /// The best dev state (the last one when the log has no dev evaluation).
    Best,
    Last,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportReport {
    pub out_dir: String,
    /// Steps of the log replayed.
    pub after: u64,
    pub files: Vec<String>,
}

/// Replays `ckpt` on the base model (`model_dir`, or the one the checkpoint names) and writes
/// the merged weights to `out_dir`.
pub fn export(
    ckpt: &Path,
    out_dir: &Path,
    model_dir: Option<&Path>,
    state: ExportState,
    dtype: ImportDtype,
) -> Result<ExportReport> {
    let log = Checkpoint::load(ckpt)?;
    let model_dir: PathBuf = match (model_dir, &log.model_dir) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(d)) => PathBuf::from(d),
        (None, None) => {
            return Err(Error::Config(format!(
                "{} does not name its base model; pass --model DIR",
                ckpt.display()
            )))
        }
    };
    let base = crate::model::load::load_model(&model_dir)?;
    let hash = super::hash::model_hash(&base);
    if hash != log.base_hash {
        return Err(Error::Config(format!(
            "checkpoint {} was trained from base weights {} but {} hashes to {hash}",
            ckpt.display(),
            log.base_hash,
            model_dir.display()
        )));
    }
    export_log(&log, base, &model_dir, out_dir, state, dtype)
}

/// Writes the state of `log` replayed onto `base` (loaded from `model_dir`, whose config and
/// tokenizer files are copied) to `out_dir`.
pub fn export_log(
    log: &Checkpoint,
    base: crate::model::Model,
    model_dir: &Path,
    out_dir: &Path,
    state: ExportState,
    dtype: ImportDtype,
) -> Result<ExportReport> {
    let after = match state {
        ExportState::Best => log.best.as_ref().map_or(log.completed, |b| b.after),
        ExportState::Last => log.completed,
    };
    let mut backend = crate::train::cpu_backend(&base, &log.config)?;
    drop(base);
    replay(&mut backend, &log.config, &log.records, &log.skipped, after)?;
    let (model, family) = backend.into_parts();
    let family = family.expect("cpu_backend attaches a family");
    let merged = family.merged(&model)?;
    let mut files = save_hf(&merged, model_dir, out_dir, dtype)?;
    drop(merged);

    let any: &dyn std::any::Any = family.as_ref();
    if let Some(lora) = any.downcast_ref::<Lora>() {
        // The adapter gets its own folder: HF loaders treat any folder holding
        // adapter_config.json as an adapter over its base model and would ignore the merged
        // weights next to it.
        let adapter_dir = out_dir.join(ADAPTER_DIR);
        std::fs::create_dir_all(&adapter_dir).map_err(|e| Error::io(&adapter_dir, e))?;
        let tensors = lora.peft_tensors();
        let named: Vec<(String, Vec<usize>, &[f32])> = tensors
            .iter()
            .map(|(n, s, v)| (n.clone(), s.clone(), &v[..]))
            .collect();
        let st = adapter_dir.join("adapter_model.safetensors");
        write_safetensors(&st, &named, ImportDtype::F32)?;
        files.push(st);
        let base = std::fs::canonicalize(model_dir).unwrap_or_else(|_| model_dir.to_path_buf());
        let cfg = lora.peft_config_json(&base.display().to_string());
        let path = adapter_dir.join("adapter_config.json");
        let json = serde_json::to_vec_pretty(&cfg).expect("JSON values serialize");
        super::checkpoint::write_atomic(&path, &json)?;
        files.push(path);
    }
    Ok(ExportReport {
        out_dir: out_dir.display().to_string(),
        after,
        files: files.iter().map(|p| p.display().to_string()).collect(),
    })
}
