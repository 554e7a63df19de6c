/* Kernel parameter structs shared by the CUDA kernels and the Rust host code.
 *
 * Plain C with fixed-width fields only: build.rs runs bindgen over this header (and the
 * per-family headers it includes), so the Rust side gets #[repr(C)] twins with identical
 * layout. Each kernel family takes one struct by value as its first argument; device pointers
 * are passed as separate arguments. One header per op family lives in params/. */
#ifndef ZO_PARAMS_H
#define ZO_PARAMS_H

#include <stdint.h>

/* One random stream: Philox key = (seed_lo, seed_hi), counter = (block lo, block hi, tensor,
 * role). Mirrors zo::rng::Stream. */
typedef struct ZoRngStream {
    uint32_t seed_lo;
    uint32_t seed_hi;
    uint32_t tensor;
    uint32_t role;
} ZoRngStream;

/* Distribution of a random direction (mirrors zo::perturb::Dist). */
#define ZO_DIST_GAUSSIAN 0u
#define ZO_DIST_RADEMACHER 1u

/* Rows [row_start, row_end) of a packed buffer that run under one perturbed variant: direction
 * seed and scale = sign * eps. Mirrors zo::perturb::Segment; segments are sorted by row_start
 * and do not overlap. Rows outside every segment run the unperturbed model. */
typedef struct ZoSegment {
    uint32_t row_start;
    uint32_t row_end;
    uint32_t seed_lo;
    uint32_t seed_hi;
    float scale;
    uint32_t reserved;
} ZoSegment;

/* What zo_rng_draw_f32 writes per element. */
#define ZO_RNG_GAUSSIAN 0u
#define ZO_RNG_RADEMACHER 1u
#define ZO_RNG_UNIFORM 2u

/* zo_rng_draw_f32 / zo_rng_draw_u32: elements [start, start + n) of a stream into out[0, n). */
typedef struct ZoRngDrawParams {
    ZoRngStream stream;
    uint64_t start;
    uint64_t n;
    uint32_t kind; /* ZO_RNG_*; ignored by zo_rng_draw_u32 */
    uint32_t reserved;
} ZoRngDrawParams;

#include "params/adapter.h"
#include "params/update.h"
#include "params/attention.h"
#include "params/ops.h"
#include "params/loss.h"
#include "params/init.h"
#include "params/decode.h"

#endif /* ZO_PARAMS_H */
