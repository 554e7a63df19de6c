//! Attention test batches, run on every device of the kernel tests: packed sequences over
//! paged K/V caches (shared prompt pages, sequences crossing pages, permuted page ids, own
//! tokens on fresh pages after a shared partial prompt page), a trainable prefix with +, − and
//! base sequences, and the CPU references.
//!
//! Tolerance rule of the attention output, as a max-norm over every element of a batch:
//!
//!   max |out − ref64| ≤ 2·max |naive_T − ref64| + 1e-6
//!
//! where ref64 is attention in f64 over the same fp32 inputs (q, k, v after RoPE, prefix as
//! the family perturbs it), and naive_T is the CPU twin (`causal_attention_with_prefix`: a
//! naive, non-online fp32 softmax) with its output rounded to the storage type T. A max-norm
//! rather than a per-element bound: with fp32 outputs both errors are a few ulp of independent
//! roundings (the twin sums dot products in eight partial sums, the kernel in four, and its
//! softmax is online), so an element where the twin happens to land within 1e-7 of ref64 says
//! nothing about the kernel. RoPE, the KV write and the perturbed prefix are checked bit for
//! bit.
#![allow(dead_code)]

use zo::backend::cpu::attention::{
    causal_attention_with_prefix, AttnShape, LayerPrefixes, PrefixKv,
};
use zo::backend::cpu::ops;
use zo::backend::cuda::kernels::attention::{QkvLayout, PAGE};
use zo::backend::DType;
use zo::model::{Model, ModelConfig};
use zo::perturb::prefix::Prefix;
use zo::perturb::{Dist, FamilyConfig, Segment};

/// One sequence of a batch.
#[derive(Debug, Clone, Copy)]
pub struct SeqSpec {
    /// New tokens (packed rows).
    pub len: usize,
    /// Cached tokens before them.
    pub ctx: usize,
    /// Sequences with the same prompt id share their cached tokens (and their full pages);
    /// None: the context is the sequence's own.
    pub prompt: Option<usize>,
    /// Variant: 0 base, +1 / −1 the two signs of the perturbed direction.
    pub sign: i8,
}

pub const fn seq(len: usize, ctx: usize, prompt: Option<usize>, sign: i8) -> SeqSpec {
    SeqSpec {
        len,
        ctx,
        prompt,
        sign,
    }
}

#[derive(Debug, Clone)]
pub struct CaseSpec {
    pub name: &'static str,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub seqs: Vec<SeqSpec>,
    /// Prefix positions (0: no prefix family).
    pub prefix: usize,
    pub dist: Dist,
    /// Llama style (RoPE, scale 1/√hd) or OPT style (no RoPE, scale 1).
    pub rope: bool,
    /// Multiplies the queries: larger values make the softmax peakier.
    pub q_gain: f32,
    pub seed: u64,
    /// Own tokens start on a fresh page after the context (`own_starts` =
    /// ceil(ctx / PAGE)·PAGE) and every page of a shared prompt, its partially filled last
    /// one too, is shared; otherwise the partial page is copied into each sequence's first
    /// own page, which its own tokens continue (no `own_starts`).
    pub fresh_pages: bool,
}

/// A built batch: the inputs the kernels get and the expected results.
pub struct Case {
    pub spec: CaseSpec,
    pub layout: QkvLayout,
    /// Fused qkv output `[T][ld]` before RoPE.
    pub qkv: Vec<f32>,
    /// `[T][hd/2]` (empty without RoPE).
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
    pub slots: Vec<u32>,
    /// Caches before the KV write: context tokens in place, every other slot NaN (a kernel
    /// reading a slot it should not poisons its output).
    pub k_cache: Vec<f32>,
    pub v_cache: Vec<f32>,
    pub cu_seqlens: Vec<u32>,
    pub ctx_lens: Vec<u32>,
    /// Block-table position of each sequence's first own token (fresh pages only).
    pub own_starts: Option<Vec<u32>>,
    pub block_tables: Vec<u32>,
    pub max_pages: usize,
    pub max_seqlen: usize,
    /// The stored prefix of layer [`Case::layer`], `[P][kv_width]`.
    pub prefix_k: Vec<f32>,
    pub prefix_v: Vec<f32>,
    pub layer: usize,
    pub segments: Vec<Segment>,
    pub scale: f32,
    /// Expected: qkv after RoPE, caches after the KV write.
    pub qkv_roped: Vec<f32>,
    pub k_cache_after: Vec<f32>,
    pub v_cache_after: Vec<f32>,
    /// CPU twin (fp32, naive softmax) and f64 reference, `[T][heads·hd]`.
    pub naive: Vec<f32>,
    pub ref64: Vec<f64>,
}

/// The storage types the attention output is checked in.
pub const DTYPES: [DType; 3] = [DType::F32, DType::Bf16, DType::F16];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn val(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vals(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.val()).collect()
    }
}

impl CaseSpec {
    pub fn rows(&self) -> usize {
        self.seqs.iter().map(|s| s.len).sum()
    }

    pub fn build(&self) -> Case {
        let (heads, kvh, hd) = (self.heads, self.kv_heads, self.head_dim);
        let (qw, kw) = (heads * hd, kvh * hd);
        let t = self.rows();
        let layout = QkvLayout::fused(t, heads, kvh, hd);
        let mut rng = Rng(self.seed);

        let mut qkv = rng.vals(t * layout.ld);
        for row in qkv.chunks_mut(layout.ld) {
            row[..qw].iter_mut().for_each(|v| *v *= self.q_gain);
        }
        let mut cu_seqlens = vec![0u32];
        for s in &self.seqs {
            cu_seqlens.push(cu_seqlens.last().unwrap() + s.len as u32);
        }

        // Context rows per prompt (shared) or per sequence.
        let mut prompts: Vec<(Option<usize>, Vec<f32>, Vec<f32>)> = Vec::new();
        let mut ctx_of = Vec::new();
        for s in &self.seqs {
            let found = s
                .prompt
                .and_then(|p| prompts.iter().position(|(id, _, _)| *id == Some(p)));
            let i = match found {
                Some(i) => {
                    assert_eq!(
                        prompts[i].1.len(),
                        s.ctx * kw,
                        "a shared prompt has one ctx_len"
                    );
                    i
                }
                None => {
                    prompts.push((s.prompt, rng.vals(s.ctx * kw), rng.vals(s.ctx * kw)));
                    prompts.len() - 1
                }
            };
            ctx_of.push(i);
        }

        // Pages: a prompt's full pages are shared; a partial last prompt page is copied into
        // each sequence's first private page, which its own tokens then continue, or, with
        // fresh pages, shared too (its unused slots stay NaN) with the own tokens on the next
        // page. Ids come from a pool handed out back to front so tables are far from the
        // identity.
        let fresh = self.fresh_pages;
        let shared_of = |ctx: usize| {
            if fresh {
                ctx.div_ceil(PAGE)
            } else {
                ctx / PAGE
            }
        };
        let own_start = |ctx: usize| if fresh { shared_of(ctx) * PAGE } else { ctx };
        let per_seq_pages: Vec<usize> = self
            .seqs
            .iter()
            .map(|s| (own_start(s.ctx) + s.len).div_ceil(PAGE))
            .collect();
        let max_pages = per_seq_pages.iter().copied().max().unwrap_or(1).max(1) + 1;
        let shared_pages: usize = prompts
            .iter()
            .map(|(_, k, _)| shared_of(k.len() / kw))
            .sum();
        let total_pages = shared_pages + per_seq_pages.iter().sum::<usize>() + 3;
        let mut next_page = total_pages;
        let mut take = || {
            next_page -= 1;
            next_page as u32
        };
        let mut prompt_pages: Vec<Vec<u32>> = prompts
            .iter()
            .map(|(_, k, _)| (0..shared_of(k.len() / kw)).map(|_| take()).collect())
            .collect();
        let page_elems = PAGE * kw;
        let mut k_cache = vec![f32::NAN; total_pages * page_elems];
        let mut v_cache = vec![f32::NAN; total_pages * page_elems];
        let put = |cache: &mut [f32], page: u32, off: usize, row: &[f32]| {
            let at = page as usize * page_elems + off * kw;
            cache[at..at + kw].copy_from_slice(row);
        };
        for (pi, (_, k, v)) in prompts.iter().enumerate() {
            let ctx = k.len() / kw;
            for (i, &page) in prompt_pages[pi].iter().enumerate() {
                for off in 0..PAGE.min(ctx - i * PAGE) {
                    let r = i * PAGE + off;
                    put(&mut k_cache, page, off, &k[r * kw..][..kw]);
                    put(&mut v_cache, page, off, &v[r * kw..][..kw]);
                }
            }
        }
        let mut block_tables = vec![u32::MAX; self.seqs.len() * max_pages];
        let mut slots = vec![0u32; t];
        for (si, s) in self.seqs.iter().enumerate() {
            let table = &mut block_tables[si * max_pages..][..max_pages];
            let pi = ctx_of[si];
            let full = shared_of(s.ctx);
            table[..full].copy_from_slice(&prompt_pages[pi][..full]);
            for slot in table.iter_mut().take(per_seq_pages[si]).skip(full) {
                *slot = take();
            }
            // The partial prompt page, copied (nothing with fresh pages).
            let (k, v) = (&prompts[pi].1, &prompts[pi].2);
            for r in full * PAGE..s.ctx {
                put(&mut k_cache, table[r / PAGE], r % PAGE, &k[r * kw..][..kw]);
                put(&mut v_cache, table[r / PAGE], r % PAGE, &v[r * kw..][..kw]);
            }
            for i in 0..s.len {
                let pos = own_start(s.ctx) + i;
                slots[cu_seqlens[si] as usize + i] =
                    table[pos / PAGE] * PAGE as u32 + (pos % PAGE) as u32;
            }
        }
        prompt_pages.clear();

        // RoPE at positions ctx + i.
        let positions: Vec<u32> = self
            .seqs
            .iter()
            .flat_map(|s| (s.ctx..s.ctx + s.len).map(|p| p as u32))
            .collect();
        let (mut q, mut k, v) = split(&qkv, &layout);
        let (cos, sin, scale) = if self.rope {
            let inv = ops::rope_inv_freq(hd, 10_000.0, None);
            let (cos, sin) = ops::rope_tables(&positions, &inv);
            ops::apply_rope(&mut q, qw, hd, &cos, &sin);
            ops::apply_rope(&mut k, kw, hd, &cos, &sin);
            (cos, sin, (hd as f64).powf(-0.5) as f32)
        } else {
            (Vec::new(), Vec::new(), 1.0)
        };
        let mut qkv_roped = qkv.clone();
        for r in 0..t {
            let row = &mut qkv_roped[r * layout.ld..][..layout.ld];
            row[..qw].copy_from_slice(&q[r * qw..][..qw]);
            row[qw..qw + kw].copy_from_slice(&k[r * kw..][..kw]);
        }
        let (mut k_cache_after, mut v_cache_after) = (k_cache.clone(), v_cache.clone());
        for r in 0..t {
            let at = slots[r] as usize * kw;
            k_cache_after[at..at + kw].copy_from_slice(&k[r * kw..][..kw]);
            v_cache_after[at..at + kw].copy_from_slice(&v[r * kw..][..kw]);
        }

        // The prefix family on a model of this attention shape; layer 1 so that the tensor
        // ids are not layer 0's.
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
            let keys: Vec<Vec<f32>> = (0..2).map(|_| rng.vals(self.prefix * kw)).collect();
            let values: Vec<Vec<f32>> = (0..2).map(|_| rng.vals(self.prefix * kw)).collect();
            prefix_k = keys[layer].clone();
            prefix_v = values[layer].clone();
            let cfg = FamilyConfig::Prefix {
                tokens: self.prefix,
            };
            Prefix::with_state(cfg, self.dist, &model, keys, values).unwrap()
        });
        // Segments: maximal runs of sequences of one sign; both signs share a seed.
        let (seed, eps) = (0xd1ec_7104_u64 ^ self.seed, 0.25f32);
        for (si, s) in self.seqs.iter().enumerate() {
            if s.sign == 0 {
                continue;
            }
            let rows = cu_seqlens[si] as usize..cu_seqlens[si + 1] as usize;
            let scale = s.sign as f32 * eps;
            match segments.last_mut() {
                Some(Segment {
                    rows: r, scale: sc, ..
                }) if r.end == rows.start && *sc == scale => r.end = rows.end,
                _ => segments.push(Segment {
                    rows,
                    variant: segments.len(),
                    seed,
                    scale,
                }),
            }
        }
        let prefixes = family
            .as_ref()
            .and_then(|f| LayerPrefixes::new(f, layer, &segments));

        // Keys before each sequence's own rows: its prefix, then its context.
        let before: Vec<(Vec<f32>, Vec<f32>)> = self
            .seqs
            .iter()
            .enumerate()
            .map(|(si, _)| {
                let (mut bk, mut bv) = match prefixes
                    .as_ref()
                    .and_then(|p| p.at_row(cu_seqlens[si] as usize))
                {
                    Some(p) => (p.k.to_vec(), p.v.to_vec()),
                    None => (Vec::new(), Vec::new()),
                };
                bk.extend_from_slice(&prompts[ctx_of[si]].1);
                bv.extend_from_slice(&prompts[ctx_of[si]].2);
                (bk, bv)
            })
            .collect();
        let shape = AttnShape {
            heads,
            kv_heads: kvh,
            head_dim: hd,
        };
        let naive = causal_attention_with_prefix(&q, &k, &v, &cu_seqlens, shape, scale, |s| {
            Some(PrefixKv {
                k: &before[s].0,
                v: &before[s].1,
            })
        });
        let ref64 = attention_f64(&q, &k, &v, &cu_seqlens, shape, scale, &before);

        Case {
            spec: self.clone(),
            layout,
            qkv,
            cos,
            sin,
            slots,
            k_cache,
            v_cache,
            cu_seqlens,
            ctx_lens: self.seqs.iter().map(|s| s.ctx as u32).collect(),
            own_starts: fresh.then(|| self.seqs.iter().map(|s| own_start(s.ctx) as u32).collect()),
            block_tables,
            max_pages,
            max_seqlen: self.seqs.iter().map(|s| s.len).max().unwrap_or(0),
            prefix_k,
            prefix_v,
            layer,
            segments,
            scale,
            qkv_roped,
            k_cache_after,
            v_cache_after,
            naive,
            ref64,
        }
    }
}

/// q `[T][heads·hd]`, k and v `[T][kv_heads·hd]` out of a fused buffer.
fn split(qkv: &[f32], l: &QkvLayout) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (qw, kw) = (l.heads * l.head_dim, l.kv_heads * l.head_dim);
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for row in qkv.chunks(l.ld).take(l.rows) {
        out.0.extend_from_slice(&row[l.q_col..][..qw]);
        out.1.extend_from_slice(&row[l.k_col..][..kw]);
        out.2.extend_from_slice(&row[l.v_col..][..kw]);
    }
    out
}

/// Causal attention in f64 over keys [before; own rows].
fn attention_f64(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    cu: &[u32],
    shape: AttnShape,
    scale: f32,
    before: &[(Vec<f32>, Vec<f32>)],
) -> Vec<f64> {
    let AttnShape {
        heads,
        kv_heads,
        head_dim: hd,
    } = shape;
    let (qw, kw) = (heads * hd, kv_heads * hd);
    let mut out = vec![0.0f64; q.len()];
    for (s, w) in cu.windows(2).enumerate() {
        let (start, end) = (w[0] as usize, w[1] as usize);
        let (bk, bv) = &before[s];
        let nb = bk.len() / kw;
        for h in 0..heads {
            let g = h / (heads / kv_heads);
            let key = |j: usize| match j.checked_sub(nb) {
                None => &bk[j * kw + g * hd..][..hd],
                Some(j) => &k[(start + j) * kw + g * hd..][..hd],
            };
            let value = |j: usize| match j.checked_sub(nb) {
                None => &bv[j * kw + g * hd..][..hd],
                Some(j) => &v[(start + j) * kw + g * hd..][..hd],
            };
            for i in 0..end - start {
                let qi = &q[(start + i) * qw + h * hd..][..hd];
                let scores: Vec<f64> = (0..nb + i + 1)
                    .map(|j| {
                        let d: f64 = qi
                            .iter()
                            .zip(key(j))
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum();
                        d * scale as f64
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let sum: f64 = e.iter().sum();
                let o = &mut out[(start + i) * qw + h * hd..][..hd];
                for (j, ej) in e.iter().enumerate() {
                    for (o, &x) in o.iter_mut().zip(value(j)) {
                        *o += ej / sum * x as f64;
                    }
                }
            }
        }
    }
    out
}

impl Case {
    /// Checks an attention output `[T][heads·hd]` (widened to f32) against the references
    /// under the tolerance rule of this module; returns the largest |out − ref64|.
    pub fn check_output(&self, out: &[f32], dtype: DType, what: &str) -> f64 {
        assert_eq!(out.len(), self.ref64.len(), "{what}: output length");
        let width = self.spec.heads * self.spec.head_dim;
        // (error, element) of the worst element of the kernel and of the twin.
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
        assert!(
            err <= bound,
            "{what} ({}, {dtype:?}): max |out − ref64| = {err:e} > bound {bound:e} (2 × the \
             twin's {naive_err:e} + 1e-6); worst at row {} col {}: out {} ref64 {}",
            self.spec.name,
            i / width,
            i % width,
            out[i],
            self.ref64[i]
        );
        err
    }

    /// The packed rows' output columns out of an `[T][out_ld]` buffer, after checking that the
    /// columns past heads·hd still hold `sentinel`.
    pub fn unpack_output(&self, out: &[f32], out_ld: usize, sentinel: f32, what: &str) -> Vec<f32> {
        let qw = self.spec.heads * self.spec.head_dim;
        let mut y = Vec::with_capacity(self.layout.rows * qw);
        for (r, row) in out.chunks(out_ld).take(self.layout.rows).enumerate() {
            y.extend_from_slice(&row[..qw]);
            assert!(
                row[qw..].iter().all(|&x| x.to_bits() == sentinel.to_bits()),
                "{what} ({}): row {r} written past its heads",
                self.spec.name
            );
        }
        y
    }
}

/// Bit-level equality with the first mismatch in the message.
pub fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    if let Some(i) = got
        .iter()
        .zip(want)
        .position(|(a, b)| a.to_bits() != b.to_bits())
    {
        panic!("{what}: element {i}: got {} want {}", got[i], want[i]);
    }
}

/// The batches every backend of the kernels is checked on. `small` shrinks them for the
/// emulation harness (same structure: GQA ratios, page crossings, shared prompts, prefix).
pub fn cases(small: bool) -> Vec<CaseSpec> {
    let n = |big: usize, little: usize| if small { little } else { big };
    vec![
        CaseSpec {
            name: "llama hd128 gqa8, no context",
            heads: 16,
            kv_heads: 2,
            head_dim: 128,
            seqs: vec![
                seq(1, 0, None, 0),
                seq(17, 0, None, 0),
                seq(n(70, 34), 0, None, 0),
                seq(5, 0, None, 0),
            ],
            prefix: 0,
            dist: Dist::Gaussian,
            rope: true,
            q_gain: 1.0,
            seed: 1,
            fresh_pages: false,
        },
        CaseSpec {
            name: "opt hd64 gqa1, peaky",
            heads: 4,
            kv_heads: 4,
            head_dim: 64,
            seqs: vec![
                seq(n(33, 33), 0, None, 0),
                seq(1, 0, None, 0),
                seq(16, 0, None, 0),
                seq(n(90, 40), 0, None, 0),
            ],
            prefix: 0,
            dist: Dist::Gaussian,
            rope: false,
            q_gain: 4.0,
            seed: 2,
            fresh_pages: false,
        },
        CaseSpec {
            name: "llama hd80 gqa3, shared prompt",
            heads: 6,
            kv_heads: 2,
            head_dim: 80,
            seqs: vec![
                seq(5, 37, Some(0), 0),
                seq(1, 37, Some(0), 0),
                seq(20, 37, Some(0), 0),
                seq(9, 16, None, 0),
                seq(12, 0, None, 0),
                seq(3, 32, Some(1), 0),
                seq(n(40, 18), 32, Some(1), 0),
            ],
            prefix: 0,
            dist: Dist::Gaussian,
            rope: true,
            q_gain: 1.5,
            seed: 3,
            fresh_pages: false,
        },
        CaseSpec {
            name: "prefix gqa8 hd64, + − base, shared prompt",
            heads: 8,
            kv_heads: 1,
            head_dim: 64,
            seqs: vec![
                seq(6, 21, Some(0), 0),
                seq(1, 21, Some(0), 0),
                seq(6, 21, Some(0), 1),
                seq(n(30, 17), 0, None, 1),
                seq(6, 21, Some(0), -1),
                seq(n(30, 17), 0, None, -1),
                seq(4, 0, None, 0),
            ],
            prefix: 5,
            dist: Dist::Gaussian,
            rope: true,
            q_gain: 1.0,
            seed: 4,
            fresh_pages: false,
        },
        CaseSpec {
            name: "prefix rademacher hd128 gqa1 opt",
            heads: 2,
            kv_heads: 2,
            head_dim: 128,
            seqs: vec![
                seq(3, 0, None, 1),
                seq(n(40, 20), 0, None, -1),
                seq(1, 0, None, 0),
                seq(17, 0, None, 0),
            ],
            prefix: 3,
            dist: Dist::Rademacher,
            rope: false,
            q_gain: 1.0,
            seed: 5,
            fresh_pages: false,
        },
        CaseSpec {
            name: "hd256 gqa2 context",
            heads: 2,
            kv_heads: 1,
            head_dim: 256,
            seqs: vec![seq(n(50, 20), 20, None, 0), seq(3, 20, None, 0)],
            prefix: 0,
            dist: Dist::Gaussian,
            rope: true,
            q_gain: 1.0,
            seed: 6,
            fresh_pages: false,
        },
        CaseSpec {
            name: "mqa 40 heads (two head chunks) hd64",
            heads: 40,
            kv_heads: 1,
            head_dim: 64,
            seqs: vec![seq(3, 5, None, 0), seq(2, 0, None, 0)],
            prefix: 0,
            dist: Dist::Gaussian,
            rope: true,
            q_gain: 1.0,
            seed: 8,
            fresh_pages: false,
        },
        CaseSpec {
            name: "many sequences hd128 gqa4",
            heads: 8,
            kv_heads: 2,
            head_dim: 128,
            seqs: (0..n(24, 10))
                .map(|i| seq(1 + (i * 7) % n(41, 13), (i * 5) % 19, None, 0))
                .collect(),
            prefix: 0,
            dist: Dist::Gaussian,
            rope: true,
            q_gain: 1.0,
            seed: 7,
            fresh_pages: false,
        },
        CaseSpec {
            name: "llama hd64 gqa2, children on fresh pages after a partial prompt page",
            heads: 4,
            kv_heads: 2,
            head_dim: 64,
            seqs: vec![
                seq(6, 21, Some(0), 0),
                seq(1, 21, Some(0), 0),
                seq(n(30, 17), 21, Some(0), 0),
                seq(3, 16, Some(1), 0),
                seq(16, 16, Some(1), 0),
                seq(5, 0, None, 0),
                seq(2, 7, Some(2), 0),
            ],
            prefix: 0,
            dist: Dist::Gaussian,
            rope: true,
            q_gain: 1.5,
            seed: 9,
            fresh_pages: true,
        },
        CaseSpec {
            name: "prefix hd128 gqa4 opt, + and − children on fresh pages",
            heads: 4,
            kv_heads: 1,
            head_dim: 128,
            seqs: vec![
                seq(2, 9, Some(0), 1),
                seq(3, 9, Some(0), 1),
                seq(n(20, 17), 0, None, 1),
                seq(2, 9, Some(1), -1),
                seq(3, 9, Some(1), -1),
                seq(4, 33, Some(2), 0),
            ],
            prefix: 4,
            dist: Dist::Gaussian,
            rope: false,
            q_gain: 1.0,
            seed: 10,
            fresh_pages: true,
        },
    ]
}
