// Candidate scoring: log-softmax at the scoring rows and each query's log-prob. MeZO's
// classification loss over those few numbers is formed on the host (plan::classification_scores).
//
// Twin: the scoring loop of CpuBackend::score (ops::log_sum_exp, then logit - lse). The
// log-sum-exp reduces in fp32 (the twin in fp64): max, then Σ exp(x - max), lse = max +
// log(Σ); the tolerance rule of the tests covers the difference.
#include "kernel.cuh"

__device__ __forceinline__ float zo_loss_nan() { return __uint_as_float(0x7fc00000u); }

__device__ __forceinline__ bool zo_loss_finite(float x) {
    return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u;
}

// Block-wide max / sum, returned to every thread; see zo_ops_block_sum (ops.cu).
__device__ __forceinline__ float zo_loss_block_max(float v, float* scratch) {
    const unsigned lane = threadIdx.x & (ZO_WARP - 1);
    const unsigned warp = threadIdx.x / ZO_WARP;
    const unsigned warps = blockDim.x / ZO_WARP;
    v = zo_warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return zo_warp_max(lane < warps ? scratch[lane] : __uint_as_float(0xff800000u));
}

__device__ __forceinline__ float zo_loss_block_sum(float v, float* scratch) {
    const unsigned lane = threadIdx.x & (ZO_WARP - 1);
    const unsigned warp = threadIdx.x / ZO_WARP;
    const unsigned warps = blockDim.x / ZO_WARP;
    v = zo_warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return zo_warp_sum(lane < warps ? scratch[lane] : 0.0f);
}

// One block per scoring row. Rows whose start is 16-byte aligned (vocab 49152 and 50272 with
// a dense buffer) are read four floats at a time; others element by element.
extern "C" __global__ void zo_candidate_logprobs(ZoLogprobParams p,
                                                 const float* __restrict__ logits,
                                                 const uint32_t* __restrict__ queries,
                                                 float* __restrict__ lse_out,
                                                 float* __restrict__ query_logprobs) {
    __shared__ float scratch[ZO_WARP];
    const uint32_t r = blockIdx.x;
    if (r >= p.rows) return;
    const float* row = logits + (size_t)r * p.ld;
    const bool vec = (reinterpret_cast<uintptr_t>(row) & 15) == 0;
    const uint32_t n4 = vec ? p.vocab / 4 : 0;
    const float4* row4 = reinterpret_cast<const float4*>(row);

    float m = __uint_as_float(0xff800000u);
    for (uint32_t i = threadIdx.x; i < n4; i += blockDim.x) {
        const float4 v = row4[i];
        m = fmaxf(fmaxf(fmaxf(fmaxf(m, v.x), v.y), v.z), v.w);
    }
    for (uint32_t c = 4 * n4 + threadIdx.x; c < p.vocab; c += blockDim.x) m = fmaxf(m, row[c]);
    m = zo_loss_block_max(m, scratch);

    // As the twin: a row without a finite maximum (all -inf, or an inf) has lse = max.
    float lse = m;
    if (zo_loss_finite(m)) {
        float s = 0.0f;
        for (uint32_t i = threadIdx.x; i < n4; i += blockDim.x) {
            const float4 v = row4[i];
            s = __fadd_rn(s, expf(__fsub_rn(v.x, m)));
            s = __fadd_rn(s, expf(__fsub_rn(v.y, m)));
            s = __fadd_rn(s, expf(__fsub_rn(v.z, m)));
            s = __fadd_rn(s, expf(__fsub_rn(v.w, m)));
        }
        for (uint32_t c = 4 * n4 + threadIdx.x; c < p.vocab; c += blockDim.x)
            s = __fadd_rn(s, expf(__fsub_rn(row[c], m)));
        s = zo_loss_block_sum(s, scratch);
        lse = __fadd_rn(m, logf(s));
    }
    if (p.write_lse && threadIdx.x == 0) lse_out[r] = lse;

    // Each block writes the queries of its own row; block 0 also marks queries that name no
    // row, so every query gets a value.
    for (uint32_t q = threadIdx.x; q < p.n_queries; q += blockDim.x) {
        const uint32_t qr = queries[2 * q];
        const uint32_t tok = queries[2 * q + 1];
        if (qr == r) {
            query_logprobs[q] = tok < p.vocab ? __fsub_rn(row[tok], lse) : zo_loss_nan();
        } else if (r == 0 && qr >= p.rows) {
            query_logprobs[q] = zo_loss_nan();
        }
    }
}
