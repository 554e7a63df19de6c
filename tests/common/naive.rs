//! A deliberately naive f64 forward written from the HF definitions: plain loops, one
//! unpadded sequence at a time, no GEMM, no parallelism. The oracle of CPU-backend tests.

use zo::model::{Activation, Arch, Linear, Mlp, Model, ModelConfig, Norm, NormKind};

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
pub fn naive_logits(m: &Model, tokens: &[u32]) -> Vec<Vec<f64>> {
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

pub fn log_softmax(row: &[f64]) -> Vec<f64> {
    let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = mx + row.iter().map(|v| (v - mx).exp()).sum::<f64>().ln();
    row.iter().map(|v| v - lse).collect()
}
