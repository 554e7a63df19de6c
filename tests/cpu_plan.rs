//! CPU backend behaviour over packed plans: packing invariance, causality, and clear errors
//! for plans that do not fit the model.

use zo::backend::cpu::CpuBackend;
use zo::backend::Backend;
use zo::model::{Model, ModelConfig};
use zo::plan::{ExampleGroup, Plan, Query, Variant};
use zo::Error;

/// Packs `seqs` with a query at every row (scoring a fixed pseudo-random token).
fn packed(seqs: &[Vec<u32>], vocab: u32) -> Plan {
    let mut p = Plan {
        cu_seqlens: vec![0],
        variants: vec![Variant::BASE],
        ..Plan::default()
    };
    for s in seqs {
        for (i, &t) in s.iter().enumerate() {
            p.queries.push(Query {
                row: p.tokens.len() as u32,
                token: (t * 13 + i as u32) % vocab,
            });
            p.tokens.push(t);
            p.positions.push(i as u32);
        }
        p.cu_seqlens.push(p.tokens.len() as u32);
        p.seq_variant.push(0);
    }
    p
}

fn seqs(vocab: u32, lens: &[usize]) -> Vec<Vec<u32>> {
    lens.iter()
        .enumerate()
        .map(|(s, &n)| {
            (0..n as u32)
                .map(|i| (i * 37 + s as u32 * 101 + 5) % vocab)
                .collect()
        })
        .collect()
}

/// A model wide enough that its GEMMs take the blocked, multi-threaded paths.
fn mid_llama() -> Model {
    let c = ModelConfig {
        hidden_size: 128,
        embed_dim: 128,
        intermediate_size: 320,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 32,
        vocab_size: 1000,
        ..ModelConfig::tiny_llama()
    };
    Model::random_with_std(c, 5, 0.1)
}

fn models() -> Vec<Model> {
    vec![
        Model::random_with_std(ModelConfig::tiny_llama(), 3, 0.2),
        Model::random_with_std(ModelConfig::tiny_opt_post_ln(), 3, 0.2),
        mid_llama(),
    ]
}

#[test]
fn log_probs_do_not_depend_on_packing() {
    for model in models() {
        let vocab = model.config.vocab_size as u32;
        let be = CpuBackend::new(model);
        let ss = seqs(vocab, &[9, 1, 30, 17, 64]);
        let alone: Vec<Vec<f32>> = ss
            .iter()
            .map(|s| {
                be.score(&packed(std::slice::from_ref(s), vocab))
                    .unwrap()
                    .query_logprobs
            })
            .collect();
        for order in [[0, 1, 2, 3, 4], [4, 2, 0, 3, 1], [3, 4, 1, 0, 2]] {
            let batch: Vec<Vec<u32>> = order.iter().map(|&i| ss[i].clone()).collect();
            let got = be.score(&packed(&batch, vocab)).unwrap().query_logprobs;
            let mut at = 0;
            for &i in &order {
                for (g, w) in got[at..at + ss[i].len()].iter().zip(&alone[i]) {
                    assert!(
                        (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                        "sequence {i} in order {order:?}: {g} vs {w}"
                    );
                }
                at += ss[i].len();
            }
        }
    }
}

#[test]
fn later_tokens_do_not_change_earlier_logits() {
    for model in models() {
        let vocab = model.config.vocab_size as u32;
        let be = CpuBackend::new(model);
        let ss = seqs(vocab, &[6, 12]);
        let plan = packed(&ss, vocab);
        let rows: Vec<u32> = (0..plan.n_tokens() as u32).collect();
        let before = be.logits_at(&plan, &rows).unwrap();
        // Change the 9th token of the second sequence (packed row 6 + 8).
        let mut changed = plan.clone();
        changed.tokens[14] = (changed.tokens[14] + 1) % vocab;
        let after = be.logits_at(&changed, &rows).unwrap();
        for r in 0..14 {
            assert_eq!(before[r], after[r], "row {r} saw a later token");
        }
        assert_ne!(before[14], after[14]);
        assert_ne!(before[17], after[17]);
    }
}

#[test]
fn logits_at_follows_the_requested_rows_and_agrees_with_score() {
    let model = Model::random_with_std(ModelConfig::tiny_opt(), 9, 0.2);
    let vocab = model.config.vocab_size as u32;
    let be = CpuBackend::new(model);
    let plan = packed(&seqs(vocab, &[4, 5]), vocab);
    let all: Vec<u32> = (0..plan.n_tokens() as u32).collect();
    let full = be.logits_at(&plan, &all).unwrap();
    let picked = be.logits_at(&plan, &[7, 2, 7]).unwrap();
    assert_eq!(
        picked,
        vec![full[7].clone(), full[2].clone(), full[7].clone()]
    );

    let lp = be.score(&plan).unwrap().query_logprobs;
    for (q, lp) in plan.queries.iter().zip(lp) {
        let row = &full[q.row as usize];
        let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
        let want = row[q.token as usize] as f64 - lse;
        assert!((lp as f64 - want).abs() < 1e-5, "{lp} vs {want}");
    }
}

#[test]
fn seq_variant_may_be_left_empty_for_the_base_model() {
    let be = CpuBackend::new(Model::random(ModelConfig::tiny_llama(), 1));
    let mut plan = packed(&seqs(97, &[3, 4]), 97);
    let with = be.score(&plan).unwrap();
    plan.seq_variant.clear();
    assert_eq!(be.score(&plan).unwrap(), with);
}

fn data_err(be: &CpuBackend, plan: &Plan, needle: &str) {
    match be.score(plan) {
        Err(Error::Data(msg)) => assert!(msg.contains(needle), "{msg:?} lacks {needle:?}"),
        other => panic!("expected a data error mentioning {needle:?}, got {other:?}"),
    }
}

#[test]
fn plans_that_do_not_fit_the_model_are_rejected() {
    let be = CpuBackend::new(Model::random(ModelConfig::tiny_llama(), 1));
    let good = packed(&seqs(97, &[3, 4]), 97);
    be.score(&good).unwrap();

    let mut p = good.clone();
    p.tokens[5] = 97;
    data_err(&be, &p, "token 97 at row 5 is outside the vocabulary of 97");

    let mut p = good.clone();
    p.positions[2] = 128;
    data_err(
        &be,
        &p,
        "position 128 at row 2 exceeds max_position_embeddings 128",
    );

    let mut p = good.clone();
    p.positions.pop();
    data_err(&be, &p, "6 positions for 7 tokens");

    let mut p = good.clone();
    *p.cu_seqlens.last_mut().unwrap() = 6;
    data_err(&be, &p, "cu_seqlens ends at 6 but the plan has 7 tokens");

    let mut p = good.clone();
    p.cu_seqlens = vec![0, 3, 3, 7];
    p.seq_variant = vec![0, 0, 0];
    data_err(&be, &p, "sequence 1 spans cu_seqlens 3..3");

    let mut p = good.clone();
    p.cu_seqlens[0] = 1;
    data_err(&be, &p, "cu_seqlens starts at 1");

    data_err(&be, &Plan::default(), "cu_seqlens has 0 entries");

    let mut p = good.clone();
    p.seq_variant = vec![0];
    data_err(&be, &p, "seq_variant has 1 entries for 2 sequences");

    let mut p = good.clone();
    p.seq_variant[1] = 4;
    data_err(&be, &p, "sequence 1 uses variant 4");

    let mut p = good.clone();
    p.queries[3].row = 7;
    data_err(&be, &p, "query 3 reads row 7");

    let mut p = good.clone();
    p.queries[0].token = 1000;
    data_err(&be, &p, "query 0 scores token 1000");

    let mut p = good.clone();
    p.examples.push(ExampleGroup {
        variant: 0,
        candidates: vec![0..1, 5..9],
        gold: 0,
    });
    data_err(&be, &p, "example 0 candidate 1 owns queries 5..9");

    let mut p = good.clone();
    p.examples.push(ExampleGroup {
        variant: 0,
        candidates: std::iter::once(0..1).collect(),
        gold: 1,
    });
    data_err(&be, &p, "example 0 has gold 1 among 1 candidates");

    match be.logits_at(&good, &[0, 7]) {
        Err(Error::Data(msg)) => assert!(msg.contains("row 7"), "{msg}"),
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn perturbed_variants_are_reported_unsupported() {
    let be = CpuBackend::new(Model::random(ModelConfig::tiny_llama(), 1));
    let mut p = packed(&seqs(97, &[3]), 97);
    p.variants[0] = Variant {
        seed: 1,
        sign: 1,
        eps: 1e-3,
    };
    match be.score(&p) {
        Err(Error::Unsupported(msg)) => assert!(msg.contains("perturbed"), "{msg}"),
        other => panic!("expected unsupported, got {other:?}"),
    }
}

#[test]
fn malformed_models_give_tensor_errors() {
    let mut m = Model::random(ModelConfig::tiny_llama(), 1);
    m.layers[1].k.w.pop();
    let be = CpuBackend::new(m);
    let plan = packed(&seqs(97, &[3]), 97);
    match be.score(&plan) {
        Err(Error::Tensor { name, msg }) => {
            assert_eq!(name, "layers.1.k_proj");
            assert!(msg.contains("expected [16][32]"), "{msg}");
        }
        other => panic!("expected a tensor error, got {other:?}"),
    }

    let mut m = Model::random(ModelConfig::tiny_opt(), 1);
    m.pos_embed = None;
    match CpuBackend::new(m).score(&plan) {
        Err(Error::Tensor { name, .. }) => assert_eq!(name, "embed_positions"),
        other => panic!("expected a tensor error, got {other:?}"),
    }
}

#[test]
fn a_plan_without_queries_scores_to_nothing() {
    let be = CpuBackend::new(Model::random(ModelConfig::tiny_opt(), 1));
    let mut p = packed(&seqs(97, &[3]), 97);
    p.queries.clear();
    let s = be.score(&p).unwrap();
    assert!(s.query_logprobs.is_empty() && s.examples.is_empty());
    // Validation still runs before the early return.
    p.tokens[0] = 500;
    data_err(&be, &p, "token 500 at row 0");
}
