// Decode family: split-K paged attention of one query row per sequence (flash-decoding), the
// combine of its partial results, and the token pick (greedy or Gumbel-max). CPU twins:
// attention::causal_attention_with_prefix in src/backend/cpu (the query as the last row of its
// sequence) and decode::pick in src/backend.
#include "kernel.cuh"

// Partial sums per score, as the prefill kernel (a multiple of 4 divides head_dim 64 and 128).
#define ZO_DECODE_DOT_PARTS 4

__device__ __forceinline__ float zo_decode_neg_inf() { return __int_as_float((int)0xff800000u); }

// Keys of sequence s (prefix positions + cached tokens, the latter clamped to what its block
// table can address) and the splits holding them (at least one, so a sequence with no keys
// still gets its output written, as zeros).
struct ZoDecodeSeq {
    uint32_t keys;
    uint32_t used;
};

__device__ __forceinline__ ZoDecodeSeq zo_decode_seq(const ZoDecodeParams& p,
                                                     const uint32_t* __restrict__ ctx_lens,
                                                     uint32_t s) {
    const uint32_t keys = p.prefix_len + min(ctx_lens[s], p.max_pages * ZO_ATTN_PAGE);
    const uint32_t want = (keys + ZO_DECODE_SPLIT_KEYS - 1) / ZO_DECODE_SPLIT_KEYS;
    return ZoDecodeSeq{keys, max(1u, min(want, p.splits))};
}

// Element offset of kv head kvh of cached position pos in the caches, or ~0 where the block
// table names no page of the caches (such a key reads as zeros, as in the prefill kernel).
__device__ __forceinline__ uint64_t zo_decode_slot(const ZoDecodeParams& p,
                                                   const uint32_t* __restrict__ table,
                                                   uint32_t pos, uint32_t kvh, int hd) {
    const uint32_t page = table[pos / ZO_ATTN_PAGE];
    if (page >= p.num_pages) return ~0ull;
    const uint64_t slot = (uint64_t)page * ZO_ATTN_PAGE + pos % ZO_ATTN_PAGE;
    return slot * ((uint64_t)p.kv_heads * hd) + (uint64_t)kvh * hd;
}

// Scores of one key (element d read by key(d)) against the block's nh query rows.
template <int HDC, bool FIXED, class Key>
__device__ __forceinline__ void zo_decode_dot(int hd, int nh, const float* qs, Key key,
                                              float (&sc)[ZO_DECODE_HEADS]) {
    constexpr int H = ZO_DECODE_HEADS;
    constexpr int P = ZO_DECODE_DOT_PARTS;
    float part[P][H];
#pragma unroll
    for (int c = 0; c < P; c++)
#pragma unroll
        for (int r = 0; r < H; r++) part[c][r] = 0.0f;
    for (int d0 = 0; d0 < hd; d0 += P) {
#pragma unroll
        for (int c = 0; c < P; c++) {
            const int d = d0 + c;
            if (!FIXED && d >= hd) break;
            const float kd = key(d);
#pragma unroll
            for (int r = 0; r < H; r++)
                if (r < nh) part[c][r] = __fmaf_rn(qs[r * hd + d], kd, part[c][r]);
        }
    }
#pragma unroll
    for (int r = 0; r < H; r++) {
        float v = part[0][r];
#pragma unroll
        for (int c = 1; c < P; c++) v = __fadd_rn(v, part[c][r]);
        sc[r] = v;
    }
}

// ---------------------------------------------------------------------------------------------
// Split-K decode attention.
//
// Grid: x = split, y = kv head * head_chunks + chunk, z = sequence. Block: ZO_DECODE_WARPS
// warps over the split's keys, warp w taking the 32-key tiles w, w + WARPS, ...; the block's
// nh query heads (consecutive heads of one kv head) share every key and value it reads.
// Per tile, lane j scores key j against every head (the key row read straight from the cache:
// the 32 rows of a tile stay in L1 while the lanes walk them), the warp updates each head's
// running max / sum (fp32 online softmax), then accumulates p_j * v_j with lane l owning output
// dims l, l + 32, ... (coalesced value reads).
//
// The warps' (max, sum, acc) are then combined in warp order through shared memory; a sequence
// whose keys fit one split gets its output here, the others leave the split's partial in the
// workspace for zo_attn_decode_combine. Fixed orders throughout: the result does not depend on
// scheduling, and with the fixed split size not on the other sequences of the batch.
//
// Dynamic shared memory (decode_launch_config): Q [HEADS][hd], then per warp and head the max,
// the sum and acc [hd].
//
// Workspace (fp32): acc [n_seqs][heads][splits][hd], then (max, sum) [n_seqs][heads][splits].
template <typename T, int HDC, bool FIXED>
__device__ __forceinline__ void zo_attn_decode(
    const ZoDecodeParams& p, const float* __restrict__ q, const float* __restrict__ k_cache,
    const float* __restrict__ v_cache, const uint32_t* __restrict__ ctx_lens,
    const uint32_t* __restrict__ block_tables, const float* __restrict__ prefix_k,
    const float* __restrict__ prefix_v, const ZoSegment* __restrict__ segments,
    float* __restrict__ ws, T* __restrict__ out) {
    constexpr int H = ZO_DECODE_HEADS;
    constexpr int W = ZO_DECODE_WARPS;
    constexpr int NI = (HDC + 31) / 32;
    // Every lane owns all NI of its dims.
    constexpr bool FULL = FIXED && HDC % 32 == 0;
    const int hd = FIXED ? HDC : (int)p.head_dim;
    const float neg_inf = zo_decode_neg_inf();

    const uint32_t split = blockIdx.x;
    const uint32_t s = blockIdx.z;
    const uint32_t kvh = blockIdx.y / p.head_chunks;
    const uint32_t chunk = blockIdx.y - kvh * p.head_chunks;
    const uint32_t group = p.heads / p.kv_heads;
    const uint32_t h0 = kvh * group + chunk * p.heads_per_block;
    const int nh = (int)min(p.heads_per_block, group - chunk * p.heads_per_block);
    const ZoDecodeSeq sq = zo_decode_seq(p, ctx_lens, s);
    if (split >= sq.used) return; // the whole block leaves together
    const uint32_t j_begin = split * ZO_DECODE_SPLIT_KEYS;
    const uint32_t j_end = split + 1 == sq.used ? sq.keys : j_begin + ZO_DECODE_SPLIT_KEYS;
    const uint32_t np = p.prefix_len;
    const uint64_t kv_width = (uint64_t)p.kv_heads * hd;

    // The sequence's perturbation (only read by splits that hold prefix keys).
    const ZoPrefixPerturbation z =
        zo_prefix_perturbation(segments, j_begin < np ? p.n_segments : 0, s,
                               p.prefix_key_tensor, p.prefix_value_tensor, p.prefix_role);

    ZO_DYNAMIC_SMEM(float, smem);
    float* qs = smem;              // [H][hd]
    float* wmax = qs + H * hd;     // [W][H]
    float* wsum = wmax + W * H;    // [W][H]
    float* wacc = wsum + W * H;    // [W][H][hd]

    const int tid = threadIdx.x;
    const int warp = tid / 32;
    const int lane = tid % 32;

    // The block's heads are consecutive, so their queries are one contiguous run of the row.
    const float* qrow = q + (uint64_t)s * p.q_ld + p.q_col + (uint64_t)h0 * hd;
    for (int e = tid; e < nh * hd; e += blockDim.x) qs[e] = qrow[e];
    __syncthreads();

    float row_max[H], row_sum[H], acc[H][NI];
#pragma unroll
    for (int r = 0; r < H; r++) {
        row_max[r] = neg_inf;
        row_sum[r] = 0.0f;
#pragma unroll
        for (int i = 0; i < NI; i++) acc[r][i] = 0.0f;
    }

    const uint32_t* table = block_tables + (uint64_t)s * p.max_pages;
    for (uint32_t t0 = j_begin + (uint32_t)warp * 32; t0 < j_end; t0 += W * 32) {
        const uint32_t j = t0 + (uint32_t)lane;
        const bool valid = j < j_end;
        float sc[H];
#pragma unroll
        for (int r = 0; r < H; r++) sc[r] = 0.0f;
        if (valid && j >= np) {
            const uint64_t at = zo_decode_slot(p, table, j - np, kvh, hd);
            if (at != ~0ull) {
                const float* kr = k_cache + at;
                zo_decode_dot<HDC, FIXED>(hd, nh, qs, [&](int d) { return kr[d]; }, sc);
            }
        } else if (valid) {
            const uint64_t at = (uint64_t)j * kv_width + (uint64_t)kvh * hd;
            zo_decode_dot<HDC, FIXED>(
                hd, nh, qs,
                [&](int d) { return zo_prefix_element(prefix_k, at + d, z.on, z.k, z.scale, p.prefix_dist); },
                sc);
        }

        // Online softmax update of every head (nh is uniform over the warp).
        float pr[H];
#pragma unroll
        for (int r = 0; r < H; r++) {
            pr[r] = 0.0f;
            if (r >= nh) continue;
            const float x = valid ? __fmul_rn(sc[r], p.scale) : neg_inf;
            const float m_new = fmaxf(row_max[r], zo_warp_max(x));
            const float alpha = m_new == neg_inf ? 1.0f : expf(__fsub_rn(row_max[r], m_new));
            const float e = x == neg_inf ? 0.0f : expf(__fsub_rn(x, m_new));
            row_sum[r] = __fmaf_rn(row_sum[r], alpha, zo_warp_sum(e));
            row_max[r] = m_new;
#pragma unroll
            for (int i = 0; i < NI; i++) acc[r][i] = __fmul_rn(acc[r][i], alpha);
            pr[r] = e;
        }

        // acc += p_j v_j over the tile's keys.
        const int n = (int)min(32u, j_end - t0);
        for (int kk = 0; kk < n; kk++) {
            const uint32_t jj = t0 + (uint32_t)kk;
            float v[NI];
            if (jj >= np) {
                const uint64_t at = zo_decode_slot(p, table, jj - np, kvh, hd);
#pragma unroll
                for (int i = 0; i < NI; i++) {
                    const int d = lane + 32 * i;
                    v[i] = at != ~0ull && (FULL || d < hd) ? v_cache[at + d] : 0.0f;
                }
            } else {
                const uint64_t at = (uint64_t)jj * kv_width + (uint64_t)kvh * hd;
#pragma unroll
                for (int i = 0; i < NI; i++) {
                    const int d = lane + 32 * i;
                    v[i] = FULL || d < hd
                               ? zo_prefix_element(prefix_v, at + d, z.on, z.v, z.scale, p.prefix_dist)
                               : 0.0f;
                }
            }
#pragma unroll
            for (int r = 0; r < H; r++) {
                if (r >= nh) continue;
                const float w = __shfl_sync(ZO_FULL_MASK, pr[r], kk);
#pragma unroll
                for (int i = 0; i < NI; i++) acc[r][i] = __fmaf_rn(w, v[i], acc[r][i]);
            }
        }
    }

    // Each warp's state (a warp that saw no key leaves max -inf, sum and acc 0).
#pragma unroll
    for (int r = 0; r < H; r++) {
        if (r >= nh) continue;
        if (lane == 0) {
            wmax[warp * H + r] = row_max[r];
            wsum[warp * H + r] = row_sum[r];
        }
#pragma unroll
        for (int i = 0; i < NI; i++) {
            const int d = lane + 32 * i;
            if (FULL || d < hd) wacc[(warp * H + r) * hd + d] = acc[r][i];
        }
    }
    __syncthreads();

    const uint64_t parts = (uint64_t)p.n_seqs * p.heads * p.splits;
    for (int e = tid; e < nh * hd; e += blockDim.x) {
        const int r = e / hd;
        const int d = e - r * hd;
        float m = neg_inf;
#pragma unroll
        for (int w = 0; w < W; w++) m = fmaxf(m, wmax[w * H + r]);
        float sum = 0.0f, a = 0.0f;
#pragma unroll
        for (int w = 0; w < W; w++) {
            const float mw = wmax[w * H + r];
            if (mw == neg_inf) continue;
            const float f = expf(__fsub_rn(mw, m));
            sum = __fmaf_rn(wsum[w * H + r], f, sum);
            a = __fmaf_rn(wacc[(w * H + r) * hd + d], f, a);
        }
        const uint32_t h = h0 + (uint32_t)r;
        if (sq.used == 1) {
            out[(uint64_t)s * p.out_ld + (uint64_t)h * hd + d] =
                zo_from_f32<T>(m == neg_inf ? 0.0f : __fdiv_rn(a, sum));
        } else {
            const uint64_t part = ((uint64_t)s * p.heads + h) * p.splits + split;
            ws[part * hd + d] = a;
            if (d == 0) {
                ws[parts * hd + 2 * part] = m;
                ws[parts * hd + 2 * part + 1] = sum;
            }
        }
    }
}

// One block per (head, sequence): the sequence's splits combined in split order. Sequences
// whose keys fit one split were written by zo_attn_decode itself.
template <typename T>
__device__ __forceinline__ void zo_attn_decode_combine(const ZoDecodeParams& p,
                                                       const uint32_t* __restrict__ ctx_lens,
                                                       const float* __restrict__ ws,
                                                       T* __restrict__ out) {
    const uint32_t h = blockIdx.x;
    const uint32_t s = blockIdx.y;
    const ZoDecodeSeq sq = zo_decode_seq(p, ctx_lens, s);
    if (sq.used <= 1) return;
    const int hd = (int)p.head_dim;
    const float neg_inf = zo_decode_neg_inf();
    const uint64_t parts = (uint64_t)p.n_seqs * p.heads * p.splits;
    const uint64_t base = ((uint64_t)s * p.heads + h) * p.splits;
    const float* ml = ws + parts * hd + 2 * base;
    float m = neg_inf;
    for (uint32_t i = 0; i < sq.used; i++) m = fmaxf(m, ml[2 * i]);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float sum = 0.0f, a = 0.0f;
        for (uint32_t i = 0; i < sq.used; i++) {
            const float mi = ml[2 * i];
            if (mi == neg_inf) continue;
            const float f = expf(__fsub_rn(mi, m));
            sum = __fmaf_rn(ml[2 * i + 1], f, sum);
            a = __fmaf_rn(ws[(base + i) * hd + d], f, a);
        }
        out[(uint64_t)s * p.out_ld + (uint64_t)h * hd + d] =
            zo_from_f32<T>(m == neg_inf ? 0.0f : __fdiv_rn(a, sum));
    }
}

// Instances: head_dim 64 and 128 with the head loop fixed at compile time, and one for any
// head_dim <= 256; one combine per output type.
#define ZO_ATTN_DECODE(name, T, HDC, FIXED)                                                     \
    extern "C" __global__ void __launch_bounds__(ZO_DECODE_WARPS * 32) name(                     \
        ZoDecodeParams p, const float* __restrict__ q, const float* __restrict__ k_cache,      \
        const float* __restrict__ v_cache, const uint32_t* __restrict__ ctx_lens,              \
        const uint32_t* __restrict__ block_tables, const float* __restrict__ prefix_k,         \
        const float* __restrict__ prefix_v, const ZoSegment* __restrict__ segments,            \
        float* __restrict__ ws, T* __restrict__ out) {                                          \
        zo_attn_decode<T, HDC, FIXED>(p, q, k_cache, v_cache, ctx_lens, block_tables,          \
                                      prefix_k, prefix_v, segments, ws, out);                  \
    }
#define ZO_ATTN_DECODE_ALL(suffix, T)                                                           \
    ZO_ATTN_DECODE(zo_attn_decode_hd64_##suffix, T, 64, true)                                   \
    ZO_ATTN_DECODE(zo_attn_decode_hd128_##suffix, T, 128, true)                                 \
    ZO_ATTN_DECODE(zo_attn_decode_any_##suffix, T, 256, false)                                  \
    extern "C" __global__ void __launch_bounds__(ZO_DECODE_COMBINE_THREADS)                      \
        zo_attn_decode_combine_##suffix(ZoDecodeParams p, const uint32_t* __restrict__ ctx_lens, \
                                        const float* __restrict__ ws, T* __restrict__ out) {    \
        zo_attn_decode_combine<T>(p, ctx_lens, ws, out);                                        \
    }
ZO_INSTANTIATE(ZO_ATTN_DECODE_ALL)

// ---------------------------------------------------------------------------------------------
// Token pick. Mirrors decode::gumbel and decode::pick operation for operation (correctly
// rounded intrinsics, the portable log), so the device picks the host's token bit for bit.

// -ln(-ln u) of a raw lane, u in (0, 1]; the smallest normal keeps the second log finite.
__device__ __forceinline__ float zo_gumbel(uint32_t raw) {
    const float e = fmaxf(-zo_log_unit(zo_uniform_open0(raw)), __uint_as_float(0x00800000u));
    return -zo_log_unit(e);
}

// The total order of the pick: larger score first, then the lower id. NaN never gets here.
__device__ __forceinline__ bool zo_pick_better(float x, uint32_t id, float bx, uint32_t bid) {
    return x > bx || (x == bx && id < bid);
}

// One block per row (grid-stride). Gumbel rows walk the row's noise in Philox blocks of four
// elements, each thread drawing whole blocks. A NaN score counts as -inf: then the lowest id
// among the maximal scores is exactly the first strict maximum the host's loop keeps, a row
// with no score above -inf included (token 0).
extern "C" __global__ void __launch_bounds__(ZO_PICK_THREADS)
    zo_pick(ZoPickParams p, const float* __restrict__ logits, const uint32_t* __restrict__ seq,
            const uint32_t* __restrict__ pos, uint32_t* __restrict__ out) {
    __shared__ float best_x[ZO_PICK_THREADS / 32];
    __shared__ uint32_t best_id[ZO_PICK_THREADS / 32];
    const float neg_inf = zo_decode_neg_inf();
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    for (uint32_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
        const float* l = logits + (uint64_t)row * p.ld;
        float bx = neg_inf;
        uint32_t bid = 0xffffffffu;
        auto consider = [&](float x, uint32_t t) {
            if (x != x) x = neg_inf;
            if (zo_pick_better(x, t, bx, bid)) {
                bx = x;
                bid = t;
            }
        };
        if (p.mode == ZO_PICK_GUMBEL) {
            ZoRngStream st = p.stream;
            st.role = seq[row];
            const uint64_t first = (uint64_t)pos[row] * p.vocab;
            const uint64_t end = first + p.vocab;
            for (uint64_t b = first / 4 + threadIdx.x; 4 * b < end; b += blockDim.x) {
                const ZoU32x4 raw = zo_raw_block(st, b);
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const uint64_t idx = 4 * b + k;
                    if (idx < first || idx >= end) continue;
                    const uint32_t t = (uint32_t)(idx - first);
                    consider(__fmaf_rn(l[t], p.inv_temperature, zo_gumbel(raw.x[k])), t);
                }
            }
        } else {
            for (uint32_t t = threadIdx.x; t < p.vocab; t += blockDim.x) consider(l[t], t);
        }
        // The order is total, so the butterfly's result does not depend on its pairing.
#pragma unroll
        for (int m = 16; m > 0; m >>= 1) {
            const float ox = __shfl_xor_sync(ZO_FULL_MASK, bx, m);
            const uint32_t oid = __shfl_xor_sync(ZO_FULL_MASK, bid, m);
            if (zo_pick_better(ox, oid, bx, bid)) {
                bx = ox;
                bid = oid;
            }
        }
        if (lane == 0) {
            best_x[warp] = bx;
            best_id[warp] = bid;
        }
        __syncthreads();
        if (warp == 0) {
            const bool have = lane < (int)(blockDim.x / 32);
            bx = have ? best_x[lane] : neg_inf;
            bid = have ? best_id[lane] : 0xffffffffu;
#pragma unroll
            for (int m = 16; m > 0; m >>= 1) {
                const float ox = __shfl_xor_sync(ZO_FULL_MASK, bx, m);
                const uint32_t oid = __shfl_xor_sync(ZO_FULL_MASK, bid, m);
                if (zo_pick_better(ox, oid, bx, bid)) {
                    bx = ox;
                    bid = oid;
                }
            }
            if (lane == 0) out[row] = bid == 0xffffffffu ? 0u : bid;
        }
        __syncthreads(); // the next row reuses best_x / best_id
    }
}
