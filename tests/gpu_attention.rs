//! The attention kernels on the GPU against their CPU twins: RoPE and the KV write bit for
//! bit, paged prefill attention under the tolerance rule of tests/common/attention.rs
//! (max |out − ref64| ≤ 2·max |naive_T − ref64| + 1e-6 over a batch), for every storage dtype, GQA
//! ratios 1, 3, 8 and 40, head dims 64, 80, 128 and 256, shared prompt pages, sequences
//! crossing pages, and a prefix with +, − and base sequences.
//!
//! Needs a GPU and a build with kernels; elsewhere it prints `skipping: <reason>` and passes,
//! unless ZO_REQUIRE_GPU=1, which turns the skip into a failure.
#![cfg(feature = "cuda")]

#[path = "common/attention.rs"]
mod attn;

use attn::{assert_bits, cases, Case, Store};
use cudarc::driver::CudaSlice;
use zo::backend::cuda::{
    CudaDevice, DType, DevicePrefix, PrefillAttention, QkvLayout, SeqTables, ZoSegment,
};

fn device() -> Option<CudaDevice> {
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e) if std::env::var("ZO_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("ZO_REQUIRE_GPU=1 but no usable GPU: {e}")
        }
        Err(e) => {
            eprintln!("skipping: gpu_attention: {e}");
            None
        }
    }
}

const DTYPES: [DType; 3] = [DType::F32, DType::Bf16, DType::F16];

fn store(dtype: DType) -> Store {
    match dtype {
        DType::F32 => Store::F32,
        DType::Bf16 => Store::Bf16,
        DType::F16 => Store::F16,
    }
}

/// Extra output columns past the heads, to check that only the heads' columns are written.
const OUT_PAD: usize = 8;
const SENTINEL: f32 = -12345.0;

fn widen(dtype: DType, raw: &[u16]) -> Vec<f32> {
    match dtype {
        DType::Bf16 => raw
            .iter()
            .map(|&b| half::bf16::from_bits(b).to_f32())
            .collect(),
        DType::F16 => raw
            .iter()
            .map(|&b| half::f16::from_bits(b).to_f32())
            .collect(),
        DType::F32 => unreachable!("f32 outputs are read as f32"),
    }
}

fn narrow(dtype: DType, x: &[f32]) -> Vec<u16> {
    match dtype {
        DType::Bf16 => x
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_bits())
            .collect(),
        DType::F16 => x
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect(),
        DType::F32 => unreachable!(),
    }
}

/// Device copies of a case's inputs.
struct Dev {
    qkv: CudaSlice<f32>,
    cos: Option<(CudaSlice<f32>, CudaSlice<f32>)>,
    slots: CudaSlice<u32>,
    k_cache: CudaSlice<f32>,
    v_cache: CudaSlice<f32>,
    cu: CudaSlice<u32>,
    ctx: CudaSlice<u32>,
    tables: CudaSlice<u32>,
    prefix: Option<(CudaSlice<f32>, CudaSlice<f32>)>,
    segments: Option<CudaSlice<ZoSegment>>,
}

fn upload(dev: &CudaDevice, c: &Case) -> Dev {
    let s = dev.stream();
    let segs: Vec<ZoSegment> = c.segments.iter().map(ZoSegment::from).collect();
    Dev {
        qkv: s.clone_htod(&c.qkv).unwrap(),
        cos: c
            .spec
            .rope
            .then(|| (s.clone_htod(&c.cos).unwrap(), s.clone_htod(&c.sin).unwrap())),
        slots: s.clone_htod(&c.slots).unwrap(),
        k_cache: s.clone_htod(&c.k_cache).unwrap(),
        v_cache: s.clone_htod(&c.v_cache).unwrap(),
        cu: s.clone_htod(&c.cu_seqlens).unwrap(),
        ctx: s.clone_htod(&c.ctx_lens).unwrap(),
        tables: s.clone_htod(&c.block_tables).unwrap(),
        prefix: (c.spec.prefix > 0).then(|| {
            (
                s.clone_htod(&c.prefix_k).unwrap(),
                s.clone_htod(&c.prefix_v).unwrap(),
            )
        }),
        segments: (!segs.is_empty()).then(|| s.clone_htod(&segs).unwrap()),
    }
}

/// RoPE then the KV write, checked bit for bit against the CPU.
fn rope_and_write(dev: &CudaDevice, c: &Case, d: &mut Dev) {
    let s = dev.stream();
    if let Some((cos, sin)) = &d.cos {
        dev.rope_in_place(&mut d.qkv, &c.layout, cos, sin).unwrap();
    }
    dev.kv_write(&d.qkv, &c.layout, &d.slots, &mut d.k_cache, &mut d.v_cache)
        .unwrap();
    let name = c.spec.name;
    assert_bits(
        &format!("{name}: qkv after rope"),
        &s.clone_dtoh(&d.qkv).unwrap(),
        &c.qkv_roped,
    );
    assert_bits(
        &format!("{name}: K cache"),
        &s.clone_dtoh(&d.k_cache).unwrap(),
        &c.k_cache_after,
    );
    assert_bits(
        &format!("{name}: V cache"),
        &s.clone_dtoh(&d.v_cache).unwrap(),
        &c.v_cache_after,
    );
}

fn args<'a>(c: &Case, d: &'a Dev) -> PrefillAttention<'a> {
    PrefillAttention {
        qkv: &d.qkv,
        layout: c.layout,
        k_cache: &d.k_cache,
        v_cache: &d.v_cache,
        seqs: SeqTables {
            cu_seqlens: &d.cu,
            ctx_lens: &d.ctx,
            block_tables: &d.tables,
            max_pages: c.max_pages,
            max_seqlen: c.max_seqlen,
        },
        prefix: d.prefix.as_ref().map(|(k, v)| DevicePrefix {
            k,
            v,
            tokens: c.spec.prefix,
            layer: c.layer,
            dist: c.spec.dist,
            segments: d.segments.as_ref(),
        }),
        scale: c.scale,
    }
}

/// Runs the prefill kernel into a padded `[T][heads·hd + OUT_PAD]` buffer of `dtype` and
/// returns the heads' columns widened to f32.
fn attend(dev: &CudaDevice, c: &Case, d: &Dev, dtype: DType) -> Vec<f32> {
    let s = dev.stream();
    let ld = c.spec.heads * c.spec.head_dim + OUT_PAD;
    let init = vec![SENTINEL; c.layout.rows * ld];
    let a = args(c, d);
    let out = match dtype {
        DType::F32 => {
            let mut out = s.clone_htod(&init).unwrap();
            dev.attention_prefill(&a, &mut out, ld, dtype).unwrap();
            s.clone_dtoh(&out).unwrap()
        }
        _ => {
            let mut out = s.clone_htod(&narrow(dtype, &init)).unwrap();
            dev.attention_prefill(&a, &mut out, ld, dtype).unwrap();
            widen(dtype, &s.clone_dtoh(&out).unwrap())
        }
    };
    c.unpack_output(&out, ld, dtype.round(SENTINEL), &format!("gpu {dtype}"))
}

#[test]
fn gpu_attention_matches_cpu() {
    let Some(dev) = device() else { return };
    println!("device: {}", dev.describe().unwrap());
    for spec in cases(false) {
        let c = spec.build();
        let mut d = upload(&dev, &c);
        rope_and_write(&dev, &c, &mut d);
        for dtype in DTYPES {
            let out = attend(&dev, &c, &d, dtype);
            let worst = c.check_output(&out, store(dtype), "gpu");
            println!("{} {dtype}: max |out − ref64| = {worst:.3e}", c.spec.name);
        }
    }
}

/// Same batch, run twice: the kernel is deterministic (no atomics, fixed reduction order).
#[test]
fn gpu_attention_is_deterministic() {
    let Some(dev) = device() else { return };
    let c = cases(false).swap_remove(3).build();
    let mut d = upload(&dev, &c);
    rope_and_write(&dev, &c, &mut d);
    let a = attend(&dev, &c, &d, DType::F32);
    let b = attend(&dev, &c, &d, DType::F32);
    assert_bits("rerun", &a, &b);
}

#[test]
fn gpu_wrappers_refuse_bad_shapes() {
    let Some(dev) = device() else { return };
    let c = cases(false).swap_remove(0).build();
    let mut d = upload(&dev, &c);
    let s = dev.stream();
    // A layout claiming one more row than the buffer holds.
    let long = QkvLayout {
        rows: c.layout.rows + 1,
        ..c.layout
    };
    let (cos, sin) = d.cos.as_ref().unwrap();
    assert!(dev.rope_in_place(&mut d.qkv, &long, cos, sin).is_err());
    assert!(dev
        .kv_write(&d.qkv, &long, &d.slots, &mut d.k_cache, &mut d.v_cache)
        .is_err());
    let mut out = s.alloc_zeros::<u16>(c.layout.rows * c.layout.ld).unwrap();
    let a = args(&c, &d);
    // f32 output into a 2-byte buffer, and an output stride narrower than the heads.
    assert!(dev
        .attention_prefill(&a, &mut out, c.layout.ld, DType::F32)
        .is_err());
    assert!(dev.attention_prefill(&a, &mut out, 8, DType::Bf16).is_err());
}

/// The fixtures themselves (runs without a GPU): the fp32 twin and the f64 reference agree,
/// and neither read a NaN-poisoned cache slot.
#[test]
fn references_agree() {
    for small in [false, true] {
        for spec in cases(small) {
            let c = spec.build();
            for (i, (&n, &r)) in c.naive.iter().zip(&c.ref64).enumerate() {
                assert!(
                    (n as f64 - r).abs() < 1e-5,
                    "{}: element {i}: naive {n} ref64 {r}",
                    c.spec.name
                );
            }
        }
    }
}
