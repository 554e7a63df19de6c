//! safetensors through memmap2: single file and sharded (model.safetensors.index.json).
//!
//! Headers are parsed once at open; tensor bytes stay in the memory map until a caller asks
//! for them converted to f32, so opening a multi-gigabyte checkpoint costs almost nothing.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::tensor::{SafeTensors, TensorInfo};

pub use safetensors::Dtype;

use crate::{Error, Result};

/// The single-file checkpoint name HF writes.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The index HF writes next to sharded checkpoints.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Below this many elements a conversion is not worth splitting across threads.
const PAR_MIN_ELEMS: usize = 1 << 16;

struct Shard {
    path: PathBuf,
    mmap: Mmap,
    /// Byte offset of the data section (8-byte length + header).
    data_start: usize,
}

struct Entry {
    shard: usize,
    info: TensorInfo,
}

/// Read-only view of the tensors of one checkpoint, whatever number of files it spans.
pub struct TensorStore {
    /// What was opened (the single file or the index), named in "not found" errors.
    source: PathBuf,
    shards: Vec<Shard>,
    tensors: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for TensorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorStore")
            .field("source", &self.source)
            .field("shards", &self.shards.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

fn not_found(path: &Path, msg: String) -> Error {
    Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, msg))
}

impl TensorStore {
    /// Opens a directory (model.safetensors, else model.safetensors.index.json and its shards),
    /// a single .safetensors file, or an index .json file.
    pub fn open(path: impl AsRef<Path>) -> Result<TensorStore> {
        let path = path.as_ref();
        if path.is_dir() {
            let single = path.join(SINGLE_FILE);
            let index = path.join(INDEX_FILE);
            if single.is_file() {
                Self::open_single(&single)
            } else if index.is_file() {
                Self::open_index(&index)
            } else {
                let hint = if path.join("pytorch_model.bin").exists() {
                    " (pytorch_model.bin is there: convert it to safetensors)"
                } else {
                    ""
                };
                Err(not_found(
                    path,
                    format!("found neither {SINGLE_FILE} nor {INDEX_FILE}{hint}"),
                ))
            }
        } else if !path.exists() {
            Err(not_found(path, "no such file or directory".into()))
        } else if path.extension().is_some_and(|e| e == "json") {
            Self::open_index(path)
        } else {
            Self::open_single(path)
        }
    }

    fn open_single(path: &Path) -> Result<TensorStore> {
        let (shard, header) = map_shard(path)?;
        let tensors = header
            .into_iter()
            .map(|(name, info)| (name, Entry { shard: 0, info }))
            .collect();
        Ok(TensorStore {
            source: path.to_path_buf(),
            shards: vec![shard],
            tensors,
        })
    }

    fn open_index(index: &Path) -> Result<TensorStore> {
        let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(index, format!("not valid JSON: {e}")))?;
        let weight_map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::format(index, "has no `weight_map` object"))?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let index_name = index.file_name().unwrap_or_default().to_string_lossy();

        let mut shard_ids: HashMap<&str, usize> = HashMap::new();
        let mut shards = Vec::new();
        let mut headers = Vec::new();
        let mut tensors = BTreeMap::new();
        for (name, file) in weight_map {
            let file = file.as_str().ok_or_else(|| {
                Error::format(index, format!("weight_map[\"{name}\"] is not a file name"))
            })?;
            let shard = match shard_ids.get(file) {
                Some(&i) => i,
                None => {
                    let shard_path = dir.join(file);
                    if !shard_path.is_file() {
                        return Err(not_found(
                            &shard_path,
                            format!("shard listed in {index_name} is missing"),
                        ));
                    }
                    let (shard, header) = map_shard(&shard_path)?;
                    shards.push(shard);
                    headers.push(header);
                    shard_ids.insert(file, shards.len() - 1);
                    shards.len() - 1
                }
            };
            let info = headers[shard].get(name).cloned().ok_or_else(|| {
                Error::format(
                    &shards[shard].path,
                    format!("has no tensor `{name}`, which {index_name} places there"),
                )
            })?;
            tensors.insert(name.clone(), Entry { shard, info });
        }
        Ok(TensorStore {
            source: index.to_path_buf(),
            shards,
            tensors,
        })
    }

    /// The file or index this store was opened from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.tensors.keys().map(String::as_str).collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|e| e.info.shape.as_slice())
    }

    pub fn dtype(&self, name: &str) -> Option<Dtype> {
        self.tensors.get(name).map(|e| e.info.dtype)
    }

    /// The file that holds `name`.
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.tensors
            .get(name)
            .map(|e| self.shards[e.shard].path.as_path())
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::tensor(name, format!("not found in {}", self.source.display())))
    }

    /// The raw little-endian bytes of a tensor as stored (no alignment guaranteed).
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let e = self.entry(name)?;
        let shard = &self.shards[e.shard];
        let (lo, hi) = e.info.data_offsets;
        // read_metadata checked that the offsets tile the data section exactly.
        Ok(&shard.mmap[shard.data_start + lo..shard.data_start + hi])
    }

    /// The tensor converted to f32, after checking its shape is exactly `expected_shape`.
    pub fn get_f32(&self, name: &str, expected_shape: &[usize]) -> Result<Vec<f32>> {
        let e = self.entry(name)?;
        let file = &self.shards[e.shard].path;
        if e.info.shape != expected_shape {
            return Err(Error::tensor(
                name,
                format!(
                    "expected shape {expected_shape:?}, found {:?} in {}",
                    e.info.shape,
                    file.display()
                ),
            ));
        }
        let bytes = self.bytes(name)?;
        match e.info.dtype {
            Dtype::F32 => Ok(convert(bytes, |b: [u8; 4]| f32::from_le_bytes(b))),
            Dtype::F16 => Ok(convert(bytes, |b: [u8; 2]| f16::from_le_bytes(b).to_f32())),
            Dtype::BF16 => Ok(convert(bytes, |b: [u8; 2]| bf16::from_le_bytes(b).to_f32())),
            other => Err(Error::tensor(
                name,
                format!(
                    "dtype {other:?} in {} is not supported (expected F32, F16 or BF16)",
                    file.display()
                ),
            )),
        }
    }
}

/// Decodes little-endian elements from possibly unaligned bytes (a memory map gives no
/// alignment promise for a tensor's offset).
fn convert<const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f32 + Sync) -> Vec<f32> {
    let one = |c: &[u8]| f(c.try_into().expect("chunk of N bytes"));
    let n = bytes.len() / N;
    if n < PAR_MIN_ELEMS {
        bytes.chunks_exact(N).map(one).collect()
    } else {
        let mut out = vec![0f32; n];
        out.par_chunks_mut(4096)
            .zip(bytes.par_chunks(4096 * N))
            .for_each(|(o, b)| {
                for (x, c) in o.iter_mut().zip(b.chunks_exact(N)) {
                    *x = one(c);
                }
            });
        out
    }
}

/// Maps one .safetensors file and parses its header.
fn map_shard(path: &Path) -> Result<(Shard, HashMap<String, TensorInfo>)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len < 8 {
        return Err(Error::format(
            path,
            format!(
                "truncated safetensors file: {len} bytes, shorter than the 8-byte header length"
            ),
        ));
    }
    // SAFETY: the map is read-only; a checkpoint rewritten while loaded is outside our contract.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let (n, metadata) = SafeTensors::read_metadata(&mmap).map_err(|e| {
        Error::format(
            path,
            format!("not a valid safetensors file (truncated or corrupt): {e}"),
        )
    })?;
    let header = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, info.clone()))
        .collect();
    Ok((
        Shard {
            path: path.to_path_buf(),
            mmap,
            data_start: 8 + n,
        },
        header,
    ))
}
