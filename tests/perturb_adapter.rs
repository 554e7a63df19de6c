//! The CPU twin of the K-augmented GEMM (`perturb::adapter`): `x'·W'ᵀ` built from the twin's
//! shrink and pack reproduces the lowrank and lora families' forward (tolerance rule in
//! tests/common/adapter.rs), in every storage precision.

#[path = "common/adapter.rs"]
mod aug_cases;

use aug_cases::{cases, DTYPES, K};
use zo::perturb::adapter::{self, shrink_dot};
use zo::perturb::Segment;

#[test]
fn augmented_product_equals_the_family_forward() {
    for case in cases(70) {
        for prec in DTYPES {
            let (xp, wp) = case.twin(prec);
            assert!(
                xp.iter().all(|v| v.is_finite()),
                "{}: unwritten x' column",
                case.name
            );
            case.check_product(&xp, &wp, prec, &case.name);
        }
    }
}

#[test]
fn shrink_dot_is_a_dot_product() {
    for k in [1, 5, 64, 127, 128, 129, 260, 513] {
        let x: Vec<f32> = (0..k).map(|j| ((j * 7 % 13) as f32 - 6.0) / 8.0).collect();
        let f: Vec<f32> = (0..k).map(|j| ((j * 5 % 11) as f32 - 5.0) / 4.0).collect();
        // Small integers over powers of two: every partial sum is exact.
        let want: f32 = x.iter().zip(&f).map(|(a, b)| a * b).sum();
        assert_eq!(shrink_dot(&x, &f), want, "k {k}");
    }
}

#[test]
fn layout_helpers() {
    assert_eq!(adapter::k_aug(K, 4, 1, 3), 288);
    assert_eq!(adapter::padding(K, 4, 1, 3), 284..288);
    assert_eq!(adapter::k_aug(4096, 8, 1, 1), 4112);
    assert!(adapter::padding(4096, 8, 1, 1).is_empty());
    assert_eq!(adapter::exp2(-3), 0.125);
    assert_eq!(adapter::exp2(20), 1048576.0);
    let segs = vec![Segment {
        rows: 0..2,
        variant: 0,
        seed: 5,
        scale: 1.0,
    }];
    assert_eq!(adapter::segment_directions(&segs, &[9, 5]).unwrap(), [1]);
    let err = adapter::segment_directions(&segs, &[9]).unwrap_err();
    assert!(err.to_string().contains("not among"), "{err}");
}
