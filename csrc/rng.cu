// Draw kernels: materialise elements [start, start + n) of a random stream. The perturbation
// kernels regenerate Z inline through philox.cuh instead; these exist to check the device RNG
// against the host (bit for bit) and for callers that need Z in memory.
#include "philox.cuh"
#include "zo_params.h"

// One thread per Philox block, grid-stride. Blocks at either end of the range are computed
// whole and only their in-range lanes written.
extern "C" __global__ void zo_rng_draw_f32(ZoRngDrawParams p, float* __restrict__ out) {
    const uint64_t end = p.start + p.n;
    const uint64_t first = p.start >> 2;
    const uint64_t blocks = (end >> 2) + ((end & 3) != 0) - first; // no overflow near 2^64
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; t < blocks; t += stride) {
        const uint64_t b = first + t;
        float v[4];
        if (p.kind == ZO_RNG_GAUSSIAN) {
            zo_gaussian_block(p.stream, b, v);
        } else {
            const ZoU32x4 x = zo_raw_block(p.stream, b);
#pragma unroll
            for (int l = 0; l < 4; l++) {
                v[l] = p.kind == ZO_RNG_RADEMACHER ? zo_rademacher_bits(x.x[l])
                                                   : zo_uniform_open0(x.x[l]);
            }
        }
#pragma unroll
        for (int l = 0; l < 4; l++) {
            const uint64_t i = 4 * b + l;
            if (i >= p.start && i < end) out[i - p.start] = v[l];
        }
    }
}

extern "C" __global__ void zo_rng_draw_u32(ZoRngDrawParams p, uint32_t* __restrict__ out) {
    const uint64_t end = p.start + p.n;
    const uint64_t first = p.start >> 2;
    const uint64_t blocks = (end >> 2) + ((end & 3) != 0) - first; // no overflow near 2^64
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; t < blocks; t += stride) {
        const uint64_t b = first + t;
        const ZoU32x4 x = zo_raw_block(p.stream, b);
#pragma unroll
        for (int l = 0; l < 4; l++) {
            const uint64_t i = 4 * b + l;
            if (i >= p.start && i < end) out[i - p.start] = x.x[l];
        }
    }
}
