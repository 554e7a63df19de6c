//! The loss kernel (csrc/loss.cu) through its launcher (`kernels::loss`), on the emulated device
//! and on a GPU when one is present, against its CPU twin under the rules of tests/ops_cases.
//! The emulated device keeps to the small cases; the GPU adds 64-row, 50k-vocabulary ones.
#![cfg(feature = "cuda")]

#[path = "common/devices.rs"]
mod devices;
mod ops_cases;

use devices::devices;
use ops_cases::*;
use zo::backend::cuda::kernels::loss::{candidate_logprobs, Logits};
use zo::backend::cuda::{CudaDevice, DBuf, DType};
use zo::plan::{classification_scores, Plan, TokenizedExample, Variant};
use zo::Error;

fn f32s(dev: &CudaDevice, v: &[f32]) -> DBuf {
    DBuf::from_f32(dev, DType::F32, v).unwrap()
}

#[test]
fn candidate_logprobs_match_the_twin_within_the_rule() {
    for (name, dev) in devices("candidate_logprobs_match_the_twin_within_the_rule") {
        for case in logprob_cases() {
            let logits = f32s(&dev, &case.logits);
            let queries = DBuf::from_words(&dev, &case.queries).unwrap();
            let l = || Logits {
                data: logits.view(),
                rows: case.rows,
                vocab: case.vocab,
                ld: case.ld,
            };
            let lse = f32s(&dev, &vec![0f32; case.rows]);
            let lp = f32s(&dev, &vec![0f32; case.n_queries()]);
            candidate_logprobs(&dev, l(), queries.view(), Some(lse.view()), lp.view()).unwrap();
            let lp = lp.to_f32(&dev).unwrap();
            case.check(name, &lse.to_f32(&dev).unwrap(), &lp);

            // Without the lse output the log-probs are the same.
            let lp2 = f32s(&dev, &vec![0f32; case.n_queries()]);
            candidate_logprobs(&dev, l(), queries.view(), None, lp2.view()).unwrap();
            assert_bits(
                &format!("{name}: lse not written"),
                &lp2.to_f32(&dev).unwrap(),
                &lp,
            );
        }
    }
}

/// A plan built from examples, its query log-probs computed on the device from logits at the
/// scoring rows: the classification scores formed from them on the host match those formed
/// from the twin's log-probs.
#[test]
fn plan_scoring_chain_matches_the_twin() {
    let ex = |p: &[u32], c: &[&[u32]], g| TokenizedExample {
        prompt: p.to_vec(),
        candidates: c.iter().map(|c| c.to_vec()).collect(),
        gold: g,
        answers: Vec::new(),
    };
    let examples = [
        ex(&[5, 6, 7], &[&[10], &[11], &[12]], 2),
        ex(&[8, 9], &[&[13, 14], &[15]], 0),
        ex(&[1], &[&[2, 3, 4], &[5, 6]], 1),
    ];
    let variants = [
        Variant {
            seed: 3,
            sign: 1,
            eps: 1e-3,
        },
        Variant {
            seed: 3,
            sign: -1,
            eps: 1e-3,
        },
    ];
    let plan = Plan::build(&examples, &variants).unwrap();
    let rows = plan.scoring_rows();
    let queries: Vec<u32> = plan
        .queries
        .iter()
        .flat_map(|q| [rows.binary_search(&q.row).unwrap() as u32, q.token])
        .collect();
    let vocab = 50272;
    let logits = gaussian(77, rows.len() * vocab, 4.0);
    // The twin's log-probs, as CpuBackend::score forms them.
    let twin_lp: Vec<f32> = plan
        .queries
        .iter()
        .map(|q| {
            let r = rows.binary_search(&q.row).unwrap();
            let row = &logits[r * vocab..][..vocab];
            (row[q.token as usize] as f64 - zo::backend::cpu::ops::log_sum_exp(row)) as f32
        })
        .collect();
    let twin = classification_scores(&plan, &twin_lp);
    for (name, dev) in devices("plan_scoring_chain_matches_the_twin") {
        let d_logits = f32s(&dev, &logits);
        let d_queries = DBuf::from_words(&dev, &queries).unwrap();
        let lp = f32s(&dev, &vec![0f32; plan.queries.len()]);
        let l = Logits {
            data: d_logits.view(),
            rows: rows.len(),
            vocab,
            ld: vocab,
        };
        candidate_logprobs(&dev, l, d_queries.view(), None, lp.view()).unwrap();
        let got = classification_scores(&plan, &lp.to_f32(&dev).unwrap());
        assert_eq!(got.len(), twin.len(), "{name}: examples");
        for (e, (g, t)) in got.iter().zip(&twin).enumerate() {
            assert_eq!(g.pred, t.pred, "{name}: example {e}");
            assert!(
                (g.loss - t.loss).abs() <= 1e-4,
                "{name}: example {e}: {} vs {}",
                g.loss,
                t.loss
            );
            for (a, b) in g.candidate_scores.iter().zip(&t.candidate_scores) {
                assert!((a - b).abs() <= 1e-4, "{name}: example {e}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn bad_shapes_are_errors_not_launches() {
    for (name, dev) in devices("bad_shapes_are_errors_not_launches") {
        let (rows, vocab) = (3, 50);
        let logits = f32s(&dev, &gaussian(5, rows * vocab, 1.0));
        let l = || Logits {
            data: logits.view(),
            rows,
            vocab,
            ld: vocab,
        };
        let queries = DBuf::from_words(&dev, &[0u32, 1, 2, 3]).unwrap();
        let lp = f32s(&dev, &[0f32; 2]);
        let lse = f32s(&dev, &[0f32; 3]);
        let data_err = |r: zo::Result<()>, needle: &str| {
            let e = r.unwrap_err();
            assert!(
                matches!(e, Error::Data(_)) && e.to_string().contains(needle),
                "{name}: {e} (expected `{needle}`)"
            );
        };

        let mut short = l();
        short.data = logits.slice(0..rows * vocab - 1);
        data_err(
            candidate_logprobs(&dev, short, queries.view(), None, lp.view()),
            "logits",
        );
        let mut strided = l();
        strided.ld = vocab - 1;
        data_err(
            candidate_logprobs(&dev, strided, queries.view(), None, lp.view()),
            "stride",
        );
        data_err(
            candidate_logprobs(&dev, l(), queries.slice(0..3), None, lp.view()),
            "pairs",
        );
        data_err(
            candidate_logprobs(&dev, l(), queries.view(), None, lp.slice(0..1)),
            "query log-probs",
        );
        data_err(
            candidate_logprobs(&dev, l(), queries.view(), Some(lse.slice(0..2)), lp.view()),
            "lse",
        );
        let lp16 = DBuf::zeros(&dev, DType::Bf16, 2).unwrap();
        data_err(
            candidate_logprobs(&dev, l(), queries.view(), None, lp16.view()),
            "query log-probs",
        );
        let mut none = l();
        none.rows = 0;
        data_err(
            candidate_logprobs(&dev, none, queries.view(), None, lp.view()),
            "no logit rows",
        );
        assert!(
            lp.to_f32(&dev).unwrap().iter().all(|&v| v == 0.0)
                && lse.to_f32(&dev).unwrap().iter().all(|&v| v == 0.0),
            "{name}: a refused launch wrote its outputs"
        );
    }
}
