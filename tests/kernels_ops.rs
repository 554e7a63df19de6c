//! The row-op kernels (csrc/ops.cu) through their launchers (`kernels::ops`), on the emulated
//! device and on a GPU when one is present, against their CPU twins under the rules of
//! tests/ops_cases. The emulated device keeps to the small cases (every CUDA thread is a fiber
//! there); the GPU adds the wide rows of the real models.
#![cfg(feature = "cuda")]

#[path = "common/devices.rs"]
mod devices;
mod ops_cases;

use devices::devices;
use ops_cases::*;
use zo::backend::cuda::kernels::ops::{self, NormWeights, Positions, RowShape, Table};
use zo::backend::cuda::{CudaDevice, DBuf, DType};
use zo::model::{Activation, NormKind};
use zo::Error;

/// A `dtype` buffer holding exactly `bytes` (outputs pre-filled with the sentinel).
fn up_bytes(dev: &CudaDevice, dtype: DType, bytes: &[u8]) -> DBuf {
    let buf = DBuf::from_f32(dev, dtype, &decode(dtype, bytes)).unwrap();
    // Widening and rounding back is exact for every non-NaN pattern; the sentinel is one.
    assert_eq!(
        buf.to_bytes(dev).unwrap(),
        bytes,
        "{dtype} bytes changed on upload"
    );
    buf
}

fn f32s(dev: &CudaDevice, v: &[f32]) -> DBuf {
    DBuf::from_f32(dev, DType::F32, v).unwrap()
}

#[test]
fn norms_match_the_twin_within_the_rule() {
    for (name, dev) in devices("norms_match_the_twin_within_the_rule") {
        for case in norm_cases() {
            let t = case.dtype;
            let x = f32s(&dev, &case.x);
            let out = up_bytes(&dev, t, &case.out_init());
            let w = case.w.as_ref().map(|w| DBuf::from_f32(&dev, t, w).unwrap());
            let b = case.b.as_ref().map(|b| DBuf::from_f32(&dev, t, b).unwrap());
            let nw = NormWeights {
                kind: case.kind,
                eps: case.eps,
                w: w.as_ref().map(DBuf::view),
                b: b.as_ref().map(DBuf::view),
            };
            let shape = RowShape {
                rows: case.rows,
                width: case.width,
                ld_in: case.ld_in,
                ld_out: case.ld_out,
            };
            if case.in_place {
                ops::norm_in_place(&dev, &nw, shape, x.view(), out.view())
            } else if let Some(g) = &case.gather {
                let idx = DBuf::from_words(&dev, g).unwrap();
                ops::norm_gather(&dev, &nw, shape, idx.view(), x.view(), out.view())
            } else {
                ops::norm(&dev, &nw, shape, x.view(), out.view())
            }
            .unwrap();
            case.check(name, &out.to_bytes(&dev).unwrap(), &x.to_f32(&dev).unwrap());
        }
    }
}

#[test]
fn activations_match_the_twin() {
    for (name, dev) in devices("activations_match_the_twin") {
        for case in act_cases() {
            let input = f32s(&dev, &case.input);
            let out = up_bytes(&dev, case.dtype, &case.out_init());
            let shape = RowShape {
                rows: case.rows,
                width: case.width,
                ld_in: case.ld_in,
                ld_out: case.ld_out,
            };
            ops::activation(&dev, case.act, case.gated, shape, input.view(), out.view()).unwrap();
            case.check(name, &out.to_bytes(&dev).unwrap());
        }
    }
}

#[test]
fn embeddings_equal_the_twin_bit_for_bit() {
    for (name, dev) in devices("embeddings_equal_the_twin_bit_for_bit") {
        for case in embed_cases() {
            let t = case.dtype;
            let what = format!(
                "{name}: {t} width {} tokens {}",
                case.width,
                case.tokens.len()
            );
            let tokens = DBuf::from_words(&dev, &case.tokens).unwrap();
            let positions = DBuf::from_words(&dev, &case.positions).unwrap();
            let words = DBuf::from_f32(&dev, t, &case.words).unwrap();
            let table = DBuf::from_f32(&dev, t, &case.pos_table).unwrap();
            let n = case.tokens.len() * case.width;
            let words_t = || Table {
                data: words.view(),
                rows: case.vocab,
            };
            let pos = || Positions {
                positions: positions.view(),
                table: Table {
                    data: table.view(),
                    rows: case.n_pos,
                },
                offset: case.offset,
            };

            let x = f32s(&dev, &sentinel_f32s(n));
            ops::embed(&dev, case.width, tokens.view(), words_t(), None, x.view()).unwrap();
            let plain = x.to_f32(&dev).unwrap();
            assert_bits(&format!("embed {what}"), &plain, &case.twin(false));

            let x = f32s(&dev, &sentinel_f32s(n));
            ops::embed(
                &dev,
                case.width,
                tokens.view(),
                words_t(),
                Some(pos()),
                x.view(),
            )
            .unwrap();
            assert_bits(
                &format!("embed+positions {what}"),
                &x.to_f32(&dev).unwrap(),
                &case.twin(true),
            );

            // Separately added positions (a projection between the two) give the same sums.
            let x = f32s(&dev, &plain);
            ops::add_positions(&dev, case.width, pos(), x.view()).unwrap();
            assert_bits(
                &format!("add_positions {what}"),
                &x.to_f32(&dev).unwrap(),
                &case.twin_add_positions(&plain),
            );
        }
    }
}

/// Views work like slices: writing the extra columns `[K, K_aug)` of a GEMM input through a
/// view that starts at column K leaves columns `[0, K)` alone.
#[test]
fn ops_take_views_at_a_column_offset() {
    let (rows, k, k_aug) = (5, 100, 112);
    let width = k_aug - k;
    let input = gaussian(41, rows * width, 2.0);
    let mut relu = input.clone();
    zo::backend::cpu::ops::activate_in_place(&mut relu, Activation::Relu);
    for (name, dev) in devices("ops_take_views_at_a_column_offset") {
        let d_input = f32s(&dev, &input);
        for t in DTYPES {
            let want = encode(t, &relu);
            let buf = up_bytes(&dev, t, &vec![SENTINEL; rows * k_aug * t.size()]);
            let shape = RowShape::dense(rows, width).with_ld(width, k_aug);
            let view = buf.slice(k..buf.len);
            ops::activation(&dev, Activation::Relu, false, shape, d_input.view(), view).unwrap();
            let got = buf.to_bytes(&dev).unwrap();
            for (i, &b) in got.iter().enumerate() {
                let e = i / t.size();
                let (r, c) = (e / k_aug, e % k_aug);
                let want = if c >= k {
                    want[(r * width + c - k) * t.size() + i % t.size()]
                } else {
                    SENTINEL
                };
                assert_eq!(b, want, "{name}: {t}: byte {i} (row {r}, column {c})");
            }
        }
    }
}

/// The cast of a post-LN residual into a GEMM input, whole and gathered: each written element
/// is the fp32 value rounded to the storage type (the encoder's rounding, ties, subnormals and
/// specials included), a gathered index past the input gives a NaN row, and nothing outside
/// the written columns changes.
#[test]
fn casts_round_rows_bit_for_bit() {
    let (rows, width, ld_in, ld_out) = (6, 37, 40, 48);
    let mut x = gaussian(43, rows * ld_in, 3.0);
    // A bf16 tie, an f16 subnormal, an overflow past f16, both infinities and a NaN.
    x[..6].copy_from_slice(&[
        1.0 + 2f32.powi(-8),
        3e-6,
        1e5,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ]);
    let gather = [5u32, 0, 5, rows as u32, 2];
    for (name, dev) in devices("casts_round_rows_bit_for_bit") {
        let d_x = f32s(&dev, &x);
        for t in DTYPES {
            for picked in [None, Some(&gather[..])] {
                let n_out = picked.map_or(rows, <[u32]>::len);
                let out = up_bytes(&dev, t, &vec![SENTINEL; n_out * ld_out * t.size()]);
                let shape = RowShape::dense(n_out, width).with_ld(ld_in, ld_out);
                let idx = picked.map(|g| DBuf::from_words(&dev, g).unwrap());
                ops::cast_rows(
                    &dev,
                    shape,
                    idx.as_ref().map(DBuf::view),
                    d_x.view(),
                    out.view(),
                )
                .unwrap();
                let got = out.to_bytes(&dev).unwrap();
                let what = format!("{name}: {t} gather {}", picked.is_some());
                check_untouched(&what, &got, t.size(), width, ld_out, n_out);
                for r in 0..n_out {
                    let src = picked.map_or(r, |g| g[r] as usize);
                    let at = r * ld_out * t.size();
                    let row = &got[at..at + width * t.size()];
                    if src < rows {
                        let want = encode(t, &x[src * ld_in..][..width]);
                        assert_eq!(row, &want[..], "{what}: row {r}");
                    } else {
                        assert!(
                            decode(t, row).iter().all(|v| v.is_nan()),
                            "{what}: row {r} is not NaN"
                        );
                    }
                }
            }
        }
        // The input is read, never written.
        assert_bits(&format!("{name}: input"), &d_x.to_f32(&dev).unwrap(), &x);
    }
}

#[test]
fn bad_shapes_are_errors_not_launches() {
    for (name, dev) in devices("bad_shapes_are_errors_not_launches") {
        let x = f32s(&dev, &vec![0f32; 10 * 64]);
        let rms = |w, b| NormWeights {
            kind: NormKind::Rms,
            eps: 1e-5,
            w,
            b,
        };

        let out = DBuf::zeros(&dev, DType::Bf16, 10 * 64 - 1).unwrap();
        let e = ops::norm(
            &dev,
            &rms(None, None),
            RowShape::dense(10, 64),
            x.view(),
            out.view(),
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::Data(_)) && e.to_string().contains("norm output"),
            "{name}: {e}"
        );

        let y = f32s(&dev, &vec![0f32; 64]);
        let e = ops::activation(
            &dev,
            Activation::Relu,
            false,
            RowShape::dense(2, 64).with_ld(32, 64),
            x.view(),
            y.view(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("stride"), "{name}: {e}");

        // The storage type is the output's: weights, tables and fp32 operands of another
        // element type are refused before anything is written.
        let out = DBuf::zeros(&dev, DType::Bf16, 10 * 64).unwrap();
        let w16 = DBuf::zeros(&dev, DType::F16, 64).unwrap();
        let e = ops::norm(
            &dev,
            &rms(Some(w16.view()), None),
            RowShape::dense(10, 64),
            x.view(),
            out.view(),
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::Data(_)) && e.to_string().contains("norm weight"),
            "{name}: {e}"
        );
        let xb = DBuf::zeros(&dev, DType::Bf16, 10 * 64).unwrap();
        let e = ops::norm(
            &dev,
            &rms(None, None),
            RowShape::dense(10, 64),
            xb.view(),
            out.view(),
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::Data(_)) && e.to_string().contains("norm input x"),
            "{name}: {e}"
        );
        assert!(
            out.to_f32(&dev).unwrap().iter().all(|&v| v == 0.0),
            "{name}: a refused norm wrote its output"
        );

        let tokens = DBuf::from_words(&dev, &[0u32, 1]).unwrap();
        let words = DBuf::zeros(&dev, DType::Bf16, 4 * 64).unwrap();
        let table = DBuf::zeros(&dev, DType::F16, 4 * 64).unwrap();
        let e = ops::embed(
            &dev,
            64,
            tokens.view(),
            Table {
                data: words.view(),
                rows: 4,
            },
            None,
            xb.slice(0..2 * 64),
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::Data(_)) && e.to_string().contains("embedding output x"),
            "{name}: {e}"
        );
        let x2 = f32s(&dev, &vec![0f32; 2 * 64]);
        let e = ops::embed(
            &dev,
            64,
            tokens.view(),
            Table {
                data: words.view(),
                rows: 4,
            },
            Some(Positions {
                positions: tokens.view(),
                table: Table {
                    data: table.view(),
                    rows: 4,
                },
                offset: 0,
            }),
            x2.view(),
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::Data(_)) && e.to_string().contains("position embeddings"),
            "{name}: {e}"
        );
        assert!(
            x2.to_f32(&dev).unwrap().iter().all(|&v| v == 0.0),
            "{name}: a refused embedding wrote x"
        );
    }
}
