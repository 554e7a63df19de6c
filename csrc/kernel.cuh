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
