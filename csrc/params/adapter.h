/* Parameter structs of csrc/adapter.cu (see zo_params.h).
 *
 * The lowrank and lora perturbations ride inside the Linear's GEMM by augmenting its K
 * dimension. A group of G sites sharing one input x (q/k/v, gate/up, or one single site) uses
 * an input x' of T [rows][ld] and a weight W' of T [out_total][ld] (ld = K_aug, a multiple of
 * 8). Site g of the group owns the column block [col0, col0 + (dirs + 1) * rank) with
 * col0 = K + g * (dirs + 1) * rank, split into sub-blocks of `rank` columns:
 *
 *   sub-block 0     trained state, every row:  x' = scale * h_t * 2^-e,  W' = state * 2^e
 *   sub-block 1 + d direction d, rows of d:    x' = scale * sc_t * h_t,  W' = U_d or Z_B,d
 *
 * where h_t is the row's shrink (lowrank: x_t V; lora: x_t (A + sc_t Z_A,d)^T), sc_t the
 * row's segment scale (sign * eps) and d its direction. Columns [K + G (dirs + 1) rank, ld)
 * are padding and the shrink writes them as 0 (pad_begin / pad_end). Then x' W'^T is
 * base + trained state + perturbation in one GEMM.
 *
 * Segment -> direction: segments are the plan's sorted ZoSegment array; a parallel uint32
 * array seg_dir[n_segs] gives each segment's direction index d in [0, dirs) (the position of
 * its seed in the plan's direction list, so + and - segments of a direction share d), and the
 * pack kernel takes that list itself as uint64 seeds[dirs]. Rows outside every segment get
 * sub-block 0 only.
 *
 * scale_exp e (fp16 range): the trained state (LoZO bank, LoRA B) can be ~1e-6, subnormal in
 * fp16, while its partner x' term s x V is O(sqrt(K)). The shrink writes sub-block 0 times
 * 2^-e and the pack writes the state times 2^e: exact power-of-two scalings whose product is 1.
 * Choose e so that both sides land mid-range, e ~ (log2 max|scale h| - log2 max|state|) / 2,
 * e.g. with |x| ~ 1 and Gaussian V, |x V| ~ sqrt(K); clamp to [0, 24]. Pass e = 0 for f32 and
 * bf16 (fp32 exponent range). The direction sub-blocks hold O(1) factors (U, Z_B ~ N(0, 1))
 * and are never scaled. */
#pragma once

#include <stdint.h>

/* Which family a shrink/pack launch serves. */
// Shrink geometry, shared with the host launcher and the CPU twin's summation order: a block of
// ZO_SHRINK_THREADS threads owns up to ZO_SHRINK_ROWS consecutive rows (ZoShrinkParams.
// rows_per_block) and ZO_SHRINK_RANKS rank components; its ZO_SHRINK_SPLIT half-warps split
// the rows' 64-column chunks. Every row keeps the one-row summation order.
#define ZO_SHRINK_THREADS 128u
#define ZO_SHRINK_SPLIT 8u
#define ZO_SHRINK_RANKS 16u
#define ZO_SHRINK_ROWS 4u
// Threads of a pack block.
#define ZO_PACK_THREADS 256u

#define ZO_ADAPTER_LOWRANK 0u
#define ZO_ADAPTER_LORA 1u

/* zo_adapter_shrink_<T>(ZoShrinkParams, T* x, const float* factor, const ZoSegment* segs,
 * const uint32_t* seg_dir). x: [rows][ld]; columns [0, k) are read, the site's block (and the
 * padding range) written. factor: fp32 [rank][k] (lowrank V^T; lora A). */
typedef struct ZoShrinkParams {
    uint32_t rows;
    uint32_t k;
    uint32_t ld;
    uint32_t col0;
    uint32_t rank;
    uint32_t dirs;   /* q: directions in the plan (sub-blocks 1..dirs) */
    uint32_t n_segs;
    uint32_t family; /* ZO_ADAPTER_* */
    uint32_t live;   /* trained state non-zero: write sub-block 0 (else zeros) */
    uint32_t dist;   /* ZO_DIST_*, lora's Z_A */
    uint32_t tensor; /* tensor id of Param::Weight(site), lora's Z_A */
    uint32_t vec;    /* 16-byte loads of x allowed (x aligned, ld * sizeof(T) % 16 == 0) */
    uint32_t pad_begin; /* columns [pad_begin, pad_end) of every row are zeroed */
    uint32_t pad_end;
    float scale;     /* lowrank s (1 or 1/sqrt r); lora alpha / r */
    int32_t scale_exp;
    uint32_t rows_per_block; /* 1..ZO_SHRINK_ROWS: rows sharing each factor (or Z_A) load */
    uint32_t reserved;
} ZoShrinkParams;

/* zo_adapter_pack_<T>(ZoPackParams, T* w, const float* state, const uint64_t* seeds).
 * w: [*][ld]; writes rows [row0, row0 + out) x columns [col0, col0 + (dirs + 1) rank).
 * lowrank: state = bank^T fp32 [rank][out] (element k out + i), sub-block 1 + d = U_d^T
 * (role LOWRANK_U, index k out + i); lora: state = B fp32 [out][rank] (element i rank + k),
 * sub-block 1 + d = Z_B,d (role LORA_B, index i rank + k). seeds[d]: direction d's seed. */
typedef struct ZoPackParams {
    uint32_t out;
    uint32_t ld;
    uint32_t row0;
    uint32_t col0;
    uint32_t rank;
    uint32_t dirs;
    uint32_t family;
    uint32_t dist;
    uint32_t tensor;
    int32_t scale_exp;
} ZoPackParams;
