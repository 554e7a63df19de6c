/* Parameter structs of csrc/decode.cu (see zo_params.h). */
#pragma once

#include <stdint.h>

/* Split-K decode attention. The keys of a sequence (prefix positions, then its cached tokens)
 * are cut into splits of ZO_DECODE_SPLIT_KEYS keys, one CUDA block per (split, kv head chunk,
 * sequence); a fixed split size makes a sequence's result depend on its own keys only, never
 * on the batch around it. A block has ZO_DECODE_WARPS warps (each takes 32-key tiles of the
 * split) and up to ZO_DECODE_HEADS query heads of one kv head, which share every K/V load. */
#define ZO_DECODE_SPLIT_KEYS 128u
#define ZO_DECODE_WARPS 4u
#define ZO_DECODE_HEADS 8u
/* Threads of a zo_attn_decode_combine block (one per output dim, looping past it). */
#define ZO_DECODE_COMBINE_THREADS 128u

/* zo_attn_decode_<hd>_<T> (+ zo_attn_decode_combine_<T> when splits > 1): one query row per
 * sequence, row s of the q buffer, attending to [prefix_len prefix positions][ctx_lens[s]
 * cached tokens] (its own token, written to the cache beforehand, included). The caches and
 * block tables are those of zo_attn_prefill (ZO_ATTN_PAGE tokens per page). */
typedef struct ZoDecodeParams {
    uint32_t n_seqs;
    uint32_t heads;
    uint32_t kv_heads;
    uint32_t head_dim;  /* 1..=256 */
    uint32_t q_ld;      /* row stride of the q buffer (elements) */
    uint32_t q_col;     /* column of head 0 of q */
    uint32_t out_ld;    /* row stride of the output; head h is written at column h * head_dim */
    uint32_t max_pages; /* row length of the block table; ctx_lens are clamped to its capacity */
    uint32_t num_pages; /* pages in each cache; out-of-range page ids read as zeros */
    uint32_t heads_per_block; /* min(group, ZO_DECODE_HEADS) */
    uint32_t head_chunks;     /* ceil(group / heads_per_block), along grid y */
    /* Splits along grid x. A sequence with more keys than splits * ZO_DECODE_SPLIT_KEYS has
     * its last split run to its end. With splits > 1, partial results of sequences that use
     * more than one split go to the workspace and zo_attn_decode_combine writes their output. */
    uint32_t splits;
    float scale; /* scores are (q . k) * scale */
    /* Trainable prefix, as in ZoAttnParams; the segments' rows are sequence indices (a decode
     * batch has one row per sequence). */
    uint32_t prefix_len;
    uint32_t n_segments;
    uint32_t prefix_dist;
    uint32_t prefix_role;
    uint32_t prefix_key_tensor;
    uint32_t prefix_value_tensor;
    uint32_t reserved;
} ZoDecodeParams;

/* How zo_pick scores a token. */
#define ZO_PICK_GREEDY 0u
#define ZO_PICK_GUMBEL 1u

/* Threads of a zo_pick block (one block per row). */
#define ZO_PICK_THREADS 512u

/* zo_pick: per row r of fp32 logits [rows][ld] (vocab columns), the token of the largest score
 * (lowest id on ties; NaN scores as -inf, so it never beats a number): the logit (greedy), or
 * fma(logit, inv_temperature, G) with G the Gumbel noise of element pos[r] * vocab + token of
 * stream (stream.seed, stream.tensor, role = seq[r]) (ZO_PICK_GUMBEL). Mirrors
 * zo::backend::decode::pick. */
typedef struct ZoPickParams {
    ZoRngStream stream; /* role is ignored: each row's seq is its role */
    uint32_t rows;
    uint32_t vocab;
    uint32_t ld;
    uint32_t mode; /* ZO_PICK_* */
    float inv_temperature;
    uint32_t reserved;
} ZoPickParams;
