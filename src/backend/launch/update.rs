use super::LaunchDims;

const THREADS: u32 = 256;
const MAX_GRID: u64 = 8192;

/// `zo_seeded_axpy_<T>` and `zo_lowrank_momentum` over `n` elements: one thread per Philox
/// block of 4 elements, grid-stride beyond `MAX_GRID` blocks.
#[doc(hidden)]
pub fn axpy_launch_config(n: usize) -> LaunchDims {
    let grid = (n as u64)
        .div_ceil(4)
        .div_ceil(THREADS as u64)
        .clamp(1, MAX_GRID) as u32;
    LaunchDims::linear(grid, THREADS)
}

/// `zo_factor_merge_<T>`: x covers the K columns, y the rows (grid-stride past 65535).
#[doc(hidden)]
pub fn merge_launch_config(out: usize, k: usize) -> LaunchDims {
    LaunchDims {
        grid: (
            k.div_ceil(THREADS as usize).max(1) as u32,
            out.clamp(1, 65535) as u32,
            1,
        ),
        block: (THREADS, 1, 1),
        smem: 0,
    }
}

/// `zo_lowrank_basis` (`n = r²`) and `zo_lowrank_project` (`n = r·out`): one thread per
/// output.
#[doc(hidden)]
pub fn basis_launch_config(n: usize) -> LaunchDims {
    LaunchDims::linear(n.div_ceil(THREADS as usize).max(1) as u32, THREADS)
}
