/* Parameter structs of csrc/init.cu (see zo_params.h). */
#pragma once

#include <stdint.h>

/* zo_init_<T>: synthetic weights made on the device. Element (i, j) of a rows x cols tensor
 * stored with row stride ld gets, for kind ZO_INIT_NORMAL, std * gaussian(stream, i*cols + j)
 * (one f32 multiply, then rounded to T), for ZO_INIT_CONST the value `value`, for
 * ZO_INIT_UNIFORM std * (2 u - 1) with u = uniform_open0(raw(stream, i*cols + j)) (2 u - 1 is
 * exact, so one rounding; LoRA A's Kaiming-uniform init with std = the bound). Columns
 * [cols, ld) are left untouched. Twins: zo::model::random::synthetic, zo::perturb::lora. */
#define ZO_INIT_NORMAL 0u
#define ZO_INIT_CONST 1u
#define ZO_INIT_UNIFORM 2u

typedef struct ZoInitParams {
    ZoRngStream stream;
    uint64_t rows;
    uint64_t cols;
    uint64_t ld;
    float std_dev;
    float value;
    uint32_t kind;
    uint32_t reserved;
} ZoInitParams;
