// Candidate scoring: log-softmax at the scoring rows and MeZO's classification loss.
//
// Twins: the scoring loop of CpuBackend::score (ops::log_sum_exp, then logit - lse) and
// plan::classification_scores. The log-sum-exp reduces in fp32 (the twin in fp64): max, then
// Σ exp(x - max), lse = max + log(Σ); the tolerance rule of the tests covers the difference.
// The classification loss runs the twin's fp64 arithmetic in the twin's order.
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

// Mean log-prob of candidate c (fp64, summed in query order), NaN for an empty or
// out-of-range query range.
__device__ __forceinline__ double zo_loss_candidate_score(const float* __restrict__ lp,
                                                          const uint32_t* __restrict__ candidates,
                                                          uint32_t c, uint32_t n_queries) {
    const uint32_t q0 = candidates[2 * c];
    const uint32_t q1 = candidates[2 * c + 1];
    if (q0 >= q1 || q1 > n_queries) return (double)zo_loss_nan();
    double s = 0.0;
    for (uint32_t q = q0; q < q1; q++) s += (double)lp[q];
    return s / (double)(q1 - q0);
}

// One thread per example: the candidates of one example are few, and their order fixes the
// fp64 sums, so each example is reduced serially exactly as the twin does.
extern "C" __global__ void zo_classification_loss(ZoClassifyParams p,
                                                  const float* __restrict__ query_logprobs,
                                                  const uint32_t* __restrict__ candidates,
                                                  const uint32_t* __restrict__ example_offsets,
                                                  const uint32_t* __restrict__ gold,
                                                  float* __restrict__ loss,
                                                  uint32_t* __restrict__ pred,
                                                  float* __restrict__ candidate_scores) {
    const uint32_t e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= p.n_examples) return;
    const uint32_t c0 = example_offsets[e];
    const uint32_t c1 = example_offsets[e + 1];
    const uint32_t g = gold[e];
    if (c0 >= c1 || c1 > p.n_candidates || g >= c1 - c0) {
        loss[e] = zo_loss_nan();
        pred[e] = 0xffffffffu;
        return;
    }
    // Max (f64::max ignores NaN, so does `>`), and the argmax with ties to the lowest index.
    double m = -(double)__uint_as_float(0x7f800000u);
    uint32_t best = 0;
    double best_s = 0.0;
    double gold_s = 0.0;
    for (uint32_t c = c0; c < c1; c++) {
        const double s = zo_loss_candidate_score(query_logprobs, candidates, c, p.n_queries);
        candidate_scores[c] = (float)s;
        if (s > m) m = s;
        if (c == c0 || s > best_s) {
            best = c - c0;
            best_s = s;
        }
        if (c - c0 == g) gold_s = s;
    }
    double sum = 0.0;
    for (uint32_t c = c0; c < c1; c++)
        sum += exp(zo_loss_candidate_score(query_logprobs, candidates, c, p.n_queries) - m);
    const double lse = m + log(sum);
    loss[e] = (float)(lse - gold_s);
    pred[e] = best;
}
