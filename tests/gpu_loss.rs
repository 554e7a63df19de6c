//! The loss kernels (csrc/loss.cu) on the GPU against their CPU twins, under the rules of
//! tests/ops_cases. Needs a GPU and a build with kernels; elsewhere it prints
//! `skipping: <reason>` and passes, unless ZO_REQUIRE_GPU=1 turns the skip into a failure.
#![cfg(feature = "cuda")]

mod ops_cases;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr};
use ops_cases::*;
use zo::backend::cuda::{CudaDevice, Logits, LossLayout};
use zo::plan::{classification_scores, Plan, TokenizedExample, Variant};

fn device() -> Option<CudaDevice> {
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e) if std::env::var("ZO_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("ZO_REQUIRE_GPU=1 but no usable GPU: {e}")
        }
        Err(e) => {
            eprintln!("skipping: gpu_loss: {e}");
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
fn candidate_logprobs_match_the_twin_within_the_rule() {
    let Some(dev) = device() else { return };
    for case in logprob_cases(true) {
        let logits = up(&dev, &case.logits);
        let queries = up(&dev, &case.queries);
        let mut lse = up(&dev, &vec![0f32; case.rows]);
        let mut lp = up(&dev, &vec![0f32; case.n_queries()]);
        let l = Logits {
            data: &logits,
            rows: case.rows,
            vocab: case.vocab,
            ld: case.ld,
        };
        dev.candidate_logprobs(
            l,
            &queries,
            Some(&mut lse as &mut dyn DevicePtrMut<f32>),
            &mut lp,
        )
        .unwrap();
        case.check("gpu", &down(&dev, &lse), &down(&dev, &lp));

        // Without the lse output the log-probs are the same.
        let mut lp2 = up(&dev, &vec![0f32; case.n_queries()]);
        let l = Logits {
            data: &logits,
            rows: case.rows,
            vocab: case.vocab,
            ld: case.ld,
        };
        dev.candidate_logprobs(l, &queries, None, &mut lp2).unwrap();
        assert_bits("lse not written", &down(&dev, &lp2), &down(&dev, &lp));
    }
}

fn classify(dev: &CudaDevice, layout: &LossLayout, lp: &[f32]) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
    let lp = up(dev, lp);
    let cands = up(dev, &layout.candidates);
    let offs = up(dev, &layout.example_offsets);
    let gold = up(dev, &layout.gold);
    let mut loss = up(dev, &vec![0f32; layout.n_examples()]);
    let mut pred = up(dev, &vec![0u32; layout.n_examples()]);
    let mut scores = up(dev, &vec![0f32; layout.n_candidates()]);
    dev.classification_loss(&lp, &cands, &offs, &gold, &mut loss, &mut pred, &mut scores)
        .unwrap();
    (down(dev, &loss), down(dev, &pred), down(dev, &scores))
}

#[test]
fn classification_loss_matches_the_twin() {
    let Some(dev) = device() else { return };
    for (seed, n) in [(1, 1), (2, 7), (3, 300)] {
        let case = ClassifyCase::new(seed, n);
        let layout = LossLayout::new(&case.plan).unwrap();
        let (loss, pred, scores) = classify(&dev, &layout, &case.query_logprobs);
        case.check(&format!("gpu, {n} examples"), &loss, &pred, &scores);
    }
}

/// A plan built from examples, scored end to end on the device from logits: the same
/// per-example scores as the twin computes from the twin's log-probs.
#[test]
fn plan_scoring_chain_matches_the_twin() {
    let Some(dev) = device() else { return };
    let ex = |p: &[u32], c: &[&[u32]], g| TokenizedExample {
        prompt: p.to_vec(),
        candidates: c.iter().map(|c| c.to_vec()).collect(),
        gold: g,
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
    let layout = LossLayout::new(&plan).unwrap();
    let vocab = 50272;
    let rows = layout.rows.len();
    let logits = gaussian(77, rows * vocab, 4.0);
    let d_logits = up(&dev, &logits);
    let queries = up(&dev, &layout.queries);
    let mut lp = up(&dev, &vec![0f32; layout.n_queries()]);
    let l = Logits {
        data: &d_logits as &dyn DevicePtr<f32>,
        rows,
        vocab,
        ld: vocab,
    };
    dev.candidate_logprobs(l, &queries, None, &mut lp).unwrap();
    let gpu_lp = down(&dev, &lp);
    let (loss, pred, scores) = classify(&dev, &layout, &gpu_lp);
    let gpu = layout.scores(&loss, &pred, &scores);
    // The twin's log-probs, as CpuBackend::score forms them.
    let twin_lp: Vec<f32> = plan
        .queries
        .iter()
        .map(|q| {
            let r = layout.rows.binary_search(&q.row).unwrap();
            let row = &logits[r * vocab..][..vocab];
            (row[q.token as usize] as f64 - zo::backend::cpu::ops::log_sum_exp(row)) as f32
        })
        .collect();
    let twin = classification_scores(&plan, &twin_lp);
    for (e, (g, t)) in gpu.iter().zip(&twin).enumerate() {
        assert_eq!(g.pred, t.pred, "example {e}");
        assert!(
            (g.loss - t.loss).abs() <= 1e-4,
            "example {e}: {} vs {}",
            g.loss,
            t.loss
        );
        for (a, b) in g.candidate_scores.iter().zip(&t.candidate_scores) {
            assert!((a - b).abs() <= 1e-4, "example {e}: {a} vs {b}");
        }
    }
}
