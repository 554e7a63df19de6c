/* Parameter structs of csrc/loss.cu (see zo_params.h). */
#pragma once

#include <stdint.h>

/* zo_candidate_logprobs: logits fp32 `[rows][ld]` (vocab columns, the head GEMM output at the
 * scoring rows) -> lse[r] = log sum exp(logits[r]) (optional output) and, for every query
 * (row index into the `rows` rows, token), query_logprobs[q] = logits[row][token] - lse[row].
 * A query whose row >= rows or token >= vocab gets NaN. */
typedef struct ZoLogprobParams {
    uint32_t rows;
    uint32_t vocab;
    uint32_t ld;
    uint32_t n_queries;
    uint32_t write_lse; /* 0: the lse pointer is not touched (may be null) */
    uint32_t reserved;
} ZoLogprobParams;
