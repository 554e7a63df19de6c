// Attention family: rotary embedding of q and k, the KV-cache write, and paged causal prefill
// attention with an optional (perturbed) trainable prefix. CPU twins: ops::apply_rope and
// attention::causal_attention(_with_prefix) in src/backend/cpu.
#include "kernel.cuh"

// Partial sums per score (a multiple of 4 divides head_dim 64 and 128 exactly).
#define ZO_ATTN_DOT_PARTS 4

__device__ __forceinline__ float zo_attn_neg_inf() { return __int_as_float((int)0xff800000u); }

// ---------------------------------------------------------------------------------------------
// RoPE, HF rotate_half: element i of a head pairs with i + head_dim/2. The CPU computes
// `x1 * c - x2 * s` and `x2 * c + x1 * s` with every product rounded (Rust never contracts), so
// the explicit round-to-nearest intrinsics make the result bit-identical to apply_rope.
// One thread per (row, head, pair), grid-stride.
extern "C" __global__ void zo_rope(ZoRopeParams p, float* __restrict__ x,
                                   const float* __restrict__ cos_t,
                                   const float* __restrict__ sin_t) {
    const uint32_t half = p.head_dim / 2;
    const uint64_t per_row = (uint64_t)(p.q_heads + p.k_heads) * half;
    const uint64_t total = (uint64_t)p.rows * per_row;
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const uint64_t row = t / per_row;
        const uint32_t rem = (uint32_t)(t - row * per_row);
        const uint32_t hh = rem / half;
        const uint32_t i = rem - hh * half;
        const uint32_t col =
            hh < p.q_heads ? p.q_col + hh * p.head_dim : p.k_col + (hh - p.q_heads) * p.head_dim;
        float* h = x + row * p.ld + col;
        const float c = cos_t[row * half + i];
        const float s = sin_t[row * half + i];
        const float x1 = h[i];
        const float x2 = h[i + half];
        h[i] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
        h[i + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    }
}

// ---------------------------------------------------------------------------------------------
// KV write: one CUDA block per packed row (grid-stride over rows), threads over the kv width.
extern "C" __global__ void zo_kv_write(ZoKvWriteParams p, const float* __restrict__ qkv,
                                       const uint32_t* __restrict__ slots,
                                       float* __restrict__ k_cache, float* __restrict__ v_cache) {
    for (uint32_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
        const uint32_t slot = slots[row];
        if (slot >= p.num_slots) continue;
        const float* src = qkv + (uint64_t)row * p.ld;
        float* kd = k_cache + (uint64_t)slot * p.kv_width;
        float* vd = v_cache + (uint64_t)slot * p.kv_width;
        for (uint32_t c = threadIdx.x; c < p.kv_width; c += blockDim.x) {
            kd[c] = src[p.k_col + c];
            vd[c] = src[p.v_col + c];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Paged prefill attention.
//
// Grid: x = query tiles of tokens_per_block tokens (reversed, so the longest causal tiles start
// first), y = kv head * head_chunks + chunk, z = sequence. Block: ZO_ATTN_WARPS warps; warp w
// owns query rows w * ZO_ATTN_ROWS .. + ZO_ATTN_ROWS, row m being token m / heads_per_block and
// head m % heads_per_block of the block's head chunk, so every K/V tile in shared memory serves
// all tokens and all GQA heads of the block.
//
// Keys of a sequence, in order (the CPU's order): prefix positions, ctx_len cached tokens, the
// sequence's own tokens; query i of the sequence sees keys [0, prefix_len + ctx_len + i].
// Cached token c is at block-table position c, own token i at own_starts[s] + i (ctx_len when
// own_starts is NULL): a sequence reading a shared prompt starts its own tokens on a fresh page,
// so siblings never write into the prompt's partially filled last page.
// Per tile of ZO_ATTN_KEYS keys: lane j scores key j against the warp's rows, the warp updates
// each row's running max / sum (fp32 online softmax), then accumulates p_j * v_j with lane l
// owning output dims l, l + 32, ...
//
// Dynamic shared memory (attention_launch_config): Q [rows][hd], K, V [keys][hd]. The score
// phase reads K with one lane per key, which would put all lanes in one bank; for head_dim 64
// and 128 column d of key k is stored at d ^ k (a permutation within each 32-column block), so
// the reads are conflict-free and the three tiles of head_dim 128 fit the 48 KiB available
// without opting in; other head_dims pad K rows to hd + 1 instead.
//
// Every float operation is an explicit round-to-nearest intrinsic, so the emulation harness
// reproduces the device arithmetic except for expf.
template <typename T, int HDC, bool FIXED>
__device__ __forceinline__ void zo_attn_prefill(
    const ZoAttnParams& p, const float* __restrict__ q, const float* __restrict__ k_cache,
    const float* __restrict__ v_cache, const uint32_t* __restrict__ cu_seqlens,
    const uint32_t* __restrict__ ctx_lens, const uint32_t* __restrict__ own_starts,
    const uint32_t* __restrict__ block_tables, const float* __restrict__ prefix_k,
    const float* __restrict__ prefix_v, const ZoSegment* __restrict__ segments,
    T* __restrict__ out) {
    constexpr int R = ZO_ATTN_ROWS;
    constexpr int M = ZO_ATTN_WARPS * ZO_ATTN_ROWS;
    constexpr int KT = ZO_ATTN_KEYS;
    constexpr int NI = (HDC + 31) / 32;
    const int hd = FIXED ? HDC : (int)p.head_dim;
    constexpr bool SWIZZLE = FIXED && HDC % 32 == 0;
    const int kstride = SWIZZLE ? hd : hd + 1;
    const float neg_inf = zo_attn_neg_inf();

    const uint32_t s = blockIdx.z;
    const uint32_t kvh = blockIdx.y / p.head_chunks;
    const uint32_t chunk = blockIdx.y - kvh * p.head_chunks;
    const uint32_t group = p.heads / p.kv_heads;
    const uint32_t hb = p.heads_per_block;
    const uint32_t seq_start = min(cu_seqlens[s], p.rows);
    const uint32_t seq_end = min(cu_seqlens[s + 1], p.rows);
    const uint32_t len = seq_end > seq_start ? seq_end - seq_start : 0;
    const uint32_t t0 = (gridDim.x - 1 - blockIdx.x) * p.tokens_per_block;
    if (t0 >= len) return; // the whole block leaves together
    const uint32_t t_end = min(len, t0 + p.tokens_per_block);
    const uint32_t cap = p.max_pages * ZO_ATTN_PAGE;
    // Positions past the block table have no page (they read as zeros); the clamp only keeps
    // the key count from overflowing on a corrupt ctx_len.
    const uint32_t ctx = min(ctx_lens[s], cap);
    // Likewise for the own tokens' first table position.
    const uint32_t own0 = own_starts ? min(own_starts[s], cap) : ctx;
    const uint32_t np = p.prefix_len;
    const uint32_t kv_count = np + ctx + t_end;
    const uint32_t kv_width = p.kv_heads * (uint32_t)hd;

    // The sequence's perturbation, if its first row lies in a segment.
    const ZoPrefixPerturbation z =
        zo_prefix_perturbation(segments, np > 0 ? p.n_segments : 0, seq_start,
                               p.prefix_key_tensor, p.prefix_value_tensor, p.prefix_role);

    ZO_DYNAMIC_SMEM(float, smem);
    float* qs = smem;                  // [M][hd]
    float* ks = qs + M * hd;           // [KT][kstride]
    float* vs = ks + KT * kstride;     // [KT][hd]

    const int tid = threadIdx.x;
    const int warp = tid / 32;
    const int lane = tid % 32;

    // Queries of the block (zeros for rows past the sequence or the group).
    for (int e = tid; e < M * hd; e += blockDim.x) {
        const int m = e / hd;
        const int d = e - m * hd;
        const uint32_t tok = t0 + (uint32_t)m / hb;
        const uint32_t hg = chunk * hb + (uint32_t)m % hb;
        float v = 0.0f;
        if ((uint32_t)m < hb * p.tokens_per_block && tok < t_end && hg < group) {
            const uint32_t h = kvh * group + hg;
            v = q[(uint64_t)(seq_start + tok) * p.q_ld + p.q_col + (uint64_t)h * hd + d];
        }
        qs[e] = v;
    }

    // This warp's rows: keys visible to each (0 for an unused row) and where its output goes.
    uint32_t vis[R];
    uint64_t dst[R];
    uint32_t warp_vis = 0;
#pragma unroll
    for (int r = 0; r < R; r++) {
        const uint32_t m = (uint32_t)(warp * R + r);
        const uint32_t tok = t0 + m / hb;
        const uint32_t hg = chunk * hb + m % hb;
        const bool ok = m < hb * p.tokens_per_block && tok < t_end && hg < group;
        vis[r] = ok ? np + ctx + tok + 1 : 0;
        dst[r] = ok ? (uint64_t)(seq_start + tok) * p.out_ld + (uint64_t)(kvh * group + hg) * hd
                    : 0;
        warp_vis = max(warp_vis, vis[r]);
    }

    float row_max[R], row_sum[R], acc[R][NI];
#pragma unroll
    for (int r = 0; r < R; r++) {
        row_max[r] = neg_inf;
        row_sum[r] = 0.0f;
#pragma unroll
        for (int i = 0; i < NI; i++) acc[r][i] = 0.0f;
    }

    const uint32_t* table = block_tables + (uint64_t)s * p.max_pages;
    for (uint32_t j0 = 0; j0 < kv_count; j0 += KT) {
        __syncthreads(); // the previous tile (and, first time round, nothing) is consumed

        // Load keys j0 .. j0 + KT; missing keys are zeros so that p = 0 never meets a NaN.
        for (int e = tid; e < KT * hd; e += blockDim.x) {
            const int kk = e / hd;
            const int d = e - kk * hd;
            const uint32_t j = j0 + (uint32_t)kk;
            float kv = 0.0f, vv = 0.0f;
            if (j < kv_count) {
                if (j < np) {
                    const uint64_t idx = (uint64_t)j * kv_width + (uint64_t)kvh * hd + d;
                    kv = zo_prefix_element(prefix_k, idx, z.on, z.k, z.scale, p.prefix_dist);
                    vv = zo_prefix_element(prefix_v, idx, z.on, z.v, z.scale, p.prefix_dist);
                } else {
                    const uint32_t c = j - np;
                    const uint32_t pos = c < ctx ? c : own0 + (c - ctx);
                    const uint32_t page =
                        pos / ZO_ATTN_PAGE < p.max_pages ? table[pos / ZO_ATTN_PAGE] : p.num_pages;
                    if (page < p.num_pages) {
                        const uint64_t slot = (uint64_t)page * ZO_ATTN_PAGE + pos % ZO_ATTN_PAGE;
                        const uint64_t idx = slot * kv_width + (uint64_t)kvh * hd + d;
                        kv = k_cache[idx];
                        vv = v_cache[idx];
                    }
                }
            }
            ks[kk * kstride + (SWIZZLE ? d ^ kk : d)] = kv;
            vs[kk * hd + d] = vv;
        }
        __syncthreads();
        if (j0 >= warp_vis) continue; // nothing of this tile is visible to the warp's rows

        // Scores: lane = key. ZO_ATTN_DOT_PARTS interleaved partial sums per row keep the
        // rounding error of long dot products near the CPU twin's (eight partial sums).
        constexpr int P = ZO_ATTN_DOT_PARTS;
        float part[P][R];
#pragma unroll
        for (int c = 0; c < P; c++)
#pragma unroll
            for (int r = 0; r < R; r++) part[c][r] = 0.0f;
        const float* kr = ks + lane * kstride;
        const float* qw = qs + warp * R * hd;
        for (int d0 = 0; d0 < hd; d0 += P) {
#pragma unroll
            for (int c = 0; c < P; c++) {
                const int d = d0 + c;
                if (!FIXED && d >= hd) break;
                const float kd = kr[SWIZZLE ? d ^ lane : d];
#pragma unroll
                for (int r = 0; r < R; r++) part[c][r] = __fmaf_rn(qw[r * hd + d], kd, part[c][r]);
            }
        }
        float sc[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            float v = part[0][r];
#pragma unroll
            for (int c = 1; c < P; c++) v = __fadd_rn(v, part[c][r]);
            sc[r] = v;
        }

        // Online softmax update of every row.
        const uint32_t j = j0 + (uint32_t)lane;
        float pr[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            const float x = j < vis[r] ? __fmul_rn(sc[r], p.scale) : neg_inf;
            const float m_new = fmaxf(row_max[r], zo_warp_max(x));
            const float alpha = m_new == neg_inf ? 1.0f : expf(__fsub_rn(row_max[r], m_new));
            const float e = x == neg_inf ? 0.0f : expf(__fsub_rn(x, m_new));
            row_sum[r] = __fmaf_rn(row_sum[r], alpha, zo_warp_sum(e));
            row_max[r] = m_new;
#pragma unroll
            for (int i = 0; i < NI; i++) acc[r][i] = __fmul_rn(acc[r][i], alpha);
            pr[r] = e;
        }

        // acc += p_j v_j over the tile's keys visible to any row of the warp.
        const int n = (int)min((uint32_t)KT, warp_vis - j0);
        for (int kk = 0; kk < n; kk++) {
            float v[NI];
#pragma unroll
            for (int i = 0; i < NI; i++) {
                const int d = lane + 32 * i;
                v[i] = (FIXED && HDC % 32 == 0) || d < hd ? vs[kk * hd + d] : 0.0f;
            }
#pragma unroll
            for (int r = 0; r < R; r++) {
                const float w = __shfl_sync(ZO_FULL_MASK, pr[r], kk);
#pragma unroll
                for (int i = 0; i < NI; i++) acc[r][i] = __fmaf_rn(w, v[i], acc[r][i]);
            }
        }
    }

#pragma unroll
    for (int r = 0; r < R; r++) {
        if (vis[r] == 0) continue;
#pragma unroll
        for (int i = 0; i < NI; i++) {
            const int d = lane + 32 * i;
            if ((FIXED && HDC % 32 == 0) || d < hd)
                out[dst[r] + d] = zo_from_f32<T>(__fdiv_rn(acc[r][i], row_sum[r]));
        }
    }
}

// Instances: head_dim 64 and 128 with the head loop fixed at compile time, and one for any
// head_dim <= 256. Two blocks per SM as the register target: without it ptxas caps the
// head_dim-64 instance near 128 registers and spills the accumulators.
#define ZO_ATTN_PREFILL(name, T, HDC, FIXED)                                                    \
    extern "C" __global__ void __launch_bounds__(ZO_ATTN_WARPS * 32, 2) name(                       \
        ZoAttnParams p, const float* __restrict__ q, const float* __restrict__ k_cache,        \
        const float* __restrict__ v_cache, const uint32_t* __restrict__ cu_seqlens,            \
        const uint32_t* __restrict__ ctx_lens, const uint32_t* __restrict__ own_starts,        \
        const uint32_t* __restrict__ block_tables, const float* __restrict__ prefix_k,         \
        const float* __restrict__ prefix_v, const ZoSegment* __restrict__ segments,            \
        T* __restrict__ out) {                                                                  \
        zo_attn_prefill<T, HDC, FIXED>(p, q, k_cache, v_cache, cu_seqlens, ctx_lens,           \
                                       own_starts, block_tables, prefix_k, prefix_v, segments, \
                                       out);                                                    \
    }
#define ZO_ATTN_PREFILL_ALL(suffix, T)                                                          \
    ZO_ATTN_PREFILL(zo_attn_prefill_hd64_##suffix, T, 64, true)                                 \
    ZO_ATTN_PREFILL(zo_attn_prefill_hd128_##suffix, T, 128, true)                               \
    ZO_ATTN_PREFILL(zo_attn_prefill_any_##suffix, T, 256, false)
ZO_INSTANTIATE(ZO_ATTN_PREFILL_ALL)
