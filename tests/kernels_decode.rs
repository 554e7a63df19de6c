//! The decode launchers (csrc/decode.cu) on every device against their CPU twins.
//!
//! Decode attention (one query per sequence over its prefix and paged cache, split along the
//! keys) is checked under the attention tolerance rule of tests/common/attention.rs, as a
//! max-norm over a batch: max |out − ref64| ≤ 2·max |naive_T − ref64| + 1e-6, where naive_T is
//! the CPU twin (`causal_attention_with_prefix` with the query as the last row of its
//! sequence: earlier cached tokens as its prefix, its own token as its one row) rounded to the
//! output type T and ref64 the same attention in f64. Cases cover every storage dtype, head
//! dims 64, 128 (fast instances), 32, 80 and 256 (generic), GQA ratios 1, 3, 8, 16 and 48,
//! contexts of one split, exactly one split, one key past it and many splits, shared prompt
//! pages, a prefix with +, − and base sequences (Gaussian and Rademacher) and a prefix longer
//! than a split.
//!
//! The token pick is checked bit for bit against `decode::pick` over random, tied and
//! NaN/±inf rows, greedy and seeded at several temperatures, noise addresses past 2^32.
#![cfg(feature = "cuda")]

#[path = "common/devices.rs"]
mod devices;

use devices::devices;
use zo::backend::cpu::attention::{
    causal_attention_with_prefix, AttnShape, LayerPrefixes, PrefixKv,
};
use zo::backend::cuda::kernels::attention::{DevicePrefix, QkvLayout, PAGE};
use zo::backend::cuda::kernels::decode::{
    decode_attention, pick_tokens, DecodeAttention, NoiseRows, SPLIT_KEYS,
};
use zo::backend::cuda::kernels::loss::Logits;
use zo::backend::cuda::{CudaDevice, DBuf, DType};
use zo::backend::decode::{pick, Sampling};
use zo::model::{Model, ModelConfig};
use zo::perturb::prefix::Prefix;
use zo::perturb::{Dist, FamilyConfig, Segment};
use zo::rng::Stream;
use zo::Error;

const DTYPES: [DType; 3] = [DType::F32, DType::Bf16, DType::F16];
/// Extra output columns past the heads, to check that only the heads' columns are written.
const OUT_PAD: usize = 8;
const SENTINEL: f32 = -12345.0;

/// One sequence: `ctx` cached positions (the query's own token the last of them), the first
/// `prompt` of them shared with the other `shared` sequences, and its variant's sign.
#[derive(Debug, Clone, Copy)]
struct Seq {
    ctx: usize,
    shared: bool,
    sign: i8,
}

const fn seq(ctx: usize, shared: bool, sign: i8) -> Seq {
    Seq { ctx, shared, sign }
}

#[derive(Debug, Clone)]
struct Spec {
    name: &'static str,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Tokens of the prompt the `shared` sequences start with (their full pages shared).
    prompt: usize,
    seqs: Vec<Seq>,
    prefix: usize,
    dist: Dist,
    q_gain: f32,
    seed: u64,
}

struct Case {
    spec: Spec,
    layout: QkvLayout,
    qkv: Vec<f32>,
    /// Unused slots are NaN: a kernel reading one poisons its output.
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
    ctx_lens: Vec<u32>,
    block_tables: Vec<u32>,
    max_pages: usize,
    prefix_k: Vec<f32>,
    prefix_v: Vec<f32>,
    layer: usize,
    segments: Vec<Segment>,
    scale: f32,
    /// CPU twin (fp32) and f64 reference, `[n_seqs][heads·hd]`.
    naive: Vec<f32>,
    ref64: Vec<f64>,
}

/// Uniform values in [-1, 1) from the project's RNG (stream `tensor` of the case seed).
fn vals(seed: u64, tensor: u32, n: usize) -> Vec<f32> {
    let s = Stream::new(seed, tensor, 0);
    (0..n as u64).map(|i| 2.0 * s.uniform(i) - 1.0).collect()
}

impl Spec {
    fn max_ctx(&self) -> usize {
        self.seqs.iter().map(|s| s.ctx).max().unwrap_or(0)
    }

    fn build(&self) -> Case {
        let (heads, kvh, hd) = (self.heads, self.kv_heads, self.head_dim);
        let (qw, kw) = (heads * hd, kvh * hd);
        let n = self.seqs.len();
        let layout = QkvLayout::fused(n, heads, kvh, hd);
        let mut qkv = vals(self.seed, 1, n * layout.ld);
        for row in qkv.chunks_mut(layout.ld) {
            row[..qw].iter_mut().for_each(|v| *v *= self.q_gain);
        }
        let q: Vec<f32> = qkv
            .chunks(layout.ld)
            .flat_map(|r| r[..qw].to_vec())
            .collect();

        // Each sequence's cached rows; shared ones start with the common prompt.
        let prompt_k = vals(self.seed, 2, self.prompt * kw);
        let prompt_v = vals(self.seed, 3, self.prompt * kw);
        let rows: Vec<(Vec<f32>, Vec<f32>)> = self
            .seqs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut k = vals(self.seed, 100 + i as u32, s.ctx * kw);
                let mut v = vals(self.seed, 200 + i as u32, s.ctx * kw);
                if s.shared {
                    assert!(s.ctx >= self.prompt, "{}: a shared sequence", self.name);
                    k[..self.prompt * kw].copy_from_slice(&prompt_k);
                    v[..self.prompt * kw].copy_from_slice(&prompt_v);
                }
                (k, v)
            })
            .collect();

        // Pages handed out back to front from a pool, so tables are far from the identity; the
        // prompt's full pages are shared, everything else (a partial prompt page included) is
        // the sequence's own.
        let shared_full = self.prompt / PAGE;
        let own_pages: Vec<usize> = self
            .seqs
            .iter()
            .map(|s| s.ctx.div_ceil(PAGE) - if s.shared { shared_full } else { 0 })
            .collect();
        let max_pages = self.max_ctx().div_ceil(PAGE) + 1;
        let total = shared_full + own_pages.iter().sum::<usize>() + 2;
        let mut next = total;
        let mut take = || {
            next -= 1;
            next as u32
        };
        let prompt_pages: Vec<u32> = (0..shared_full).map(|_| take()).collect();
        let page_elems = PAGE * kw;
        let mut k_cache = vec![f32::NAN; total * page_elems];
        let mut v_cache = vec![f32::NAN; total * page_elems];
        let mut block_tables = vec![u32::MAX; n * max_pages];
        for (si, s) in self.seqs.iter().enumerate() {
            let table = &mut block_tables[si * max_pages..][..max_pages];
            let first = if s.shared { shared_full } else { 0 };
            table[..first].copy_from_slice(&prompt_pages[..first]);
            for slot in table.iter_mut().take(s.ctx.div_ceil(PAGE)).skip(first) {
                *slot = take();
            }
            for p in 0..s.ctx {
                let at = (table[p / PAGE] as usize * PAGE + p % PAGE) * kw;
                k_cache[at..at + kw].copy_from_slice(&rows[si].0[p * kw..][..kw]);
                v_cache[at..at + kw].copy_from_slice(&rows[si].1[p * kw..][..kw]);
            }
        }

        // The prefix family on a model of this attention shape (layer 1, so that the tensor
        // ids are not layer 0's); segments are runs of sequences of one sign.
        let layer = 1;
        let (mut prefix_k, mut prefix_v, mut segments) = (Vec::new(), Vec::new(), Vec::new());
        let family = (self.prefix > 0).then(|| {
            let config = ModelConfig {
                num_heads: heads,
                num_kv_heads: kvh,
                head_dim: hd,
                ..ModelConfig::tiny_llama()
            };
            let model = Model::random(config, self.seed ^ 0x5eed);
            let keys: Vec<Vec<f32>> = (0..2)
                .map(|l| vals(self.seed, 10 + l, self.prefix * kw))
                .collect();
            let values: Vec<Vec<f32>> = (0..2)
                .map(|l| vals(self.seed, 20 + l, self.prefix * kw))
                .collect();
            prefix_k = keys[layer].clone();
            prefix_v = values[layer].clone();
            let cfg = FamilyConfig::Prefix {
                tokens: self.prefix,
            };
            Prefix::with_state(cfg, self.dist, &model, keys, values).unwrap()
        });
        let (seed, eps) = (0xdec0_de00_u64 ^ self.seed, 0.25f32);
        for (si, s) in self.seqs.iter().enumerate() {
            if s.sign == 0 {
                continue;
            }
            let scale = s.sign as f32 * eps;
            match segments.last_mut() {
                Some(Segment {
                    rows: r, scale: sc, ..
                }) if r.end == si && *sc == scale => r.end = si + 1,
                _ => segments.push(Segment {
                    rows: si..si + 1,
                    variant: segments.len(),
                    seed,
                    scale,
                }),
            }
        }
        let prefixes = family
            .as_ref()
            .and_then(|f| LayerPrefixes::new(f, layer, &segments));

        // The twin's view: keys before the query = prefix ++ cached rows but the last; the
        // last cached row is the query's own.
        let mut before = Vec::new();
        let (mut own_k, mut own_v) = (Vec::new(), Vec::new());
        for (si, s) in self.seqs.iter().enumerate() {
            let (mut bk, mut bv) = match prefixes.as_ref().and_then(|p| p.at_row(si)) {
                Some(p) => (p.k.to_vec(), p.v.to_vec()),
                None => (Vec::new(), Vec::new()),
            };
            let last = (s.ctx - 1) * kw;
            bk.extend_from_slice(&rows[si].0[..last]);
            bv.extend_from_slice(&rows[si].1[..last]);
            own_k.extend_from_slice(&rows[si].0[last..]);
            own_v.extend_from_slice(&rows[si].1[last..]);
            before.push((bk, bv));
        }
        let shape = AttnShape {
            heads,
            kv_heads: kvh,
            head_dim: hd,
        };
        let scale = (hd as f64).powf(-0.5) as f32;
        let cu: Vec<u32> = (0..=n as u32).collect();
        let naive = causal_attention_with_prefix(&q, &own_k, &own_v, &cu, shape, scale, |s| {
            Some(PrefixKv {
                k: &before[s].0,
                v: &before[s].1,
            })
        });
        let ref64 = attention_f64(&q, &own_k, &own_v, shape, scale, &before);
        Case {
            spec: self.clone(),
            layout,
            qkv,
            k_cache,
            v_cache,
            ctx_lens: self.seqs.iter().map(|s| s.ctx as u32).collect(),
            block_tables,
            max_pages,
            prefix_k,
            prefix_v,
            layer,
            segments,
            scale,
            naive,
            ref64,
        }
    }
}

/// One query per sequence over `[before; own]`, in f64.
fn attention_f64(
    q: &[f32],
    own_k: &[f32],
    own_v: &[f32],
    shape: AttnShape,
    scale: f32,
    before: &[(Vec<f32>, Vec<f32>)],
) -> Vec<f64> {
    let (heads, hd) = (shape.heads, shape.head_dim);
    let (qw, kw) = (heads * hd, shape.kv_heads * hd);
    let mut out = vec![0.0f64; q.len()];
    for (s, (bk, bv)) in before.iter().enumerate() {
        let keys: Vec<&[f32]> = bk.chunks(kw).chain([&own_k[s * kw..][..kw]]).collect();
        let values: Vec<&[f32]> = bv.chunks(kw).chain([&own_v[s * kw..][..kw]]).collect();
        for h in 0..heads {
            let g = h / (heads / shape.kv_heads);
            let qi = &q[s * qw + h * hd..][..hd];
            let scores: Vec<f64> = keys
                .iter()
                .map(|k| {
                    let d: f64 = qi
                        .iter()
                        .zip(&k[g * hd..][..hd])
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum();
                    d * scale as f64
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            let o = &mut out[s * qw + h * hd..][..hd];
            for (ej, v) in e.iter().zip(&values) {
                for (o, &x) in o.iter_mut().zip(&v[g * hd..][..hd]) {
                    *o += ej / sum * x as f64;
                }
            }
        }
    }
    out
}

impl Case {
    /// Checks an output `[n_seqs][heads·hd]` under the tolerance rule; returns the largest
    /// |out − ref64|.
    fn check(&self, out: &[f32], dtype: DType, what: &str) -> f64 {
        assert_eq!(out.len(), self.ref64.len(), "{what}: output length");
        let worst = |x: &mut dyn Iterator<Item = f64>| {
            x.zip(&self.ref64)
                .map(|(v, &r)| (v - r).abs())
                .enumerate()
                .fold(
                    (0.0f64, 0),
                    |m, (i, e)| if e > m.0 || e.is_nan() { (e, i) } else { m },
                )
        };
        let (err, i) = worst(&mut out.iter().map(|&v| v as f64));
        let (naive_err, _) = worst(&mut self.naive.iter().map(|&v| dtype.round(v) as f64));
        let bound = 2.0 * naive_err + 1e-6;
        let width = self.spec.heads * self.spec.head_dim;
        assert!(
            err <= bound,
            "{what} ({}, {dtype}): max |out − ref64| = {err:e} > bound {bound:e} (2 × the \
             twin's {naive_err:e} + 1e-6); worst at sequence {} col {}: out {} ref64 {}",
            self.spec.name,
            i / width,
            i % width,
            out[i],
            self.ref64[i]
        );
        err
    }
}

/// Device copies of a case's inputs.
struct Dev {
    qkv: DBuf,
    k_cache: DBuf,
    v_cache: DBuf,
    ctx: DBuf,
    tables: DBuf,
    prefix: Option<(DBuf, DBuf)>,
    segments: Option<DBuf>,
}

fn f32s(dev: &CudaDevice, host: &[f32]) -> DBuf {
    DBuf::from_f32(dev, DType::F32, host).unwrap()
}

fn words(dev: &CudaDevice, host: &[u32]) -> DBuf {
    DBuf::from_words(dev, host).unwrap()
}

fn upload(dev: &CudaDevice, c: &Case) -> Dev {
    let segs = zo::backend::params::segment_words(&c.segments);
    Dev {
        qkv: f32s(dev, &c.qkv),
        k_cache: f32s(dev, &c.k_cache),
        v_cache: f32s(dev, &c.v_cache),
        ctx: words(dev, &c.ctx_lens),
        tables: words(dev, &c.block_tables),
        prefix: (c.spec.prefix > 0).then(|| (f32s(dev, &c.prefix_k), f32s(dev, &c.prefix_v))),
        segments: (c.spec.prefix > 0 && !segs.is_empty()).then(|| words(dev, &segs)),
    }
}

fn args<'a>(c: &Case, d: &'a Dev, max_ctx: usize) -> DecodeAttention<'a> {
    DecodeAttention {
        qkv: d.qkv.view(),
        layout: c.layout,
        k_cache: d.k_cache.view(),
        v_cache: d.v_cache.view(),
        ctx_lens: d.ctx.view(),
        block_tables: d.tables.view(),
        max_pages: c.max_pages,
        max_ctx,
        prefix: d.prefix.as_ref().map(|(k, v)| DevicePrefix {
            k: k.view(),
            v: v.view(),
            tokens: c.spec.prefix,
            layer: c.layer,
            dist: c.spec.dist,
            segments: d.segments.as_ref().map(DBuf::view),
        }),
        scale: c.scale,
    }
}

/// Runs decode attention into a padded `[n_seqs][heads·hd + OUT_PAD]` output of `dtype` and
/// returns the heads' columns widened to f32, after checking the padding is untouched.
fn attend(dev: &CudaDevice, c: &Case, a: &DecodeAttention<'_>, dtype: DType) -> Vec<f32> {
    let qw = c.spec.heads * c.spec.head_dim;
    let ld = qw + OUT_PAD;
    let n = c.layout.rows;
    let out = DBuf::from_f32(dev, dtype, &vec![SENTINEL; n * ld]).unwrap();
    // A workspace poisoned with NaN: anything read before it is written shows.
    let ws = f32s(dev, &vec![f32::NAN; a.workspace_len().max(1)]);
    decode_attention(dev, a, ws.view(), out.view(), ld).unwrap();
    let sentinel = dtype.round(SENTINEL).to_bits();
    let host = out.to_f32(dev).unwrap();
    let mut y = Vec::with_capacity(n * qw);
    for (r, row) in host.chunks(ld).enumerate() {
        y.extend_from_slice(&row[..qw]);
        assert!(
            row[qw..].iter().all(|x| x.to_bits() == sentinel),
            "{} ({dtype}): sequence {r} written past its heads",
            c.spec.name
        );
    }
    y
}

fn cases() -> Vec<Spec> {
    let s = SPLIT_KEYS;
    vec![
        Spec {
            name: "llama hd128 gqa8, one to many splits",
            heads: 16,
            kv_heads: 2,
            head_dim: 128,
            prompt: 0,
            seqs: [1, 17, 5 * s + 44, s, s + 1, 2 * s - 3]
                .map(|c| seq(c, false, 0))
                .to_vec(),
            prefix: 0,
            dist: Dist::Gaussian,
            q_gain: 1.0,
            seed: 1,
        },
        Spec {
            name: "opt hd64 gqa1, peaky",
            heads: 4,
            kv_heads: 4,
            head_dim: 64,
            prompt: 0,
            seqs: [33, 2 * s, 2 * s + 1, 5].map(|c| seq(c, false, 0)).to_vec(),
            prefix: 0,
            dist: Dist::Gaussian,
            q_gain: 4.0,
            seed: 2,
        },
        Spec {
            name: "hd80 gqa3, shared prompt pages",
            heads: 6,
            kv_heads: 2,
            head_dim: 80,
            prompt: 37,
            seqs: vec![
                seq(38, true, 0),
                seq(37, true, 0),
                seq(s + 60, true, 0),
                seq(20, false, 0),
                seq(2 * s + 9, true, 0),
            ],
            prefix: 0,
            dist: Dist::Gaussian,
            q_gain: 1.5,
            seed: 3,
        },
        Spec {
            name: "prefix gaussian gqa8 hd64, + − base",
            heads: 8,
            kv_heads: 1,
            head_dim: 64,
            prompt: 21,
            seqs: vec![
                seq(22, true, 0),
                seq(s + 30, true, 1),
                seq(3, false, 1),
                seq(s + 30, true, -1),
                seq(3, false, -1),
                seq(1, false, 0),
            ],
            prefix: 5,
            dist: Dist::Gaussian,
            q_gain: 1.0,
            seed: 4,
        },
        Spec {
            name: "prefix rademacher hd128 gqa1, prefix past a split",
            heads: 2,
            kv_heads: 2,
            head_dim: 128,
            prompt: 0,
            seqs: vec![seq(1, false, 1), seq(40, false, -1), seq(s + 2, false, 0)],
            prefix: s + 2,
            dist: Dist::Rademacher,
            q_gain: 1.0,
            seed: 5,
        },
        Spec {
            name: "hd256 gqa2, long context",
            heads: 2,
            kv_heads: 1,
            head_dim: 256,
            prompt: 0,
            seqs: vec![seq(3 * s + 5, false, 0), seq(20, false, 0)],
            prefix: 0,
            dist: Dist::Gaussian,
            q_gain: 1.0,
            seed: 6,
        },
        Spec {
            name: "mqa 48 heads (six head chunks) hd64",
            heads: 48,
            kv_heads: 1,
            head_dim: 64,
            prompt: 0,
            seqs: vec![seq(s + 22, false, 0), seq(9, false, 0)],
            prefix: 0,
            dist: Dist::Gaussian,
            q_gain: 1.0,
            seed: 7,
        },
        Spec {
            name: "hd32 gqa16 (two head chunks), many sequences",
            heads: 32,
            kv_heads: 2,
            head_dim: 32,
            prompt: 0,
            seqs: (0..12).map(|i| seq(1 + (i * 61) % 300, false, 0)).collect(),
            prefix: 0,
            dist: Dist::Gaussian,
            q_gain: 1.0,
            seed: 8,
        },
    ]
}

fn run_case(test: &str, index: usize) {
    let c = cases().swap_remove(index).build();
    for (name, dev) in devices(test) {
        let d = upload(&dev, &c);
        let a = args(&c, &d, c.spec.max_ctx());
        for dtype in DTYPES {
            let out = attend(&dev, &c, &a, dtype);
            let worst = c.check(&out, dtype, name);
            println!(
                "{name} {} {dtype} ({} splits): max |out − ref64| = {worst:.3e}",
                c.spec.name,
                a.splits()
            );
        }
    }
}

#[test]
fn llama_hd128_gqa8_splits() {
    run_case("llama_hd128_gqa8_splits", 0);
}

#[test]
fn opt_hd64_gqa1_peaky() {
    run_case("opt_hd64_gqa1_peaky", 1);
}

#[test]
fn hd80_gqa3_shared_prompt() {
    run_case("hd80_gqa3_shared_prompt", 2);
}

#[test]
fn prefix_gaussian_plus_minus_base() {
    run_case("prefix_gaussian_plus_minus_base", 3);
}

#[test]
fn prefix_rademacher_past_a_split() {
    run_case("prefix_rademacher_past_a_split", 4);
}

#[test]
fn hd256_long_context() {
    run_case("hd256_long_context", 5);
}

#[test]
fn mqa_six_head_chunks() {
    run_case("mqa_six_head_chunks", 6);
}

#[test]
fn hd32_gqa16_many_sequences() {
    run_case("hd32_gqa16_many_sequences", 7);
}

#[test]
fn every_case_has_a_test() {
    assert_eq!(cases().len(), 8);
    // The cases exercise the combine: some launches have several splits.
    assert!(cases().iter().any(|c| c.max_ctx() > 4 * SPLIT_KEYS));
}

/// Rerun bit for bit; a sequence's output does not depend on the others in its batch (the
/// split size is fixed); a `max_ctx` below the real contexts (one split on the grid) still
/// attends every key, within the rule.
#[test]
fn decode_is_deterministic_and_batch_invariant() {
    let c = cases().swap_remove(0).build();
    for (name, dev) in devices("decode_is_deterministic_and_batch_invariant") {
        let d = upload(&dev, &c);
        let a = args(&c, &d, c.spec.max_ctx());
        assert!(a.splits() > 1, "{name}: the case has several splits");
        let first = attend(&dev, &c, &a, DType::F32);
        let again = attend(&dev, &c, &a, DType::F32);
        assert_bits(&format!("{name}: rerun"), &again, &first);

        // Sequence 4 (two splits) alone, on a grid sized for it, gets the same bits as in the
        // batch, whose grid has more splits.
        let qw = c.spec.heads * c.spec.head_dim;
        let i = 4;
        let mut alone = args(&c, &d, c.spec.seqs[i].ctx);
        alone.layout.rows = 1;
        alone.qkv = d.qkv.slice(i * c.layout.ld..(i + 1) * c.layout.ld);
        alone.ctx_lens = d.ctx.slice(i..i + 1);
        alone.block_tables = d.tables.slice(i * c.max_pages..(i + 1) * c.max_pages);
        assert!(1 < alone.splits() && alone.splits() < a.splits());
        let ld = qw + OUT_PAD;
        let out = DBuf::from_f32(&dev, DType::F32, &vec![SENTINEL; ld]).unwrap();
        let ws = f32s(&dev, &vec![f32::NAN; alone.workspace_len()]);
        decode_attention(&dev, &alone, ws.view(), out.view(), ld).unwrap();
        let one = out.to_f32(&dev).unwrap()[..qw].to_vec();
        assert_bits(
            &format!("{name}: alone"),
            &one,
            &first[i * qw..(i + 1) * qw],
        );

        let short = args(&c, &d, 1);
        assert_eq!(short.splits(), 1);
        let out = attend(&dev, &c, &short, DType::F32);
        c.check(&out, DType::F32, &format!("{name}: max_ctx 1"));
    }
}

/// A sequence with no keys (no prefix, ctx 0) gets zeros, and its neighbours are unaffected.
#[test]
fn empty_context_gives_zeros() {
    let c = cases().swap_remove(1).build();
    for (name, dev) in devices("empty_context_gives_zeros") {
        let d = upload(&dev, &c);
        let mut ctx = c.ctx_lens.clone();
        ctx[3] = 0;
        let ctx = words(&dev, &ctx);
        let a = DecodeAttention {
            ctx_lens: ctx.view(),
            ..args(&c, &d, c.spec.max_ctx())
        };
        let out = attend(&dev, &c, &a, DType::F32);
        let qw = c.spec.heads * c.spec.head_dim;
        assert!(
            out[3 * qw..].iter().all(|&v| v == 0.0),
            "{name}: empty context"
        );
        let full = attend(&dev, &c, &args(&c, &d, c.spec.max_ctx()), DType::F32);
        assert_bits(
            &format!("{name}: neighbours"),
            &out[..3 * qw],
            &full[..3 * qw],
        );
    }
}

#[test]
fn decode_refuses_bad_shapes() {
    let c = cases().swap_remove(3).build();
    for (name, dev) in devices("decode_refuses_bad_shapes") {
        let d = upload(&dev, &c);
        let a = args(&c, &d, c.spec.max_ctx());
        let qw = c.spec.heads * c.spec.head_dim;
        let n = c.layout.rows;
        let out = f32s(&dev, &vec![SENTINEL; n * qw]);
        let ws = f32s(&dev, &vec![0.0; a.workspace_len()]);
        let run = |a: &DecodeAttention<'_>, ws: &DBuf, out: zo::backend::cuda::View<'_>| {
            decode_attention(&dev, a, ws.view(), out, qw)
        };
        let refused = |r: zo::Result<()>, needle: &str| {
            let e = r.unwrap_err();
            assert!(
                matches!(e, Error::Data(_) | Error::Unsupported(_))
                    && e.to_string().contains(needle),
                "{name}: {e} (expected `{needle}`)"
            );
        };
        refused(
            run(&a, &ws, out.slice(0..n * qw - 1)),
            "decode attention output",
        );
        refused(
            decode_attention(&dev, &a, ws.view(), out.view(), qw - 1),
            "narrower",
        );
        let short_ws = f32s(&dev, &vec![0.0; a.workspace_len() - 1]);
        refused(run(&a, &short_ws, out.view()), "workspace");
        let long = DecodeAttention {
            layout: QkvLayout {
                rows: n + 1,
                ..a.layout
            },
            ..a
        };
        refused(run(&long, &ws, out.view()), "decode attention q");
        let no_tables = DecodeAttention {
            block_tables: d.tables.slice(0..n * c.max_pages - 1),
            ..a
        };
        refused(run(&no_tables, &ws, out.view()), "block tables");
        let few_ctx = DecodeAttention {
            ctx_lens: d.ctx.slice(0..n - 1),
            ..a
        };
        refused(run(&few_ctx, &ws, out.view()), "ctx lens");
        let odd_cache = DecodeAttention {
            v_cache: d.v_cache.slice(0..c.v_cache.len() - 1),
            ..a
        };
        refused(run(&odd_cache, &ws, out.view()), "pages");
        let gqa = DecodeAttention {
            layout: QkvLayout {
                kv_heads: 3,
                ..a.layout
            },
            ..a
        };
        refused(run(&gqa, &ws, out.view()), "multiple");
        let wide = DecodeAttention {
            layout: QkvLayout {
                head_dim: 264,
                ..a.layout
            },
            ..a
        };
        refused(run(&wide, &ws, out.view()), "head_dim");
        let mut short_prefix = a;
        if let Some(p) = short_prefix.prefix.as_mut() {
            p.tokens += 1;
        }
        refused(run(&short_prefix, &ws, out.view()), "prefix");
        let half = DBuf::zeros(&dev, DType::Bf16, c.qkv.len()).unwrap();
        let q16 = DecodeAttention {
            qkv: half.view(),
            ..a
        };
        refused(run(&q16, &ws, out.view()), "decode attention q");
        assert!(
            out.to_f32(&dev).unwrap().iter().all(|&v| v == SENTINEL),
            "{name}: a refused launch wrote its output"
        );
    }
}

/// Bit-level equality with the first mismatch in the message.
fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    if let Some(i) = got
        .iter()
        .zip(want)
        .position(|(a, b)| a.to_bits() != b.to_bits())
    {
        panic!("{what}: element {i}: got {} want {}", got[i], want[i]);
    }
}

// ---------------------------------------------------------------------------------------------
// The pick.

/// Rows of logits `[rows][ld]` (vocab used columns; the padding past it holds a huge value a
/// pick reading past the vocabulary would take), mixing kinds: Gaussian, few distinct values
/// (many ties at the max), NaN and ±inf sprinkled, and rows all NaN, all -inf, NaN first.
fn pick_logits(seed: u64, rows: usize, vocab: usize, ld: usize) -> Vec<f32> {
    let mut out = vec![1e30f32; rows * ld];
    for r in 0..rows {
        let u = vals(seed, 40 + r as u32, vocab);
        let row = &mut out[r * ld..][..vocab];
        for (t, (x, &u)) in row.iter_mut().zip(&u).enumerate() {
            *x = match r % 7 {
                0 | 1 => 3.0 * u,
                2 => (2.0 * u).round(),
                3 => match t % 97 {
                    5 => f32::NAN,
                    11 => f32::INFINITY,
                    40 => f32::NEG_INFINITY,
                    _ => u,
                },
                4 => match t % 5 {
                    0 => f32::NAN,
                    _ => f32::NEG_INFINITY,
                },
                5 => {
                    if t == 0 {
                        f32::NAN
                    } else {
                        (4.0 * u).round() / 2.0
                    }
                }
                _ => f32::NAN,
            };
        }
    }
    out
}

fn samplings() -> [Sampling; 4] {
    [
        Sampling::Greedy,
        Sampling::Seeded {
            seed: 7,
            temperature: 1.0,
        },
        Sampling::Seeded {
            seed: 0xfeed_5eed_0123_4567,
            temperature: 0.3,
        },
        Sampling::Seeded {
            seed: 99,
            temperature: 2.5,
        },
    ]
}

#[test]
fn pick_matches_the_host_bit_for_bit() {
    // Vocabularies: a single token, odd sizes (noise blocks straddle rows), OPT's.
    let shapes = [(3, 1), (21, 5), (42, 3001), (4, 50272)];
    for (name, dev) in devices("pick_matches_the_host_bit_for_bit") {
        for (rows, vocab) in shapes {
            let ld = vocab + 3;
            let logits = pick_logits(vocab as u64, rows, vocab, ld);
            // Noise addresses: small, and positions whose index pos·vocab passes 2^32.
            let seqs: Vec<u32> = (0..rows as u32).map(|r| r * 2_654_435_761).collect();
            let pos: Vec<u32> = (0..rows as u32)
                .map(|r| if r % 2 == 0 { r } else { u32::MAX - r })
                .collect();
            let d_logits = f32s(&dev, &logits);
            let (d_seq, d_pos) = (words(&dev, &seqs), words(&dev, &pos));
            for sampling in samplings() {
                let want: Vec<u32> = (0..rows)
                    .map(|r| pick(&logits[r * ld..][..vocab], sampling, seqs[r], pos[r]))
                    .collect();
                let out = words(&dev, &vec![u32::MAX; rows]);
                let l = Logits {
                    data: d_logits.view(),
                    rows,
                    vocab,
                    ld,
                };
                let noise = NoiseRows {
                    seq: d_seq.view(),
                    pos: d_pos.view(),
                };
                pick_tokens(&dev, l, sampling, Some(noise), out.view()).unwrap();
                assert_eq!(
                    out.to_words(&dev).unwrap(),
                    want,
                    "{name}: {rows}×{vocab}, {sampling:?}"
                );
            }
        }
    }
}

/// The fixture's special rows pick what `pick`'s rules say (so the bit-exact test above
/// exercises them): ties to the lowest id, NaN never wins, a row without a number picks 0.
#[test]
fn pick_rules_on_special_rows() {
    let (vocab, ld) = (300, 300);
    let l = pick_logits(3, 7, vocab, ld);
    let row = |r: usize| &l[r * ld..][..vocab];
    let g = Sampling::Greedy;
    let tied_max = row(2).iter().cloned().fold(f32::MIN, f32::max);
    let first = row(2).iter().position(|&x| x == tied_max).unwrap();
    assert!(row(2).iter().filter(|&&x| x == tied_max).count() > 1);
    assert_eq!(pick(row(2), g, 0, 0), first as u32);
    assert_eq!(pick(row(3), g, 0, 0), 11, "the first +inf");
    assert_eq!(pick(row(4), g, 0, 0), 0, "only NaN and -inf");
    assert_ne!(pick(row(5), g, 0, 0), 0, "a leading NaN never wins");
    assert_eq!(pick(row(6), g, 0, 0), 0, "all NaN");
}

#[test]
fn greedy_needs_no_noise_rows_and_bad_input_is_refused() {
    for (name, dev) in devices("greedy_needs_no_noise_rows_and_bad_input_is_refused") {
        let (rows, vocab) = (4, 50);
        let logits = pick_logits(1, rows, vocab, vocab);
        let d_logits = f32s(&dev, &logits);
        let l = || Logits {
            data: d_logits.view(),
            rows,
            vocab,
            ld: vocab,
        };
        let out = words(&dev, &vec![u32::MAX; rows]);
        pick_tokens(&dev, l(), Sampling::Greedy, None, out.view()).unwrap();
        let want: Vec<u32> = (0..rows)
            .map(|r| pick(&logits[r * vocab..][..vocab], Sampling::Greedy, 0, 0))
            .collect();
        assert_eq!(out.to_words(&dev).unwrap(), want, "{name}: greedy");

        let out = words(&dev, &vec![u32::MAX; rows]);
        let (seq, pos) = (words(&dev, &[0; 4]), words(&dev, &[0; 4]));
        let noise = || {
            Some(NoiseRows {
                seq: seq.view(),
                pos: pos.view(),
            })
        };
        let hot = Sampling::Seeded {
            seed: 1,
            temperature: 1.0,
        };
        let refused = |r: zo::Result<()>, needle: &str| {
            let e = r.unwrap_err();
            assert!(
                matches!(e, Error::Data(_)) && e.to_string().contains(needle),
                "{name}: {e} (expected `{needle}`)"
            );
        };
        let mut short = l();
        short.data = d_logits.slice(0..rows * vocab - 1);
        refused(pick_tokens(&dev, short, hot, noise(), out.view()), "logits");
        let mut strided = l();
        strided.ld = vocab - 1;
        refused(
            pick_tokens(&dev, strided, hot, noise(), out.view()),
            "stride",
        );
        refused(
            pick_tokens(&dev, l(), hot, noise(), out.slice(0..rows - 1)),
            "picked tokens",
        );
        refused(pick_tokens(&dev, l(), hot, None, out.view()), "seq and pos");
        let few = Some(NoiseRows {
            seq: seq.slice(0..rows - 1),
            pos: pos.view(),
        });
        refused(pick_tokens(&dev, l(), hot, few, out.view()), "pick seq");
        for t in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let cold = Sampling::Seeded {
                seed: 1,
                temperature: t,
            };
            refused(
                pick_tokens(&dev, l(), cold, noise(), out.view()),
                "temperature",
            );
        }
        let mut empty = l();
        empty.vocab = 0;
        empty.ld = 0;
        refused(
            pick_tokens(&dev, empty, Sampling::Greedy, None, out.view()),
            "empty vocabulary",
        );
        let half = DBuf::zeros(&dev, DType::Bf16, rows * vocab).unwrap();
        let mut l16 = l();
        l16.data = half.view();
        refused(
            pick_tokens(&dev, l16, Sampling::Greedy, None, out.view()),
            "pick logits",
        );
        assert!(
            out.to_words(&dev).unwrap().iter().all(|&t| t == u32::MAX),
            "{name}: a refused pick wrote its output"
        );
    }
}

/// The C ABI's `zo_kernel_pick` on host memory (the emulated device) picks what
/// `decode::pick` does, and refuses an unknown sampling code.
#[test]
fn c_abi_pick_on_host_memory() {
    use zo::ffi::kernels::*;
    use zo::ffi::status::*;
    let (rows, vocab) = (14, 257);
    let logits = pick_logits(11, rows, vocab, vocab);
    let seqs: Vec<u32> = (0..rows as u32).map(|r| 3 * r).collect();
    let pos: Vec<u32> = (0..rows as u32).map(|r| 1000 + r).collect();
    let target = zo_kernel_target {
        device: ZO_KERNEL_HOST,
        ..zo_kernel_target_default_params()
    };
    for (code, sampling) in [
        (ZO_KERNEL_PICK_GREEDY, Sampling::Greedy),
        (
            ZO_KERNEL_PICK_SEEDED,
            Sampling::Seeded {
                seed: 42,
                temperature: 0.9,
            },
        ),
    ] {
        let (seed, temperature) = match sampling {
            Sampling::Seeded { seed, temperature } => (seed, temperature),
            Sampling::Greedy => (0, 1.0),
        };
        let p = zo_kernel_pick_params {
            rows,
            vocab,
            sampling: code,
            seed,
            temperature,
            ..zo_kernel_pick_default_params()
        };
        let mut tokens = vec![u32::MAX; rows];
        // SAFETY: host buffers holding the counts given.
        let s = unsafe {
            zo_kernel_pick(
                &target,
                &p,
                logits.as_ptr(),
                logits.len(),
                seqs.as_ptr(),
                pos.as_ptr(),
                rows,
                tokens.as_mut_ptr(),
                rows,
            )
        };
        assert_eq!(s, ZO_OK, "{sampling:?}");
        let want: Vec<u32> = (0..rows)
            .map(|r| pick(&logits[r * vocab..][..vocab], sampling, seqs[r], pos[r]))
            .collect();
        assert_eq!(tokens, want, "{sampling:?}");
    }
    let p = zo_kernel_pick_params {
        rows,
        vocab,
        sampling: 7,
        ..zo_kernel_pick_default_params()
    };
    let mut tokens = vec![0u32; rows];
    // SAFETY: as above.
    let s = unsafe {
        zo_kernel_pick(
            &target,
            &p,
            logits.as_ptr(),
            logits.len(),
            std::ptr::null(),
            std::ptr::null(),
            0,
            tokens.as_mut_ptr(),
            rows,
        )
    };
    assert_eq!(s, ZO_ERR_ARGUMENT);
}
