//! The eval loop over a small deterministic backend: a "copy" scorer that gives a candidate
//! token log-prob 0 when it already occurs earlier in its sequence and -2 otherwise. Its
//! outcome per example is known by construction, so accuracy, loss and token counts can be
//! checked exactly for any batch size.

use zo::backend::{Backend, Scores};
use zo::eval::{evaluate, EvalProgress};
use zo::plan::{classification_scores, Plan, TokenizedExample};

struct CopyBackend;

impl Backend for CopyBackend {
    fn name(&self) -> &'static str {
        "copy"
    }

    fn score(&self, plan: &Plan) -> zo::Result<Scores> {
        let lp: Vec<f32> = plan
            .queries
            .iter()
            .map(|q| {
                let row = q.row as usize;
                let s = (0..plan.n_seqs())
                    .find(|&s| plan.seq_range(s).contains(&row))
                    .unwrap();
                let start = plan.seq_range(s).start;
                // A shared context's rows come first in the sequence.
                let ctx = plan.context(s).map_or(&[][..], |c| {
                    let p = plan.seq_range(c.parent as usize).start;
                    &plan.tokens[p..p + c.len as usize]
                });
                if ctx.contains(&q.token) || plan.tokens[start..=row].contains(&q.token) {
                    0.0
                } else {
                    -2.0
                }
            })
            .collect();
        Ok(Scores {
            examples: classification_scores(plan, &lp),
            query_logprobs: lp,
        })
    }
}

/// Scores a plan but drops the last example, as a broken backend might.
struct LossyBackend;

impl Backend for LossyBackend {
    fn name(&self) -> &'static str {
        "lossy"
    }

    fn score(&self, plan: &Plan) -> zo::Result<Scores> {
        let mut s = CopyBackend.score(plan)?;
        s.examples.pop();
        Ok(s)
    }
}

const GREAT: u32 = 10;
const TERRIBLE: u32 = 11;

fn ex(prompt: &[u32], gold: usize) -> TokenizedExample {
    TokenizedExample {
        prompt: prompt.to_vec(),
        candidates: vec![vec![TERRIBLE], vec![GREAT]],
        gold,
        answers: Vec::new(),
    }
}

/// 7 examples: 4 where the gold word occurs in the prompt (right, confident), 2 where the
/// other word does (wrong, confident), 1 where neither does (tie → candidate 0, gold 1).
fn examples() -> Vec<TokenizedExample> {
    vec![
        ex(&[1, GREAT, 3], 1),
        ex(&[1, TERRIBLE], 0),
        ex(&[1, 4, 5, GREAT, 6], 1),
        ex(&[1, TERRIBLE, 7, 8], 0),
        ex(&[1, GREAT], 0),
        ex(&[1, 9, TERRIBLE], 1),
        ex(&[1, 2, 3], 1),
    ]
}

#[test]
fn accuracy_loss_and_tokens_are_exact_for_any_batch() {
    let exs = examples();
    let right = (1.0 + (-2f64).exp()).ln();
    let wrong = (1.0 + 2f64.exp()).ln();
    let tie = 2f64.ln();
    let want_loss = (4.0 * right + 2.0 * wrong + tie) / 7.0;
    let want_tokens: usize = exs.iter().map(|e| e.prompt.len()).sum();
    for batch in [1, 2, 3, 7, 16] {
        let mut seen: Vec<EvalProgress> = Vec::new();
        let r = evaluate(&CopyBackend, &exs, batch, &mut |p| seen.push(*p)).unwrap();
        assert_eq!(r.n, 7);
        assert_eq!(r.correct, 4, "batch {batch}");
        assert!((r.accuracy - 4.0 / 7.0).abs() < 1e-12);
        assert!(
            (r.mean_loss - want_loss).abs() < 1e-6,
            "batch {batch}: {}",
            r.mean_loss
        );
        assert_eq!(r.predictions, [1, 0, 1, 0, 1, 0, 0]);
        assert_eq!(r.tokens, want_tokens);
        assert_eq!(seen.len(), 7usize.div_ceil(batch));
        let done: Vec<usize> = seen.iter().map(|p| p.done).collect();
        let want_done: Vec<usize> = (1..=seen.len()).map(|i| (i * batch).min(7)).collect();
        assert_eq!(done, want_done);
        assert!(seen.iter().all(|p| p.total == 7));
        assert_eq!(seen.last().unwrap().correct, 4);
    }
}

#[test]
fn multi_token_candidates_count_every_fed_token() {
    let exs = vec![TokenizedExample {
        prompt: vec![1, 20, 21],
        candidates: vec![vec![30, 31], vec![20, 21, 22]],
        gold: 1,
        answers: Vec::new(),
    }];
    let r = evaluate(&CopyBackend, &exs, 4, &mut |_| {}).unwrap();
    // The prompt [1 20 21] once, then the candidates' children [30] and [20 21] reading it:
    // candidate means -2 and -2/3.
    assert_eq!(r.tokens, 6);
    assert_eq!(r.predictions, [1]);
    let want = ((-2f64).exp() + (-2f64 / 3.0).exp()).ln() + 2.0 / 3.0;
    assert!((r.mean_loss - want).abs() < 1e-6);
}

#[test]
fn bad_inputs_and_backends_are_errors() {
    let exs = examples();
    let e = evaluate(&CopyBackend, &exs, 0, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("batch size"), "{e}");
    let e = evaluate(&CopyBackend, &[], 4, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("no examples"), "{e}");
    let e = evaluate(&LossyBackend, &exs, 4, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lossy") && e.contains("3 example scores") && e.contains("4"),
        "{e}"
    );
    let mut bad = examples();
    bad[5].gold = 2;
    let e = evaluate(&CopyBackend, &bad, 4, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("starting at example 4") && e.contains("gold index 2"),
        "{e}"
    );
}
