//! The storage type of weights and GEMM inputs: one `DType` for the whole crate (the GPU
//! backend, benches, the CLI and tests).

use crate::{Error, Result};

/// How weights (and the activations fed to GEMMs) are stored on a device. Arithmetic is fp32
/// whatever the storage: kernels widen on load and round once on store.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    #[default]
    Bf16,
    F16,
}

impl DType {
    /// The suffix of a kernel's extern "C" instance for this type (csrc/dtype.cuh).
    pub fn suffix(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::Bf16 => "bf16",
            DType::F16 => "f16",
        }
    }

    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::Bf16 | DType::F16 => 2,
        }
    }

    pub fn parse(s: &str) -> Result<DType> {
        match s {
            "f32" | "fp32" | "float32" => Ok(DType::F32),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            "f16" | "fp16" | "float16" => Ok(DType::F16),
            other => Err(Error::Config(format!(
                "unknown GPU dtype {other:?}; expected f32, bf16 or f16"
            ))),
        }
    }

    /// `x` rounded to this type and widened back (what the GPU sees of an f32 host value).
    pub fn round(self, x: f32) -> f32 {
        match self {
            DType::F32 => x,
            DType::Bf16 => half::bf16::from_f32(x).to_f32(),
            DType::F16 => half::f16::from_f32(x).to_f32(),
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::DType;

    #[test]
    fn parse_and_round() {
        assert_eq!(DType::parse("bf16").unwrap(), DType::Bf16);
        assert!(DType::parse("int8")
            .unwrap_err()
            .to_string()
            .contains("int8"));
        // 1 + 2^-9 is below bf16's resolution at 1 and ties to even (down); f16 keeps it.
        let x = 1.0 + 2f32.powi(-9);
        assert_eq!(DType::Bf16.round(x), 1.0);
        assert_eq!(DType::F16.round(x), x);
        assert_eq!(DType::F32.round(x), x);
    }
}
