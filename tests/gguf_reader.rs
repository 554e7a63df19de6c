//! GGUF reader: metadata of every value type, tensor directory, v2, and every kind of bad input.

use std::path::{Path, PathBuf};

use zo::io::gguf::{GgmlType, GgufFile, Value};
use zo::Error;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// Writes `bytes` to a temp file and opens it; the error must be a Format error naming the file.
fn open_bad(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    std::fs::write(&path, bytes).unwrap();
    match GgufFile::open(&path) {
        Ok(_) => panic!("a malformed file opened without error"),
        Err(Error::Format { path: p, msg }) => {
            assert_eq!(p, path, "the error names the file");
            msg
        }
        Err(e) => panic!("expected a format error, got {e}"),
    }
}

/// Byte position just after the name of tensor `name` in its tensor-info record.
fn tensor_info_pos(bytes: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap_or_else(|| panic!("tensor info {name} not found"));
    at + needle.len()
}

#[test]
fn metadata_of_every_value_type() {
    let g = GgufFile::open(fixture("dequant.gguf")).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 32);
    assert_eq!(g.get("test.u8"), Some(&Value::U8(200)));
    assert_eq!(g.get("test.i8"), Some(&Value::I8(-100)));
    assert_eq!(g.get("test.u16"), Some(&Value::U16(60000)));
    assert_eq!(g.get("test.i16"), Some(&Value::I16(-30000)));
    assert_eq!(g.get("test.u32"), Some(&Value::U32(4_000_000_000)));
    assert_eq!(g.get("test.i32"), Some(&Value::I32(-2_000_000_000)));
    assert_eq!(g.get("test.u64"), Some(&Value::U64((1 << 63) + 5)));
    assert_eq!(g.get("test.i64"), Some(&Value::I64(-(1 << 62))));
    assert_eq!(g.get("test.f32"), Some(&Value::F32(0.25)));
    assert_eq!(g.get("test.f64"), Some(&Value::F64(-1.5e300)));
    assert_eq!(g.get("test.bool"), Some(&Value::Bool(true)));
    assert_eq!(g.get_str("test.string").unwrap(), Some("héllo"));
    assert_eq!(g.get_int_array("test.ints").unwrap(), Some(vec![1, 2, 3]));
    let nested = g.get("test.nested").unwrap().as_array().unwrap();
    let inner: Vec<Vec<&str>> = nested
        .iter()
        .map(|a| {
            a.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(inner, vec![vec!["a", "b"], vec!["c"]]);
    assert_eq!(g.get_str("general.architecture").unwrap(), Some("test"));

    // Typed getters convert widths but refuse the wrong kind, naming the key.
    assert_eq!(g.get_u64("test.u16").unwrap(), Some(60000));
    assert_eq!(g.get_f64("test.f32").unwrap(), Some(0.25));
    assert_eq!(g.get_u64("absent.key").unwrap(), None);
    let err = g.get_u64("test.i8").unwrap_err().to_string();
    assert!(
        err.contains("test.i8") && err.contains("non-negative integer"),
        "{err}"
    );
    let err = g.get_str("test.u8").unwrap_err().to_string();
    assert!(err.contains("test.u8") && err.contains("u8"), "{err}");
    let err = g.require_u64("absent.key").unwrap_err().to_string();
    assert!(err.contains("missing metadata key absent.key"), "{err}");
}

#[test]
fn tensor_directory_has_ggml_dims_and_types() {
    let g = GgufFile::open(fixture("tiny_llama.gguf")).unwrap();
    let q = g.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.dims, vec![32, 32]);
    assert_eq!(q.ggml_type, GgmlType::Q4_0);
    let k = g.tensor("blk.0.attn_k.weight").unwrap();
    // ne0 (the input dimension) comes first; the row-major shape is reversed.
    assert_eq!(k.dims, vec![32, 16]);
    assert_eq!(k.shape(), vec![16, 32]);
    assert_eq!(k.n_bytes, 16 * 20); // 16 rows of one Q4_1 block
    assert_eq!(
        g.tensor("blk.1.ffn_down.weight").unwrap().ggml_type,
        GgmlType::Q6_K
    );
    assert!(g.tensor("output.weight").is_none());
    let err = g.tensor_f32("no.such.tensor").unwrap_err().to_string();
    assert!(
        err.contains("no.such.tensor") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn version_2_reads_like_version_3() {
    // v2 and v3 share the layout (v3 only allows big-endian files, which we refuse).
    let mut bytes = read("tiny_llama.gguf");
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let v2 = GgufFile::open(&path).unwrap();
    let v3 = GgufFile::open(fixture("tiny_llama.gguf")).unwrap();
    assert_eq!(v2.version(), 2);
    assert_eq!(v2.metadata(), v3.metadata());
    assert_eq!(v2.tensors(), v3.tensors());
    assert_eq!(
        v2.tensor_f32("blk.0.attn_q.weight").unwrap(),
        v3.tensor_f32("blk.0.attn_q.weight").unwrap()
    );
}

#[test]
fn truncated_files_are_refused_at_every_stage() {
    let bytes = read("tiny_llama.gguf");
    let in_metadata = 200;
    let in_tensor_infos = tensor_info_pos(&bytes, "blk.0.attn_q.weight") - 4;
    let in_data = bytes.len() - 7;
    for cut in [0, 3, 6, 13, 20, 30, in_metadata, in_tensor_infos, in_data] {
        let msg = open_bad(&bytes[..cut]);
        assert!(msg.contains("truncated"), "cut at {cut}: {msg}");
    }
    // Tensor data cut short names the tensor whose bytes are missing.
    let msg = open_bad(&bytes[..in_data]);
    assert!(msg.contains("tensor blk.1.ffn_down.weight"), "{msg}");
}

#[test]
fn bad_magic_and_versions() {
    let bytes = read("tiny_llama.gguf");
    let mut b = bytes.clone();
    b[0..4].copy_from_slice(b"GGML");
    let msg = open_bad(&b);
    assert!(msg.contains("not a GGUF file"), "{msg}");

    let mut b = bytes.clone();
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    let msg = open_bad(&b);
    assert!(msg.contains("version 1 is not supported"), "{msg}");

    let mut b = bytes.clone();
    b[4..8].copy_from_slice(&7u32.to_le_bytes());
    let msg = open_bad(&b);
    assert!(msg.contains("unsupported GGUF version 7"), "{msg}");

    let mut b = bytes;
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    let msg = open_bad(&b);
    assert!(msg.contains("big-endian"), "{msg}");
}

#[test]
fn unknown_tensor_type_names_the_id_and_tensor() {
    let mut bytes = read("tiny_llama.gguf");
    // After the name: n_dims (u32), two u64 dims, then the type id.
    let type_at = tensor_info_pos(&bytes, "blk.0.attn_q.weight") + 4 + 16;
    assert_eq!(
        &bytes[type_at..type_at + 4],
        &2u32.to_le_bytes(),
        "Q4_0 id where expected"
    );
    bytes[type_at..type_at + 4].copy_from_slice(&99u32.to_le_bytes());
    let msg = open_bad(&bytes);
    assert!(
        msg.contains("blk.0.attn_q.weight") && msg.contains("unknown ggml type id 99"),
        "{msg}"
    );
}

#[test]
fn tensor_data_past_end_of_file() {
    let mut bytes = read("tiny_llama.gguf");
    let offset_at = tensor_info_pos(&bytes, "blk.1.attn_v.weight") + 4 + 16 + 4;
    let past = (bytes.len() as u64).div_ceil(32) * 32;
    bytes[offset_at..offset_at + 8].copy_from_slice(&past.to_le_bytes());
    let msg = open_bad(&bytes);
    assert!(
        msg.contains("tensor blk.1.attn_v.weight") && msg.contains("past the end"),
        "{msg}"
    );

    // A misaligned offset is corrupt too.
    let mut bytes = read("tiny_llama.gguf");
    bytes[offset_at..offset_at + 8].copy_from_slice(&3u64.to_le_bytes());
    let msg = open_bad(&bytes);
    assert!(msg.contains("not a multiple of the alignment"), "{msg}");
}

#[test]
fn absurd_counts_and_lengths_do_not_allocate() {
    let bytes = read("tiny_llama.gguf");
    // Tensor count, key/value count, first key's length.
    for (at, what) in [
        (8, "tensor count"),
        (16, "key/value count"),
        (24, "length of"),
    ] {
        let mut b = bytes.clone();
        b[at..at + 8].copy_from_slice(&(u64::MAX / 3).to_le_bytes());
        let msg = open_bad(&b);
        assert!(
            msg.contains(what) && msg.contains("truncated or corrupt"),
            "{msg}"
        );
    }
    // An array claiming 2^60 elements.
    let mut b = bytes.clone();
    let key = b"tokenizer.ggml.tokens";
    let at = b.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4 + 4;
    b[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let msg = open_bad(&b);
    assert!(
        msg.contains("length of array tokenizer.ggml.tokens"),
        "{msg}"
    );
    // Too many dimensions.
    let mut b = bytes;
    let at = tensor_info_pos(&b, "blk.0.attn_q.weight");
    b[at..at + 4].copy_from_slice(&9u32.to_le_bytes());
    let msg = open_bad(&b);
    assert!(msg.contains("9 dimensions"), "{msg}");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = GgufFile::open("does/not/exist.gguf").unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("does/not/exist.gguf"));
}
