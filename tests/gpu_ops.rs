//! The row-op kernels (csrc/ops.cu) on the GPU against their CPU twins, under the rules of
//! tests/ops_cases. Needs a GPU and a build with kernels; elsewhere it prints
//! `skipping: <reason>` and passes, unless ZO_REQUIRE_GPU=1 turns the skip into a failure.
#![cfg(feature = "cuda")]

mod ops_cases;

use cudarc::driver::{CudaSlice, DevicePtr, DeviceRepr};
use ops_cases::*;
use zo::backend::cuda::{CudaDevice, NormWeights, Positions, RowShape, Table};
use zo::Error;

fn device() -> Option<CudaDevice> {
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e) if std::env::var("ZO_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("ZO_REQUIRE_GPU=1 but no usable GPU: {e}")
        }
        Err(e) => {
            eprintln!("skipping: gpu_ops: {e}");
            None
        }
    }
}

fn up<T: DeviceRepr>(dev: &CudaDevice, v: &[T]) -> CudaSlice<T> {
    dev.stream().clone_htod(v).unwrap()
}

fn down<T: DeviceRepr + Default + Clone>(dev: &CudaDevice, s: &CudaSlice<T>) -> Vec<T> {
    dev.stream().clone_dtoh(s).unwrap()
}

#[test]
fn norms_match_the_twin_within_the_rule() {
    let Some(dev) = device() else { return };
    for case in norm_cases(true) {
        let t = case.dtype;
        let mut x = up(&dev, &case.x);
        let mut out = up(&dev, &case.out_init());
        let w = case.w.as_ref().map(|w| up(&dev, &encode(t, w)));
        let b = case.b.as_ref().map(|b| up(&dev, &encode(t, b)));
        let nw = NormWeights {
            kind: case.kind,
            eps: case.eps,
            w: w.as_ref().map(|s| s as &dyn DevicePtr<u8>),
            b: b.as_ref().map(|s| s as &dyn DevicePtr<u8>),
        };
        let shape = RowShape {
            rows: case.rows,
            width: case.width,
            ld_in: case.ld_in,
            ld_out: case.ld_out,
        };
        if case.in_place {
            dev.norm_in_place(t, &nw, shape, &mut x, &mut out).unwrap();
        } else if let Some(g) = &case.gather {
            let idx = up(&dev, g);
            dev.norm_gather(t, &nw, shape, &idx, &x, &mut out).unwrap();
        } else {
            dev.norm(t, &nw, shape, &x, &mut out).unwrap();
        }
        case.check("gpu", &down(&dev, &out), &down(&dev, &x));
    }
}

#[test]
fn activations_match_the_twin() {
    let Some(dev) = device() else { return };
    for case in act_cases(true) {
        let input = up(&dev, &case.input);
        let mut out = up(&dev, &case.out_init());
        let shape = RowShape {
            rows: case.rows,
            width: case.width,
            ld_in: case.ld_in,
            ld_out: case.ld_out,
        };
        dev.activation(case.dtype, case.act, case.gated, shape, &input, &mut out)
            .unwrap();
        case.check("gpu", &down(&dev, &out));
    }
}

#[test]
fn embeddings_equal_the_twin_bit_for_bit() {
    let Some(dev) = device() else { return };
    for case in embed_cases(true) {
        let t = case.dtype;
        let what = format!("{t} width {} tokens {}", case.width, case.tokens.len());
        let tokens = up(&dev, &case.tokens);
        let positions = up(&dev, &case.positions);
        let words = up(&dev, &encode(t, &case.words));
        let table = up(&dev, &encode(t, &case.pos_table));
        let n = case.tokens.len() * case.width;
        let words_t = || Table {
            data: &words as &dyn DevicePtr<u8>,
            rows: case.vocab,
        };
        let pos = || Positions {
            positions: &positions as &dyn DevicePtr<u32>,
            table: Table {
                data: &table as &dyn DevicePtr<u8>,
                rows: case.n_pos,
            },
            offset: case.offset,
        };

        let mut x = up(&dev, &sentinel_f32s(n));
        dev.embed(t, case.width, &tokens, words_t(), None, &mut x)
            .unwrap();
        let plain = down(&dev, &x);
        assert_bits(&format!("embed {what}"), &plain, &case.twin(false));

        let mut x = up(&dev, &sentinel_f32s(n));
        dev.embed(t, case.width, &tokens, words_t(), Some(pos()), &mut x)
            .unwrap();
        assert_bits(
            &format!("embed+positions {what}"),
            &down(&dev, &x),
            &case.twin(true),
        );

        // Separately added positions (a projection between the two) give the same sums.
        let mut x = up(&dev, &plain);
        dev.add_positions(t, case.width, pos(), &mut x).unwrap();
        assert_bits(
            &format!("add_positions {what}"),
            &down(&dev, &x),
            &case.twin_add_positions(&plain),
        );
    }
}

#[test]
fn elementwise_row_ops_equal_the_twins_bit_for_bit() {
    let Some(dev) = device() else { return };
    for case in rows_cases() {
        let t = case.dtype;
        let what = format!("{t} rows {} width {}", case.rows, case.width);
        let shape = RowShape {
            rows: case.rows,
            width: case.width,
            ld_in: case.ld_src,
            ld_out: case.ld_dst,
        };
        let src = up(&dev, &case.src);

        let mut dst = up(&dev, &case.dst);
        dev.add_f32(shape, &mut dst, &src).unwrap();
        assert_bits(&format!("add {what}"), &down(&dev, &dst), &case.want_add());

        let mut dst = up(&dev, &case.dst);
        let bias = up(&dev, &encode(t, &case.bias));
        dev.bias_add(t, shape, &mut dst, &bias).unwrap();
        assert_bits(
            &format!("bias {what}"),
            &down(&dev, &dst),
            &case.want_bias(),
        );

        let mut dst = up(&dev, &case.dst);
        dev.scale_f32(shape, case.value, &mut dst).unwrap();
        assert_bits(
            &format!("scale {what}"),
            &down(&dev, &dst),
            &case.want_scale(),
        );

        let mut dst = up(&dev, &case.dst);
        let idx = up(&dev, &case.idx);
        dev.gather_rows_f32(shape, &idx, &src, &mut dst).unwrap();
        assert_bits(
            &format!("gather {what}"),
            &down(&dev, &dst),
            &case.want_gather(),
        );

        let mut dst = up(&dev, &case.dst_storage_init());
        dev.to_storage(t, shape, &src, &mut dst).unwrap();
        assert_same_bytes(
            &format!("to_storage {what}"),
            &down(&dev, &dst),
            &case.want_to_storage(),
            t.size(),
            |i| {
                case.src
                    .get(i / case.ld_dst * case.ld_src + i % case.ld_dst)
                    .copied()
            },
        );

        let mut dst = up(&dev, &case.dst_storage_init());
        dev.fill(t, shape, case.value, &mut dst).unwrap();
        assert_eq!(down(&dev, &dst), case.want_fill(), "fill {what}");

        let stored = up(&dev, &case.src_storage());
        let mut dst = up(&dev, &case.dst);
        dev.from_storage(t, shape, &stored, &mut dst).unwrap();
        assert_bits(
            &format!("from_storage {what}"),
            &down(&dev, &dst),
            &case.want_from_storage(),
        );
    }
}

/// Views work like slices: filling the extra columns `[K, K_aug)` of a GEMM input through a
/// view that starts at column K leaves columns `[0, K)` alone.
#[test]
fn ops_take_views_at_a_column_offset() {
    let Some(dev) = device() else { return };
    let (rows, k, k_aug) = (5, 100, 112);
    for t in DTYPES {
        let mut buf = up(&dev, &vec![SENTINEL; rows * k_aug * t.size()]);
        let shape = RowShape::dense(rows, k_aug - k).with_ld(k_aug, k_aug);
        let len = buf.len();
        let mut view = buf.slice_mut(k * t.size()..len);
        dev.fill(t, shape, 0.0, &mut view).unwrap();
        let got = down(&dev, &buf);
        for (i, &b) in got.iter().enumerate() {
            let c = (i / t.size()) % k_aug;
            let want = if c >= k { 0 } else { SENTINEL };
            assert_eq!(b, want, "{t}: byte {i} (column {c})");
        }
    }
}

#[test]
fn bad_shapes_are_errors_not_launches() {
    let Some(dev) = device() else { return };
    let x = up(&dev, &vec![0f32; 10 * 64]);
    let mut out = up(&dev, &vec![0u8; 10 * 64 * 2 - 1]);
    let nw = NormWeights::<u8> {
        kind: zo::model::NormKind::Rms,
        eps: 1e-5,
        w: None,
        b: None,
    };
    let e = dev
        .norm(
            zo::backend::cuda::DType::Bf16,
            &nw,
            RowShape::dense(10, 64),
            &x,
            &mut out,
        )
        .unwrap_err();
    assert!(
        matches!(e, Error::Data(_)) && e.to_string().contains("norm output"),
        "{e}"
    );
    let mut y = up(&dev, &vec![0f32; 64]);
    let e = dev
        .add_f32(RowShape::dense(2, 64).with_ld(32, 64), &mut y, &x)
        .unwrap_err();
    assert!(e.to_string().contains("stride"), "{e}");
    let mut out16 = up(&dev, &vec![0f32; 64]);
    let e = dev
        .to_storage(
            zo::backend::cuda::DType::Bf16,
            RowShape::dense(1, 64),
            &x,
            &mut out16,
        )
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
}

/// Byte equality of two storage buffers; a failure names the first differing element, its
/// bytes on each side and the source value it was converted from (when in range).
fn assert_same_bytes(
    what: &str,
    got: &[u8],
    want: &[u8],
    size: usize,
    src: impl Fn(usize) -> Option<f32>,
) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if let Some(i) =
        (0..got.len() / size).find(|&i| got[i * size..][..size] != want[i * size..][..size])
    {
        let mismatches = (0..got.len() / size)
            .filter(|&i| got[i * size..][..size] != want[i * size..][..size])
            .count();
        panic!(
            "{what}: {mismatches} elements differ; first at element {i}: got {:02x?}, want {:02x?} \
             (converted from {:?})",
            &got[i * size..][..size],
            &want[i * size..][..size],
            src(i).map(|v| (v, v.to_bits()))
        );
    }
}
