//! A plan flattened into the arrays the GPU kernels read: packed tokens and positions,
//! sequence boundaries, the paged KV layout (block tables and slot mapping), the perturbed
//! segments with each segment's direction index, and the scoring rows and queries.
//!
//! Paging: every sequence writes its own rows into fresh pages of its own. A sequence with a
//! shared context ([`crate::plan::SeqContext`]) reads the context through its parent's pages,
//! which come first in its block table, and its own pages follow from the next page boundary
//! (`own_starts`), so siblings never write into the parent's partially filled last page.
//!
//! Host-only and deterministic, so it is tested on any machine; the CUDA backend uploads it.

use crate::perturb::{segments, Segment};
use crate::plan::Plan;
use crate::{Error, Result};

/// Tokens per KV page.
pub const PAGE_SIZE: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct DevicePlan {
    pub n_tokens: usize,
    pub n_seqs: usize,
    pub tokens: Vec<u32>,
    pub positions: Vec<u32>,
    pub cu_seqlens: Vec<u32>,
    /// Tokens each sequence reads from pages before its own (a shared prompt); 0 for plans
    /// that pack every sequence whole.
    pub ctx_lens: Vec<u32>,
    /// Block-table position of each sequence's first own token: `ceil(ctx_len / PAGE_SIZE)·
    /// PAGE_SIZE` (0 without a context).
    pub own_starts: Vec<u32>,
    /// Pages per sequence in `block_tables` (the widest sequence's count).
    pub max_pages: usize,
    pub n_pages: usize,
    /// `[n_seqs][max_pages]` page ids: the parent's pages holding the context, then the
    /// sequence's own (unused entries repeat the sequence's last page).
    pub block_tables: Vec<u32>,
    /// Cache slot (page·PAGE_SIZE + offset) of every packed row.
    pub slot_mapping: Vec<u32>,
    pub segments: Vec<Segment>,
    /// Direction index of each segment: segments with the same seed (the + and − of one
    /// direction) share it; indices count distinct seeds in order of first appearance.
    pub segment_direction: Vec<u32>,
    /// Seed of each direction index.
    pub direction_seeds: Vec<u64>,
    /// Segment of each sequence, or -1 for sequences of the unperturbed model.
    pub seq_segment: Vec<i32>,
    /// Distinct packed rows that need logits, ascending.
    pub scoring_rows: Vec<u32>,
    /// Per query: its index in `scoring_rows`, and the token scored there.
    pub query_row: Vec<u32>,
    pub query_token: Vec<u32>,
}

impl DevicePlan {
    pub fn new(plan: &Plan) -> Result<DevicePlan> {
        check_lengths(plan)?;
        Ok(Self::assemble(
            plan,
            Paging::fresh(plan)?,
            plan.scoring_rows(),
        ))
    }

    /// A decoding step: sequence `s` of `plan` continues `cache[s] = (cached, pages)`, its
    /// first `cached` tokens already in `pages` of a cache of `n_pages` pages, and its rows
    /// go on in those pages (which must have room for them). Every sequence is scored at its
    /// last row (`scoring_rows`; the plan has no queries).
    pub fn continuing(plan: &Plan, cache: &[(u32, &[u32])], n_pages: usize) -> Result<DevicePlan> {
        check_lengths(plan)?;
        let n_seqs = plan.n_seqs();
        if cache.len() != n_seqs || plan.has_contexts() || !plan.queries.is_empty() {
            return Err(Error::Data(format!(
                "decode plan: {} cache entries for {n_seqs} sequences; a decode plan has one \
                 per sequence, no shared contexts and no queries",
                cache.len()
            )));
        }
        let max_pages = cache.iter().map(|(_, p)| p.len()).max().unwrap_or(1).max(1);
        let mut paging = Paging {
            max_pages,
            n_pages,
            ..Paging::default()
        };
        for (s, &(cached, pages)) in cache.iter().enumerate() {
            let end = cached as usize + plan.seq_range(s).len();
            if pages.len() * PAGE_SIZE < end || pages.iter().any(|&p| p as usize >= n_pages) {
                return Err(Error::Data(format!(
                    "decode plan: sequence {s} holds {end} tokens in {} pages of a cache of \
                     {n_pages}",
                    pages.len()
                )));
            }
            for pos in cached as usize..end {
                let slot = pages[pos / PAGE_SIZE] as usize * PAGE_SIZE + pos % PAGE_SIZE;
                paging.slot_mapping.push(slot as u32);
            }
            paging.push_table(pages);
            paging.ctx_lens.push(cached);
            paging.own_starts.push(cached);
        }
        let last_rows = plan.cu_seqlens[1..].iter().map(|&e| e - 1).collect();
        Ok(Self::assemble(plan, paging, last_rows))
    }

    /// The plan's arrays around a page layout, scored at `scoring_rows` (ascending, holding
    /// every query row).
    fn assemble(plan: &Plan, paging: Paging, scoring_rows: Vec<u32>) -> DevicePlan {
        let n_seqs = plan.n_seqs();
        let segs = if plan.seq_variant.is_empty() {
            Vec::new()
        } else {
            segments(plan)
        };
        let mut direction_seeds: Vec<u64> = Vec::new();
        let segment_direction = segs
            .iter()
            .map(|s| {
                let d = direction_seeds
                    .iter()
                    .position(|&x| x == s.seed)
                    .unwrap_or_else(|| {
                        direction_seeds.push(s.seed);
                        direction_seeds.len() - 1
                    });
                d as u32
            })
            .collect();
        let seq_segment = (0..n_seqs)
            .map(|s| {
                let first = plan.cu_seqlens[s] as usize;
                segs.iter()
                    .position(|g| g.rows.contains(&first))
                    .map_or(-1, |i| i as i32)
            })
            .collect();
        let query_row = plan
            .queries
            .iter()
            .map(|q| {
                scoring_rows
                    .binary_search(&q.row)
                    .expect("scoring_rows holds every query row") as u32
            })
            .collect();
        DevicePlan {
            n_tokens: plan.n_tokens(),
            n_seqs,
            tokens: plan.tokens.clone(),
            positions: plan.positions.clone(),
            cu_seqlens: plan.cu_seqlens.clone(),
            ctx_lens: paging.ctx_lens,
            own_starts: paging.own_starts,
            max_pages: paging.max_pages,
            n_pages: paging.n_pages,
            block_tables: paging.block_tables,
            slot_mapping: paging.slot_mapping,
            segments: segs,
            segment_direction,
            direction_seeds,
            seq_segment,
            scoring_rows,
            query_row,
            query_token: plan.queries.iter().map(|q| q.token).collect(),
        }
    }

    /// Tokens of the longest sequence.
    pub fn max_seq_len(&self) -> usize {
        self.cu_seqlens
            .windows(2)
            .map(|w| (w[1] - w[0]) as usize)
            .max()
            .unwrap_or(0)
    }

    pub fn n_directions(&self) -> usize {
        self.direction_seeds.len()
    }
}

/// Token counts agree: one position per token, `cu_seqlens` ending at the last.
fn check_lengths(plan: &Plan) -> Result<()> {
    let n_tokens = plan.n_tokens();
    if plan.cu_seqlens.last().copied().unwrap_or(0) as usize != n_tokens
        || plan.positions.len() != n_tokens
    {
        return Err(Error::Data(format!(
            "plan: {} tokens, {} positions, but cu_seqlens ends at {:?}",
            n_tokens,
            plan.positions.len(),
            plan.cu_seqlens.last()
        )));
    }
    Ok(())
}

/// Where a plan's keys and values live: the paging fields of [`DevicePlan`].
#[derive(Default)]
struct Paging {
    ctx_lens: Vec<u32>,
    own_starts: Vec<u32>,
    max_pages: usize,
    n_pages: usize,
    block_tables: Vec<u32>,
    slot_mapping: Vec<u32>,
}

impl Paging {
    /// Appends a sequence's block-table row, padded to `max_pages` with its last page.
    fn push_table(&mut self, pages: &[u32]) {
        let row = self.block_tables.len();
        self.block_tables.extend_from_slice(pages);
        let last = pages.last().copied().unwrap_or(0);
        self.block_tables.resize(row + self.max_pages, last);
    }

    /// Fresh pages for every sequence's rows; a sequence with a context reads its parent's
    /// pages first.
    fn fresh(plan: &Plan) -> Result<Paging> {
        let n_seqs = plan.n_seqs();
        if !plan.seq_context.is_empty() && plan.seq_context.len() != n_seqs {
            return Err(Error::Data(format!(
                "plan: seq_context has {} entries for {n_seqs} sequences",
                plan.seq_context.len()
            )));
        }
        // Per sequence: (context length, pages of the context, own pages).
        let mut layout = Vec::with_capacity(n_seqs);
        for s in 0..n_seqs {
            let own = plan.seq_range(s).len().div_ceil(PAGE_SIZE).max(1);
            let ctx = match plan.context(s) {
                None => 0,
                Some(c) => {
                    let p = c.parent as usize;
                    if p >= s
                        || plan.context(p).is_some()
                        || c.len as usize > plan.seq_range(p).len()
                    {
                        return Err(Error::Data(format!(
                            "plan: sequence {s} reads {} rows of sequence {p}; a context is the \
                             start of an earlier sequence without a context of its own",
                            c.len
                        )));
                    }
                    c.len as usize
                }
            };
            layout.push((ctx, ctx.div_ceil(PAGE_SIZE), own));
        }
        let mut paging = Paging {
            max_pages: layout.iter().map(|&(_, c, o)| c + o).max().unwrap_or(1),
            slot_mapping: vec![0; plan.n_tokens()],
            ..Paging::default()
        };
        // First own page of each sequence (a parent's pages are all its own).
        let mut first_page = Vec::with_capacity(n_seqs);
        let mut next_page = 0u32;
        for (s, &(ctx, ctx_pages, own)) in layout.iter().enumerate() {
            let parent_first = plan.context(s).map_or(0, |c| first_page[c.parent as usize]);
            let table: Vec<u32> = (0..ctx_pages as u32)
                .map(|p| parent_first + p)
                .chain((0..own as u32).map(|p| next_page + p))
                .collect();
            paging.push_table(&table);
            for (i, r) in plan.seq_range(s).enumerate() {
                paging.slot_mapping[r] = (next_page as usize * PAGE_SIZE + i) as u32;
            }
            paging.ctx_lens.push(ctx as u32);
            paging.own_starts.push((ctx_pages * PAGE_SIZE) as u32);
            first_page.push(next_page);
            next_page += own as u32;
        }
        paging.n_pages = next_page as usize;
        Ok(paging)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{TokenizedExample, Variant};

    fn ex(len: usize, cands: &[&[u32]]) -> TokenizedExample {
        TokenizedExample {
            prompt: (1..=len as u32).collect(),
            candidates: cands.iter().map(|c| c.to_vec()).collect(),
            gold: 0,
            answers: Vec::new(),
        }
    }

    #[test]
    fn pages_slots_and_directions() {
        let v = |seed, sign| Variant {
            seed,
            sign,
            eps: 1e-3,
        };
        let plan = Plan::build(
            &[ex(20, &[&[7], &[8]]), ex(3, &[&[7], &[8]])],
            &[v(5, 1), v(5, -1), v(9, 1), v(9, -1), Variant::BASE],
        )
        .unwrap();
        let d = DevicePlan::new(&plan).unwrap();
        assert_eq!(d.n_seqs, 10);
        // 20 tokens need two pages, 3 tokens one: the table is 2 wide.
        assert_eq!(d.max_pages, 2);
        assert_eq!(&d.block_tables[..4], &[0, 1, 2, 2]);
        assert_eq!(d.n_pages, 15);
        // Row 17 is token 17 of sequence 0: page 1, offset 1.
        assert_eq!(d.slot_mapping[17], (PAGE_SIZE + 1) as u32);
        // Row 20 starts sequence 1 on page 2.
        assert_eq!(d.slot_mapping[20], (2 * PAGE_SIZE) as u32);
        assert_eq!(d.segments.len(), 4);
        assert_eq!(d.segment_direction, vec![0, 0, 1, 1]);
        assert_eq!(d.direction_seeds, vec![5, 9]);
        assert_eq!(&d.seq_segment[..], &[0, 0, 1, 1, 2, 2, 3, 3, -1, -1]);
        // One scoring row per sequence (single-token candidates), two queries each.
        assert_eq!(d.scoring_rows.len(), 10);
        assert_eq!(&d.query_row[..4], &[0, 0, 1, 1]);
    }

    #[test]
    fn children_read_the_parents_pages_and_write_fresh_ones() {
        // A 20-token prompt (two pages, the second partial) and two candidates of 3 and 18
        // tokens: children feed all but their last token.
        let mut long: Vec<u32> = vec![30; 18];
        long.push(31);
        let plan = Plan::build(&[ex(20, &[&[7, 8, 9], &long])], &[Variant::BASE]).unwrap();
        assert_eq!(plan.n_seqs(), 3);
        let d = DevicePlan::new(&plan).unwrap();
        assert_eq!(d.ctx_lens, vec![0, 20, 20]);
        assert_eq!(d.own_starts, vec![0, 32, 32]);
        // The prompt: pages 0-1; child 1: the prompt's pages, then page 2; child 2 (18 own
        // tokens): the prompt's pages, then pages 3 and 4.
        assert_eq!(d.max_pages, 4);
        assert_eq!(d.block_tables, vec![0, 1, 1, 1, 0, 1, 2, 2, 0, 1, 3, 4]);
        assert_eq!(d.n_pages, 5);
        // Child rows start at offset 0 of their first page, never in page 1.
        assert_eq!(d.slot_mapping[20], (2 * PAGE_SIZE) as u32);
        assert_eq!(d.slot_mapping[22], (3 * PAGE_SIZE) as u32);
        assert_eq!(d.slot_mapping[22 + 17], (4 * PAGE_SIZE + 1) as u32);
        // A corrupt context is an error, not a panic.
        let mut bad = plan.clone();
        bad.seq_context[1] = Some(crate::plan::SeqContext { parent: 2, len: 1 });
        assert!(DevicePlan::new(&bad).is_err());
        bad.seq_context[1] = Some(crate::plan::SeqContext { parent: 0, len: 21 });
        assert!(DevicePlan::new(&bad).is_err());
        bad.seq_context.pop();
        assert!(DevicePlan::new(&bad).is_err());
    }

    #[test]
    fn decoding_continues_each_cache() {
        // Two sequences: 15 tokens cached in page 3 plus 2 new ones (crossing into page 0),
        // and 1 cached in page 5 plus 1 new one.
        let plan = Plan {
            tokens: vec![1, 2, 3],
            positions: vec![15, 16, 1],
            cu_seqlens: vec![0, 2, 3],
            seq_variant: vec![0, 0],
            variants: vec![Variant::BASE],
            ..Plan::default()
        };
        let pages: [&[u32]; 2] = [&[3, 0], &[5]];
        let d = DevicePlan::continuing(&plan, &[(15, pages[0]), (1, pages[1])], 6).unwrap();
        assert_eq!(d.ctx_lens, vec![15, 1]);
        assert_eq!(d.own_starts, vec![15, 1]);
        assert_eq!(d.max_pages, 2);
        assert_eq!(d.block_tables, vec![3, 0, 5, 5]);
        assert_eq!(d.n_pages, 6);
        let p = PAGE_SIZE as u32;
        assert_eq!(d.slot_mapping, vec![3 * p + 15, 0, 5 * p + 1]);
        assert_eq!(d.scoring_rows, vec![1, 2]);
        // Pages without room for the new rows, or past the cache, are refused.
        assert!(DevicePlan::continuing(&plan, &[(15, &[3]), (1, pages[1])], 6).is_err());
        assert!(DevicePlan::continuing(&plan, &[(15, pages[0]), (1, pages[1])], 5).is_err());
        assert!(DevicePlan::continuing(&plan, &[(15, pages[0])], 6).is_err());
    }

    #[test]
    fn ragged_plan_is_rejected() {
        let mut plan = Plan::build(&[ex(4, &[&[1]])], &[Variant::BASE]).unwrap();
        plan.positions.pop();
        assert!(DevicePlan::new(&plan).is_err());
    }
}
