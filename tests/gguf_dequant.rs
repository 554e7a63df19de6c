//! Dequantization known answers: each type in the fixture sits next to gguf-py's own decoding of
//! the same bytes, which must be reproduced bit for bit.

use std::path::Path;

use zo::io::gguf::{GgmlType, GgufFile};

#[test]
fn every_supported_type_matches_the_python_reference() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/dequant.gguf");
    let g = GgufFile::open(&path).unwrap();
    let cases = [
        ("f32", GgmlType::F32),
        ("f16", GgmlType::F16),
        ("bf16", GgmlType::BF16),
        ("q4_0", GgmlType::Q4_0),
        ("q4_1", GgmlType::Q4_1),
        ("q5_0", GgmlType::Q5_0),
        ("q5_1", GgmlType::Q5_1),
        ("q8_0", GgmlType::Q8_0),
        ("q2_k", GgmlType::Q2_K),
        ("q3_k", GgmlType::Q3_K),
        ("q4_k", GgmlType::Q4_K),
        ("q5_k", GgmlType::Q5_K),
        ("q6_k", GgmlType::Q6_K),
    ];
    for (name, ty) in cases {
        let info = g.tensor(name).unwrap();
        assert_eq!(info.ggml_type, ty, "{name}");
        assert_eq!(info.dims, vec![512, 2], "{name}");
        let got = g.tensor_f32(name).unwrap();
        let want = g.tensor_f32(&format!("{name}.expected")).unwrap();
        assert_eq!(got.len(), 1024, "{name}");
        assert!(want.iter().any(|&v| v != 0.0), "{name}: degenerate fixture");
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{name}[{i}]: got {a}, python {b}");
        }
    }
}

#[test]
fn large_tensors_decode_the_same_in_parallel_chunks() {
    // More blocks than one rayon task takes: the chunked decode must equal block-by-block.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/dequant.gguf");
    let g = GgufFile::open(&path).unwrap();
    let info = g.tensor("q6_k").unwrap();
    let block = g.tensor_bytes(info)[..210].to_vec();
    let many: Vec<u8> = block.iter().copied().cycle().take(210 * 3001).collect();
    let all = zo::io::gguf::dequant::dequantize(GgmlType::Q6_K, &many, 256 * 3001).unwrap();
    let one = zo::io::gguf::dequant::dequantize(GgmlType::Q6_K, &block, 256).unwrap();
    for (i, chunk) in all.chunks(256).enumerate() {
        assert_eq!(chunk, one.as_slice(), "block {i}");
    }
}
