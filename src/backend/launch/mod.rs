//! Launch geometry of the CUDA kernels: pure functions shared by the cudarc wrappers in
//! `backend::cuda` and the CPU emulation tests (crate `zo-emu`), so that both run a kernel
//! with the same grid. Compiled with or without the `cuda` feature.

mod adapter;
pub mod attention;
mod loss;
mod ops;
mod rng;
mod update;

pub use adapter::{pack_launch_config, shrink_launch_config};
pub use loss::{classification_launch_config, logprob_launch_config};
pub use ops::{norm_launch_config, row_launch_config};
pub use rng::{init_launch_config, rng_draw_launch_config};
pub use update::{axpy_launch_config, basis_launch_config, merge_launch_config};

/// Grid, block and dynamic shared memory of one launch, in cudarc's `LaunchConfig` terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchDims {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    /// Dynamic shared memory, bytes.
    pub smem: u32,
}

impl LaunchDims {
    /// A one-dimensional grid of one-dimensional blocks with no dynamic shared memory.
    pub const fn linear(grid: u32, block: u32) -> Self {
        LaunchDims {
            grid: (grid, 1, 1),
            block: (block, 1, 1),
            smem: 0,
        }
    }
}

impl LaunchDims {
    /// (grid, block, dynamic shared memory bytes).
    pub fn tuple(self) -> ((u32, u32, u32), (u32, u32, u32), u32) {
        (self.grid, self.block, self.smem)
    }
}

#[cfg(feature = "cuda")]
impl From<LaunchDims> for cudarc::driver::LaunchConfig {
    fn from(d: LaunchDims) -> Self {
        cudarc::driver::LaunchConfig {
            grid_dim: d.grid,
            block_dim: d.block,
            shared_mem_bytes: d.smem,
        }
    }
}
