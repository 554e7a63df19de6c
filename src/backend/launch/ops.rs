use super::LaunchDims;

/// Threads of a block of the elementwise row kernels (fewer for narrow rows).
const ROW_THREADS: usize = 256;

/// Every elementwise row kernel of csrc/ops.cu (embedding, activation, adds, conversions,
/// gathers, fills, scales): one block per row, the threads striding over the columns.
#[doc(hidden)]
pub fn row_launch_config(rows: usize, width: usize) -> LaunchDims {
    let threads = width.next_multiple_of(32).clamp(32, ROW_THREADS);
    LaunchDims::linear(rows as u32, threads as u32)
}

/// `zo_norm_<T>`: one block per output row, about four columns per thread (up to 1024
/// threads), so a row's statistics take one block reduction.
#[doc(hidden)]
pub fn norm_launch_config(rows: usize, width: usize) -> LaunchDims {
    let threads = width.div_ceil(4).next_multiple_of(32).clamp(32, 1024);
    LaunchDims::linear(rows as u32, threads as u32)
}
