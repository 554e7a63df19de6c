// Seeded updates of the perturbation families, bit for bit with the CPU code in
// src/perturb/{dense,lowrank,lora}.rs (the documented "exact update" and "exact merge" orders).
//
// Every multiply-add is an explicit __fmaf_rn/__fmul_rn, so nvcc cannot contract or reorder;
// random elements are regenerated from (seed, tensor, role, index) exactly as the host fills
// them. The host computes every coefficient (c_d = -(lr * g_d) / q, a_d, -(lr * wd), -lr) with
// the CPU's own expressions and passes the results, so no kernel re-derives them.
#include "kernel.cuh"

// The four random elements of Philox block `block` of a stream, in the family's distribution.
static __device__ __forceinline__ void zo_update_draw4(ZoRngStream s, uint32_t dist,
                                                       uint64_t block, float v[4]) {
    if (dist == ZO_DIST_GAUSSIAN) {
        zo_gaussian_block(s, block, v);
    } else {
        const ZoU32x4 x = zo_raw_block(s, block);
#pragma unroll
        for (int l = 0; l < 4; l++) v[l] = zo_rademacher_bits(x.x[l]);
    }
}

static __device__ __forceinline__ ZoRngStream zo_update_stream(ZoUpdateDir d, uint32_t tensor,
                                                               uint32_t role) {
    ZoRngStream s;
    s.seed_lo = d.seed_lo;
    s.seed_hi = d.seed_hi;
    s.tensor = tensor;
    s.role = role;
    return s;
}

// acc[l] = fma(coef_d, z_d(4 block + l), acc[l]) over the directions in order: the seeded
// chain of every update, on Philox block `block` of each direction's stream.
static __device__ __forceinline__ void zo_update_chain(const ZoUpdateDir* __restrict__ dirs,
                                                       uint32_t n_dirs, uint32_t tensor,
                                                       uint32_t role, uint32_t dist,
                                                       uint64_t block, float acc[4]) {
    for (uint32_t d = 0; d < n_dirs; d++) {
        const ZoUpdateDir dir = dirs[d];
        float z[4];
        zo_update_draw4(zo_update_stream(dir, tensor, role), dist, block, z);
#pragma unroll
        for (int l = 0; l < 4; l++) acc[l] = __fmaf_rn(dir.coef, z[l], acc[l]);
    }
}

// Four consecutive elements as one aligned load or store (8 bytes of bf16/f16, 16 of f32).
template <typename T>
struct alignas(4 * sizeof(T)) ZoUpdateVec4 {
    T v[4];
};

// One thread per Philox block of the element index space (4 consecutive indices), grid-stride:
// each element's random values come from exactly one block, generated once per direction.
// Where rows are whole blocks (cols and ld multiples of 4, theta aligned) a full block's four
// elements are contiguous and move as one vector; the arithmetic is the same either way.
template <typename T>
__device__ __forceinline__ void zo_seeded_axpy_impl(ZoAxpyParams p, T* __restrict__ theta,
                                                    const ZoUpdateDir* __restrict__ dirs) {
    const uint64_t n = p.rows * p.cols;
    const uint64_t blocks = (n + 3) >> 2;
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    const bool dense = p.ld == p.cols;
    const bool vec_rows = (p.cols & 3u) == 0 && (p.ld & 3u) == 0 &&
                          reinterpret_cast<uintptr_t>(theta) % sizeof(ZoUpdateVec4<T>) == 0;
    for (uint64_t b = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; b < blocks; b += stride) {
        uint64_t addr[4];
        float t[4];
        const bool vec = vec_rows && 4 * b + 4 <= n;
        if (vec) {
            const uint64_t i = dense ? 0 : (4 * b) / p.cols;
            const uint64_t at = dense ? 4 * b : i * p.ld + (4 * b - i * p.cols);
            const ZoUpdateVec4<T> v = *reinterpret_cast<const ZoUpdateVec4<T>*>(theta + at);
#pragma unroll
            for (int l = 0; l < 4; l++) {
                addr[l] = at + l;
                t[l] = zo_f32(v.v[l]);
            }
        } else {
#pragma unroll
            for (int l = 0; l < 4; l++) {
                const uint64_t idx = 4 * b + l;
                if (idx < n) {
                    if (dense) {
                        addr[l] = idx;
                    } else {
                        const uint64_t i = idx / p.cols;
                        addr[l] = i * p.ld + (idx - i * p.cols);
                    }
                    t[l] = zo_f32(theta[addr[l]]);
                } else {
                    addr[l] = 0;
                    t[l] = 0.0f;
                }
            }
        }
        if (p.decay) {
#pragma unroll
            for (int l = 0; l < 4; l++) t[l] = __fmaf_rn(p.neg_decay, t[l], t[l]);
        }
        zo_update_chain(dirs, p.dirs, p.tensor, p.role, p.dist, b, t);
        if (vec) {
            ZoUpdateVec4<T> v;
#pragma unroll
            for (int l = 0; l < 4; l++) v.v[l] = zo_from_f32<T>(t[l]);
            *reinterpret_cast<ZoUpdateVec4<T>*>(theta + addr[0]) = v;
        } else {
#pragma unroll
            for (int l = 0; l < 4; l++) {
                if (4 * b + l < n) theta[addr[l]] = zo_from_f32<T>(t[l]);
            }
        }
    }
}

#define ZO_SEEDED_AXPY(suffix, T)                                                              \
    extern "C" __global__ void zo_seeded_axpy_##suffix(ZoAxpyParams p, T* __restrict__ theta,  \
                                                       const ZoUpdateDir* __restrict__ dirs) { \
        zo_seeded_axpy_impl<T>(p, theta, dirs);                                                \
    }
ZO_INSTANTIATE(ZO_SEEDED_AXPY)

// LoZO-M: m = beta * m, the a_d chain on m, then bank = fma(-lr, m, bank). Both fp32.
extern "C" __global__ void zo_lowrank_momentum(ZoMomentumParams p, float* __restrict__ bank,
                                               float* __restrict__ mom,
                                               const ZoUpdateDir* __restrict__ dirs) {
    const uint64_t blocks = (p.n + 3) >> 2;
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t b = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; b < blocks; b += stride) {
        float m[4];
#pragma unroll
        for (int l = 0; l < 4; l++) {
            const uint64_t idx = 4 * b + l;
            m[l] = idx < p.n ? __fmul_rn(mom[idx], p.beta) : 0.0f;
        }
        zo_update_chain(dirs, p.dirs, p.tensor, 1u /* LOWRANK_U */, p.dist, b, m);
#pragma unroll
        for (int l = 0; l < 4; l++) {
            const uint64_t idx = 4 * b + l;
            if (idx < p.n) {
                mom[idx] = m[l];
                bank[idx] = __fmaf_rn(p.neg_lr, m[l], bank[idx]);
            }
        }
    }
}

// ZO-SGD momentum / ZO-Adam: one thread per Philox block (4 elements), as the seeded axpy, so
// each element's draws come from one block per direction; the per-element sequence is the
// host's (step_rule.rs), one explicit rounding per operation.
extern "C" __global__ void zo_moments_update(ZoMomentsParams p, float* __restrict__ theta,
                                             float* __restrict__ mom, float* __restrict__ var,
                                             const ZoUpdateDir* __restrict__ dirs) {
    const uint64_t blocks = (p.n + 3) >> 2;
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t b = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; b < blocks; b += stride) {
        float g[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        zo_update_chain(dirs, p.dirs, p.tensor, p.role, p.dist, b, g);
#pragma unroll
        for (int l = 0; l < 4; l++) {
            const uint64_t idx = 4 * b + l;
            if (idx >= p.n) continue;
            float t = theta[idx];
            if (p.decay) t = __fmaf_rn(p.neg_decay, t, t);
            float m = mom[idx];
            if (p.adam) {
                m = __fmaf_rn(p.beta1, m, __fmul_rn(p.one_m_b1, g[l]));
                const float v =
                    __fmaf_rn(p.beta2, var[idx], __fmul_rn(p.one_m_b2, __fmul_rn(g[l], g[l])));
                const float denom = __fadd_rn(__fsqrt_rn(__fmul_rn(v, p.c2)), p.eps);
                t = __fmaf_rn(p.neg_lr, __fdiv_rn(m, denom), t);
                var[idx] = v;
            } else {
                m = __fmaf_rn(p.beta1, m, g[l]);
                t = __fmaf_rn(p.neg_lr, m, t);
            }
            mom[idx] = m;
            theta[idx] = t;
        }
    }
}

// w += scale * b a, one output element per thread: x = column j (coalesced reads of a and w),
// y = row i (b's row is one broadcast read per k). Grid-stride in y for very tall weights.
template <typename T>
__device__ __forceinline__ void zo_factor_merge_impl(ZoMergeParams p, T* __restrict__ w,
                                                     const float* __restrict__ b,
                                                     const float* __restrict__ a) {
    const uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= p.k) return;
    for (uint32_t i = blockIdx.y; i < p.out; i += gridDim.y) {
        float acc = 0.0f;
        for (uint32_t kk = 0; kk < p.rank; kk++) {
            acc = __fmaf_rn(b[(uint64_t)i * p.b_si + (uint64_t)kk * p.b_sk],
                            a[(uint64_t)kk * p.k + j], acc);
        }
        T* dst = w + (uint64_t)i * p.ld + j;
        *dst = zo_from_f32<T>(__fmaf_rn(p.scale, acc, zo_f32(*dst)));
    }
}

#define ZO_FACTOR_MERGE(suffix, T)                                                             \
    extern "C" __global__ void zo_factor_merge_##suffix(ZoMergeParams p, T* __restrict__ w,    \
                                                        const float* __restrict__ b,           \
                                                        const float* __restrict__ a) {         \
        zo_factor_merge_impl<T>(p, w, b, a);                                                   \
    }
ZO_INSTANTIATE(ZO_FACTOR_MERGE)

// P = V_old^T V_new / in: one thread per entry, each a serial fma chain over ascending j (the
// documented order; r^2 chains of length `in`, once per period).
extern "C" __global__ void zo_lowrank_basis(ZoBasisParams p, float* __restrict__ out,
                                            const float* __restrict__ old_vt,
                                            const float* __restrict__ new_vt) {
    const uint32_t e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= p.rank * p.rank) return;
    const uint32_t k = e / p.rank, l = e % p.rank;
    const float* x = old_vt + (uint64_t)k * p.k_in;
    const float* y = new_vt + (uint64_t)l * p.k_in;
    float acc = 0.0f;
    for (uint32_t j = 0; j < p.k_in; j++) acc = __fmaf_rn(x[j], y[j], acc);
    out[e] = __fdiv_rn(acc, (float)p.k_in);
}

// m^T_new[l][i] = sum_k m^T[k][i] P[k][l], fma chain over ascending k; thread per (l, i).
extern "C" __global__ void zo_lowrank_project(ZoBasisParams p, float* __restrict__ new_m,
                                              const float* __restrict__ m,
                                              const float* __restrict__ pm) {
    const uint64_t e = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= (uint64_t)p.rank * p.out) return;
    const uint32_t l = (uint32_t)(e / p.out), i = (uint32_t)(e % p.out);
    float acc = 0.0f;
    for (uint32_t k = 0; k < p.rank; k++) {
        acc = __fmaf_rn(m[(uint64_t)k * p.out + i], pm[k * p.rank + l], acc);
    }
    new_m[e] = acc;
}
