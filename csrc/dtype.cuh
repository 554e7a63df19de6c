// Storage types of weights and GEMM inputs, and their conversions to and from fp32.
//
// Kernels are written once as templates over the storage type T (float, zo_bf16, zo_f16) and
// exported as extern "C" instances named <kernel>_f32, <kernel>_bf16 and <kernel>_f16; the
// host picks the instance for the model's dtype (backend::cuda::DType::suffix). Arithmetic is
// fp32 throughout: a value is widened with zo_f32 on load and rounded once, to nearest even,
// by zo_from_f32 on store.
#pragma once

#ifndef ZO_EMU
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

typedef __nv_bfloat16 zo_bf16;
typedef __half zo_f16;

__device__ __forceinline__ float zo_f32(float x) { return x; }
__device__ __forceinline__ float zo_f32(zo_bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float zo_f32(zo_f16 x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T zo_from_f32(float x);
template <> __device__ __forceinline__ float zo_from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ zo_bf16 zo_from_f32<zo_bf16>(float x) {
    // A NaN keeps its sign and top payload bits with the quiet bit set, as the host's
    // conversion does; the intrinsic would return one canonical NaN and break bit-exactness.
    if (x != x) return __ushort_as_bfloat16((unsigned short)((__float_as_uint(x) >> 16) | 0x40u));
    return __float2bfloat16_rn(x);
}
template <> __device__ __forceinline__ zo_f16 zo_from_f32<zo_f16>(float x) {
    // NaN: sign, quiet bit and the top payload bits, as the host's conversion (see above).
    if (x != x) {
        const unsigned u = __float_as_uint(x);
        return __ushort_as_half(
            (unsigned short)(((u >> 16) & 0x8000u) | 0x7e00u | ((u & 0x7fffffu) >> 13)));
    }
    return __float2half_rn(x);
}

// ZO_INSTANTIATE(M): M(suffix, type) for every storage type, to stamp out the extern "C"
// instances of a kernel template.
#define ZO_INSTANTIATE(M) M(f32, float) M(bf16, zo_bf16) M(f16, zo_f16)
