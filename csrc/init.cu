// Synthetic weights made where they are used: a 13B-shaped model is filled on the device in
// seconds instead of being built on the host and copied. The values are a pure function of
// (seed, tensor id, element index), so the host twin (model::random::synthetic) builds the
// same model bit for bit in f32.
#include "kernel.cuh"

template <typename T>
__device__ __forceinline__ void zo_init_body(const ZoInitParams& p, T* __restrict__ out) {
    const uint64_t n = p.rows * p.cols;
    const uint64_t blocks = (n + 3) >> 2;
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t b = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; b < blocks; b += stride) {
        float v[4];
        if (p.kind == ZO_INIT_NORMAL) {
            zo_gaussian_block(p.stream, b, v);
#pragma unroll
            for (int l = 0; l < 4; l++) v[l] = __fmul_rn(p.std_dev, v[l]);
        } else if (p.kind == ZO_INIT_UNIFORM) {
            const ZoU32x4 x = zo_raw_block(p.stream, b);
#pragma unroll
            for (int l = 0; l < 4; l++) {
                const float u = zo_uniform_open0(x.x[l]);
                v[l] = __fmul_rn(p.std_dev, __fsub_rn(__fmul_rn(2.0f, u), 1.0f));
            }
        } else {
#pragma unroll
            for (int l = 0; l < 4; l++) v[l] = p.value;
        }
#pragma unroll
        for (int l = 0; l < 4; l++) {
            const uint64_t e = 4 * b + l;
            if (e < n) {
                const uint64_t i = e / p.cols, j = e - i * p.cols;
                out[i * p.ld + j] = zo_from_f32<T>(v[l]);
            }
        }
    }
}

#define ZO_INIT_KERNEL(sfx, T)                                                                 \
    extern "C" __global__ void zo_init_##sfx(ZoInitParams p, T* __restrict__ out) {            \
        zo_init_body<T>(p, out);                                                               \
    }
ZO_INSTANTIATE(ZO_INIT_KERNEL)
