/* Parameter structs of csrc/attention.cu (see zo_params.h). */
#pragma once

#include <stdint.h>

/* Tokens per KV-cache page. A cache is fp32 [num_pages][ZO_ATTN_PAGE][kv_heads][head_dim]; the
 * token at block-table position p of a sequence lives in page block_table[p / ZO_ATTN_PAGE],
 * offset p % ZO_ATTN_PAGE. */
#define ZO_ATTN_PAGE 16u

/* Prefill attention tiling: a CUDA block of ZO_ATTN_WARPS warps owns ZO_ATTN_WARPS *
 * ZO_ATTN_ROWS query rows ((token, head) pairs of one kv head) and streams keys and values
 * through shared memory ZO_ATTN_KEYS at a time (one key per lane in the score phase). */
#define ZO_ATTN_WARPS 4u
#define ZO_ATTN_ROWS 8u
#define ZO_ATTN_KEYS 32u

/* zo_rope: rotates q and k in place. Both are column slices of one fp32 buffer (the fused qkv
 * GEMM output): row r, head h of q starts at x[r * ld + q_col + h * head_dim], likewise k.
 * cos/sin are [rows][head_dim / 2]. */
typedef struct ZoRopeParams {
    uint32_t rows;
    uint32_t ld;
    uint32_t q_col;
    uint32_t q_heads;
    uint32_t k_col;
    uint32_t k_heads;
    uint32_t head_dim; /* even */
    uint32_t reserved;
} ZoRopeParams;

/* zo_kv_write: row r's k (columns [k_col, k_col + kv_width)) and v (from v_col) of the fp32 qkv
 * buffer go to cache slot slots[r] (= page * ZO_ATTN_PAGE + offset) of the K and V caches.
 * Rows whose slot is >= num_slots are skipped (0xffffffff marks a row with no slot). */
typedef struct ZoKvWriteParams {
    uint32_t rows;
    uint32_t ld;
    uint32_t k_col;
    uint32_t v_col;
    uint32_t kv_width; /* kv_heads * head_dim */
    uint32_t num_slots; /* num_pages * ZO_ATTN_PAGE */
} ZoKvWriteParams;

/* zo_attn_prefill_*: causal attention of the packed new tokens of n_seqs sequences over
 * [prefix_len prefix positions][ctx_len cached tokens][the sequence's own tokens], the last
 * two read from the paged caches through the block table: cached token c at table position c,
 * own token i at own_starts[s] + i (ctx_lens[s] when the own_starts pointer is NULL; a child of
 * a shared prompt starts on a fresh page, ceil(ctx_len / ZO_ATTN_PAGE) * ZO_ATTN_PAGE). */
typedef struct ZoAttnParams {
    uint32_t rows;     /* packed new tokens; cu_seqlens entries are clamped to it */
    uint32_t n_seqs;
    uint32_t heads;
    uint32_t kv_heads;
    uint32_t head_dim; /* 1..=256 */
    uint32_t q_ld;     /* row stride of the q buffer (elements) */
    uint32_t q_col;    /* column of head 0 of q */
    uint32_t out_ld;   /* row stride of the output; head h is written at column h * head_dim */
    uint32_t max_pages; /* row length of the block table */
    uint32_t num_pages; /* pages in each cache; out-of-range page ids read as zeros */
    /* Tiling (backend::cuda::attention_tiling): query heads per block, tokens per block, and
     * blocks per kv head along grid y (ceil(group / heads_per_block)). */
    uint32_t heads_per_block;
    uint32_t tokens_per_block;
    uint32_t head_chunks;
    float scale; /* scores are (q . k) * scale */
    /* Trainable prefix: prefix_len positions [prefix_len][kv_heads * head_dim] (0 = none). A
     * sequence whose first row lies in segments[i] reads fma(scale_i, z, x) with z element
     * t * kv_width + c of stream (segment seed, prefix_key_tensor or prefix_value_tensor,
     * prefix_role), distribution prefix_dist (ZO_DIST_*). */
    uint32_t prefix_len;
    uint32_t n_segments;
    uint32_t prefix_dist;
    uint32_t prefix_role;
    uint32_t prefix_key_tensor;
    uint32_t prefix_value_tensor;
} ZoAttnParams;
