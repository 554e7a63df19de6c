use super::LaunchDims;

/// Threads per CUDA block for the draw kernels; each thread makes one Philox block.
const THREADS: u32 = 256;
/// Enough CUDA blocks to fill any current GPU; larger draws loop (grid-stride).
const MAX_GRID: u32 = 8192;

/// `zo_init_<T>` over `n` elements: one thread per Philox block of 4 elements, grid-stride past
/// 65 535 CUDA blocks.
#[doc(hidden)]
pub fn init_launch_config(n: usize) -> LaunchDims {
    let grid = (n as u64)
        .div_ceil(4)
        .div_ceil(THREADS as u64)
        .clamp(1, 65_535) as u32;
    LaunchDims::linear(grid, THREADS)
}

/// `zo_rng_draw_f32` / `zo_rng_draw_u32` for elements `start .. start + n` (n > 0, no
/// overflow past 2^64): one thread per Philox block touched.
#[doc(hidden)]
pub fn rng_draw_launch_config(start: u64, n: usize) -> LaunchDims {
    let blocks = (start + n as u64).div_ceil(4) - start / 4;
    let grid = blocks.div_ceil(THREADS as u64).min(MAX_GRID as u64) as u32;
    LaunchDims::linear(grid, THREADS)
}
