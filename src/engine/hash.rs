//! Content hash of base weights, so a seed log is only ever replayed on the weights it was
//! trained from.
//!
//! sha256 over the model's tensors as loaded (f32), in the canonical order and with the HF
//! names of [`crate::model::save::hf_tensors`]: for each tensor its name, a NUL, its shape as
//! little-endian u64s (preceded by the rank), then its values as little-endian f32 bytes.
//! Hashing the loaded values rather than the files makes the hash independent of storage
//! dtype choices that load to the same f32 values and of file layout (sharding, order).

use sha2::{Digest, Sha256};

use crate::model::save::hf_tensors;
use crate::model::Model;

/// `sha256:<64 hex digits>`.
pub fn model_hash(model: &Model) -> String {
    let mut h = Sha256::new();
    h.update(b"zo-model-f32-v1\0");
    for (name, shape, values) in hf_tensors(model) {
        h.update(name.as_bytes());
        h.update([0u8]);
        h.update((shape.len() as u64).to_le_bytes());
        for d in &shape {
            h.update((*d as u64).to_le_bytes());
        }
        // Chunked so a large tensor is not copied whole.
        let mut buf = Vec::with_capacity(4096 * 4);
        for chunk in values.chunks(4096) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
            h.update(&buf);
        }
    }
    let digest = h.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// sha256 of tokenized examples (prompt, candidates, gold), in order: a resumed run must see
/// the same training data.
pub fn examples_hash(examples: &[crate::plan::TokenizedExample]) -> String {
    let mut h = Sha256::new();
    h.update(b"zo-examples-v1\0");
    let mut put = |v: &[u32]| {
        h.update((v.len() as u64).to_le_bytes());
        for t in v {
            h.update(t.to_le_bytes());
        }
    };
    for ex in examples {
        put(&ex.prompt);
        put(&[ex.candidates.len() as u32, ex.gold as u32]);
        for c in &ex.candidates {
            put(c);
        }
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
