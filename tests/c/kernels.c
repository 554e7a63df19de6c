/* A C client of the kernel level on its host twin (ZO_KERNEL_HOST): the seeded update of a
 * strided f32 tensor and of a bf16 one, checked bit for bit against the update's documented
 * formula computed here from zo_rng_fill and fmaf, and the refusals of bad arguments. Driven
 * by tests/ffi_kernels.rs; prints "kernels: ok". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* A refused call: the named status and a message. */
static void refused(zo_status got, zo_status want, const char *what) {
    EXPECT(got == want, "%s: %s (%s), expected %s", what, zo_status_name(got), zo_last_error(),
           zo_status_name(want));
    EXPECT(strlen(zo_last_error()) > 0, "%s: no message", what);
}

enum { Q = 3, ROWS = 5, COLS = 7, LD = 9, N = (ROWS - 1) * LD + COLS, TENSOR = 42 };

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* bf16 <-> f32, rounding to nearest even (finite values). */
static uint16_t to_bf16(float x) {
    uint32_t u = bits(x);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static float from_bf16(uint16_t h) { return from_bits((uint32_t)h << 16); }

/* The documented update of element (i, j): theta = fmaf(-decay, theta, theta) when decay is
 * non-zero, then for each direction theta = fmaf(coef_d, z_d, theta), z_d element i*cols + j
 * of the stream (seed_d, tensor, role). */
static float formula(float theta, size_t i, size_t j, const uint64_t *seeds, const float *coefs,
                     float decay, int32_t dist) {
    if (decay != 0.0f) theta = fmaf(-decay, theta, theta);
    for (int d = 0; d < Q; d++) {
        float z;
        CHECK(zo_rng_fill(seeds[d], TENSOR, ZO_ROLE_DENSE, (uint64_t)(i * COLS + j), dist, &z, 1));
        theta = fmaf(coefs[d], z, theta);
    }
    return theta;
}

int main(void) {
    zo_kernel_target target = zo_kernel_target_default_params();
    target.device = ZO_KERNEL_HOST;

    const uint64_t seeds[Q] = {0x1234abcd5678ull, 77ull, 0xffffffff00000001ull};
    const float grads[Q] = {2.5f, -0.75f, 1.25f};
    /* Coefficients of the size of theta, so that an unfused multiply-add would round differently. */
    const float lr = 0.25f, wd = 0.1f;
    float coefs[Q];
    for (int d = 0; d < Q; d++) coefs[d] = -(lr * grads[d]) / (float)Q;
    zo_kernel_update_dir dirs[Q];
    CHECK(zo_kernel_update_dirs_fill(seeds, coefs, Q, dirs));
    EXPECT(dirs[2].seed_lo == 1u && dirs[2].seed_hi == 0xffffffffu, "seed halves");
    EXPECT(bits(dirs[1].coef) == bits(coefs[1]), "coefficient");

    zo_kernel_axpy_params p = zo_kernel_axpy_default_params();
    p.rows = ROWS;
    p.cols = COLS;
    p.ld = LD;
    p.tensor_id = TENSOR;
    p.role = ZO_ROLE_DENSE;

    for (int32_t dist = ZO_DIST_GAUSSIAN; dist <= ZO_DIST_RADEMACHER; dist++) {
        float theta[N], start[N];
        for (size_t e = 0; e < N; e++) start[e] = theta[e] = 0.25f * sinf((float)e + 0.5f);
        p.dtype = ZO_DTYPE_F32;
        p.dist = dist;
        p.decay = lr * wd;
        CHECK(zo_kernel_seeded_axpy(&target, &p, theta, N, dirs, Q));
        for (size_t i = 0; i < ROWS; i++) {
            for (size_t j = 0; j < LD && i * LD + j < N; j++) {
                size_t e = i * LD + j;
                /* Columns past cols belong to a wider buffer: untouched. */
                float want = j < COLS ? formula(start[e], i, j, seeds, coefs, p.decay, dist)
                                      : start[e];
                EXPECT(bits(theta[e]) == bits(want), "f32 dist %d (%zu, %zu): %a, expected %a",
                       (int)dist, i, j, theta[e], want);
            }
        }

        /* bf16: the formula in f32 on the widened element, rounded once. */
        uint16_t h[N], h0[N];
        for (size_t e = 0; e < N; e++) h0[e] = h[e] = to_bf16(start[e]);
        p.dtype = ZO_DTYPE_BF16;
        p.decay = 0.0f;
        CHECK(zo_kernel_seeded_axpy(&target, &p, h, N, dirs, Q));
        for (size_t i = 0; i < ROWS; i++) {
            for (size_t j = 0; j < COLS; j++) {
                size_t e = i * LD + j;
                uint16_t want = to_bf16(formula(from_bf16(h0[e]), i, j, seeds, coefs, 0.0f, dist));
                EXPECT(h[e] == want, "bf16 dist %d (%zu, %zu): %04x, expected %04x", (int)dist,
                       i, j, h[e], want);
            }
        }
    }

    /* Refusals leave the tensor as it was. */
    float theta[N];
    for (size_t e = 0; e < N; e++) theta[e] = 1.0f;
    p.dtype = ZO_DTYPE_F32;
    refused(zo_kernel_seeded_axpy(&target, &p, theta, N - 1, dirs, Q), ZO_ERR_SHAPE, "short");
    refused(zo_kernel_seeded_axpy(&target, &p, NULL, N, dirs, Q), ZO_ERR_NULL, "NULL theta");
    refused(zo_kernel_seeded_axpy(NULL, &p, theta, N, dirs, Q), ZO_ERR_NULL, "NULL target");
    zo_kernel_axpy_params bad = p;
    bad.dtype = 3;
    refused(zo_kernel_seeded_axpy(&target, &bad, theta, N, dirs, Q), ZO_ERR_ARGUMENT, "dtype");
    bad = p;
    bad.struct_size = sizeof(bad) - 8;
    refused(zo_kernel_seeded_axpy(&target, &bad, theta, N, dirs, Q), ZO_ERR_STRUCT_SIZE,
            "struct_size");
    zo_kernel_target bad_target = target;
    bad_target.device = 9;
    refused(zo_kernel_seeded_axpy(&bad_target, &p, theta, N, dirs, Q), ZO_ERR_ARGUMENT,
            "device");
    for (size_t e = 0; e < N; e++) EXPECT(theta[e] == 1.0f, "a refused call wrote theta");

    printf("kernels: ok\n");
    return 0;
}
