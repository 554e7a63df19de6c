//! The CUDA decoder: the contract of the CPU's (`backend::cpu::decode`) over a paged KV cache
//! that stays on the device between calls.
//!
//! Each call is one packed forward ([`Forward::begin`], [`Forward::logits`]) of the pending
//! tokens of the live sequences under their variants: every layer writes their keys and values
//! into its own persistent cache through the slot mapping, and attention reads a sequence's
//! cached tokens through its block table. The first call (the prompts) attends with the prefill
//! kernel (`ctx_len` = tokens cached, own tokens right after); once every sequence feeds one
//! token, with the split-K decode kernel ([`Attend::Decode`], the new token's key written
//! first). The head gives full-vocabulary logits at each sequence's last row, and
//! [`pick_tokens`] picks the next token on the device: only the token ids come back.
//!
//! The cache is one pool of pages per layer, shared by the batch's sequences: a sequence takes
//! pages as it grows and gives them back when it is dropped. The pool starts with room for
//! every prompt and [`HEADROOM`] more tokens each, and doubles (keeping its contents) when a
//! call needs more pages than are free.

use super::backend::CudaBackend;
use super::buffer::{DBuf, View};
use super::forward::{Attend, Forward};
use super::kernels::attention::PAGE;
use super::kernels::decode::{self as decode_kernels, NoiseRows};
use super::kernels::loss::Logits;
use super::profile::region;
use super::CudaDevice;
use super::DType;
use crate::backend::decode::{DecodeBatch, Decoder, Sampling};
use crate::backend::device_plan::DevicePlan;
use crate::plan::Plan;
use crate::{Error, Result};

/// Generated tokens per sequence the first cache has room for before it grows.
pub const HEADROOM: usize = PAGE;

/// K and V caches of every layer, fp32 `[pages][PAGE][kv_heads·head_dim]` each, and the pages
/// no sequence holds.
struct PagePool {
    layers: Vec<(DBuf, DBuf)>,
    pages: usize,
    kv_width: usize,
    /// Free page ids, the lowest last (taken first).
    free: Vec<u32>,
}

impl PagePool {
    fn new(dev: &CudaDevice, layers: usize, kv_width: usize, pages: usize) -> Result<PagePool> {
        let mut pool = PagePool {
            layers: Vec::new(),
            pages: 0,
            kv_width,
            free: Vec::new(),
        };
        pool.resize(dev, layers, pages)?;
        Ok(pool)
    }

    /// Grows every layer's caches to `pages` pages, copying what they hold.
    fn resize(&mut self, dev: &CudaDevice, layers: usize, pages: usize) -> Result<()> {
        if pages > u32::MAX as usize / PAGE {
            return Err(Error::Unsupported(format!(
                "decode: a KV cache of {pages} pages; slot ids must fit 32 bits"
            )));
        }
        let len = pages * PAGE * self.kv_width;
        let mut grown = Vec::with_capacity(layers);
        for l in 0..layers {
            let k = DBuf::zeros(dev, DType::F32, len)?;
            let v = DBuf::zeros(dev, DType::F32, len)?;
            if let Some((ok, ov)) = self.layers.get(l) {
                dev.copy(ok, &k)?;
                dev.copy(ov, &v)?;
            }
            grown.push((k, v));
        }
        self.layers = grown;
        // New ids above the old ones, the lowest taken first.
        let mut free: Vec<u32> = (self.pages as u32..pages as u32).rev().collect();
        free.append(&mut self.free);
        self.free = free;
        self.pages = pages;
        Ok(())
    }

    /// `n` pages, after growing the pool if fewer are free.
    fn take(&mut self, dev: &CudaDevice, n: usize) -> Result<Vec<u32>> {
        if n > self.free.len() {
            let need = self.pages + n - self.free.len();
            let layers = self.layers.len();
            region(dev, "decode.grow", || {
                self.resize(dev, layers, need.max(2 * self.pages))
            })?;
        }
        let at = self.free.len() - n;
        Ok(self.free.split_off(at).into_iter().rev().collect())
    }

    fn give_back(&mut self, pages: Vec<u32>) {
        self.free.extend(pages);
        // Lowest last, so reuse starts at the bottom of the pool.
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }

    fn views(&self) -> Vec<(View<'_>, View<'_>)> {
        self.layers
            .iter()
            .map(|(k, v)| (k.view(), v.view()))
            .collect()
    }
}

/// A live sequence: its pages, how many of its tokens they hold, and what it is fed next.
struct Seq {
    pages: Vec<u32>,
    cached: u32,
    pending: Vec<u32>,
}

pub(crate) struct CudaDecoder<'a> {
    backend: &'a CudaBackend,
    batch: DecodeBatch,
    pool: PagePool,
    /// None once dropped.
    seqs: Vec<Option<Seq>>,
}

impl<'a> CudaDecoder<'a> {
    pub fn new(backend: &'a CudaBackend, batch: DecodeBatch) -> Result<Self> {
        let c = &backend.model.config;
        batch.check(c.vocab_size, c.max_position_embeddings)?;
        let pages = batch
            .prompts
            .iter()
            .map(|p| (p.len() + HEADROOM).div_ceil(PAGE))
            .sum();
        let pool = PagePool::new(
            &backend.dev,
            backend.model.layers.len(),
            c.num_kv_heads * c.head_dim,
            pages,
        )?;
        let seqs = batch
            .prompts
            .iter()
            .map(|p| {
                Some(Seq {
                    pages: Vec::new(),
                    cached: 0,
                    pending: p.clone(),
                })
            })
            .collect();
        Ok(CudaDecoder {
            backend,
            batch,
            pool,
            seqs,
        })
    }

    /// Drops every sequence not in `live` after checking `live` names live sequences in order.
    fn keep(&mut self, live: &[usize]) -> Result<()> {
        if live.windows(2).any(|w| w[1] <= w[0]) {
            return Err(Error::Data(
                "decode: live sequences must be ascending".into(),
            ));
        }
        let mut keep = vec![false; self.seqs.len()];
        for &i in live {
            if self.seqs.get(i).is_none_or(Option::is_none) {
                return Err(Error::Data(format!(
                    "decode: sequence {i} was dropped or never existed"
                )));
            }
            keep[i] = true;
        }
        for (seq, keep) in self.seqs.iter_mut().zip(keep) {
            if !keep {
                if let Some(s) = seq.take() {
                    self.pool.give_back(s.pages);
                }
            }
        }
        Ok(())
    }

    /// The packed plan of the live sequences' pending tokens, after giving each the pages its
    /// new tokens need.
    fn step_plan(&mut self, live: &[usize]) -> Result<Plan> {
        let b = self.backend;
        let max_pos = b.model.config.max_position_embeddings;
        let mut plan = Plan {
            variants: self.batch.variants.clone(),
            cu_seqlens: vec![0],
            ..Plan::default()
        };
        for &i in live {
            let seq = self.seqs[i].as_mut().expect("live sequences are kept");
            let start = seq.cached as usize;
            let end = start + seq.pending.len();
            if end > max_pos {
                return Err(Error::Data(format!(
                    "decode: sequence {i} would pass the model's context of {max_pos} positions"
                )));
            }
            let more = end.div_ceil(PAGE).saturating_sub(seq.pages.len());
            let pages = self.pool.take(&b.dev, more)?;
            seq.pages.extend(pages);
            plan.tokens.extend_from_slice(&seq.pending);
            plan.positions.extend((start..end).map(|p| p as u32));
            plan.cu_seqlens.push(plan.tokens.len() as u32);
            plan.seq_variant.push(self.batch.seq_variant[i]);
        }
        Ok(plan)
    }
}

impl Decoder for CudaDecoder<'_> {
    fn next(&mut self, live: &[usize]) -> Result<Vec<u32>> {
        self.keep(live)?;
        if live.is_empty() {
            return Ok(Vec::new());
        }
        let plan = self.step_plan(live)?;
        let b = self.backend;
        crate::backend::validate::plan_for_config(&plan, &b.model.config)?;
        let cache: Vec<(u32, &[u32])> = live
            .iter()
            .map(|&i| {
                let s = self.seqs[i].as_ref().expect("live sequences are kept");
                (s.cached, s.pages.as_slice())
            })
            .collect();
        let dp = DevicePlan::continuing(&plan, &cache, self.pool.pages)?;
        let picks: Vec<(u32, u32)> = live
            .iter()
            .zip(plan.cu_seqlens.windows(2))
            .map(|(&i, w)| {
                let s = self.seqs[i].as_ref().expect("live sequences are kept");
                (i as u32, s.cached + (w[1] - w[0]))
            })
            .collect();
        let mut ws =
            b.ws.lock()
                .map_err(|_| Error::Cuda("workspace poisoned by an earlier panic".into()))?;
        ws.ensure(b, "picked", DType::F32, picks.len())?;
        // Past the prompts every sequence feeds the one token it picked: a query row each,
        // which the split-K kernel spreads over the keys (a prompt of one token qualifies too).
        let attend = if plan.n_tokens() == live.len() {
            Attend::Decode
        } else {
            Attend::Prefill
        };
        let mut fwd = Forward { b, ws: &mut ws };
        let pb = fwd.begin(&dp, 0, attend)?;
        let caches = self.pool.views();
        let logits = fwd.logits(&dp, &pb, &caches)?;
        let logits = Logits {
            data: logits,
            rows: picks.len(),
            vocab: b.model.config.vocab_size,
            ld: b.model.config.vocab_size,
        };
        let picked = fwd.ws.view("picked", picks.len());
        let out = pick_tokens(&b.dev, logits, &picks, self.batch.sampling, picked)?;
        for ((&i, &tok), w) in live.iter().zip(&out).zip(plan.cu_seqlens.windows(2)) {
            let s = self.seqs[i].as_mut().expect("live sequences are kept");
            s.cached += w[1] - w[0];
            s.pending = vec![tok];
        }
        Ok(out)
    }
}

/// The token picked from each row of `logits` (one per entry of `picks`), row `r` being
/// sequence `picks[r].0` picking the token at position `picks[r].1`: `decode::pick` of the row
/// bit for bit, run on the device into `out` (u32 words), of which only the ids come back.
fn pick_tokens(
    dev: &CudaDevice,
    logits: Logits<'_>,
    picks: &[(u32, u32)],
    sampling: Sampling,
    out: View<'_>,
) -> Result<Vec<u32>> {
    // Greedy picks draw no noise, so they upload no addresses.
    let noise = match sampling {
        Sampling::Greedy => None,
        Sampling::Seeded { .. } => {
            let (seq, pos): (Vec<u32>, Vec<u32>) = picks.iter().copied().unzip();
            Some((DBuf::from_words(dev, &seq)?, DBuf::from_words(dev, &pos)?))
        }
    };
    let rows = noise.as_ref().map(|(seq, pos)| NoiseRows {
        seq: seq.view(),
        pos: pos.view(),
    });
    region(dev, "pick", || {
        decode_kernels::pick_tokens(dev, logits, sampling, rows, out)
    })?;
    let bytes = region(dev, "readback", || out.to_bytes(dev))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_grows_keeping_its_pages_and_reuses_given_back_ones() {
        let dev = CudaDevice::emulated();
        let kv_width = 3;
        let mut pool = PagePool::new(&dev, 2, kv_width, 2).unwrap();
        assert_eq!(pool.take(&dev, 1).unwrap(), vec![0]);
        let mark: Vec<f32> = (1..=PAGE * kv_width).map(|i| i as f32).collect();
        pool.layers[1].0.write_f32(&dev, &mark).unwrap();
        // One page free, three wanted: the pool doubles to four pages.
        assert_eq!(pool.take(&dev, 3).unwrap(), vec![1, 2, 3]);
        assert_eq!(pool.pages, 4);
        let k = pool.layers[1].0.to_f32(&dev).unwrap();
        assert_eq!(k.len(), 4 * PAGE * kv_width);
        assert_eq!(&k[..mark.len()], &mark[..], "page 0 survived the growth");
        assert!(k[mark.len()..].iter().all(|&x| x == 0.0));
        pool.give_back(vec![2, 0]);
        assert_eq!(pool.take(&dev, 2).unwrap(), vec![0, 2]);
        assert!(pool.take(&dev, 0).unwrap().is_empty());
    }
}
