//! GGUF v2/v3 parsing over a memory map.
//!
//! Every count and length in the header comes from an untrusted file, so each one is checked
//! against the bytes actually left before anything is allocated from it.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::dequant;
use super::types::GgmlType;
use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";
/// ggml's default when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays exist (rarely); deeper nesting is only ever a corrupt file.
const MAX_NESTING: usize = 8;

/// One metadata value. Integers keep their stored width so a writer's intent is visible.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value as an integer when it is stored as one (any width, any sign).
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The value as a float when it is stored as a float or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_i128().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
        }
    }
}

/// Where one tensor lives and how it is encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` (ne0) varies fastest. The row-major shape is this reversed.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Row-major shape (outermost first), as safetensors and PyTorch write it.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// An open GGUF file: parsed header, metadata and tensor directory over a memory map.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    alignment: u64,
    data_start: u64,
    metadata: Vec<(String, Value)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// A bounds-checked little-endian cursor over the mapped bytes.
struct Cursor<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::format(self.path, format!("{msg} (at byte {})", self.pos))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "truncated file: {what} needs {n} bytes but only {} remain",
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self
            .take(N, what)?
            .try_into()
            .expect("take returned N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count that must be satisfiable with at least `min_each` bytes per item.
    fn count(&mut self, what: &str, min_each: usize) -> Result<usize> {
        let n = self.u64(what)?;
        let need = (n as u128) * (min_each as u128);
        if need > self.remaining() as u128 {
            return Err(self.err(format!(
                "{what} is {n}, impossible with {} bytes left (truncated or corrupt file)",
                self.remaining()
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.count(&format!("length of {what}"), 1)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err(format!("{what} is not UTF-8")))
    }

    fn value(&mut self, type_id: u32, key: &str, depth: usize) -> Result<Value> {
        let what = &format!("value of {key}");
        Ok(match type_id {
            0 => Value::U8(self.array::<1>(what)?[0]),
            1 => Value::I8(self.array::<1>(what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("{key}: bool byte is {b}, expected 0 or 1"))),
            },
            8 => Value::String(self.string(what)?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err(self.err(format!("{key}: arrays nested deeper than {MAX_NESTING}")));
                }
                let elem_type = self.u32(&format!("element type of {key}"))?;
                let min_each = min_value_size(elem_type).ok_or_else(|| {
                    self.err(format!("{key}: unknown array element type {elem_type}"))
                })?;
                let n = self.count(&format!("length of array {key}"), min_each)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem_type, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            t => return Err(self.err(format!("{key}: unknown metadata value type {t}"))),
        })
    }
}

/// The fewest bytes a value of this GGUF type can occupy; None for an unknown type.
fn min_value_size(type_id: u32) -> Option<usize> {
    Some(match type_id {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        8 => 8,     // length prefix of an empty string
        9 => 4 + 8, // element type + length of an empty array
        _ => return None,
    })
}

impl GgufFile {
    /// Maps and parses `path`. Tensor data is only bounds-checked here; it is decoded on request.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; a file changed underneath us while mapped could give
        // garbage values, which every reader of a mapped file accepts, but not memory unsafety
        // on the platforms we target.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::parse(path.to_path_buf(), mmap)
    }

    fn parse(path: PathBuf, mmap: Mmap) -> Result<Self> {
        let mut c = Cursor {
            path: &path,
            buf: &mmap,
            pos: 0,
        };
        let magic = c.array::<4>("magic")?;
        if &magic != MAGIC {
            return Err(Error::format(
                &path,
                format!("not a GGUF file: magic is {magic:02x?}, expected \"GGUF\""),
            ));
        }
        let version = c.u32("version")?;
        match version {
            2 | 3 => {}
            1 => return Err(Error::format(
                &path,
                "GGUF version 1 is not supported (only versions 2 and 3); re-convert the model \
                     with a current llama.cpp",
            )),
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(Error::format(
                    &path,
                    "big-endian GGUF is not supported (only little-endian versions 2 and 3)",
                ))
            }
            v => {
                return Err(Error::format(
                    &path,
                    format!("unsupported GGUF version {v} (only versions 2 and 3)"),
                ))
            }
        }
        // Minimum encoded sizes: a tensor info is name length + n_dims + type + offset; a
        // key/value is key length + type + one byte of value.
        let n_tensors = c.count("tensor count", 8 + 4 + 4 + 8)?;
        let n_kv = c.count("metadata key/value count", 8 + 4 + 1)?;

        let mut metadata = Vec::with_capacity(n_kv);
        let mut meta_index = HashMap::with_capacity(n_kv);
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key #{i}"))?;
            let type_id = c.u32(&format!("value type of {key}"))?;
            let value = c.value(type_id, &key, 0)?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(c.err(format!("duplicate metadata key {key}")));
            }
            metadata.push((key, value));
        }

        let alignment = match meta_index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
            Some(v) => {
                return Err(Error::format(
                    &path,
                    format!("general.alignment is {v:?}, expected a u32 power of two"),
                ))
            }
        };

        let mut tensors = Vec::with_capacity(n_tensors);
        let mut tensor_index = HashMap::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let name = c.string(&format!("name of tensor #{i}"))?;
            let n_dims = c.u32(&format!("dimension count of tensor {name}"))?;
            if n_dims > MAX_DIMS {
                return Err(c.err(format!(
                    "tensor {name} has {n_dims} dimensions, at most {MAX_DIMS} allowed"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(c.u64(&format!("dimension {d} of tensor {name}"))?);
            }
            let type_id = c.u32(&format!("type of tensor {name}"))?;
            let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
                c.err(format!("tensor {name} has unknown ggml type id {type_id}"))
            })?;
            let offset = c.u64(&format!("data offset of tensor {name}"))?;
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| c.err(format!("tensor {name}: element count {dims:?} overflows")))?;
            let (block, block_bytes) = ggml_type.block_geometry();
            let ne0 = dims.first().copied().unwrap_or(1);
            if ne0 % block as u64 != 0 {
                return Err(c.err(format!(
                    "tensor {name}: first dimension {ne0} is not a multiple of the {ggml_type} \
                     block size {block}"
                )));
            }
            let n_bytes = (n_elements / block as u64)
                .checked_mul(block_bytes as u64)
                .ok_or_else(|| c.err(format!("tensor {name}: byte size overflows")))?;
            if offset % alignment != 0 {
                return Err(c.err(format!(
                    "tensor {name}: data offset {offset} is not a multiple of the alignment \
                     {alignment}"
                )));
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(c.err(format!("duplicate tensor name {name}")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                n_elements,
                n_bytes,
            });
        }

        let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
        let file_len = mmap.len() as u64;
        for t in &tensors {
            let end = data_start
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.n_bytes));
            match end {
                Some(end) if end <= file_len => {}
                _ => {
                    return Err(Error::format(
                        &path,
                        format!(
                            "truncated tensor data: tensor {} ({} bytes at offset {} after data \
                             start {data_start}) ends past the end of the {file_len}-byte file",
                            t.name, t.n_bytes, t.offset
                        ),
                    ))
                }
            }
        }

        Ok(GgufFile {
            path,
            mmap,
            version,
            alignment,
            data_start,
            metadata,
            meta_index,
            tensors,
            tensor_index,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// All key/value pairs in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn wrong_type(&self, key: &str, v: &Value, expected: &str) -> Error {
        Error::format(
            &self.path,
            format!("metadata {key} is a {}, expected {expected}", v.type_name()),
        )
    }

    fn missing(&self, key: &str) -> Error {
        Error::format(&self.path, format!("missing metadata key {key}"))
    }

    /// An unsigned integer of any stored width; absent → None, wrong type or negative → error.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        v.as_i128()
            .and_then(|i| u64::try_from(i).ok())
            .map(Some)
            .ok_or_else(|| self.wrong_type(key, v, "a non-negative integer"))
    }

    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        v.as_f64()
            .map(Some)
            .ok_or_else(|| self.wrong_type(key, v, "a number"))
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        v.as_bool()
            .map(Some)
            .ok_or_else(|| self.wrong_type(key, v, "a bool"))
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        v.as_str()
            .map(Some)
            .ok_or_else(|| self.wrong_type(key, v, "a string"))
    }

    /// An array whose elements are all strings.
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let items = v
            .as_array()
            .ok_or_else(|| self.wrong_type(key, v, "an array of strings"))?;
        items
            .iter()
            .map(|e| {
                e.as_str()
                    .ok_or_else(|| self.wrong_type(key, e, "a string element"))
            })
            .collect::<Result<_>>()
            .map(Some)
    }

    /// An array whose elements are all integers.
    pub fn get_int_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let items = v
            .as_array()
            .ok_or_else(|| self.wrong_type(key, v, "an array of integers"))?;
        items
            .iter()
            .map(|e| {
                e.as_i128()
                    .and_then(|i| i64::try_from(i).ok())
                    .ok_or_else(|| self.wrong_type(key, e, "an integer element"))
            })
            .collect::<Result<_>>()
            .map(Some)
    }

    pub fn require_u64(&self, key: &str) -> Result<u64> {
        self.get_u64(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn require_f64(&self, key: &str) -> Result<f64> {
        self.get_f64(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn require_str(&self, key: &str) -> Result<&str> {
        self.get_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// All tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw encoded bytes of a tensor (bounds were checked at open).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.data_start + info.offset) as usize;
        &self.mmap[start..start + info.n_bytes as usize]
    }

    /// A tensor decoded to f32, in ggml element order (row-major over the reversed dims).
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self
            .tensor(name)
            .ok_or_else(|| Error::tensor(name, format!("not found in {}", self.path.display())))?;
        dequant::dequantize(
            info.ggml_type,
            self.tensor_bytes(info),
            info.n_elements as usize,
        )
        .map_err(|msg| Error::tensor(name, format!("{msg} (in {})", self.path.display())))
    }
}
