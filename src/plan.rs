//! A step's batch: many (example, variant) sequences packed into one token buffer with no
//! padding, plus what to score. Backends consume a [`Plan`]; they never see examples or text.

use std::ops::Range;

use crate::{Error, Result};

/// A perturbation variant: direction seed, sign in {+1, -1, 0} and ε. Sign 0 is the
/// unperturbed model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variant {
    pub seed: u64,
    pub sign: i8,
    pub eps: f32,
}

impl Variant {
    pub const BASE: Variant = Variant {
        seed: 0,
        sign: 0,
        eps: 0.0,
    };
}

/// A tokenized example: the prompt, each candidate continuation, and the reference answers
/// (text) that generated continuations are judged against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedExample {
    pub prompt: Vec<u32>,
    pub candidates: Vec<Vec<u32>>,
    pub gold: usize,
    pub answers: Vec<String>,
}

/// Sequence `s` attends to the first `len` rows of sequence `parent` before its own rows, as
/// if they were its own first rows: a shared prompt whose keys and values are computed once.
/// The parent is an earlier sequence of the same plan and variant with no context of its own;
/// the child's positions continue from `len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqContext {
    pub parent: u32,
    pub len: u32,
}

/// How [`Plan::build`] lays out an example with multi-token candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// The prompt is one sequence and every candidate a child reading its keys and values
    /// ([`SeqContext`]): the prompt is computed once per variant.
    SharedPrompt,
    /// Every candidate is its own sequence, prompt + candidate (what an engine without shared
    /// KV pages runs).
    PerCandidate,
}

/// One example of a step under one of its variants, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub variant: usize,
    pub example: usize,
}

/// Every example under every variant, variant-major: the order of a whole step's plan and of
/// its per-example losses.
pub fn cross_pairs(n_variants: usize, n_examples: usize) -> Vec<Pair> {
    (0..n_variants)
        .flat_map(|variant| (0..n_examples).map(move |example| Pair { variant, example }))
        .collect()
}

/// log p(token | prefix up to and including packed row `row`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub row: u32,
    pub token: u32,
}

/// One example scored under one variant: candidate `c` owns `queries[candidates[c]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleGroup {
    pub variant: u32,
    pub candidates: Vec<Range<u32>>,
    pub gold: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub tokens: Vec<u32>,
    /// Position of each token within its own sequence, from 0. Architectures add their own
    /// offsets (OPT: +2).
    pub positions: Vec<u32>,
    /// Sequence boundaries, `n_seqs + 1` entries starting at 0.
    pub cu_seqlens: Vec<u32>,
    /// Variant index of each sequence.
    pub seq_variant: Vec<u32>,
    /// Each sequence's shared context, if any; empty when no sequence has one.
    pub seq_context: Vec<Option<SeqContext>>,
    pub variants: Vec<Variant>,
    pub queries: Vec<Query>,
    pub examples: Vec<ExampleGroup>,
}

impl Plan {
    pub fn n_tokens(&self) -> usize {
        self.tokens.len()
    }

    pub fn n_seqs(&self) -> usize {
        self.cu_seqlens.len().saturating_sub(1)
    }

    pub fn seq_range(&self, s: usize) -> Range<usize> {
        self.cu_seqlens[s] as usize..self.cu_seqlens[s + 1] as usize
    }

    /// The context sequence `s` reads before its own rows.
    pub fn context(&self, s: usize) -> Option<SeqContext> {
        self.seq_context.get(s).copied().flatten()
    }

    /// Whether any sequence reads a shared context.
    pub fn has_contexts(&self) -> bool {
        self.seq_context.iter().any(Option::is_some)
    }

    /// Distinct packed rows that need logits, ascending.
    pub fn scoring_rows(&self) -> Vec<u32> {
        let mut rows: Vec<u32> = self.queries.iter().map(|q| q.row).collect();
        rows.sort_unstable();
        rows.dedup();
        rows
    }

    /// Packs every example under every variant in `variants`, variant-major so each variant's
    /// sequences are contiguous (the segments the fused kernels expect).
    ///
    /// Single-token candidates are all scored from one sequence (the prompt) at its last row.
    /// Otherwise the prompt is one sequence and each candidate a child sequence reading the
    /// prompt's keys and values ([`Sharing::SharedPrompt`]), scored at the rows that predict
    /// each candidate token; the prompt's last row predicts every candidate's first token.
    pub fn build(examples: &[TokenizedExample], variants: &[Variant]) -> Result<Plan> {
        Plan::build_with(examples, variants, Sharing::SharedPrompt)
    }

    /// [`Plan::build`] with the layout of multi-token candidates chosen.
    pub fn build_with(
        examples: &[TokenizedExample],
        variants: &[Variant],
        sharing: Sharing,
    ) -> Result<Plan> {
        if variants.is_empty() {
            return Err(Error::Data("plan needs at least one variant".into()));
        }
        if examples.is_empty() && !variants.is_empty() {
            // No sequences, but the plan still names the step's variants.
            return Ok(Plan {
                variants: variants.to_vec(),
                cu_seqlens: vec![0],
                ..Plan::default()
            });
        }
        Plan::build_pairs(
            examples,
            variants,
            &cross_pairs(variants.len(), examples.len()),
            sharing,
        )
    }

    /// Packs the (variant, example) pairs `pairs` of `variants` × `examples`, in their order
    /// (which must keep each variant's pairs together): a part of [`Plan::build_with`]'s plan,
    /// holding only the variants it uses. Its example groups come in the order of `pairs`.
    pub fn build_pairs(
        examples: &[TokenizedExample],
        variants: &[Variant],
        pairs: &[Pair],
        sharing: Sharing,
    ) -> Result<Plan> {
        if variants.is_empty() {
            return Err(Error::Data("plan needs at least one variant".into()));
        }
        let mut plan = Plan {
            cu_seqlens: vec![0],
            ..Plan::default()
        };
        let mut local: Vec<Option<u32>> = vec![None; variants.len()];
        for &Pair { variant, example } in pairs {
            let (Some(v), Some(ex)) = (variants.get(variant), examples.get(example)) else {
                return Err(Error::Data(format!(
                    "plan: pair (variant {variant}, example {example}) is outside {} variants × \
                     {} examples",
                    variants.len(),
                    examples.len()
                )));
            };
            let vi = match local[variant] {
                Some(vi) if vi as usize + 1 == plan.variants.len() => vi,
                Some(_) => {
                    return Err(Error::Data(format!(
                        "plan: the pairs of variant {variant} are not contiguous"
                    )))
                }
                None => {
                    plan.variants.push(*v);
                    let vi = plan.variants.len() as u32 - 1;
                    local[variant] = Some(vi);
                    vi
                }
            };
            plan.push_example(example, ex, vi, sharing)?;
        }
        Ok(plan)
    }

    fn push_seq(&mut self, toks: impl Iterator<Item = u32>, variant: u32) -> u32 {
        self.push_child(toks, variant, None)
    }

    /// Appends a sequence; with a context its positions start after the context's rows.
    fn push_child(
        &mut self,
        toks: impl Iterator<Item = u32>,
        variant: u32,
        context: Option<SeqContext>,
    ) -> u32 {
        let start = self.tokens.len() as u32;
        let first = context.map_or(0, |c| c.len);
        for (p, t) in toks.enumerate() {
            self.tokens.push(t);
            self.positions.push(first + p as u32);
        }
        self.cu_seqlens.push(self.tokens.len() as u32);
        self.seq_variant.push(variant);
        if context.is_some() || !self.seq_context.is_empty() {
            self.seq_context.resize(self.seq_variant.len() - 1, None);
            self.seq_context.push(context);
        }
        start
    }

    fn push_example(
        &mut self,
        index: usize,
        ex: &TokenizedExample,
        variant: u32,
        sharing: Sharing,
    ) -> Result<()> {
        if ex.prompt.is_empty() {
            return Err(Error::Data(format!("example {index}: empty prompt")));
        }
        if ex.candidates.is_empty() || ex.candidates.iter().any(|c| c.is_empty()) {
            return Err(Error::Data(format!(
                "example {index}: a candidate has no tokens"
            )));
        }
        if ex.gold >= ex.candidates.len() {
            return Err(Error::Data(format!(
                "example {index}: gold index {} but only {} candidates",
                ex.gold,
                ex.candidates.len()
            )));
        }
        let mut ranges = Vec::with_capacity(ex.candidates.len());
        if ex.candidates.iter().all(|c| c.len() == 1) {
            let start = self.push_seq(ex.prompt.iter().copied(), variant);
            let last = start + ex.prompt.len() as u32 - 1;
            for c in &ex.candidates {
                let q = self.queries.len() as u32;
                self.queries.push(Query {
                    row: last,
                    token: c[0],
                });
                ranges.push(q..q + 1);
            }
        } else if sharing == Sharing::SharedPrompt {
            let parent = self.n_seqs() as u32;
            let start = self.push_seq(ex.prompt.iter().copied(), variant);
            let last = start + ex.prompt.len() as u32 - 1;
            let context = SeqContext {
                parent,
                len: ex.prompt.len() as u32,
            };
            for c in &ex.candidates {
                let q = self.queries.len() as u32;
                self.queries.push(Query {
                    row: last,
                    token: c[0],
                });
                if c.len() > 1 {
                    // The child feeds every candidate token but the last (which predicts
                    // nothing scored); its row j predicts token j + 1.
                    let child =
                        self.push_child(c[..c.len() - 1].iter().copied(), variant, Some(context));
                    for (j, &t) in c[1..].iter().enumerate() {
                        self.queries.push(Query {
                            row: child + j as u32,
                            token: t,
                        });
                    }
                }
                ranges.push(q..self.queries.len() as u32);
            }
        } else {
            for c in &ex.candidates {
                // The last candidate token predicts nothing we score, so it is not fed.
                let toks = ex.prompt.iter().chain(&c[..c.len() - 1]).copied();
                let start = self.push_seq(toks, variant);
                let q = self.queries.len() as u32;
                for (j, &t) in c.iter().enumerate() {
                    let row = start + ex.prompt.len() as u32 - 1 + j as u32;
                    self.queries.push(Query { row, token: t });
                }
                ranges.push(q..self.queries.len() as u32);
            }
        }
        self.examples.push(ExampleGroup {
            variant,
            candidates: ranges,
            gold: ex.gold as u32,
        });
        Ok(())
    }
}

/// Result of scoring one example group.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleScore {
    /// MeZO's classification loss: cross-entropy over the candidates' mean token log-probs
    /// (with one candidate, its negative mean token log-prob).
    pub loss: f32,
    pub pred: usize,
    pub candidate_scores: Vec<f32>,
}

/// MeZO's classification loss from per-query log-probs; fp64 reductions, fp32 results. An
/// example group with a single candidate is an LM target (the `lm` objective): its loss is the
/// candidate's negative mean token log-prob.
pub fn classification_scores(plan: &Plan, query_logprobs: &[f32]) -> Vec<ExampleScore> {
    plan.examples
        .iter()
        .map(|g| {
            let scores: Vec<f64> = g
                .candidates
                .iter()
                .map(|r| {
                    let lp = &query_logprobs[r.start as usize..r.end as usize];
                    lp.iter().map(|&x| x as f64).sum::<f64>() / lp.len() as f64
                })
                .collect();
            let loss = if scores.len() == 1 {
                // One candidate is an LM target: its negative mean token log-prob.
                -scores[0] as f32
            } else {
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = m + scores.iter().map(|s| (s - m).exp()).sum::<f64>().ln();
                (lse - scores[g.gold as usize]) as f32
            };
            // Ties go to the lowest index, as argmax does in the reference trainers.
            let pred = scores
                .iter()
                .enumerate()
                .fold(0, |best, (i, &s)| if s > scores[best] { i } else { best });
            ExampleScore {
                loss,
                pred,
                candidate_scores: scores.iter().map(|&s| s as f32).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(prompt: &[u32], cands: &[&[u32]], gold: usize) -> TokenizedExample {
        TokenizedExample {
            prompt: prompt.to_vec(),
            candidates: cands.iter().map(|c| c.to_vec()).collect(),
            gold,
            answers: Vec::new(),
        }
    }

    #[test]
    fn single_token_candidates_share_one_sequence() {
        let p = Plan::build(
            &[
                ex(&[5, 6, 7], &[&[10], &[11]], 1),
                ex(&[8], &[&[10], &[11]], 0),
            ],
            &[Variant::BASE],
        )
        .unwrap();
        assert_eq!(p.tokens, vec![5, 6, 7, 8]);
        assert_eq!(p.positions, vec![0, 1, 2, 0]);
        assert_eq!(p.cu_seqlens, vec![0, 3, 4]);
        assert_eq!(
            p.queries,
            vec![
                Query { row: 2, token: 10 },
                Query { row: 2, token: 11 },
                Query { row: 3, token: 10 },
                Query { row: 3, token: 11 }
            ]
        );
        assert_eq!(p.scoring_rows(), vec![2, 3]);
    }

    #[test]
    fn multi_token_candidates_get_own_sequences_and_variants_are_contiguous() {
        let v = [
            Variant {
                seed: 1,
                sign: 1,
                eps: 1e-3,
            },
            Variant {
                seed: 1,
                sign: -1,
                eps: 1e-3,
            },
        ];
        let p = Plan::build_with(
            &[ex(&[1, 2], &[&[3, 4], &[5]], 0)],
            &v,
            Sharing::PerCandidate,
        )
        .unwrap();
        // Per variant: [1,2,3] and [1,2].
        assert_eq!(p.tokens, vec![1, 2, 3, 1, 2, 1, 2, 3, 1, 2]);
        assert_eq!(p.seq_variant, vec![0, 0, 1, 1]);
        assert_eq!(
            &p.queries[..3],
            &[
                Query { row: 1, token: 3 },
                Query { row: 2, token: 4 },
                Query { row: 4, token: 5 }
            ]
        );
        assert_eq!(p.examples[1].variant, 1);
        assert_eq!(p.examples[1].candidates, vec![3..5, 5..6]);
    }

    #[test]
    fn multi_token_candidates_read_the_shared_prompt() {
        let v = [
            Variant {
                seed: 1,
                sign: 1,
                eps: 1e-3,
            },
            Variant {
                seed: 1,
                sign: -1,
                eps: 1e-3,
            },
        ];
        let p = Plan::build(&[ex(&[1, 2], &[&[3, 4, 6], &[5]], 0)], &v).unwrap();
        // Per variant: the prompt [1,2], then the child [3,4] of the three-token candidate;
        // the one-token candidate is scored from the prompt alone.
        assert_eq!(p.tokens, vec![1, 2, 3, 4, 1, 2, 3, 4]);
        assert_eq!(p.positions, vec![0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(p.cu_seqlens, vec![0, 2, 4, 6, 8]);
        assert_eq!(p.seq_variant, vec![0, 0, 1, 1]);
        let ctx = |parent| Some(SeqContext { parent, len: 2 });
        assert_eq!(p.seq_context, vec![None, ctx(0), None, ctx(2)]);
        assert_eq!(
            &p.queries[..4],
            &[
                Query { row: 1, token: 3 },
                Query { row: 2, token: 4 },
                Query { row: 3, token: 6 },
                Query { row: 1, token: 5 },
            ]
        );
        assert_eq!(p.examples[1].candidates, vec![4..7, 7..8]);
    }

    #[test]
    fn loss_is_cross_entropy_over_mean_logprobs() {
        let p = Plan::build(&[ex(&[1], &[&[3, 4], &[5]], 1)], &[Variant::BASE]).unwrap();
        let s = classification_scores(&p, &[-1.0, -3.0, -1.0]);
        // Means: -2, -1. CE with gold 1 = ln(e^-2 + e^-1) + 1.
        let want = ((-2f64).exp() + (-1f64).exp()).ln() + 1.0;
        assert!((s[0].loss as f64 - want).abs() < 1e-6);
        assert_eq!(s[0].pred, 1);
    }

    #[test]
    fn bad_examples_are_rejected() {
        assert!(Plan::build(&[ex(&[], &[&[1]], 0)], &[Variant::BASE]).is_err());
        assert!(Plan::build(&[ex(&[1], &[&[]], 0)], &[Variant::BASE]).is_err());
        let e = Plan::build(&[ex(&[1], &[&[2]], 3)], &[Variant::BASE]).unwrap_err();
        assert!(e.to_string().contains("gold index 3"), "{e}");
    }
}
