//! TensorStore: single files, sharded checkpoints, dtype conversion and every bad input.

mod load_util;

use load_util::*;
use safetensors::Dtype;
use std::path::Path;
use zo::io::safetensors::TensorStore;
use zo::Error;

fn open_err(path: &Path) -> Error {
    TensorStore::open(path).expect_err("open should fail")
}

fn three_dtypes() -> Vec<Raw> {
    vec![
        Raw::float("a.f32", &[3, 5], Dtype::F32),
        Raw::float("b.f16", &[7], Dtype::F16),
        Raw::float("c.bf16", &[2, 2, 3], Dtype::BF16),
    ]
}

#[test]
fn single_file_in_a_directory_converts_each_dtype() {
    let dir = tempfile::tempdir().unwrap();
    write_safetensors(&dir.path().join("model.safetensors"), &three_dtypes());
    let st = TensorStore::open(dir.path()).unwrap();
    assert_eq!(st.names(), vec!["a.f32", "b.f16", "c.bf16"]);
    assert!(st.contains("b.f16") && !st.contains("b"));
    assert_eq!(st.shape("c.bf16"), Some(&[2usize, 2, 3][..]));
    assert_eq!(st.dtype("b.f16"), Some(Dtype::F16));
    assert_eq!(st.shape("nope"), None);
    assert_eq!(
        st.file_of("a.f32").unwrap(),
        dir.path().join("model.safetensors")
    );
    for (name, shape, dtype) in [
        ("a.f32", vec![3, 5], Dtype::F32),
        ("b.f16", vec![7], Dtype::F16),
        ("c.bf16", vec![2, 2, 3], Dtype::BF16),
    ] {
        let n = shape.iter().product();
        let got = st.get_f32(name, &shape).unwrap();
        assert_bits_eq(&got, &rounded(dtype, &values(name, n)));
    }
    // The rounding is real: f16/bf16 values differ from the f32 originals.
    assert_ne!(st.get_f32("b.f16", &[7]).unwrap(), values("b.f16", 7));
}

#[test]
fn a_file_path_opens_directly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    write_safetensors(&path, &three_dtypes());
    let st = TensorStore::open(&path).unwrap();
    assert_eq!(st.source(), path);
    assert_eq!(st.names().len(), 3);
}

#[test]
fn large_tensors_convert_in_parallel_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = vec![
        Raw::float("big.f16", &[301, 257], Dtype::F16),
        Raw::float("big.bf16", &[257, 301], Dtype::BF16),
        Raw::float("big.f32", &[100_003], Dtype::F32),
    ];
    write_safetensors(&dir.path().join("model.safetensors"), &tensors);
    let st = TensorStore::open(dir.path()).unwrap();
    let got = st.get_f32("big.f16", &[301, 257]).unwrap();
    assert_bits_eq(&got, &rounded(Dtype::F16, &values("big.f16", 301 * 257)));
    let got = st.get_f32("big.bf16", &[257, 301]).unwrap();
    assert_bits_eq(&got, &rounded(Dtype::BF16, &values("big.bf16", 301 * 257)));
    let got = st.get_f32("big.f32", &[100_003]).unwrap();
    assert_bits_eq(&got, &values("big.f32", 100_003));
}

#[test]
fn unaligned_tensor_offsets_are_read_correctly() {
    // Three f16 values (6 bytes) first put the f32 tensor at an odd-of-4 offset; the crate's
    // own writer never does that, so the file is assembled by hand.
    let a = encode(Dtype::F16, &[1.5, -2.0, 0.25]);
    let b = encode(Dtype::F32, &[3.0, -7.125]);
    let header = r#"{"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"f":{"dtype":"F32","shape":[2],"data_offsets":[6,14]}}"#;
    let mut header = header.as_bytes().to_vec();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(&header);
    file.extend(&a);
    file.extend(&b);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.safetensors"), file).unwrap();
    let st = TensorStore::open(dir.path()).unwrap();
    assert_eq!(st.get_f32("h", &[3]).unwrap(), vec![1.5, -2.0, 0.25]);
    assert_eq!(st.get_f32("f", &[2]).unwrap(), vec![3.0, -7.125]);
    assert_eq!(st.bytes("f").unwrap(), &b[..]);
}

#[test]
fn sharded_checkpoint_reads_every_shard() {
    let dir = tempfile::tempdir().unwrap();
    let shards = vec![
        vec![
            Raw::float("x.one", &[4], Dtype::F32),
            Raw::float("x.two", &[2, 3], Dtype::F16),
        ],
        vec![Raw::float("y.three", &[5], Dtype::BF16)],
    ];
    write_sharded(dir.path(), &shards);
    for st in [
        TensorStore::open(dir.path()).unwrap(),
        TensorStore::open(dir.path().join("model.safetensors.index.json")).unwrap(),
    ] {
        assert_eq!(st.names(), vec!["x.one", "x.two", "y.three"]);
        assert_eq!(
            st.file_of("y.three").unwrap(),
            dir.path().join("model-00002-of-00002.safetensors")
        );
        assert_bits_eq(&st.get_f32("x.one", &[4]).unwrap(), &values("x.one", 4));
        assert_bits_eq(
            &st.get_f32("y.three", &[5]).unwrap(),
            &rounded(Dtype::BF16, &values("y.three", 5)),
        );
    }
}

#[test]
fn single_file_wins_over_an_index() {
    let dir = tempfile::tempdir().unwrap();
    write_sharded(dir.path(), &[vec![Raw::float("sharded", &[2], Dtype::F32)]]);
    write_safetensors(
        &dir.path().join("model.safetensors"),
        &[Raw::float("single", &[2], Dtype::F32)],
    );
    assert_eq!(
        TensorStore::open(dir.path()).unwrap().names(),
        vec!["single"]
    );
}

#[test]
fn empty_directory_names_the_files_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let err = open_err(dir.path());
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("model.safetensors.index.json"), "{msg}");
    assert!(msg.contains("model.safetensors "), "{msg}");

    std::fs::write(dir.path().join("pytorch_model.bin"), b"pickle").unwrap();
    let msg = open_err(dir.path()).to_string();
    assert!(msg.contains("pytorch_model.bin"), "{msg}");
}

#[test]
fn nonexistent_path_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.safetensors");
    let msg = open_err(&path).to_string();
    assert!(msg.contains("missing.safetensors"), "{msg}");
}

#[test]
fn truncated_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let bytes = serialize(&three_dtypes());
    for cut in [bytes.len() - 3, 20, 5, 0] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = open_err(dir.path());
        assert!(matches!(err, Error::Format { .. }), "cut at {cut}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains("model.safetensors"), "{msg}");
        assert!(msg.contains("truncated"), "{msg}");
    }
}

#[test]
fn corrupt_header_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut bytes = serialize(&three_dtypes());
    bytes[8] = b'#'; // the header's opening brace
    std::fs::write(&path, &bytes).unwrap();
    let err = open_err(dir.path());
    assert!(matches!(err, Error::Format { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("JSON"),
        "{msg}"
    );

    // A header length pointing past the end of the file.
    let mut bytes = serialize(&three_dtypes());
    bytes[..8].copy_from_slice(&(1u64 << 20).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let msg = open_err(dir.path()).to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("header"),
        "{msg}"
    );
}

#[test]
fn missing_shard_names_the_shard_and_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let shards = vec![
        vec![Raw::float("p", &[2], Dtype::F32)],
        vec![Raw::float("q", &[2], Dtype::F32)],
    ];
    write_sharded(dir.path(), &shards);
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let msg = open_err(dir.path()).to_string();
    assert!(msg.contains("model-00002-of-00002.safetensors"), "{msg}");
    assert!(msg.contains("model.safetensors.index.json"), "{msg}");
}

#[test]
fn index_pointing_at_the_wrong_shard_names_both() {
    let dir = tempfile::tempdir().unwrap();
    write_sharded(dir.path(), &[vec![Raw::float("p", &[2], Dtype::F32)]]);
    let index = dir.path().join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index)
        .unwrap()
        .replace("\"p\"", "\"ghost\"");
    std::fs::write(&index, text).unwrap();
    let msg = open_err(dir.path()).to_string();
    assert!(
        msg.contains("ghost") && msg.contains("model-00001-of-00001.safetensors"),
        "{msg}"
    );
}

#[test]
fn malformed_index_names_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("model.safetensors.index.json");
    std::fs::write(&index, r#"{"metadata": {}}"#).unwrap();
    let msg = open_err(dir.path()).to_string();
    assert!(
        msg.contains("model.safetensors.index.json") && msg.contains("weight_map"),
        "{msg}"
    );
    std::fs::write(&index, "{oops").unwrap();
    let msg = open_err(dir.path()).to_string();
    assert!(
        msg.contains("model.safetensors.index.json") && msg.contains("JSON"),
        "{msg}"
    );
}

#[test]
fn missing_tensor_names_it_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_safetensors(&dir.path().join("model.safetensors"), &three_dtypes());
    let err = TensorStore::open(dir.path())
        .unwrap()
        .get_f32("model.norm.weight", &[8])
        .unwrap_err();
    assert!(matches!(err, Error::Tensor { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("model.norm.weight") && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_names_tensor_expected_and_found() {
    let dir = tempfile::tempdir().unwrap();
    write_safetensors(&dir.path().join("model.safetensors"), &three_dtypes());
    let st = TensorStore::open(dir.path()).unwrap();
    let msg = st.get_f32("a.f32", &[5, 3]).unwrap_err().to_string();
    assert!(msg.contains("a.f32"), "{msg}");
    assert!(msg.contains("[5, 3]") && msg.contains("[3, 5]"), "{msg}");
    // Same element count is not enough, and neither is a prefix of the shape.
    assert!(st.get_f32("a.f32", &[15]).is_err());
    assert!(st.get_f32("a.f32", &[3]).is_err());
}

#[test]
fn unsupported_dtype_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ints = Raw {
        name: "ids".into(),
        shape: vec![2],
        dtype: Dtype::I64,
        bytes: [5i64, 6].iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    write_safetensors(&dir.path().join("model.safetensors"), &[ints]);
    let st = TensorStore::open(dir.path()).unwrap();
    assert_eq!(st.dtype("ids"), Some(Dtype::I64));
    let msg = st.get_f32("ids", &[2]).unwrap_err().to_string();
    assert!(msg.contains("ids") && msg.contains("I64"), "{msg}");
}
