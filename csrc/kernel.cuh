// Common kernel prelude: storage types, RNG, params, and the few constructs that differ
// between nvcc and the CPU emulation harness (which compiles the same sources as C++ with
// ZO_EMU defined).
#pragma once

#include <stdint.h>

#include "dtype.cuh"
#include "philox.cuh"
#include "zo_params.h"

#ifndef ZO_EMU
// Dynamic shared memory of a launch, viewed as `type name[]`.
#define ZO_DYNAMIC_SMEM(type, name)                                                            \
    extern __shared__ __align__(16) unsigned char zo_dynamic_smem_[];                          \
    type* name = reinterpret_cast<type*>(zo_dynamic_smem_)
#else
#define ZO_DYNAMIC_SMEM(type, name) type* name = reinterpret_cast<type*>(zo_emu::dynamic_smem())
#endif

#define ZO_WARP 32
#define ZO_FULL_MASK 0xffffffffu

// Sum over the 32 lanes of a warp; every lane gets the total. The butterfly order is fixed,
// so the result does not depend on scheduling.
__device__ __forceinline__ float zo_warp_sum(float v) {
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(ZO_FULL_MASK, v, m);
    return v;
}

__device__ __forceinline__ float zo_warp_max(float v) {
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, __shfl_xor_sync(ZO_FULL_MASK, v, m));
    return v;
}

// The prefix family's perturbation of one sequence: the seed and scale of the segment holding
// packed row `row`, or none (the sequence runs the stored prefix). Prefill and decode
// attention perturb prefix keys and values as they load them, from these streams.
struct ZoPrefixPerturbation {
    bool on;
    ZoRngStream k, v;
    float scale;
};

__device__ __forceinline__ ZoPrefixPerturbation zo_prefix_perturbation(
    const ZoSegment* __restrict__ segments, uint32_t n_segments, uint32_t row,
    uint32_t key_tensor, uint32_t value_tensor, uint32_t role) {
    ZoPrefixPerturbation z = {false, {0, 0, key_tensor, role}, {0, 0, value_tensor, role}, 0.0f};
    for (uint32_t i = 0; i < n_segments; i++) {
        const ZoSegment g = segments[i];
        if (g.row_start <= row && row < g.row_end) {
            z.on = true;
            z.k.seed_lo = z.v.seed_lo = g.seed_lo;
            z.k.seed_hi = z.v.seed_hi = g.seed_hi;
            z.scale = g.scale;
            break;
        }
    }
    return z;
}

// A stored prefix element as a perturbed sequence reads it: fma(scale, z, x), z of `dist`.
__device__ __forceinline__ float zo_prefix_element(const float* __restrict__ x, uint64_t idx,
                                                   bool on, ZoRngStream z, float scale,
                                                   uint32_t dist) {
    const float v = x[idx];
    if (!on) return v;
    const float d = dist == ZO_DIST_GAUSSIAN ? zo_gaussian(z, idx) : zo_rademacher(z, idx);
    return __fmaf_rn(scale, d, v);
}
