//! The row-op kernels (csrc/ops.cu) run on the CPU through the emulation harness, with the
//! launch geometry of the CUDA wrappers, against their CPU twins under the rules of
//! tests/ops_cases. The same cases (plus larger ones) run on a GPU in tests/gpu_ops.rs.

mod ops_cases;

use ops_cases::*;
use zo::backend::cuda::DType;
use zo::backend::launch::{norm_launch_config, row_launch_config, LaunchDims};
use zo::model::{Activation, NormKind};
use zo_emu::ops::{self as emu, Storage};
use zo_emu::params::*;
use zo_emu::Launch;

fn launch(d: LaunchDims) -> Launch {
    Launch::new(d.grid, d.block, d.smem)
}

fn storage(t: DType) -> Storage {
    match t {
        DType::F32 => Storage::F32,
        DType::Bf16 => Storage::Bf16,
        DType::F16 => Storage::F16,
    }
}

#[test]
fn norms_match_the_twin_within_the_rule() {
    for case in norm_cases(false) {
        let t = case.dtype;
        let mut flags = 0;
        if case.w.is_some() {
            flags |= ZO_NORM_HAS_W;
        }
        if case.b.is_some() {
            flags |= ZO_NORM_HAS_B;
        }
        if case.gather.is_some() {
            flags |= ZO_NORM_GATHER;
        }
        if case.in_place {
            flags |= ZO_NORM_IN_PLACE;
        }
        let p = ZoNormParams {
            rows: case.rows as u32,
            width: case.width as u32,
            ld_in: case.ld_in as u32,
            ld_out: case.ld_out as u32,
            n_src_rows: case.src_rows as u32,
            kind: match case.kind {
                NormKind::Rms => ZO_NORM_RMS,
                NormKind::Layer => ZO_NORM_LAYER,
            },
            flags,
            eps: case.eps,
        };
        let mut x = case.x.clone();
        let mut out = case.out_init();
        let w = case.w.as_ref().map(|w| encode(t, w));
        let b = case.b.as_ref().map(|b| encode(t, b));
        emu::norm(
            launch(norm_launch_config(case.rows, case.width)),
            storage(t),
            p,
            case.gather.as_deref(),
            w.as_deref(),
            b.as_deref(),
            &mut x,
            &mut out,
        );
        case.check("emu", &out, &x);
    }
}

fn act_code(a: Activation) -> u32 {
    match a {
        Activation::Silu => ZO_ACT_SILU,
        Activation::Relu => ZO_ACT_RELU,
        Activation::Gelu => ZO_ACT_GELU,
    }
}

#[test]
fn activations_match_the_twin() {
    for case in act_cases(false) {
        let p = ZoActParams {
            rows: case.rows as u32,
            width: case.width as u32,
            ld_in: case.ld_in as u32,
            ld_out: case.ld_out as u32,
            act: act_code(case.act),
            gated: case.gated as u32,
        };
        let mut out = case.out_init();
        let cfg = launch(row_launch_config(case.rows, case.width));
        emu::act(cfg, storage(case.dtype), p, &case.input, &mut out);
        case.check("emu", &out);
    }
}

#[test]
fn embeddings_equal_the_twin_bit_for_bit() {
    for case in embed_cases(false) {
        let t = case.dtype;
        let what = format!("{t} width {} tokens {}", case.width, case.tokens.len());
        let n = case.tokens.len();
        let words = encode(t, &case.words);
        let table = encode(t, &case.pos_table);
        let cfg = launch(row_launch_config(n, case.width));
        let p = |flags| ZoEmbedParams {
            n_tokens: n as u32,
            width: case.width as u32,
            ld: case.width as u32,
            vocab: case.vocab as u32,
            n_pos: case.n_pos as u32,
            pos_offset: case.offset,
            flags,
            reserved: 0,
        };
        let (tok, pos) = (Some(&case.tokens[..]), Some(&case.positions[..]));

        let mut x = sentinel_f32s(n * case.width);
        emu::embed(
            cfg,
            storage(t),
            p(ZO_EMBED_TOKENS),
            tok,
            None,
            Some(&words),
            None,
            &mut x,
        );
        assert_bits(&format!("embed {what}"), &x, &case.twin(false));
        let plain = x;

        let mut x = sentinel_f32s(n * case.width);
        let both = ZO_EMBED_TOKENS | ZO_EMBED_POSITIONS;
        emu::embed(
            cfg,
            storage(t),
            p(both),
            tok,
            pos,
            Some(&words),
            Some(&table),
            &mut x,
        );
        assert_bits(&format!("embed+positions {what}"), &x, &case.twin(true));

        let mut x = plain.clone();
        emu::embed(
            cfg,
            storage(t),
            p(ZO_EMBED_POSITIONS),
            None,
            pos,
            None,
            Some(&table),
            &mut x,
        );
        assert_bits(
            &format!("add_positions {what}"),
            &x,
            &case.twin_add_positions(&plain),
        );
    }
}

#[test]
fn elementwise_row_ops_equal_the_twins_bit_for_bit() {
    for case in rows_cases() {
        let t = case.dtype;
        let st = storage(t);
        let what = format!("{t} rows {} width {}", case.rows, case.width);
        let p = ZoRowsParams {
            rows: case.rows as u32,
            width: case.width as u32,
            ld_dst: case.ld_dst as u32,
            ld_src: case.ld_src as u32,
            n_src_rows: case.src_rows as u32,
            value: case.value,
        };
        let cfg = launch(row_launch_config(case.rows, case.width));

        let mut dst = case.dst.clone();
        emu::add_f32(cfg, p, &mut dst, &case.src);
        assert_bits(&format!("add {what}"), &dst, &case.want_add());

        let mut dst = case.dst.clone();
        emu::bias_add(cfg, st, p, &mut dst, &encode(t, &case.bias));
        assert_bits(&format!("bias {what}"), &dst, &case.want_bias());

        let mut dst = case.dst.clone();
        emu::scale_f32(cfg, p, &mut dst);
        assert_bits(&format!("scale {what}"), &dst, &case.want_scale());

        let mut dst = case.dst.clone();
        emu::gather_rows_f32(cfg, p, &case.idx, &case.src, &mut dst);
        assert_bits(&format!("gather {what}"), &dst, &case.want_gather());

        let mut dst = case.dst_storage_init();
        emu::to_storage(cfg, st, p, &case.src, &mut dst);
        assert_eq!(dst, case.want_to_storage(), "to_storage {what}");

        let mut dst = case.dst_storage_init();
        emu::fill(cfg, st, p, &mut dst);
        assert_eq!(dst, case.want_fill(), "fill {what}");

        let mut dst = case.dst.clone();
        emu::from_storage(cfg, st, p, &case.src_storage(), &mut dst);
        assert_bits(
            &format!("from_storage {what}"),
            &dst,
            &case.want_from_storage(),
        );
    }
}
