/* Parameter structs of csrc/ops.cu (see zo_params.h). */
#pragma once

#include <stdint.h>

/* What zo_embed_<T> adds into a row (ZoEmbedParams.flags). */
#define ZO_EMBED_TOKENS 1u    /* x = widen(w_e[tokens[t]]) (else x keeps its value) */
#define ZO_EMBED_POSITIONS 2u /* x += widen(w_p[positions[t] + pos_offset]) */

/* zo_embed_<T>: rows [0, n_tokens) of the fp32 residual x `[n_tokens][ld]`, columns
 * [0, width). A token >= vocab or a position row >= n_pos makes the row NaN (never read
 * out of bounds). */
typedef struct ZoEmbedParams {
    uint32_t n_tokens;
    uint32_t width;
    uint32_t ld;         /* row stride of x (elements) */
    uint32_t vocab;      /* rows of w_e */
    uint32_t n_pos;      /* rows of w_p */
    uint32_t pos_offset; /* OPT: 2 */
    uint32_t flags;      /* ZO_EMBED_* */
    uint32_t reserved;
} ZoEmbedParams;

/* Norm kinds (ZoNormParams.kind). */
#define ZO_NORM_RMS 0u   /* w * (x * rsqrt(mean(x^2) + eps)) (+ b) */
#define ZO_NORM_LAYER 1u /* (x - mean) / sqrt(var + eps) * w + b, biased variance */
#define ZO_NORM_NONE 2u  /* y = x: the row rounded to T (post-LN models' GEMM inputs) */

/* ZoNormParams.flags. */
#define ZO_NORM_HAS_W 1u    /* multiply by w (else weight 1) */
#define ZO_NORM_HAS_B 2u    /* add b (else bias 0) */
#define ZO_NORM_GATHER 4u   /* output row r normalises x row row_idx[r] (else row r) */
#define ZO_NORM_IN_PLACE 8u /* also write the fp32 result back into x (OPT post-LN) */

/* zo_norm_<T>: out `[rows][ld_out]` (T, columns [0, width)) = norm of fp32 rows of x
 * `[n_src_rows][ld_in]`. A gathered index >= n_src_rows gives a NaN row. */
typedef struct ZoNormParams {
    uint32_t rows;
    uint32_t width;
    uint32_t ld_in;
    uint32_t ld_out;
    uint32_t n_src_rows;
    uint32_t kind;  /* ZO_NORM_RMS / ZO_NORM_LAYER / ZO_NORM_NONE (no w, b or in place) */
    uint32_t flags; /* ZO_NORM_* */
    float eps;
} ZoNormParams;

/* Activation functions (ZoActParams.act), HF's definitions ("gelu" is the erf form). */
#define ZO_ACT_SILU 0u
#define ZO_ACT_RELU 1u
#define ZO_ACT_GELU 2u

/* zo_act_<T>: out `[rows][ld_out]` (T, columns [0, width)) = act(in[r][c]), or with gated = 1
 * act(in[r][c]) * in[r][width + c] (the fused gate/up GEMM output: gate columns first). `in`
 * is fp32 `[rows][ld_in]`. */
typedef struct ZoActParams {
    uint32_t rows;
    uint32_t width;
    uint32_t ld_in;
    uint32_t ld_out;
    uint32_t act;   /* ZO_ACT_* */
    uint32_t gated; /* 0 or 1 */
} ZoActParams;
