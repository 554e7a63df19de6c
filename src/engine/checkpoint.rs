//! Seed-log checkpoints: the trained state as base-weight hash + config + step records.
//!
//! A checkpoint is a small JSON file (kilobytes per thousand steps). It is written
//! atomically: a temporary file in the same directory is written, fsynced and renamed over
//! the destination, so a crash or a full disk leaves the previous checkpoint intact.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::replay::log_steps;
use crate::perturb::StepRecord;
use crate::{Error, Result};

pub const FORMAT: &str = "zo-seed-log";
pub const VERSION: u32 = 1;

/// A step that was scored but not applied (non-finite loss or g). Replay still runs its
/// `begin_step` (and in-place perturbations), so it must be logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedStep {
    pub step: u64,
    pub seeds: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seed: Option<u64>,
    pub reason: String,
}

/// One dev evaluation: the state after `after` steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevPoint {
    pub after: u64,
    pub accuracy: f64,
    pub loss: f64,
}

impl DevPoint {
    /// Model selection order: higher accuracy, and on a tie (small dev sets tie often) the
    /// lower loss.
    pub fn beats(&self, other: &DevPoint) -> bool {
        self.accuracy > other.accuracy
            || (self.accuracy == other.accuracy && self.loss < other.loss)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub format: String,
    pub version: u32,
    /// [`super::hash::model_hash`] of the base weights.
    pub base_hash: String,
    /// The base model directory the run loaded (a default for export; the hash decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<String>,
    /// The data directory of the run (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
    /// sha256 of the tokenized train split: resuming on other data is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_hash: Option<String>,
    pub config: TrainConfig,
    /// Steps done (applied or skipped); training resumes at this step.
    pub completed: u64,
    pub records: Vec<StepRecord>,
    #[serde(default)]
    pub skipped: Vec<SkippedStep>,
    /// Every dev evaluation so far.
    #[serde(default)]
    pub evals: Vec<DevPoint>,
    /// The best dev evaluation: its state is the log replayed up to `after`.
    pub best: Option<DevPoint>,
}

impl Checkpoint {
    pub fn new(base_hash: String, config: TrainConfig) -> Checkpoint {
        Checkpoint {
            format: FORMAT.into(),
            version: VERSION,
            base_hash,
            model_dir: None,
            data_dir: None,
            data_hash: None,
            config,
            completed: 0,
            records: Vec::new(),
            skipped: Vec::new(),
            evals: Vec::new(),
            best: None,
        }
    }

    /// Records a dev evaluation of the state after `after` steps, and keeps the best.
    pub fn record_dev(&mut self, after: u64, accuracy: f64, loss: f64) {
        let p = DevPoint {
            after,
            accuracy,
            loss,
        };
        if self.best.as_ref().is_none_or(|b| p.beats(b)) {
            self.best = Some(p.clone());
        }
        self.evals.push(p);
    }

    /// Reads and checks a checkpoint; every failure names the file and what is wrong.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let ck: Checkpoint = serde_json::from_str(&text).map_err(|e| {
            Error::format(
                path,
                format!("not a valid zo checkpoint (corrupt or truncated JSON?): {e}"),
            )
        })?;
        if ck.format != FORMAT {
            return Err(Error::format(
                path,
                format!("format is {:?}, expected {FORMAT:?}", ck.format),
            ));
        }
        if ck.version != VERSION {
            return Err(Error::format(
                path,
                format!(
                    "checkpoint version {}, this build reads {VERSION}",
                    ck.version
                ),
            ));
        }
        ck.check().map_err(|e| Error::format(path, e.to_string()))?;
        Ok(ck)
    }

    /// Internal consistency: every step 0..completed logged once, one g per seed.
    pub fn check(&self) -> Result<()> {
        self.config.validate()?;
        let n = self.records.len() + self.skipped.len();
        if n as u64 != self.completed {
            return Err(Error::Config(format!(
                "seed log holds {n} steps but says {} were completed",
                self.completed
            )));
        }
        log_steps(&self.records, &self.skipped, self.completed)?;
        for r in &self.records {
            if r.seeds.len() != self.config.q || r.grads.len() != self.config.q {
                return Err(Error::Config(format!(
                    "seed log step {}: {} seeds and {} g's, expected q = {}",
                    r.step,
                    r.seeds.len(),
                    r.grads.len(),
                    self.config.q
                )));
            }
            if !r.grads.iter().all(|g| g.is_finite()) || !r.lr.is_finite() {
                return Err(Error::Config(format!(
                    "seed log step {}: non-finite g or lr",
                    r.step
                )));
            }
        }
        if let Some(b) = &self.best {
            if b.after > self.completed {
                return Err(Error::Config(format!(
                    "best dev state is after step {} but only {} steps are logged",
                    b.after, self.completed
                )));
            }
        }
        Ok(())
    }

    /// Refuses to continue from this checkpoint on other weights or with other settings.
    pub fn check_compatible(&self, base_hash: &str, config: &TrainConfig) -> Result<()> {
        if self.base_hash != base_hash {
            return Err(Error::Config(format!(
                "checkpoint was trained from base weights {} but the loaded model hashes to {base_hash}",
                self.base_hash
            )));
        }
        let diff = config.differences(&self.config);
        if !diff.is_empty() {
            return Err(Error::Config(format!(
                "checkpoint config differs from this run: {}",
                diff.join("; ")
            )));
        }
        if self.completed > config.steps {
            return Err(Error::Config(format!(
                "checkpoint already holds {} steps, more than the {} asked for",
                self.completed, config.steps
            )));
        }
        Ok(())
    }

    /// Drops every step from `step` on, and the dev evaluations after it: the log then
    /// describes the state before step `step`.
    pub fn truncate(&mut self, step: u64) {
        if step >= self.completed {
            return;
        }
        self.records.retain(|r| r.step < step);
        self.skipped.retain(|s| s.step < step);
        self.evals.retain(|e| e.after <= step);
        self.completed = step;
        self.best = None;
        for e in &self.evals {
            if self.best.as_ref().is_none_or(|b| e.beats(b)) {
                self.best = Some(e.clone());
            }
        }
    }

    /// Writes the checkpoint atomically (see the module docs).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec(self).expect("checkpoints serialize");
        write_atomic(path, &json)
    }
}

/// `bytes` into `path` via a synced temporary file in the same directory and a rename. On any
/// failure the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::Config(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // The rename is durable once the directory entry is; not every platform can sync a
        // directory, so failure here is not an error.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(
            path,
            std::io::Error::new(
                e.kind(),
                format!("could not write ({e}); any previous file there is unchanged"),
            ),
        )
    })
}
