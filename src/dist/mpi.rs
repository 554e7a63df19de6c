//! The ranks of a data-parallel run over MPI (launched by `mpirun -np N zo-run train …
//! --distributed mpi`).
//!
//! The per-step exchange is an all-gather written as point-to-point messages, so that a wait
//! can be bounded and, when it runs out, name the rank that sent nothing: a dead or hung rank
//! then stops the job (MPI_Abort) with that message instead of hanging it. Messages between
//! two ranks arrive in the order sent, and every rank makes the same exchanges in the same
//! order, so no tags are needed.

use std::time::{Duration, Instant};

use mpi::datatype::PartitionMut;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;

use super::{check_counts, Comm};
use crate::{Error, Result};

/// A rank of `MPI_COMM_WORLD`, with the bound on how long it waits for a peer.
pub struct MpiComm {
    world: SimpleCommunicator,
    timeout: Duration,
    // Finalizes MPI when dropped, so it goes last.
    _universe: mpi::environment::Universe,
}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiComm")
            .field("rank", &self.rank())
            .field("size", &self.size())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl MpiComm {
    /// Initialises MPI (once per process). Started without `mpirun`, the process is a world of
    /// one rank.
    pub fn init(timeout: Duration) -> Result<MpiComm> {
        let universe = mpi::initialize().ok_or_else(|| {
            Error::Distributed("MPI is already initialised in this process".into())
        })?;
        Ok(MpiComm {
            world: universe.world(),
            timeout,
            _universe: universe,
        })
    }

    /// Ends every rank of the job with `code` (after this rank has said why).
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }

    fn give_up(&self, waiting: &[usize], what: &str) -> ! {
        let ranks: Vec<String> = waiting.iter().map(|r| r.to_string()).collect();
        eprintln!(
            "zo-run: rank {}: no {what} from rank {} within {:.0} s: that rank died or hangs. \
             Stopping every rank; the last checkpoint rank 0 wrote is intact, resume from it \
             (with any number of ranks)",
            self.rank(),
            ranks.join(", "),
            self.timeout.as_secs_f64()
        );
        self.abort(3)
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_gather(&self, local: &[f32], counts: &[usize], what: &str) -> Result<Vec<f32>> {
        check_counts(self, local, counts, what)?;
        let me = self.rank();
        let mut out = vec![0.0f32; counts.iter().sum()];
        // Each rank's destination slice, in rank order.
        let mut parts: Vec<&mut [f32]> = Vec::with_capacity(counts.len());
        let mut rest = &mut out[..];
        for &c in counts {
            let (head, tail) = rest.split_at_mut(c);
            parts.push(head);
            rest = tail;
        }
        parts[me].copy_from_slice(local);
        let deadline = Instant::now() + self.timeout;
        mpi::request::scope(|scope| {
            let mut sends = Vec::new();
            for r in (0..counts.len()).filter(|&r| r != me) {
                sends.push(
                    self.world
                        .process_at_rank(r as i32)
                        .immediate_send(scope, local),
                );
            }
            let mut recvs: Vec<(usize, _)> = Vec::new();
            for (r, part) in parts.into_iter().enumerate() {
                if r != me {
                    let req = self
                        .world
                        .process_at_rank(r as i32)
                        .immediate_receive_into(scope, part);
                    recvs.push((r, req));
                }
            }
            // Poll with a growing sleep: a rank that finished its part early must not take a
            // core from one still computing.
            let mut nap = Duration::from_micros(20);
            while !recvs.is_empty() || !sends.is_empty() {
                recvs = recvs
                    .into_iter()
                    .filter_map(|(r, q)| q.test().err().map(|q| (r, q)))
                    .collect();
                sends = sends.into_iter().filter_map(|q| q.test().err()).collect();
                if recvs.is_empty() && sends.is_empty() {
                    break;
                }
                if Instant::now() >= deadline {
                    let waiting: Vec<usize> = recvs.iter().map(|(r, _)| *r).collect();
                    self.give_up(&waiting, what);
                }
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(2));
            }
        });
        Ok(out)
    }

    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>> {
        let n = self.size();
        let mut lens = vec![0u64; n];
        self.world
            .all_gather_into(&(local.len() as u64), &mut lens[..]);
        let counts: Vec<i32> = lens
            .iter()
            .map(|&l| {
                i32::try_from(l).map_err(|_| {
                    Error::Distributed(format!("a rank's agreement record has {l} bytes"))
                })
            })
            .collect::<Result<_>>()?;
        let displs: Vec<i32> = counts
            .iter()
            .scan(0i32, |at, &c| {
                let d = *at;
                *at += c;
                Some(d)
            })
            .collect();
        let mut all = vec![0u8; lens.iter().sum::<u64>() as usize];
        {
            let mut part = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            self.world.all_gather_varcount_into(local, &mut part);
        }
        Ok(counts
            .iter()
            .zip(&displs)
            .map(|(&c, &d)| all[d as usize..(d + c) as usize].to_vec())
            .collect())
    }
}
