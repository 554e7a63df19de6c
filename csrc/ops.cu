// Row-wise forward ops between the GEMMs: embedding gather, RMSNorm/LayerNorm, MLP
// activations.
//
// Data flow: the residual stream and every GEMM output are fp32; everything written for a GEMM
// (norm and activation outputs) is the storage type T into a buffer with row stride ld, of
// which a kernel writes only its own columns [0, width) (the columns past width belong to the
// perturbation shrink kernels).
//
// Twins: src/backend/cpu/ops.rs. Elementwise ops repeat the twin's fp32 operations one for one,
// each spelled as an explicit round-to-nearest intrinsic so nvcc cannot contract a multiply
// and an add into an fma: with inputs rounded to T they agree with the twin bit for bit. The
// norms reduce in fp32 (the twin in fp64) and then run the twin's per-row scalar and
// per-element epilogue exactly.
#include "kernel.cuh"

__device__ __forceinline__ float zo_ops_nan() { return __uint_as_float(0x7fc00000u); }

// Sum over the block, returned to every thread. `scratch` holds one float per warp; the
// leading barrier lets a block call this twice in a row on the same scratch.
__device__ __forceinline__ float zo_ops_block_sum(float v, float* scratch) {
    const unsigned lane = threadIdx.x & (ZO_WARP - 1);
    const unsigned warp = threadIdx.x / ZO_WARP;
    const unsigned warps = blockDim.x / ZO_WARP;
    v = zo_warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    // Every warp reduces the warp totals itself, in the same order: no broadcast round trip.
    return zo_warp_sum(lane < warps ? scratch[lane] : 0.0f);
}

// ---------------------------------------------------------------------------------------------
// Embedding: one block per token, columns strided over the threads.

template <typename T>
__device__ void zo_embed_impl(ZoEmbedParams p, const uint32_t* __restrict__ tokens,
                              const uint32_t* __restrict__ positions, const T* __restrict__ w_e,
                              const T* __restrict__ w_p, float* __restrict__ x) {
    const uint32_t t = blockIdx.x;
    if (t >= p.n_tokens) return;
    float* row = x + (size_t)t * p.ld;
    const T* e = nullptr;
    const T* q = nullptr;
    bool bad = false;
    if (p.flags & ZO_EMBED_TOKENS) {
        const uint32_t tok = tokens[t];
        bad |= tok >= p.vocab;
        if (!bad) e = w_e + (size_t)tok * p.width;
    }
    if (p.flags & ZO_EMBED_POSITIONS) {
        const uint64_t pos = (uint64_t)positions[t] + p.pos_offset;
        bad |= pos >= p.n_pos;
        if (!bad) q = w_p + (size_t)pos * p.width;
    }
    for (uint32_t c = threadIdx.x; c < p.width; c += blockDim.x) {
        float v;
        if (bad) {
            v = zo_ops_nan();
        } else {
            v = e ? zo_f32(e[c]) : row[c];
            // The twin adds the f32 position row to the f32 embedding row.
            if (q) v = __fadd_rn(v, zo_f32(q[c]));
        }
        row[c] = v;
    }
}

// ---------------------------------------------------------------------------------------------
// Norms: one block per output row. Three passes over the fp32 row (the later ones hit cache):
// the statistics in fp32, then the twin's epilogue (ops::norm_row):
//   RMS:   r = (float)(1 / sqrt((double)Σx²/n + eps));  y = x * r
//   Layer: mean = (double)Σx/n, var = (double)Σ(x - (float)mean)²/n,
//          r = 1 / sqrt(var + eps) (double);  y = (float)(((double)x - mean) * r)
// then y *= w, y += b in fp32.

template <typename T>
__device__ void zo_norm_impl(ZoNormParams p, const uint32_t* __restrict__ row_idx,
                             const T* __restrict__ w, const T* __restrict__ b, float* x,
                             T* __restrict__ out) {
    __shared__ float scratch[ZO_WARP];
    const uint32_t r = blockIdx.x;
    if (r >= p.rows) return;
    T* o = out + (size_t)r * p.ld_out;
    uint32_t src = r;
    if (p.flags & ZO_NORM_GATHER) src = row_idx[r];
    if (src >= p.n_src_rows) {
        // Uniform over the block, before any barrier.
        for (uint32_t c = threadIdx.x; c < p.width; c += blockDim.x)
            o[c] = zo_from_f32<T>(zo_ops_nan());
        return;
    }
    float* xr = x + (size_t)src * p.ld_in;
    const double n = (double)p.width;
    const bool has_w = (p.flags & ZO_NORM_HAS_W) != 0;
    const bool has_b = (p.flags & ZO_NORM_HAS_B) != 0;
    const bool in_place = (p.flags & ZO_NORM_IN_PLACE) != 0;

    if (p.kind == ZO_NORM_NONE) {
        // A post-LN model's residual is already normalised: only the rounding to T remains.
        for (uint32_t c = threadIdx.x; c < p.width; c += blockDim.x) o[c] = zo_from_f32<T>(xr[c]);
        return;
    }
    if (p.kind == ZO_NORM_RMS) {
        float s = 0.0f;
        for (uint32_t c = threadIdx.x; c < p.width; c += blockDim.x) {
            const float v = xr[c];
            s = __fmaf_rn(v, v, s);
        }
        s = zo_ops_block_sum(s, scratch);
        const double ms = (double)s / n;
        const float rs = (float)(1.0 / sqrt(ms + (double)p.eps));
        for (uint32_t c = threadIdx.x; c < p.width; c += blockDim.x) {
            float y = __fmul_rn(xr[c], rs);
            if (has_w) y = __fmul_rn(y, zo_f32(w[c]));
            if (has_b) y = __fadd_rn(y, zo_f32(b[c]));
            if (in_place) xr[c] = y;
            o[c] = zo_from_f32<T>(y);
        }
    } else {
        float s = 0.0f;
        for (uint32_t c = threadIdx.x; c < p.width; c += blockDim.x) s = __fadd_rn(s, xr[c]);
        s = zo_ops_block_sum(s, scratch);
        const double mean = (double)s / n;
        const float mean_f = (float)mean;
        float q = 0.0f;
        for (uint32_t c = threadIdx.x; c < p.width; c += blockDim.x) {
            const float d = __fsub_rn(xr[c], mean_f);
            q = __fmaf_rn(d, d, q);
        }
        q = zo_ops_block_sum(q, scratch);
        const double rs = 1.0 / sqrt((double)q / n + (double)p.eps);
        for (uint32_t c = threadIdx.x; c < p.width; c += blockDim.x) {
            float y = (float)(((double)xr[c] - mean) * rs);
            if (has_w) y = __fmul_rn(y, zo_f32(w[c]));
            if (has_b) y = __fadd_rn(y, zo_f32(b[c]));
            if (in_place) xr[c] = y;
            o[c] = zo_from_f32<T>(y);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MLP activations (twin: ops::activate / ops::gated_in_place), one block per row.

__device__ __forceinline__ float zo_ops_activate(float x, uint32_t act) {
    switch (act) {
    case ZO_ACT_SILU:
        // x / (1 + exp(-x))
        return __fdiv_rn(x, __fadd_rn(1.0f, expf(-x)));
    case ZO_ACT_RELU:
        // As the twin's x.max(0): NaN gives 0, and so does -0 (fmaxf may keep the -0).
        return x > 0.0f ? x : 0.0f;
    default:
        // 0.5 * x * (1 + erf(x * FRAC_1_SQRT_2)), left to right.
        return __fmul_rn(__fmul_rn(0.5f, x),
                         __fadd_rn(1.0f, erff(__fmul_rn(x, 0.707106781186547524f))));
    }
}

template <typename T>
__device__ void zo_act_impl(ZoActParams p, const float* __restrict__ in, T* __restrict__ out) {
    const uint32_t r = blockIdx.x;
    if (r >= p.rows) return;
    const float* g = in + (size_t)r * p.ld_in;
    T* o = out + (size_t)r * p.ld_out;
    for (uint32_t c = threadIdx.x; c < p.width; c += blockDim.x) {
        float y = zo_ops_activate(g[c], p.act);
        if (p.gated) y = __fmul_rn(y, g[p.width + c]);
        o[c] = zo_from_f32<T>(y);
    }
}

// ---------------------------------------------------------------------------------------------
// extern "C" instances per storage type.

#define ZO_OPS_INSTANCES(S, T)                                                                 \
    extern "C" __global__ void zo_embed_##S(ZoEmbedParams p, const uint32_t* tokens,           \
                                            const uint32_t* positions, const T* w_e,           \
                                            const T* w_p, float* x) {                          \
        zo_embed_impl<T>(p, tokens, positions, w_e, w_p, x);                                   \
    }                                                                                          \
    extern "C" __global__ void zo_norm_##S(ZoNormParams p, const uint32_t* row_idx,            \
                                           const T* w, const T* b, float* x, T* out) {         \
        zo_norm_impl<T>(p, row_idx, w, b, x, out);                                             \
    }                                                                                          \
    extern "C" __global__ void zo_act_##S(ZoActParams p, const float* in, T* out) {            \
        zo_act_impl<T>(p, in, out);                                                            \
    }

ZO_INSTANTIATE(ZO_OPS_INSTANCES)
