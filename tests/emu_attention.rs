//! The attention kernels (csrc/attention.cu) run on the CPU through the emulation harness,
//! with the CUDA wrapper's launch geometry and parameters, against the CPU twins: RoPE and the
//! KV write bit for bit, prefill attention under the tolerance rule of
//! tests/common/attention.rs (max |out − ref64| ≤ 2·max |naive_T − ref64| + 1e-6 over a batch), on
//! smaller versions of the batches tests/gpu_attention.rs runs on a GPU.

#[path = "common/attention.rs"]
mod attn;

use attn::{assert_bits, cases, Case, Store};
use zo::backend::launch::attention::{
    attention_launch_config, attention_tiling, kv_write_launch_config, rope_launch_config,
    LaunchGeometry, PAGE,
};
use zo::model::Param;
use zo::perturb::{role, Dist};
use zo_emu::attention::{self as emu, Out, PrefillInputs};
use zo_emu::params::{
    ZoAttnParams, ZoKvWriteParams, ZoRopeParams, ZoSegment, ZO_DIST_GAUSSIAN, ZO_DIST_RADEMACHER,
};
use zo_emu::Launch;

fn launch(g: LaunchGeometry) -> Launch {
    Launch::new(g.0, g.1, g.2)
}

/// RoPE then the KV write on the case's buffers; returns (qkv, K cache, V cache).
fn rope_and_write(c: &Case) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let l = &c.layout;
    let mut qkv = c.qkv.clone();
    if c.spec.rope {
        let p = ZoRopeParams {
            rows: l.rows as u32,
            ld: l.ld as u32,
            q_col: l.q_col as u32,
            q_heads: l.heads as u32,
            k_col: l.k_col as u32,
            k_heads: l.kv_heads as u32,
            head_dim: l.head_dim as u32,
            reserved: 0,
        };
        let g = rope_launch_config(l.rows, l.heads, l.kv_heads, l.head_dim);
        emu::rope(launch(g), p, &mut qkv, &c.cos, &c.sin);
    }
    let (mut kc, mut vc) = (c.k_cache.clone(), c.v_cache.clone());
    let kw = l.kv_heads * l.head_dim;
    let p = ZoKvWriteParams {
        rows: l.rows as u32,
        ld: l.ld as u32,
        k_col: l.k_col as u32,
        v_col: l.v_col as u32,
        kv_width: kw as u32,
        num_slots: (kc.len() / kw) as u32,
    };
    emu::kv_write(
        launch(kv_write_launch_config(l.rows)),
        p,
        &qkv,
        &c.slots,
        &mut kc,
        &mut vc,
    );
    (qkv, kc, vc)
}

/// The prefill parameters the CUDA wrapper builds (backend::cuda::attention_params).
fn params(c: &Case, out_ld: usize) -> ZoAttnParams {
    let l = &c.layout;
    let (hb, bt, chunks) = attention_tiling(l.heads, l.kv_heads);
    let kw = l.kv_heads * l.head_dim;
    ZoAttnParams {
        rows: l.rows as u32,
        n_seqs: c.spec.seqs.len() as u32,
        heads: l.heads as u32,
        kv_heads: l.kv_heads as u32,
        head_dim: l.head_dim as u32,
        q_ld: l.ld as u32,
        q_col: l.q_col as u32,
        out_ld: out_ld as u32,
        max_pages: c.max_pages as u32,
        num_pages: (c.k_cache.len() / (PAGE * kw)) as u32,
        heads_per_block: hb,
        tokens_per_block: bt,
        head_chunks: chunks,
        scale: c.scale,
        prefix_len: c.spec.prefix as u32,
        n_segments: if c.spec.prefix > 0 {
            c.segments.len() as u32
        } else {
            0
        },
        prefix_dist: match c.spec.dist {
            Dist::Gaussian => ZO_DIST_GAUSSIAN,
            Dist::Rademacher => ZO_DIST_RADEMACHER,
        },
        prefix_role: role::PREFIX,
        prefix_key_tensor: Param::PrefixKey(c.layer).tensor_id(),
        prefix_value_tensor: Param::PrefixValue(c.layer).tensor_id(),
    }
}

fn segments(c: &Case) -> Vec<ZoSegment> {
    c.segments
        .iter()
        .map(|s| ZoSegment {
            row_start: s.rows.start as u32,
            row_end: s.rows.end as u32,
            seed_lo: s.seed as u32,
            seed_hi: (s.seed >> 32) as u32,
            scale: s.scale,
            reserved: 0,
        })
        .collect()
}

const OUT_PAD: usize = 8;
const SENTINEL: f32 = -12345.0;

/// Prefill into a padded `[T][heads·hd + OUT_PAD]` buffer of `store`; the heads' columns,
/// widened.
fn attend(c: &Case, qkv: &[f32], kc: &[f32], vc: &[f32], store: Store) -> Vec<f32> {
    let l = &c.layout;
    let ld = l.heads * l.head_dim + OUT_PAD;
    let segs = segments(c);
    let inputs = PrefillInputs {
        q: qkv,
        k_cache: kc,
        v_cache: vc,
        cu_seqlens: &c.cu_seqlens,
        ctx_lens: &c.ctx_lens,
        block_tables: &c.block_tables,
        prefix_k: &c.prefix_k,
        prefix_v: &c.prefix_v,
        segments: &segs,
    };
    let g = attention_launch_config(
        l.heads,
        l.kv_heads,
        l.head_dim,
        c.spec.seqs.len(),
        c.max_seqlen,
    );
    let p = params(c, ld);
    let init = vec![SENTINEL; l.rows * ld];
    let out = match store {
        Store::F32 => {
            let mut o = init;
            emu::prefill(launch(g), p, &inputs, Out::F32(&mut o));
            o
        }
        Store::Bf16 => {
            let mut o: Vec<u16> = init
                .iter()
                .map(|&x| half::bf16::from_f32(x).to_bits())
                .collect();
            emu::prefill(launch(g), p, &inputs, Out::Bf16(&mut o));
            o.iter()
                .map(|&b| half::bf16::from_bits(b).to_f32())
                .collect()
        }
        Store::F16 => {
            let mut o: Vec<u16> = init
                .iter()
                .map(|&x| half::f16::from_f32(x).to_bits())
                .collect();
            emu::prefill(launch(g), p, &inputs, Out::F16(&mut o));
            o.iter()
                .map(|&b| half::f16::from_bits(b).to_f32())
                .collect()
        }
    };
    c.unpack_output(&out, ld, store.round(SENTINEL), &format!("emu {store:?}"))
}

fn run_case(index: usize) {
    let c = cases(true).swap_remove(index).build();
    let (qkv, kc, vc) = rope_and_write(&c);
    let name = c.spec.name;
    assert_bits(&format!("{name}: qkv after rope"), &qkv, &c.qkv_roped);
    assert_bits(&format!("{name}: K cache"), &kc, &c.k_cache_after);
    assert_bits(&format!("{name}: V cache"), &vc, &c.v_cache_after);
    for store in Store::ALL {
        let out = attend(&c, &qkv, &kc, &vc, store);
        let worst = c.check_output(&out, store, "emu");
        println!("{name} {store:?}: max |out − ref64| = {worst:.3e}");
    }
}

#[test]
fn llama_hd128_gqa8_no_context() {
    run_case(0);
}

#[test]
fn opt_hd64_gqa1_peaky() {
    run_case(1);
}

#[test]
fn hd80_gqa3_shared_prompt() {
    run_case(2);
}

#[test]
fn prefix_gaussian_plus_minus_base() {
    run_case(3);
}

#[test]
fn prefix_rademacher_opt() {
    run_case(4);
}

#[test]
fn hd256_context() {
    run_case(5);
}

#[test]
fn mqa_two_head_chunks() {
    run_case(6);
}

#[test]
fn many_sequences() {
    run_case(7);
}

#[test]
fn every_case_has_a_test() {
    assert_eq!(cases(true).len(), 8);
}
