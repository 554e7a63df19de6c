//! The CPU backend against a deliberately naive f64 forward written here from the HF
//! definitions: plain loops, one unpadded sequence at a time, no GEMM, no parallelism.

use zo::backend::cpu::CpuBackend;
use zo::backend::Backend;
use zo::model::{Activation, Model, ModelConfig};

mod common;
use common::naive::{log_softmax, naive_logits};
use zo::plan::{Plan, TokenizedExample, Variant};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Plan of raw sequences, no queries.
fn packed(seqs: &[Vec<u32>]) -> Plan {
    let mut p = Plan {
        cu_seqlens: vec![0],
        variants: vec![Variant::BASE],
        ..Plan::default()
    };
    for s in seqs {
        p.tokens.extend(s);
        p.positions.extend(0..s.len() as u32);
        p.cu_seqlens.push(p.tokens.len() as u32);
        p.seq_variant.push(0);
    }
    p
}

fn seqs(vocab: u32, lens: &[usize], salt: u32) -> Vec<Vec<u32>> {
    lens.iter()
        .enumerate()
        .map(|(s, &n)| {
            (0..n as u32)
                .map(|i| (i * 31 + s as u32 * 17 + salt * 7 + 3) % vocab)
                .collect()
        })
        .collect()
}

/// Every packed row's logits equal the naive single-sequence forward.
fn check_against_naive(model: Model, lens: &[usize]) {
    let vocab = model.config.vocab_size as u32;
    let ss = seqs(vocab, lens, 1);
    let plan = packed(&ss);
    let be = CpuBackend::new(model);
    let rows: Vec<u32> = (0..plan.n_tokens() as u32).collect();
    let got = be.logits_at(&plan, &rows).unwrap();
    let mut r = 0;
    let mut spread = 0.0f64;
    for s in &ss {
        let want = naive_logits(be.model(), s);
        for w in &want {
            let g = &got[r];
            let scale = w.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for (gv, wv) in g.iter().zip(w) {
                assert!(
                    (*gv as f64 - wv).abs() <= 1e-4 * scale,
                    "row {r}: {gv} vs {wv} (scale {scale})"
                );
            }
            let mx = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let mn = w.iter().cloned().fold(f64::INFINITY, f64::min);
            spread = spread.max(mx - mn);
            r += 1;
        }
    }
    // Logits that are all near zero would make the comparison vacuous.
    assert!(
        spread > 0.5,
        "logit spread {spread} too small to test anything"
    );
}

fn tiny(mut c: ModelConfig, f: impl FnOnce(&mut ModelConfig)) -> Model {
    f(&mut c);
    Model::random_with_std(c, 11, 0.2)
}

// ---------------------------------------------------------------------------------------
// Parity
// ---------------------------------------------------------------------------------------

#[test]
fn llama_gqa_untied() {
    check_against_naive(tiny(ModelConfig::tiny_llama(), |_| {}), &[7, 1, 12]);
}

#[test]
fn llama_with_biases_and_tied_head() {
    let m = tiny(ModelConfig::tiny_llama(), |c| {
        c.qkv_bias = true;
        c.o_bias = true;
        c.mlp_bias = true;
        c.tie_word_embeddings = true;
        c.num_kv_heads = 1;
    });
    check_against_naive(m, &[5, 9]);
}

#[test]
fn llama3_rope_scaling() {
    let m = tiny(ModelConfig::tiny_llama3(), |c| {
        c.num_layers = 1;
        c.head_dim = 16;
        c.num_heads = 2;
        c.num_kv_heads = 2;
    });
    check_against_naive(m, &[40, 3]);
}

#[test]
fn opt_pre_ln_with_final_norm() {
    check_against_naive(tiny(ModelConfig::tiny_opt(), |_| {}), &[6, 11, 2]);
}

#[test]
fn opt_post_ln_with_projections() {
    check_against_naive(tiny(ModelConfig::tiny_opt_post_ln(), |_| {}), &[8, 4]);
}

#[test]
fn opt_without_norm_affine_and_gelu() {
    let m = tiny(ModelConfig::tiny_opt(), |c| {
        c.norm_affine = false;
        c.activation = Activation::Gelu;
    });
    check_against_naive(m, &[5, 7]);
}

/// RoPE must act: the same model with rotary frequencies changed disagrees with the naive
/// forward, so the parity tests above can fail on a positional mistake.
#[test]
fn naive_comparison_detects_rope_mistakes() {
    let mut c = ModelConfig::tiny_llama();
    c.rope_theta = 10.0;
    let m = Model::random_with_std(c, 11, 0.2);
    let plan = packed(&seqs(97, &[10], 1));
    let got = CpuBackend::new(m.clone()).logits_at(&plan, &[9]).unwrap();
    let mut other = m;
    other.config.rope_theta = 10_000.0;
    let want = naive_logits(&other, &plan.tokens);
    let diff = got[0]
        .iter()
        .zip(&want[9])
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0, f64::max);
    assert!(diff > 1e-2, "rope theta had no visible effect ({diff})");
}

// ---------------------------------------------------------------------------------------
// Scoring end to end
// ---------------------------------------------------------------------------------------

#[test]
fn classification_loss_end_to_end() {
    for model in [
        tiny(ModelConfig::tiny_llama(), |_| {}),
        tiny(ModelConfig::tiny_opt(), |_| {}),
    ] {
        let examples = vec![
            TokenizedExample {
                prompt: vec![5, 9, 14, 3],
                candidates: vec![vec![20], vec![21], vec![22]],
                gold: 2,
                answers: Vec::new(),
            },
            TokenizedExample {
                prompt: vec![7, 8],
                candidates: vec![vec![30, 31, 32], vec![40]],
                gold: 0,
                answers: Vec::new(),
            },
        ];
        let plan = Plan::build(&examples, &[Variant::BASE]).unwrap();
        let be = CpuBackend::new(model);
        let scores = be.score(&plan).unwrap();
        assert_eq!(scores.query_logprobs.len(), plan.queries.len());
        assert_eq!(scores.examples.len(), 2);

        for (ex, got) in examples.iter().zip(&scores.examples) {
            // Candidate score = mean log p of its tokens, each given everything before it.
            let cand: Vec<f64> = ex
                .candidates
                .iter()
                .map(|cand| {
                    let mut seq = ex.prompt.clone();
                    seq.extend(cand);
                    let lp = naive_logits(be.model(), &seq[..seq.len() - 1]);
                    let n = ex.prompt.len();
                    cand.iter()
                        .enumerate()
                        .map(|(j, &t)| log_softmax(&lp[n - 1 + j])[t as usize])
                        .sum::<f64>()
                        / cand.len() as f64
                })
                .collect();
            let mx = cand.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = mx + cand.iter().map(|s| (s - mx).exp()).sum::<f64>().ln();
            let loss = lse - cand[ex.gold];
            assert!(
                (got.loss as f64 - loss).abs() < 1e-4,
                "{} vs {loss}",
                got.loss
            );
            for (g, w) in got.candidate_scores.iter().zip(&cand) {
                assert!((*g as f64 - w).abs() < 1e-4, "{g} vs {w}");
            }
            let argmax = (0..cand.len()).fold(0, |b, i| if cand[i] > cand[b] { i } else { b });
            assert_eq!(got.pred, argmax);
        }
    }
}
