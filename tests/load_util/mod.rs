//! Shared helpers for the loading tests: deterministic tensor values and safetensors writers.
#![allow(dead_code)]

use std::path::Path;

use half::{bf16, f16};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// Distinct, deterministic values per tensor name, so a tensor read under the wrong name or
/// with the wrong layout is caught.
pub fn values(name: &str, n: usize) -> Vec<f32> {
    // FNV-1a of the name seeds a xorshift stream.
    let mut s = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// The f32 values a reader must return for `x` stored as `dtype`.
pub fn rounded(dtype: Dtype, x: &[f32]) -> Vec<f32> {
    match dtype {
        Dtype::F32 => x.to_vec(),
        Dtype::F16 => x.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
        Dtype::BF16 => x.iter().map(|&v| bf16::from_f32(v).to_f32()).collect(),
        other => panic!("no rounding for {other:?}"),
    }
}

pub fn encode(dtype: Dtype, x: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => x
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::BF16 => x
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
        other => panic!("no encoding for {other:?}"),
    }
}

/// A tensor to write: name, shape, dtype, raw little-endian bytes.
pub struct Raw {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub bytes: Vec<u8>,
}

impl Raw {
    /// A float tensor filled with `values(name)`.
    pub fn float(name: &str, shape: &[usize], dtype: Dtype) -> Raw {
        let n = shape.iter().product();
        Raw {
            name: name.to_string(),
            shape: shape.to_vec(),
            dtype,
            bytes: encode(dtype, &values(name, n)),
        }
    }
}

pub fn serialize(tensors: &[Raw]) -> Vec<u8> {
    let views = tensors.iter().map(|t| {
        (
            t.name.clone(),
            TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap(),
        )
    });
    safetensors::serialize(views, None).unwrap()
}

pub fn write_safetensors(path: &Path, tensors: &[Raw]) {
    std::fs::write(path, serialize(tensors)).unwrap();
}

/// Writes `shards` as model-0000i-of-0000n.safetensors plus the index HF writes with them.
pub fn write_sharded(dir: &Path, shards: &[Vec<Raw>]) {
    let n = shards.len();
    let mut map = serde_json::Map::new();
    for (i, tensors) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        write_safetensors(&dir.join(&file), tensors);
        for t in tensors {
            map.insert(t.name.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&index).unwrap(),
    )
    .unwrap();
}

pub fn assert_bits_eq(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "element {i}: {g} vs {w}");
    }
}
