//! The attention launchers (csrc/attention.cu) on every device against their CPU twins: RoPE
//! and the KV write bit for bit, paged prefill attention under the tolerance rule of
//! tests/common/attention.rs (max |out − ref64| ≤ 2·max |naive_T − ref64| + 1e-6 over a batch),
//! for every storage dtype, GQA ratios 1, 3, 8 and 40, head dims 64, 80, 128 and 256, shared
//! prompt pages (copied partial pages, and own tokens on fresh pages through `own_starts`),
//! sequences crossing pages, and a prefix with +, − and base sequences.
//!
//! Emulation runs every CUDA thread as a fiber, so it gets the small version of each batch
//! (same structure); a GPU gets the full-size one.
#![cfg(feature = "cuda")]

#[path = "common/attention.rs"]
mod attn;
#[path = "common/devices.rs"]
mod devices;

use attn::{assert_bits, cases, Case, DTYPES};
use devices::devices;
use zo::backend::cuda::kernels::attention::{
    attention_prefill, kv_write, rope_in_place, DevicePrefix, PrefillAttention, QkvLayout,
    SeqTables,
};
use zo::backend::cuda::{CudaDevice, DBuf, DType};

/// Extra output columns past the heads, to check that only the heads' columns are written.
const OUT_PAD: usize = 8;
const SENTINEL: f32 = -12345.0;

/// Device copies of a case's inputs.
struct Dev {
    qkv: DBuf,
    cos: Option<(DBuf, DBuf)>,
    slots: DBuf,
    k_cache: DBuf,
    v_cache: DBuf,
    cu: DBuf,
    ctx: DBuf,
    own_starts: Option<DBuf>,
    tables: DBuf,
    prefix: Option<(DBuf, DBuf)>,
    /// ZoSegment records as 32-bit words.
    segments: Option<DBuf>,
}

fn f32s(dev: &CudaDevice, host: &[f32]) -> DBuf {
    DBuf::from_f32(dev, DType::F32, host).unwrap()
}

fn words(dev: &CudaDevice, host: &[u32]) -> DBuf {
    DBuf::from_words(dev, host).unwrap()
}

fn upload(dev: &CudaDevice, c: &Case) -> Dev {
    let segs = zo::backend::params::segment_words(&c.segments);
    Dev {
        qkv: f32s(dev, &c.qkv),
        cos: c.spec.rope.then(|| (f32s(dev, &c.cos), f32s(dev, &c.sin))),
        slots: words(dev, &c.slots),
        k_cache: f32s(dev, &c.k_cache),
        v_cache: f32s(dev, &c.v_cache),
        cu: words(dev, &c.cu_seqlens),
        ctx: words(dev, &c.ctx_lens),
        own_starts: c.own_starts.as_ref().map(|o| words(dev, o)),
        tables: words(dev, &c.block_tables),
        prefix: (c.spec.prefix > 0).then(|| (f32s(dev, &c.prefix_k), f32s(dev, &c.prefix_v))),
        segments: (c.spec.prefix > 0 && !segs.is_empty()).then(|| words(dev, &segs)),
    }
}

/// RoPE then the KV write, checked bit for bit against the CPU.
fn rope_and_write(dev: &CudaDevice, name: &str, c: &Case, d: &Dev) {
    if let Some((cos, sin)) = &d.cos {
        rope_in_place(dev, d.qkv.view(), &c.layout, cos.view(), sin.view()).unwrap();
    }
    kv_write(
        dev,
        d.qkv.view(),
        &c.layout,
        d.slots.view(),
        d.k_cache.view(),
        d.v_cache.view(),
    )
    .unwrap();
    let case = c.spec.name;
    assert_bits(
        &format!("{name} {case}: qkv after rope"),
        &d.qkv.to_f32(dev).unwrap(),
        &c.qkv_roped,
    );
    assert_bits(
        &format!("{name} {case}: K cache"),
        &d.k_cache.to_f32(dev).unwrap(),
        &c.k_cache_after,
    );
    assert_bits(
        &format!("{name} {case}: V cache"),
        &d.v_cache.to_f32(dev).unwrap(),
        &c.v_cache_after,
    );
}

fn args<'a>(c: &Case, d: &'a Dev) -> PrefillAttention<'a> {
    PrefillAttention {
        qkv: d.qkv.view(),
        layout: c.layout,
        k_cache: d.k_cache.view(),
        v_cache: d.v_cache.view(),
        seqs: SeqTables {
            cu_seqlens: d.cu.view(),
            ctx_lens: d.ctx.view(),
            own_starts: d.own_starts.as_ref().map(DBuf::view),
            block_tables: d.tables.view(),
            max_pages: c.max_pages,
            max_seqlen: c.max_seqlen,
        },
        prefix: d.prefix.as_ref().map(|(k, v)| DevicePrefix {
            k: k.view(),
            v: v.view(),
            tokens: c.spec.prefix,
            layer: c.layer,
            dist: c.spec.dist,
            segments: d.segments.as_ref().map(DBuf::view),
        }),
        scale: c.scale,
    }
}

/// Runs the prefill kernel into a padded `[T][heads·hd + OUT_PAD]` buffer of `dtype` and
/// returns the heads' columns widened to f32.
fn attend(dev: &CudaDevice, name: &str, c: &Case, d: &Dev, dtype: DType) -> Vec<f32> {
    let ld = c.spec.heads * c.spec.head_dim + OUT_PAD;
    let out = DBuf::from_f32(dev, dtype, &vec![SENTINEL; c.layout.rows * ld]).unwrap();
    attention_prefill(dev, &args(c, d), out.view(), ld).unwrap();
    c.unpack_output(
        &out.to_f32(dev).unwrap(),
        ld,
        dtype.round(SENTINEL),
        &format!("{name} {dtype}"),
    )
}

fn run_case(test: &str, index: usize) {
    for (name, dev) in devices(test) {
        let c = cases(false).swap_remove(index).build();
        let d = upload(&dev, &c);
        rope_and_write(&dev, name, &c, &d);
        for dtype in DTYPES {
            let out = attend(&dev, name, &c, &d, dtype);
            let worst = c.check_output(&out, dtype, name);
            println!(
                "{name} {} {dtype}: max |out − ref64| = {worst:.3e}",
                c.spec.name
            );
        }
    }
}

#[test]
fn llama_hd128_gqa8_no_context() {
    run_case("llama_hd128_gqa8_no_context", 0);
}

#[test]
fn opt_hd64_gqa1_peaky() {
    run_case("opt_hd64_gqa1_peaky", 1);
}

#[test]
fn hd80_gqa3_shared_prompt() {
    run_case("hd80_gqa3_shared_prompt", 2);
}

#[test]
fn prefix_gaussian_plus_minus_base() {
    run_case("prefix_gaussian_plus_minus_base", 3);
}

#[test]
fn prefix_rademacher_opt() {
    run_case("prefix_rademacher_opt", 4);
}

#[test]
fn hd256_context() {
    run_case("hd256_context", 5);
}

#[test]
fn mqa_two_head_chunks() {
    run_case("mqa_two_head_chunks", 6);
}

#[test]
fn many_sequences() {
    run_case("many_sequences", 7);
}

#[test]
fn fresh_pages_after_a_partial_prompt_page() {
    run_case("fresh_pages_after_a_partial_prompt_page", 8);
}

#[test]
fn prefix_with_children_on_fresh_pages() {
    run_case("prefix_with_children_on_fresh_pages", 9);
}

#[test]
fn every_case_has_a_test() {
    assert_eq!(cases(true).len(), 10);
    assert_eq!(cases(false).len(), 10);
}

/// Same batch, run twice: the kernel is deterministic (no atomics, fixed reduction order).
#[test]
fn attention_is_deterministic() {
    for (name, dev) in devices("attention_is_deterministic") {
        let c = cases(false).swap_remove(3).build();
        let d = upload(&dev, &c);
        rope_and_write(&dev, name, &c, &d);
        let a = attend(&dev, name, &c, &d, DType::F32);
        let b = attend(&dev, name, &c, &d, DType::F32);
        assert_bits(&format!("{name}: rerun"), &a, &b);
    }
}

#[test]
fn launchers_refuse_bad_shapes() {
    for (name, dev) in devices("launchers_refuse_bad_shapes") {
        let c = cases(true).swap_remove(0).build();
        let d = upload(&dev, &c);
        // A layout claiming one more row than the buffer holds.
        let long = QkvLayout {
            rows: c.layout.rows + 1,
            ..c.layout
        };
        let (cos, sin) = d.cos.as_ref().unwrap();
        let (qkv, slots) = (d.qkv.view(), d.slots.view());
        let (kc, vc) = (d.k_cache.view(), d.v_cache.view());
        assert!(
            rope_in_place(&dev, qkv, &long, cos.view(), sin.view()).is_err(),
            "{name}: rope past the rows"
        );
        assert!(
            kv_write(&dev, qkv, &long, slots, kc, vc).is_err(),
            "{name}: kv write past the rows"
        );
        let a = args(&c, &d);
        let qw = c.layout.heads * c.layout.head_dim;
        // An output stride narrower than the heads, and an output one element short.
        let out = DBuf::zeros(&dev, DType::Bf16, c.layout.rows * c.layout.ld).unwrap();
        assert!(
            attention_prefill(&dev, &a, out.view(), 8).is_err(),
            "{name}: narrow output stride"
        );
        let short = out.slice(0..(c.layout.rows - 1) * qw + qw - 1);
        assert!(
            attention_prefill(&dev, &a, short, qw).is_err(),
            "{name}: short output"
        );
        // An own-start table one entry short.
        let short_starts = DBuf::from_words(&dev, &c.ctx_lens[1..]).unwrap();
        let a_starts = PrefillAttention {
            seqs: SeqTables {
                own_starts: Some(short_starts.view()),
                ..a.seqs
            },
            ..a
        };
        assert!(
            attention_prefill(&dev, &a_starts, out.view(), qw).is_err(),
            "{name}: own starts one short"
        );
        // The fp32 operands in a 2-byte buffer.
        let half = DBuf::zeros(&dev, DType::Bf16, c.qkv.len()).unwrap();
        assert!(
            rope_in_place(&dev, half.view(), &c.layout, cos.view(), sin.view()).is_err(),
            "{name}: rope of a bf16 qkv"
        );
        assert!(
            kv_write(&dev, half.view(), &c.layout, slots, kc, vc).is_err(),
            "{name}: kv write of a bf16 qkv"
        );
        let a16 = PrefillAttention {
            qkv: half.view(),
            ..a
        };
        assert!(
            attention_prefill(&dev, &a16, out.view(), qw).is_err(),
            "{name}: attention of a bf16 q"
        );
        // Nothing above reached a kernel.
        assert_bits(
            &format!("{name}: qkv untouched"),
            &d.qkv.to_f32(&dev).unwrap(),
            &c.qkv,
        );
    }
}

/// The fixtures themselves (no device): the fp32 twin and the f64 reference agree, and
/// neither read a NaN-poisoned cache slot.
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
