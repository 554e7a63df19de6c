use super::LaunchDims;
use crate::perturb::augment::{SHRINK_RANKS, SHRINK_ROWS};

/// Threads of a shrink block (8 row pairs × 16 lanes; fixed by csrc/adapter.cu).
const SHRINK_THREADS: u32 = 128;
/// Threads of a pack block, and the most blocks a pack launches (it grid-strides beyond).
const PACK_THREADS: u32 = 256;
const PACK_MAX_GRID: u64 = 4096;

/// `zo_adapter_shrink_<T>`: one block per 16 rows × 16 rank components.
#[doc(hidden)]
pub fn shrink_launch_config(rows: usize, rank: usize) -> LaunchDims {
    LaunchDims {
        grid: (
            rows.div_ceil(SHRINK_ROWS).max(1) as u32,
            rank.div_ceil(SHRINK_RANKS).max(1) as u32,
            1,
        ),
        block: (SHRINK_THREADS, 1, 1),
        smem: 0,
    }
}

/// `zo_adapter_pack_<T>`: one thread per element of the site's `out × width` block.
#[doc(hidden)]
pub fn pack_launch_config(out: usize, width: usize) -> LaunchDims {
    let n = (out * width) as u64;
    let grid = n.div_ceil(PACK_THREADS as u64).clamp(1, PACK_MAX_GRID) as u32;
    LaunchDims::linear(grid, PACK_THREADS)
}
