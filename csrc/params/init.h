/* Parameter structs of csrc/init.cu (see zo_params.h). */
#pragma once

#include <stdint.h>

/* zo_init_<T>: synthetic weights made on the device. Element (i, j) of a rows x cols tensor
 * stored with row stride ld gets, for kind ZO_INIT_NORMAL, std * gaussian(stream, i*cols + j)
 * (one f32 multiply, then rounded to T), for ZO_INIT_CONST the value `value`. Columns
 * [cols, ld) are left untouched. Twin: zo::model::random::synthetic. */
#define ZO_INIT_NORMAL 0u
#define ZO_INIT_CONST 1u

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
