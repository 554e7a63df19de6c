//! Data-parallel ZO: N ranks that hold the same weights and draw the same seeds split every
//! step's (variant, example) pairs among them, exchange the per-example losses (a few floats
//! per rank), and each forms the step's estimate from all of them in one fixed order. They
//! then apply the identical update, so N ranks produce, bit for bit, the seed log of one rank:
//! every example's loss is independent of what it is packed with (the CPU GEMMs are
//! row-independent, see `matmul`), and the losses are summed in the one-rank order.
//!
//! [`Comm`] is all a rank needs from its peers; [`Local`] is the one-rank communicator, and
//! `mpi` (feature `mpi`) runs the ranks over MPI.

use std::ops::Range;

use crate::{Error, Result};

#[cfg(feature = "mpi")]
pub mod mpi;

/// What a rank exchanges with its peers. Every rank makes the same calls in the same order.
pub trait Comm: std::fmt::Debug {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Every rank's `local` values concatenated in rank order, rank `r` contributing
    /// `counts[r]`. `what` names the exchange in errors. A peer that sends nothing within the
    /// communicator's bound ends the job with a message that names it.
    fn all_gather(&self, local: &[f32], counts: &[usize], what: &str) -> Result<Vec<f32>>;
    /// Every rank's bytes, in rank order (lengths may differ): the startup agreement check.
    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>>;
}

/// A single rank: nothing to exchange.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl Comm for Local {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_gather(&self, local: &[f32], counts: &[usize], what: &str) -> Result<Vec<f32>> {
        check_counts(self, local, counts, what)?;
        Ok(local.to_vec())
    }
    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(vec![local.to_vec()])
    }
}

/// Refuses an exchange whose counts do not fit the communicator or this rank's values: a
/// programming error, named rather than left to corrupt the gathered order.
pub(crate) fn check_counts(
    comm: &dyn Comm,
    local: &[f32],
    counts: &[usize],
    what: &str,
) -> Result<()> {
    if counts.len() != comm.size() || counts[comm.rank()] != local.len() {
        return Err(Error::Distributed(format!(
            "rank {}: {what}: {} values for counts {counts:?} of {} ranks",
            comm.rank(),
            local.len(),
            comm.size()
        )));
    }
    Ok(())
}

/// This process's rank among the ranks on its machine, as the MPI launcher tells it (Open MPI,
/// MPICH, Slurm), or `rank` when none does: which GPU a rank takes.
pub fn local_rank(rank: usize) -> usize {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
    .unwrap_or(rank)
}

/// Rank `rank`'s contiguous part of `0..total` items split among `size` ranks: the parts
/// differ in length by at most one and follow each other in rank order.
pub fn shard(total: usize, rank: usize, size: usize) -> Range<usize> {
    total * rank / size..total * (rank + 1) / size
}

/// Every rank's number of items in [`shard`].
pub fn shard_counts(total: usize, size: usize) -> Vec<usize> {
    (0..size).map(|r| shard(total, r, size).len()).collect()
}

/// Accounts for a difference of item `name` between rank 0's value and another rank's.
pub type Describe = dyn Fn(&str, &[u8], &[u8]) -> String;

/// Checks that every rank runs the same job: each `(item, value)` must be identical on all
/// ranks. The error names every rank whose item differs from rank 0's, with `describe`'s
/// account of the difference (given rank 0's value and that rank's).
pub fn check_agreement(
    comm: &dyn Comm,
    items: &[(&str, Vec<u8>)],
    describe: &Describe,
) -> Result<()> {
    let mut problems = Vec::new();
    for (name, value) in items {
        let all = comm.all_gather_bytes(value)?;
        for (r, v) in all.iter().enumerate().skip(1) {
            if *v != all[0] {
                problems.push(format!(
                    "rank {r}'s {name} differs from rank 0's ({})",
                    describe(name, &all[0], v)
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Distributed(format!(
            "the ranks do not run the same job: {}; give every rank the same flags, model and \
             data",
            problems.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_items_in_rank_order() {
        for total in [0, 1, 5, 16, 17] {
            for size in 1..=5 {
                let parts: Vec<Range<usize>> = (0..size).map(|r| shard(total, r, size)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[size - 1].end, total);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let counts = shard_counts(total, size);
                let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
                assert!(hi - lo <= 1, "{total} over {size}: {counts:?}");
            }
        }
    }

    #[test]
    fn local_gathers_its_own_values_and_checks_counts() {
        assert_eq!(
            Local.all_gather(&[1.0, 2.0], &[2], "x").unwrap(),
            vec![1.0, 2.0]
        );
        assert!(Local.all_gather(&[1.0], &[2], "x").is_err());
        let ok = check_agreement(&Local, &[("config", b"a".to_vec())], &|_, _, _| {
            String::new()
        });
        assert!(ok.is_ok());
    }
}
