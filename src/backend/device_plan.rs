//! A plan flattened into the arrays the GPU kernels read: packed tokens and positions,
//! sequence boundaries, the paged KV layout (block tables and slot mapping), the perturbed
//! segments with each segment's direction index, and the scoring rows and queries.
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
    /// Pages per sequence in `block_tables` (the widest sequence's count).
    pub max_pages: usize,
    pub n_pages: usize,
    /// `[n_seqs][max_pages]` page ids (unused entries repeat the sequence's last page).
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
        let n_seqs = plan.n_seqs();
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
        if plan.has_contexts() {
            return Err(Error::Unsupported(
                "the CUDA backend does not read shared contexts yet; build the plan with \
                 Sharing::PerCandidate"
                    .into(),
            ));
        }
        let mut max_pages = 1;
        for s in 0..n_seqs {
            max_pages = max_pages.max(plan.seq_range(s).len().div_ceil(PAGE_SIZE));
        }
        let mut block_tables = Vec::with_capacity(n_seqs * max_pages);
        let mut slot_mapping = vec![0u32; n_tokens];
        let mut next_page = 0u32;
        for s in 0..n_seqs {
            let r = plan.seq_range(s);
            let pages = r.len().div_ceil(PAGE_SIZE).max(1);
            for p in 0..max_pages {
                block_tables.push(next_page + p.min(pages - 1) as u32);
            }
            for (i, row) in r.enumerate() {
                slot_mapping[row] = (next_page as usize * PAGE_SIZE + i) as u32;
            }
            next_page += pages as u32;
        }
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
        let scoring_rows = plan.scoring_rows();
        let query_row = plan
            .queries
            .iter()
            .map(|q| {
                scoring_rows
                    .binary_search(&q.row)
                    .expect("scoring_rows holds every query row") as u32
            })
            .collect();
        Ok(DevicePlan {
            n_tokens,
            n_seqs,
            tokens: plan.tokens.clone(),
            positions: plan.positions.clone(),
            cu_seqlens: plan.cu_seqlens.clone(),
            ctx_lens: vec![0; n_seqs],
            max_pages,
            n_pages: next_page as usize,
            block_tables,
            slot_mapping,
            segments: segs,
            segment_direction,
            direction_seeds,
            seq_segment,
            scoring_rows,
            query_row,
            query_token: plan.queries.iter().map(|q| q.token).collect(),
        })
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
    fn ragged_plan_is_rejected() {
        let mut plan = Plan::build(&[ex(4, &[&[1]])], &[Variant::BASE]).unwrap();
        plan.positions.pop();
        assert!(DevicePlan::new(&plan).is_err());
    }
}
