//! The CPU backend against a deliberately naive f64 forward written here from the HF
//! definitions: plain loops, one unpadded sequence at a time, no GEMM, no parallelism.

use zo::backend::cpu::CpuBackend;
use zo::backend::Backend;
use zo::model::{Activation, Arch, Linear, Mlp, Model, ModelConfig, Norm, NormKind};
use zo::plan::{Plan, TokenizedExample, Variant};

// ---------------------------------------------------------------------------------------
// Naive reference
// ---------------------------------------------------------------------------------------

fn matvec(lin: &Linear, x: &[f64]) -> Vec<f64> {
    assert_eq!(x.len(), lin.in_dim);
    (0..lin.out_dim)
        .map(|o| {
            let row = &lin.w[o * lin.in_dim..(o + 1) * lin.in_dim];
            let mut s = 0.0;
            for (w, xi) in row.iter().zip(x) {
                s += *w as f64 * xi;
            }
            s + lin.b.as_ref().map_or(0.0, |b| b[o] as f64)
        })
        .collect()
}

fn norm(n: &Norm, x: &[f64]) -> Vec<f64> {
    let d = x.len() as f64;
    let mut y: Vec<f64> = match n.kind {
        NormKind::Rms => {
            let ms = x.iter().map(|v| v * v).sum::<f64>() / d;
            x.iter().map(|v| v / (ms + n.eps as f64).sqrt()).collect()
        }
        NormKind::Layer => {
            let mu = x.iter().sum::<f64>() / d;
            let var = x.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d;
            x.iter()
                .map(|v| (v - mu) / (var + n.eps as f64).sqrt())
                .collect()
        }
    };
    if let Some(w) = &n.w {
        for i in 0..y.len() {
            y[i] *= w[i] as f64;
        }
    }
    if let Some(b) = &n.b {
        for i in 0..y.len() {
            y[i] += b[i] as f64;
        }
    }
    y
}

fn act(a: Activation, x: f64) -> f64 {
    match a {
        Activation::Silu => x / (1.0 + (-x).exp()),
        Activation::Relu => {
            if x > 0.0 {
                x
            } else {
                0.0
            }
        }
        Activation::Gelu => 0.5 * x * (1.0 + erf(x / 2f64.sqrt())),
    }
}

/// erf by its Maclaurin series (converges fast for the small arguments tests produce) and
/// the asymptotic complement beyond.
fn erf(x: f64) -> f64 {
    if x.abs() > 5.0 {
        return x.signum();
    }
    let mut term = x;
    let mut sum = x;
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

fn inv_freqs(c: &ModelConfig) -> Vec<f64> {
    let d = c.head_dim as f64;
    (0..c.head_dim / 2)
        .map(|i| {
            let f = (c.rope_theta as f64).powf(-(2.0 * i as f64) / d);
            let Some(s) = &c.rope_scaling else {
                return f;
            };
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let old = s.original_max_position_embeddings as f64;
            let (lo, hi) = (s.low_freq_factor as f64, s.high_freq_factor as f64);
            if wavelen < old / hi {
                f
            } else if wavelen > old / lo {
                f / s.factor as f64
            } else {
                let sm = (old / wavelen - lo) / (hi - lo);
                (1.0 - sm) * f / s.factor as f64 + sm * f
            }
        })
        .collect()
}

/// rotate_half RoPE on one head vector.
fn rope(v: &mut [f64], pos: usize, inv: &[f64]) {
    let half = v.len() / 2;
    for i in 0..half {
        let (c, s) = ((pos as f64 * inv[i]).cos(), (pos as f64 * inv[i]).sin());
        let (a, b) = (v[i], v[i + half]);
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
    }
}

fn attention(m: &Model, li: usize, xs: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let c = &m.config;
    let l = &m.layers[li];
    let hd = c.head_dim;
    let inv = inv_freqs(c);
    let mut qs: Vec<Vec<f64>> = xs.iter().map(|x| matvec(&l.q, x)).collect();
    let mut ks: Vec<Vec<f64>> = xs.iter().map(|x| matvec(&l.k, x)).collect();
    let vs: Vec<Vec<f64>> = xs.iter().map(|x| matvec(&l.v, x)).collect();
    if c.arch == Arch::Llama {
        for p in 0..xs.len() {
            for h in 0..c.num_heads {
                rope(&mut qs[p][h * hd..(h + 1) * hd], p, &inv);
            }
            for h in 0..c.num_kv_heads {
                rope(&mut ks[p][h * hd..(h + 1) * hd], p, &inv);
            }
        }
    }
    let scale = 1.0 / (hd as f64).sqrt();
    let per_kv = c.num_heads / c.num_kv_heads;
    let mut out = vec![vec![0.0; c.num_heads * hd]; xs.len()];
    for i in 0..xs.len() {
        for h in 0..c.num_heads {
            let g = h / per_kv;
            let scores: Vec<f64> = (0..=i)
                .map(|j| {
                    (0..hd)
                        .map(|d| qs[i][h * hd + d] * ks[j][g * hd + d])
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = scores.iter().map(|s| (s - mx).exp()).sum();
            for (j, s) in scores.iter().enumerate() {
                let p = (s - mx).exp() / z;
                for d in 0..hd {
                    out[i][h * hd + d] += p * vs[j][g * hd + d];
                }
            }
        }
    }
    out.iter().map(|a| matvec(&l.o, a)).collect()
}

fn mlp(m: &Model, li: usize, x: &[f64]) -> Vec<f64> {
    let a = m.config.activation;
    match &m.layers[li].mlp {
        Mlp::Gated { gate, up, down } => {
            let g = matvec(gate, x);
            let u = matvec(up, x);
            let h: Vec<f64> = g.iter().zip(&u).map(|(g, u)| act(a, *g) * u).collect();
            matvec(down, &h)
        }
        Mlp::Plain { fc1, fc2 } => {
            let h: Vec<f64> = matvec(fc1, x).into_iter().map(|v| act(a, v)).collect();
            matvec(fc2, &h)
        }
    }
}

fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a + b).collect()
}

/// Full-vocabulary logits at every position of one sequence (positions 0..n).
fn naive_logits(m: &Model, tokens: &[u32]) -> Vec<Vec<f64>> {
    let c = &m.config;
    let e = c.embed_dim;
    let h = c.hidden_size;
    let mut xs: Vec<Vec<f64>> = tokens
        .iter()
        .enumerate()
        .map(|(p, &t)| {
            let mut x: Vec<f64> = m.embed[t as usize * e..(t as usize + 1) * e]
                .iter()
                .map(|&v| v as f64)
                .collect();
            if let Some(pi) = &m.project_in {
                x = matvec(pi, &x);
            }
            if let Some(pe) = &m.pos_embed {
                for d in 0..h {
                    x[d] += pe[(p + 2) * h + d] as f64;
                }
            }
            x
        })
        .collect();
    let pre = c.arch == Arch::Llama || c.pre_norm;
    for li in 0..c.num_layers {
        let l = &m.layers[li];
        if pre {
            let n: Vec<Vec<f64>> = xs.iter().map(|x| norm(&l.attn_norm, x)).collect();
            let a = attention(m, li, &n);
            xs = xs.iter().zip(&a).map(|(x, a)| add(x, a)).collect();
            xs = xs
                .iter()
                .map(|x| add(x, &mlp(m, li, &norm(&l.mlp_norm, x))))
                .collect();
        } else {
            let a = attention(m, li, &xs);
            xs = xs
                .iter()
                .zip(&a)
                .map(|(x, a)| norm(&l.attn_norm, &add(x, a)))
                .collect();
            xs = xs
                .iter()
                .map(|x| norm(&l.mlp_norm, &add(x, &mlp(m, li, x))))
                .collect();
        }
    }
    xs.iter()
        .map(|x| {
            let mut x = x.clone();
            if let Some(n) = &m.final_norm {
                x = norm(n, &x);
            }
            if let Some(po) = &m.project_out {
                x = matvec(po, &x);
            }
            let head = m.head();
            (0..c.vocab_size)
                .map(|v| (0..e).map(|d| head[v * e + d] as f64 * x[d]).sum())
                .collect()
        })
        .collect()
}

fn log_softmax(row: &[f64]) -> Vec<f64> {
    let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = mx + row.iter().map(|v| (v - mx).exp()).sum::<f64>().ln();
    row.iter().map(|v| v - lse).collect()
}

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
            },
            TokenizedExample {
                prompt: vec![7, 8],
                candidates: vec![vec![30, 31, 32], vec![40]],
                gold: 0,
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
