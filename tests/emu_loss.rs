//! The loss kernels (csrc/loss.cu) run on the CPU through the emulation harness, with the
//! launch geometry of the CUDA wrappers, against their CPU twins under the rules of
//! tests/ops_cases. The same cases (plus 64-row, 50k-vocabulary ones) run on a GPU in
//! tests/gpu_loss.rs.

mod ops_cases;

use ops_cases::*;
use zo::backend::cuda::LossLayout;
use zo::backend::launch::{classification_launch_config, logprob_launch_config, LaunchDims};
use zo_emu::params::{ZoClassifyParams, ZoLogprobParams};
use zo_emu::Launch;

fn launch(d: LaunchDims) -> Launch {
    Launch::new(d.grid, d.block, d.smem)
}

#[test]
fn candidate_logprobs_match_the_twin_within_the_rule() {
    for case in logprob_cases(false) {
        let p = |write_lse| ZoLogprobParams {
            rows: case.rows as u32,
            vocab: case.vocab as u32,
            ld: case.ld as u32,
            n_queries: case.n_queries() as u32,
            write_lse,
            reserved: 0,
        };
        let cfg = launch(logprob_launch_config(case.rows, case.vocab));
        let mut lse = vec![0f32; case.rows];
        let mut lp = vec![0f32; case.n_queries()];
        zo_emu::loss::candidate_logprobs(
            cfg,
            p(1),
            &case.logits,
            &case.queries,
            Some(&mut lse),
            &mut lp,
        );
        case.check("emu", &lse, &lp);

        let mut lp2 = vec![0f32; case.n_queries()];
        zo_emu::loss::candidate_logprobs(cfg, p(0), &case.logits, &case.queries, None, &mut lp2);
        assert_bits("lse not written", &lp2, &lp);
    }
}

#[test]
fn classification_loss_matches_the_twin() {
    for (seed, n) in [(1, 1), (2, 7), (3, 300)] {
        let case = ClassifyCase::new(seed, n);
        let l = LossLayout::new(&case.plan).unwrap();
        let p = ZoClassifyParams {
            n_examples: l.n_examples() as u32,
            n_candidates: l.n_candidates() as u32,
            n_queries: case.query_logprobs.len() as u32,
            reserved: 0,
        };
        let mut loss = vec![0f32; l.n_examples()];
        let mut pred = vec![0u32; l.n_examples()];
        let mut scores = vec![0f32; l.n_candidates()];
        zo_emu::loss::classification_loss(
            launch(classification_launch_config(l.n_examples())),
            p,
            &case.query_logprobs,
            &l.candidates,
            &l.example_offsets,
            &l.gold,
            &mut loss,
            &mut pred,
            &mut scores,
        );
        case.check(&format!("emu, {n} examples"), &loss, &pred, &scores);
        let s = l.scores(&loss, &pred, &scores);
        assert_eq!(s.len(), n);
    }
}

/// Malformed flattened inputs (which LossLayout refuses to build) give NaN losses and
/// u32::MAX predictions instead of reads out of bounds.
#[test]
fn malformed_examples_get_nan() {
    let lp = [-1.0f32, -2.0, -3.0];
    // Example 0: gold past its candidates; 1: offsets past the candidates; 2: an empty range.
    let candidates = [0u32, 1, 1, 3, 2, 2];
    let offsets = [0u32, 2, 9, 3];
    let gold = [2u32, 0, 0];
    let p = ZoClassifyParams {
        n_examples: 3,
        n_candidates: 3,
        n_queries: 3,
        reserved: 0,
    };
    let (mut loss, mut pred, mut scores) = (vec![0f32; 3], vec![0u32; 3], vec![0f32; 3]);
    zo_emu::loss::classification_loss(
        launch(classification_launch_config(3)),
        p,
        &lp,
        &candidates,
        &offsets,
        &gold,
        &mut loss,
        &mut pred,
        &mut scores,
    );
    assert!(loss[0].is_nan() && pred[0] == u32::MAX, "{loss:?} {pred:?}");
    assert!(loss[1].is_nan() && pred[1] == u32::MAX, "{loss:?} {pred:?}");
    // Example 2 (candidate 2 only, range 2..2 empty): offsets 9..3 is malformed too.
    assert!(loss[2].is_nan(), "{loss:?}");
}
