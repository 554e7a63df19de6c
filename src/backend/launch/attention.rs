//! Launch geometry and tiling of the attention kernels (csrc/attention.cu), and the layout
//! of q, k and v they read, shared by the cudarc wrappers and the emulation tests.

/// Tokens per KV-cache page (`ZO_ATTN_PAGE`).
pub const PAGE: usize = 16;
/// Warps per prefill block, query rows per warp, keys per shared-memory tile
/// (`ZO_ATTN_WARPS`, `ZO_ATTN_ROWS`, `ZO_ATTN_KEYS`).
pub(crate) const WARPS: u32 = 4;
pub(crate) const ROWS_PER_WARP: u32 = 8;
pub(crate) const TILE_KEYS: u32 = 32;
/// Query rows ((token, head) pairs) of one prefill block.
const BLOCK_ROWS: u32 = WARPS * ROWS_PER_WARP;
/// Threads of the elementwise kernels, and a grid cap (they loop grid-stride beyond it).
const ELEMENT_THREADS: u32 = 256;
const MAX_GRID: u32 = 4096;

/// Grid, block and dynamic shared memory bytes of one launch.
pub type LaunchGeometry = ((u32, u32, u32), (u32, u32, u32), u32);

/// Where q, k and v sit in one fp32 buffer: row `r`, head `h` of q starts at element
/// `r·ld + q_col + h·head_dim` (k and v likewise with `kv_heads` heads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QkvLayout {
    pub rows: usize,
    pub ld: usize,
    pub q_col: usize,
    pub k_col: usize,
    pub v_col: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl QkvLayout {
    /// The fused qkv GEMM output `[rows][q_dim + 2·kv_dim]`: q, then k, then v.
    pub fn fused(rows: usize, heads: usize, kv_heads: usize, head_dim: usize) -> QkvLayout {
        let (q_dim, kv_dim) = (heads * head_dim, kv_heads * head_dim);
        QkvLayout {
            rows,
            ld: q_dim + 2 * kv_dim,
            q_col: 0,
            k_col: q_dim,
            v_col: q_dim + kv_dim,
            heads,
            kv_heads,
            head_dim,
        }
    }
}

/// `(heads_per_block, tokens_per_block, head_chunks)` of the prefill kernel: a block takes up
/// to [`BLOCK_ROWS`] heads of one kv group and as many tokens as fill its rows; groups larger
/// than a block are split into `head_chunks` blocks along grid y.
#[doc(hidden)]
pub fn attention_tiling(heads: usize, kv_heads: usize) -> (u32, u32, u32) {
    let group = (heads / kv_heads.max(1)).max(1) as u32;
    let hb = group.min(BLOCK_ROWS);
    (hb, BLOCK_ROWS / hb, group.div_ceil(hb))
}

/// Dynamic shared memory of a prefill block: Q `[rows][hd]`, K `[keys][hd]` (swizzled; the
/// generic instance pads rows to hd + 1), V `[keys][hd]`, fp32. Head dims 64 and 128 stay
/// within the 48 KiB a launch gets without opting in.
fn attention_smem(head_dim: usize) -> u32 {
    let hd = head_dim as u32;
    let k_stride = if fixed_head_dim(head_dim) { hd } else { hd + 1 };
    4 * (BLOCK_ROWS * hd + TILE_KEYS * k_stride + TILE_KEYS * hd)
}

/// Head dims with their own kernel instance (compile-time loops, swizzled K tile).
fn fixed_head_dim(head_dim: usize) -> bool {
    matches!(head_dim, 64 | 128)
}

/// Launch geometry of the prefill kernel (shared by the CUDA wrapper and the emulation tests).
#[doc(hidden)]
pub fn attention_launch_config(
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    n_seqs: usize,
    max_seqlen: usize,
) -> LaunchGeometry {
    let (_, bt, chunks) = attention_tiling(heads, kv_heads);
    let tiles = (max_seqlen as u32).div_ceil(bt);
    (
        (tiles, kv_heads as u32 * chunks, n_seqs as u32),
        (WARPS * 32, 1, 1),
        attention_smem(head_dim),
    )
}

/// Launch geometry of `zo_rope`: one thread per (row, head, rotation pair), grid-stride.
#[doc(hidden)]
pub fn rope_launch_config(
    rows: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> LaunchGeometry {
    let total = (rows * (heads + kv_heads) * (head_dim / 2)) as u64;
    let grid = total
        .div_ceil(ELEMENT_THREADS as u64)
        .clamp(1, MAX_GRID as u64) as u32;
    ((grid, 1, 1), (ELEMENT_THREADS, 1, 1), 0)
}

/// Launch geometry of `zo_kv_write`: one block per row, grid-stride.
#[doc(hidden)]
pub fn kv_write_launch_config(rows: usize) -> LaunchGeometry {
    let grid = (rows as u32).clamp(1, MAX_GRID);
    ((grid, 1, 1), (128, 1, 1), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiling_fills_the_block_rows() {
        // OPT (no GQA): 32 tokens of one head; Llama-3 (group 8): 4 tokens × 8 heads;
        // group 3: 10 tokens × 3 heads (2 rows idle); MQA of 48 heads: 2 chunks of 32.
        assert_eq!(attention_tiling(12, 12), (1, 32, 1));
        assert_eq!(attention_tiling(32, 4), (8, 4, 1));
        assert_eq!(attention_tiling(6, 2), (3, 10, 1));
        assert_eq!(attention_tiling(48, 1), (32, 1, 2));
        let ((x, y, z), (b, _, _), smem) = attention_launch_config(32, 4, 128, 5, 33);
        assert_eq!((x, y, z, b), (9, 4, 5, 128));
        assert_eq!(smem, 48 * 1024);
        assert_eq!(attention_launch_config(4, 4, 64, 1, 1).2, 24 * 1024);
        assert_eq!(
            attention_launch_config(4, 4, 80, 1, 1).2,
            4 * (32 * 80 * 2 + 32 * 81)
        );
    }
}
