//! The reference decoder: each call is one packed forward over the pending tokens of every
//! live sequence, attending to that sequence's cached keys and values, followed by the full
//! head at each sequence's last row and [`pick`].

use super::{validate, CacheRead, CpuBackend, Pass, LOGIT_ROWS};
use crate::backend::decode::{pick, DecodeBatch, Decoder};
use crate::plan::Plan;
use crate::{Error, Result};

/// One sequence's keys and values per layer, `[len][kv_heads·head_dim]` each.
type SeqCache = Vec<(Vec<f32>, Vec<f32>)>;

pub struct CpuDecoder<'a> {
    backend: &'a CpuBackend,
    batch: DecodeBatch,
    cache: Vec<Option<SeqCache>>,
    /// Tokens each sequence is fed at its next call.
    pending: Vec<Vec<u32>>,
    /// Tokens already in each sequence's cache.
    cached: Vec<u32>,
}

impl<'a> CpuDecoder<'a> {
    pub fn new(backend: &'a CpuBackend, batch: DecodeBatch) -> Result<Self> {
        let c = &backend.model.config;
        validate::model_shapes(&backend.model)?;
        batch.check(c.vocab_size, c.max_position_embeddings)?;
        let n = batch.prompts.len();
        let layers = backend.model.layers.len();
        Ok(CpuDecoder {
            backend,
            pending: batch.prompts.clone(),
            cache: vec![Some(vec![Default::default(); layers]); n],
            cached: vec![0; n],
            batch,
        })
    }
}

impl Decoder for CpuDecoder<'_> {
    fn next(&mut self, live: &[usize]) -> Result<Vec<u32>> {
        if live.windows(2).any(|w| w[1] <= w[0]) {
            return Err(Error::Data(
                "decode: live sequences must be ascending".into(),
            ));
        }
        let mut keep = vec![false; self.cache.len()];
        for &i in live {
            if self.cache.get(i).is_none_or(Option::is_none) {
                return Err(Error::Data(format!(
                    "decode: sequence {i} was dropped or never existed"
                )));
            }
            keep[i] = true;
        }
        for (i, k) in keep.iter().enumerate() {
            if !k {
                self.cache[i] = None;
            }
        }
        if live.is_empty() {
            return Ok(Vec::new());
        }
        let max_pos = self.backend.model.config.max_position_embeddings;
        let mut plan = Plan {
            variants: self.batch.variants.clone(),
            cu_seqlens: vec![0],
            ..Plan::default()
        };
        for &i in live {
            let start = self.cached[i] as usize;
            if start + self.pending[i].len() > max_pos {
                return Err(Error::Data(format!(
                    "decode: sequence {i} would pass the model's context of {max_pos} positions"
                )));
            }
            for (j, &t) in self.pending[i].iter().enumerate() {
                plan.tokens.push(t);
                plan.positions.push((start + j) as u32);
            }
            plan.cu_seqlens.push(plan.tokens.len() as u32);
            plan.seq_variant.push(self.batch.seq_variant[i]);
        }
        let b = self.backend;
        validate::forward_inputs(&plan, &b.model, b.family.is_some())?;
        let cache = &self.cache;
        let read = |s: usize, l: usize| {
            let (k, v) = &cache[live[s]].as_ref().expect("live sequences are cached")[l];
            (k.as_slice(), v.as_slice())
        };
        let read: &CacheRead<'_> = &read;
        let pass = Pass::continuing(b, &plan, read);
        let hidden = pass.hidden_states();
        let last: Vec<u32> = plan.cu_seqlens[1..].iter().map(|&e| e - 1).collect();
        let vocab = b.model.config.vocab_size;
        let mut out = Vec::with_capacity(live.len());
        for (ci, chunk) in last.chunks(LOGIT_ROWS).enumerate() {
            let logits = pass.logits(&hidden, chunk);
            for (j, row) in logits.chunks_exact(vocab).enumerate() {
                let i = live[ci * LOGIT_ROWS + j];
                let pos = self.cached[i] + self.pending[i].len() as u32;
                out.push(pick(row, self.batch.sampling, i as u32, pos));
            }
        }
        let written = pass
            .written
            .expect("a continuing pass keeps its keys and values")
            .into_inner()
            .expect("kv sink is never poisoned");
        let kv_width = b.model.config.num_kv_heads * b.model.config.head_dim;
        for (s, &i) in live.iter().enumerate() {
            let rows = plan.seq_range(s);
            let seq = self.cache[i].as_mut().expect("live sequences are cached");
            for ((ck, cv), (k, v)) in seq.iter_mut().zip(&written) {
                let span = rows.start * kv_width..rows.end * kv_width;
                ck.extend_from_slice(&k[span.clone()]);
                cv.extend_from_slice(&v[span]);
            }
            self.cached[i] += rows.len() as u32;
            self.pending[i] = vec![out[s]];
        }
        Ok(out)
    }
}
