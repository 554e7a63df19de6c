//! Candidate scoring on the device (csrc/loss.cu): log-softmax at the scoring rows, each
//! query's log-prob, and MeZO's classification loss per example.
//!
//! The host flattens a plan once into a [`LossLayout`] (the index arrays the kernels read),
//! uploads it, and after the step reads back fp32 losses (or keeps them on the device).
//! Twins: the scoring loop of `CpuBackend::score` (`ops::log_sum_exp`, then `logit - lse`) and
//! [`crate::plan::classification_scores`].

use cudarc::driver::{DevicePtr, DevicePtrMut};

use super::device::CudaDevice;
use super::ops::check_u32;
use super::params::*;
#[cfg(zo_kernels)]
use crate::backend::launch::{classification_launch_config, logprob_launch_config, LaunchDims};
use crate::plan::{ExampleScore, Plan};
use crate::{Error, Result};

/// The index arrays of the loss kernels for one plan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LossLayout {
    /// Packed rows that need logits, ascending (the rows the head GEMM runs on).
    pub rows: Vec<u32>,
    /// Per query, (index into `rows`, token): `2 * n_queries` entries.
    pub queries: Vec<u32>,
    /// Per candidate of every example in order, its query range (start, end):
    /// `2 * n_candidates` entries.
    pub candidates: Vec<u32>,
    /// Example `e` owns candidates `example_offsets[e] .. example_offsets[e + 1]`.
    pub example_offsets: Vec<u32>,
    /// Per example, the gold candidate's index within the example.
    pub gold: Vec<u32>,
}

impl LossLayout {
    /// Flattens `plan`'s queries and examples; every index is checked here, so the kernels
    /// only see well-formed inputs.
    pub fn new(plan: &Plan) -> Result<LossLayout> {
        let rows = plan.scoring_rows();
        let n_q = plan.queries.len();
        check_u32("queries", n_q)?;
        let mut queries = Vec::with_capacity(2 * n_q);
        for q in &plan.queries {
            let r = rows
                .binary_search(&q.row)
                .expect("scoring rows cover every query");
            queries.extend([r as u32, q.token]);
        }
        let mut layout = LossLayout {
            rows,
            queries,
            candidates: Vec::new(),
            example_offsets: vec![0],
            gold: Vec::with_capacity(plan.examples.len()),
        };
        for (e, g) in plan.examples.iter().enumerate() {
            if g.gold as usize >= g.candidates.len() {
                return Err(Error::Data(format!(
                    "example {e}: gold {} but {} candidates",
                    g.gold,
                    g.candidates.len()
                )));
            }
            for (c, r) in g.candidates.iter().enumerate() {
                if r.start >= r.end || r.end as usize > n_q {
                    return Err(Error::Data(format!(
                        "example {e} candidate {c}: query range {r:?} is empty or past the \
                         plan's {n_q} queries"
                    )));
                }
                layout.candidates.extend([r.start, r.end]);
            }
            layout
                .example_offsets
                .push(check_u32("candidates", layout.candidates.len() / 2)?);
            layout.gold.push(g.gold);
        }
        Ok(layout)
    }

    pub fn n_queries(&self) -> usize {
        self.queries.len() / 2
    }

    pub fn n_candidates(&self) -> usize {
        self.candidates.len() / 2
    }

    pub fn n_examples(&self) -> usize {
        self.gold.len()
    }

    /// The per-example results of [`CudaDevice::classification_loss`], copied to the host, as
    /// the CPU backend reports them.
    pub fn scores(
        &self,
        loss: &[f32],
        pred: &[u32],
        candidate_scores: &[f32],
    ) -> Vec<ExampleScore> {
        (0..self.n_examples())
            .map(|e| {
                let c = self.example_offsets[e] as usize..self.example_offsets[e + 1] as usize;
                ExampleScore {
                    loss: loss[e],
                    pred: pred[e] as usize,
                    candidate_scores: candidate_scores[c].to_vec(),
                }
            })
            .collect()
    }
}

/// Full-vocabulary fp32 logits `[rows][ld]` (vocab columns) on the device.
pub struct Logits<'a> {
    pub data: &'a dyn DevicePtr<f32>,
    pub rows: usize,
    pub vocab: usize,
    pub ld: usize,
}

// SAFETY: plain #[repr(C)] structs of integers, passed to kernels by value.
unsafe impl cudarc::driver::DeviceRepr for ZoLogprobParams {}
unsafe impl cudarc::driver::DeviceRepr for ZoClassifyParams {}

impl CudaDevice {
    /// Per scoring row, `lse = log Σ exp(logits[row])` (written to `lse` when given, `[rows]`),
    /// and per query (`queries` as in [`LossLayout::queries`]) `query_logprobs[q] =
    /// logits[row][token] - lse[row]`. fp32 with fp32 block reductions. A query whose row or
    /// token is out of range gets NaN.
    pub fn candidate_logprobs(
        &self,
        logits: Logits<'_>,
        queries: &impl DevicePtr<u32>,
        lse: Option<&mut dyn DevicePtrMut<f32>>,
        query_logprobs: &mut impl DevicePtrMut<f32>,
    ) -> Result<()> {
        super::ops::check_rows(
            "logits",
            logits.data.len(),
            logits.rows,
            logits.vocab,
            logits.ld,
        )?;
        if queries.len() % 2 != 0 {
            return Err(Error::Data(format!(
                "queries: {} entries; expected (row, token) pairs",
                queries.len()
            )));
        }
        let n_q = queries.len() / 2;
        check_u32("queries", n_q)?;
        if query_logprobs.len() < n_q {
            return Err(Error::Data(format!(
                "query log-probs: {n_q} queries but the buffer holds {}",
                query_logprobs.len()
            )));
        }
        if let Some(l) = &lse {
            if l.len() < logits.rows {
                return Err(Error::Data(format!(
                    "lse: {} rows but the buffer holds {}",
                    logits.rows,
                    l.len()
                )));
            }
        }
        if logits.rows == 0 {
            if n_q > 0 {
                return Err(Error::Data(format!("{n_q} queries but no logit rows")));
            }
            return Ok(());
        }
        if logits.vocab == 0 {
            return Err(Error::Data("logits with an empty vocabulary".into()));
        }
        #[cfg(zo_kernels)]
        {
            let p = ZoLogprobParams {
                rows: logits.rows as u32,
                vocab: logits.vocab as u32,
                ld: logits.ld as u32,
                n_queries: n_q as u32,
                write_lse: lse.is_some() as u32,
                reserved: 0,
            };
            let mut a = super::kernel_args::KernelArgs::new(self.stream());
            a.read("logits", logits.data, 4)?;
            a.read("queries", queries, 4)?;
            a.write_opt("lse", lse, 4)?;
            a.write("query log-probs", query_logprobs, 4)?;
            let cfg = logprob_launch_config(logits.rows, logits.vocab);
            self.launch_loss("zo_candidate_logprobs", &p, cfg, a)
        }
        #[cfg(not(zo_kernels))]
        {
            let _ = (lse, query_logprobs);
            Err(Error::Cuda("this build has no CUDA kernels".into()))
        }
    }

    /// MeZO's classification loss per example from the query log-probs, with the index arrays
    /// of a [`LossLayout`] on the device: `loss[e]`, `pred[e]` (ties to the lowest index) and
    /// `candidate_scores[c]` (mean log-prob), fp64 arithmetic rounded once to fp32 as
    /// [`crate::plan::classification_scores`] does. A malformed example gets NaN and pred
    /// `u32::MAX`.
    #[allow(clippy::too_many_arguments)]
    pub fn classification_loss(
        &self,
        query_logprobs: &impl DevicePtr<f32>,
        candidates: &impl DevicePtr<u32>,
        example_offsets: &impl DevicePtr<u32>,
        gold: &impl DevicePtr<u32>,
        loss: &mut impl DevicePtrMut<f32>,
        pred: &mut impl DevicePtrMut<u32>,
        candidate_scores: &mut impl DevicePtrMut<f32>,
    ) -> Result<()> {
        let n_ex = gold.len();
        if candidates.len() % 2 != 0 {
            return Err(Error::Data(format!(
                "candidates: {} entries; expected (start, end) pairs",
                candidates.len()
            )));
        }
        let n_c = candidates.len() / 2;
        if example_offsets.len() != n_ex + 1 {
            return Err(Error::Data(format!(
                "example offsets: {} entries for {n_ex} examples; expected {}",
                example_offsets.len(),
                n_ex + 1
            )));
        }
        for (what, len, want) in [
            ("losses", loss.len(), n_ex),
            ("predictions", pred.len(), n_ex),
            ("candidate scores", candidate_scores.len(), n_c),
        ] {
            if len < want {
                return Err(Error::Data(format!(
                    "{what}: {want} needed but the buffer holds {len}"
                )));
            }
        }
        check_u32("examples", n_ex + 1)?;
        check_u32("candidates", n_c)?;
        check_u32("queries", query_logprobs.len())?;
        if n_ex == 0 {
            return Ok(());
        }
        #[cfg(zo_kernels)]
        {
            let p = ZoClassifyParams {
                n_examples: n_ex as u32,
                n_candidates: n_c as u32,
                n_queries: query_logprobs.len() as u32,
                reserved: 0,
            };
            let mut a = super::kernel_args::KernelArgs::new(self.stream());
            a.read("query log-probs", query_logprobs, 4)?;
            a.read("candidates", candidates, 4)?;
            a.read("example offsets", example_offsets, 4)?;
            a.read("gold", gold, 4)?;
            a.write("losses", loss, 4)?;
            a.write("predictions", pred, 4)?;
            a.write("candidate scores", candidate_scores, 4)?;
            let cfg = classification_launch_config(n_ex);
            self.launch_loss("zo_classification_loss", &p, cfg, a)
        }
        #[cfg(not(zo_kernels))]
        {
            let _ = (loss, pred, candidate_scores);
            Err(Error::Cuda("this build has no CUDA kernels".into()))
        }
    }

    #[cfg(zo_kernels)]
    fn launch_loss<P: cudarc::driver::DeviceRepr>(
        &self,
        name: &'static str,
        params: &P,
        dims: LaunchDims,
        args: super::kernel_args::KernelArgs<'_>,
    ) -> Result<()> {
        let func = self.function(name)?;
        let cfg = dims.into();
        // SAFETY: the wrappers collect exactly the kernel's pointers in order after checking
        // every size the kernel derives its accesses from; indices read from device memory
        // are bounds-checked by the kernels.
        unsafe { args.launch(&func, name, params, cfg) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{TokenizedExample, Variant};

    #[test]
    fn layout_flattens_a_plan() {
        let ex = |p: &[u32], c: &[&[u32]], g| TokenizedExample {
            prompt: p.to_vec(),
            candidates: c.iter().map(|c| c.to_vec()).collect(),
            gold: g,
        };
        let plan = Plan::build(
            &[ex(&[5, 6], &[&[1], &[2]], 1), ex(&[7], &[&[3, 4], &[9]], 0)],
            &[Variant::BASE],
        )
        .unwrap();
        let l = LossLayout::new(&plan).unwrap();
        // Tokens: [5 6] [7 3] [7]; queries at rows 1, 1, 2, 3, 4.
        assert_eq!(l.rows, vec![1, 2, 3, 4]);
        assert_eq!(l.queries, vec![0, 1, 0, 2, 1, 3, 2, 4, 3, 9]);
        assert_eq!(l.candidates, vec![0, 1, 1, 2, 2, 4, 4, 5]);
        assert_eq!(l.example_offsets, vec![0, 2, 4]);
        assert_eq!(l.gold, vec![1, 0]);
        let s = l.scores(&[0.5, 0.25], &[1, 0], &[-1.0, -2.0, -3.0, -4.0]);
        assert_eq!(s[1].candidate_scores, vec![-3.0, -4.0]);
        assert_eq!(s[0].pred, 1);
    }

    #[test]
    fn layout_refuses_bad_ranges() {
        let mut plan = Plan::build(
            &[TokenizedExample {
                prompt: vec![1],
                candidates: vec![vec![2], vec![3]],
                gold: 0,
            }],
            &[Variant::BASE],
        )
        .unwrap();
        plan.examples[0].candidates[1] = 1..5;
        let e = LossLayout::new(&plan).unwrap_err();
        assert!(e.to_string().contains("candidate 1"), "{e}");
        plan.examples[0].candidates[1] = 1..2;
        plan.examples[0].gold = 2;
        assert!(LossLayout::new(&plan).is_err());
    }
}
