// Kernels that test the emulation runtime itself (tests/emu_runtime.rs): barriers, shuffles,
// shared memory, atomics, early exits, grid geometry, 16-bit float conversions, and the
// failures the runtime must report instead of hanging.
#include "zo_emu.h"

#include "kernel.cuh"

namespace {

__device__ __forceinline__ unsigned selftest_tid() {
    return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

__device__ __forceinline__ unsigned selftest_bid() {
    return blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
}

__device__ __forceinline__ unsigned selftest_threads() {
    return blockDim.x * blockDim.y * blockDim.z;
}

// Sum of the block's inputs by a halving tree in static shared memory; any block size.
__global__ void selftest_block_sum(const float* __restrict__ in, float* __restrict__ out) {
    __shared__ float s[1024];
    const unsigned n = selftest_threads(), t = selftest_tid();
    s[t] = in[(size_t)selftest_bid() * n + t];
    __syncthreads();
    for (unsigned w = n; w > 1;) {
        const unsigned h = (w + 1) / 2;
        if (t < w - h) s[t] += s[t + h];
        __syncthreads();
        w = h;
    }
    if (t == 0) out[selftest_bid()] = s[0];
}

// Per thread: the butterfly warp sum (kernel.cuh) and the shfl_down tree sum (lane 0's).
__global__ void selftest_warp_sums(const float* __restrict__ in, float* __restrict__ xor_sum,
                                   float* __restrict__ down_sum) {
    const size_t i = (size_t)selftest_bid() * selftest_threads() + selftest_tid();
    const float v = in[i];
    xor_sum[i] = zo_warp_sum(v);
    float d = v;
    for (unsigned o = 16; o > 0; o >>= 1) d += __shfl_down_sync(ZO_FULL_MASK, d, o);
    down_sum[i] = d;
}

// One shuffle of each value: op 0 = __shfl_sync, 1 = xor, 2 = up, 3 = down; 4-byte and 8-byte.
__global__ void selftest_shuffle(int op, int arg, int width, const uint32_t* __restrict__ in,
                                 uint32_t* __restrict__ out32, double* __restrict__ out64) {
    const size_t i = (size_t)selftest_bid() * selftest_threads() + selftest_tid();
    const uint32_t v = in[i];
    const double d = (double)v + 0.25;
    switch (op) {
    case 0:
        out32[i] = __shfl_sync(ZO_FULL_MASK, v, arg, width);
        out64[i] = __shfl_sync(ZO_FULL_MASK, d, arg, width);
        break;
    case 1:
        out32[i] = __shfl_xor_sync(ZO_FULL_MASK, v, arg, width);
        out64[i] = __shfl_xor_sync(ZO_FULL_MASK, d, arg, width);
        break;
    case 2:
        out32[i] = __shfl_up_sync(ZO_FULL_MASK, v, (unsigned)arg, width);
        out64[i] = __shfl_up_sync(ZO_FULL_MASK, d, (unsigned)arg, width);
        break;
    default:
        out32[i] = __shfl_down_sync(ZO_FULL_MASK, v, (unsigned)arg, width);
        out64[i] = __shfl_down_sync(ZO_FULL_MASK, d, (unsigned)arg, width);
        break;
    }
}

// Each thread owns `per_thread` floats of dynamic shared memory: records what it finds there
// before writing (the runtime's fill), writes, then reads another thread's slots.
__global__ void selftest_dynamic_smem(unsigned per_thread, uint32_t* __restrict__ before,
                                      float* __restrict__ after, unsigned* __restrict__ aligned) {
    ZO_DYNAMIC_SMEM(float, buf);
    const unsigned n = selftest_threads(), t = selftest_tid();
    const size_t base = ((size_t)selftest_bid() * n + t) * per_thread;
    for (unsigned k = 0; k < per_thread; k++) {
        before[base + k] = __float_as_uint(buf[t * per_thread + k]);
        buf[t * per_thread + k] = (float)(selftest_bid() * 100000 + t * per_thread + k);
    }
    __syncthreads();
    const unsigned other = n - 1 - t;
    for (unsigned k = 0; k < per_thread; k++) after[base + k] = buf[other * per_thread + k];
    if (t == 0) aligned[selftest_bid()] = ((uintptr_t)buf % 16) == 0;
}

struct SelftestAtomics {
    float* f_sum;
    double* d_sum;
    int* i_sum;
    unsigned* u_sum;
    unsigned long long* ull_sum;
    int* i_max;
    int* i_min;
    unsigned* u_max;
    unsigned* u_min;
    unsigned* cas_count;
    unsigned* exch;
    unsigned* exch_old; // one per thread
};

__global__ void selftest_atomics(SelftestAtomics a) {
    const unsigned g = selftest_bid() * selftest_threads() + selftest_tid();
    atomicAdd(a.f_sum, (float)g);
    atomicAdd(a.d_sum, (double)g * 0.5);
    atomicAdd(a.i_sum, (int)g - 300);
    atomicAdd(a.u_sum, g);
    atomicAdd(a.ull_sum, (unsigned long long)g << 33);
    atomicMax(a.i_max, (int)g - 500);
    atomicMin(a.i_min, (int)g - 500);
    atomicMax(a.u_max, g * 7u);
    atomicMin(a.u_min, g + 3u);
    unsigned old = *a.cas_count, seen;
    while ((seen = atomicCAS(a.cas_count, old, old + 1)) != old) old = seen;
    a.exch_old[g] = atomicExch(a.exch, g);
}

// Threads at or past `live` return at once; a third of the others return after the first
// barrier. The survivors keep using __syncthreads.
__global__ void selftest_early_return(unsigned live, float* __restrict__ out) {
    __shared__ float s[1024];
    const unsigned t = selftest_tid();
    if (t >= live) return;
    s[t] = (float)(t + 1);
    __syncthreads();
    if (t == 0) {
        float sum = 0.0f;
        for (unsigned k = 0; k < live; k++) sum += s[k];
        out[2 * selftest_bid()] = sum;
    }
    __syncthreads();
    if (t % 3 == 1) return;
    s[t] = 2.0f * (float)(t + 1);
    __syncthreads();
    if (t == 0) {
        float sum = 0.0f;
        for (unsigned k = 0; k < live; k++)
            if (k % 3 != 1) sum += s[k];
        out[2 * selftest_bid() + 1] = sum;
    }
}

// Every thread records its built-in variables (12 words) and counts its visit.
__global__ void selftest_geometry(unsigned* __restrict__ visits, uint32_t* __restrict__ info) {
    const size_t g = (size_t)selftest_bid() * selftest_threads() + selftest_tid();
    atomicAdd(&visits[g], 1u);
    const uint32_t v[12] = {threadIdx.x, threadIdx.y, threadIdx.z, blockIdx.x,
                            blockIdx.y,  blockIdx.z,  blockDim.x,  blockDim.y,
                            blockDim.z,  gridDim.x,   gridDim.y,   gridDim.z};
    for (int k = 0; k < 12; k++) info[12 * g + k] = v[k];
}

// Storage round trip through dtype.cuh: out = widen(narrow_T(in)).
template <typename T>
__device__ void selftest_roundtrip(size_t n, const float* __restrict__ in, float* __restrict__ out) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = zo_f32(zo_from_f32<T>(in[i]));
}

#define SELFTEST_ROUNDTRIP(suffix, T)                                                           \
    __global__ void selftest_roundtrip_##suffix(size_t n, const float* in, float* out) {       \
        selftest_roundtrip<T>(n, in, out);                                                      \
    }
ZO_INSTANTIATE(SELFTEST_ROUNDTRIP)

// Half of each warp waits at __syncwarp, the other half at __syncthreads: no barrier can pass.
__global__ void selftest_deadlock() {
    if (threadIdx.x % 32 < 16) __syncwarp();
    else __syncthreads();
}

// Writes one float past the dynamic shared memory of the launch.
__global__ void selftest_smem_overrun(unsigned floats) {
    ZO_DYNAMIC_SMEM(float, buf);
    if (threadIdx.x == 0) buf[floats] = 1.0f;
}

__global__ void selftest_nothing() {}

__global__ void selftest_store(float* p, size_t i) {
    if (threadIdx.x == 0) p[i] = 1.0f;
}

} // namespace

extern "C" {

void zo_emu_selftest_block_sum(ZoEmuDim grid, ZoEmuDim block, const float* in, float* out) {
    zo_emu::launch_kernel(selftest_block_sum, grid, block, 0, in, out);
}

void zo_emu_selftest_warp_sums(ZoEmuDim grid, ZoEmuDim block, const float* in, float* xor_sum,
                               float* down_sum) {
    zo_emu::launch_kernel(selftest_warp_sums, grid, block, 0, in, xor_sum, down_sum);
}

void zo_emu_selftest_shuffle(ZoEmuDim grid, ZoEmuDim block, int op, int arg, int width,
                             const uint32_t* in, uint32_t* out32, double* out64) {
    zo_emu::launch_kernel(selftest_shuffle, grid, block, 0, op, arg, width, in, out32, out64);
}

void zo_emu_selftest_dynamic_smem(ZoEmuDim grid, ZoEmuDim block, size_t smem,
                                  unsigned per_thread, uint32_t* before, float* after,
                                  unsigned* aligned) {
    zo_emu::launch_kernel(selftest_dynamic_smem, grid, block, smem, per_thread, before, after,
                          aligned);
}

void zo_emu_selftest_atomics(ZoEmuDim grid, ZoEmuDim block, float* f_sum, double* d_sum,
                             int* i_sum, unsigned* u_sum, unsigned long long* ull_sum,
                             int* i_max, int* i_min, unsigned* u_max, unsigned* u_min,
                             unsigned* cas_count, unsigned* exch, unsigned* exch_old) {
    const SelftestAtomics a{f_sum, d_sum, i_sum, u_sum, ull_sum, i_max,
                            i_min, u_max, u_min, cas_count, exch, exch_old};
    zo_emu::launch_kernel(selftest_atomics, grid, block, 0, a);
}

void zo_emu_selftest_early_return(ZoEmuDim grid, ZoEmuDim block, unsigned live, float* out) {
    zo_emu::launch_kernel(selftest_early_return, grid, block, 0, live, out);
}

void zo_emu_selftest_geometry(ZoEmuDim grid, ZoEmuDim block, unsigned* visits, uint32_t* info) {
    zo_emu::launch_kernel(selftest_geometry, grid, block, 0, visits, info);
}

void zo_emu_selftest_roundtrip(int dtype, ZoEmuDim grid, ZoEmuDim block, size_t n,
                               const float* in, float* out) {
    switch (dtype) {
    case 0: zo_emu::launch_kernel(selftest_roundtrip_f32, grid, block, 0, n, in, out); break;
    case 1: zo_emu::launch_kernel(selftest_roundtrip_bf16, grid, block, 0, n, in, out); break;
    default: zo_emu::launch_kernel(selftest_roundtrip_f16, grid, block, 0, n, in, out); break;
    }
}

void zo_emu_selftest_deadlock(ZoEmuDim block) {
    zo_emu::launch_kernel(selftest_deadlock, dim3(1), block, 0);
}

void zo_emu_selftest_smem_overrun(size_t smem_floats) {
    zo_emu::launch_kernel(selftest_smem_overrun, dim3(1), dim3(32), smem_floats * 4,
                          (unsigned)smem_floats);
}

void zo_emu_selftest_empty(ZoEmuDim grid, ZoEmuDim block, size_t smem) {
    zo_emu::launch_kernel(selftest_nothing, grid, block, smem);
}

void zo_emu_selftest_store(float* p, size_t i) {
    zo_emu::launch_kernel(selftest_store, dim3(1), dim3(32), 0, p, i);
}

void zo_emu_selftest_f32_to_bf16(const float* in, uint16_t* out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(in[i]));
}

void zo_emu_selftest_f32_to_f16(const float* in, uint16_t* out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = __half_as_ushort(__float2half_rn(in[i]));
}

void zo_emu_selftest_bf16_to_f32(const uint16_t* in, float* out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = __bfloat162float(__ushort_as_bfloat16(in[i]));
}

void zo_emu_selftest_f16_to_f32(const uint16_t* in, float* out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = __half2float(__ushort_as_half(in[i]));
}

} // extern "C"
