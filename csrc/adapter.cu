// The K-augmented GEMM of the lowrank and lora families (layout and conventions in
// params/adapter.h): the shrink writes a site's extra columns of the GEMM input x', the pack
// its extra columns of the weight W'.
//
// Shrink: a block of ZO_SHRINK_THREADS owns rows_per_block consecutive rows (at most
// ZO_SHRINK_ROWS) and ZO_SHRINK_RANKS rank components (grid.y covers the rank). Its
// ZO_SHRINK_SPLIT half-warps split the 64-column chunks round-robin; lane l of half-warp w
// streams the columns {64 h + 4 l + c} of the chunks h = w, w + SPLIT, ... of every row of the
// block straight from global memory, and loads each factor element (or generates each Z_A
// element) once for all of them. Per row and rank k the exact order (which the CPU twin
// `perturb::augment::shrink_dot` reproduces, whatever the rows per block) is:
//   part[w][l] = fma chain over those h in increasing order, c = 0..3, of
//                x[t][64 h + 4 l + c] * f[k][64 h + 4 l + c] for the columns below K, from 0;
//   s[w] = the xor butterfly of part[w][0..16] with strides 8, 4, 2, 1;
//   sum = (((s[0] + s[1]) + s[2]) + ...) + s[SPLIT - 1].
// Rows are few (a GEMM input of ~10^3 rows) and K long, so splitting K is what fills the GPU;
// sharing factor loads across a few rows trades blocks for fewer factor reads. lora's Z_A is
// generated in place, once per block and direction seed: h = fma(sc, sum(x Z_A,d), sum(x A))
// on rows of direction d.
#include <string.h>

#include "kernel.cuh"

static_assert(ZO_SHRINK_SPLIT * 16 == ZO_SHRINK_THREADS, "a shrink block is SPLIT half-warps");

struct alignas(16) ZoAdapterVec16 {
    uint32_t w[4];
};

struct alignas(16) ZoAdapterF4 {
    float v[4];
};

// 2^e as a float, exactly, for e in [-126, 127].
static __device__ __forceinline__ float zo_adapter_exp2(int e) {
    return __uint_as_float((uint32_t)(e + 127) << 23);
}

static __device__ __forceinline__ float zo_adapter_draw(ZoRngStream s, uint32_t dist,
                                                        uint64_t index) {
    return dist == ZO_DIST_GAUSSIAN ? zo_gaussian(s, index) : zo_rademacher(s, index);
}

// Four elements of x's row at column col (zero at and past k).
template <typename T>
static __device__ __forceinline__ void zo_shrink_load_x(const T* __restrict__ row, uint32_t col,
                                                        uint32_t k, bool vec, float out[4]) {
    if (vec && col + 4 <= k) {
        if constexpr (sizeof(T) == 4) {
            const ZoAdapterF4 v = *reinterpret_cast<const ZoAdapterF4*>(row + col);
#pragma unroll
            for (int c = 0; c < 4; c++) out[c] = v.v[c];
        } else {
            const uint2 v = *reinterpret_cast<const uint2*>(row + col);
            T ev[4];
            memcpy(ev, &v, sizeof(v));
#pragma unroll
            for (int c = 0; c < 4; c++) out[c] = zo_f32(ev[c]);
        }
    } else {
#pragma unroll
        for (int c = 0; c < 4; c++) out[c] = col + c < k ? zo_f32(row[col + c]) : 0.0f;
    }
}

// Four factor elements of rank row `kr` at column col (zero past k); lora's Z_A when zs is
// given (element (kr, col) has index kr K + col in the stream).
static __device__ __forceinline__ void zo_shrink_load_f(const float* __restrict__ factor,
                                                        uint32_t kr, uint32_t col, uint32_t k,
                                                        bool vec, const ZoRngStream* zs,
                                                        uint32_t dist, float out[4]) {
    const uint64_t base = (uint64_t)kr * k + col;
    if (zs != nullptr) {
        if ((base & 3u) == 0 && col + 4 <= k) {
            if (dist == ZO_DIST_GAUSSIAN) {
                zo_gaussian_block(*zs, base >> 2, out);
            } else {
                const ZoU32x4 raw = zo_raw_block(*zs, base >> 2);
#pragma unroll
                for (int c = 0; c < 4; c++) out[c] = zo_rademacher_bits(raw.x[c]);
            }
        } else {
#pragma unroll
            for (int c = 0; c < 4; c++)
                out[c] = col + c < k ? zo_adapter_draw(*zs, dist, base + c) : 0.0f;
        }
        return;
    }
    if (vec && col + 4 <= k) {
        const ZoAdapterF4 v = *reinterpret_cast<const ZoAdapterF4*>(factor + base);
#pragma unroll
        for (int c = 0; c < 4; c++) out[c] = v.v[c];
    } else {
#pragma unroll
        for (int c = 0; c < 4; c++) out[c] = col + c < k ? factor[base + c] : 0.0f;
    }
}

// Lane `lane` of half-warp `w`: its part of sum_j x_r[j] f[kr][j] for the block's rows and
// ranks, summed over the half-warp by the butterfly (every lane ends with the half-warp's
// s[w] of each row). Rows at and past `nr` read nothing and sum zeros.
template <typename T>
static __device__ __forceinline__ void zo_shrink_dots(const T* __restrict__ x, uint32_t t0,
                                                      int nr, const float* __restrict__ factor,
                                                      const ZoRngStream* zs, ZoShrinkParams p,
                                                      uint32_t k0, int nk, int w, int lane,
                                                      bool xvec, bool fvec,
                                                      float acc[ZO_SHRINK_ROWS][ZO_SHRINK_RANKS]) {
#pragma unroll
    for (int r = 0; r < (int)ZO_SHRINK_ROWS; r++)
#pragma unroll
        for (int kk = 0; kk < (int)ZO_SHRINK_RANKS; kk++) acc[r][kk] = 0.0f;
    const uint32_t chunks = (p.k + 63) / 64;
    for (uint32_t h = w; h < chunks; h += ZO_SHRINK_SPLIT) {
        const uint32_t col = 64 * h + 4 * lane;
        float xv[ZO_SHRINK_ROWS][4];
#pragma unroll
        for (int r = 0; r < (int)ZO_SHRINK_ROWS; r++) {
            if (r < nr) {
                zo_shrink_load_x(x + (uint64_t)(t0 + r) * p.ld, col, p.k, xvec, xv[r]);
            } else {
#pragma unroll
                for (int c = 0; c < 4; c++) xv[r][c] = 0.0f;
            }
        }
#pragma unroll
        for (int kk = 0; kk < (int)ZO_SHRINK_RANKS; kk++) {
            if (kk >= nk) break;
            float fv[4];
            zo_shrink_load_f(factor, k0 + kk, col, p.k, fvec, zs, p.dist, fv);
#pragma unroll
            for (int r = 0; r < (int)ZO_SHRINK_ROWS; r++) {
                if (r >= nr) break;
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    if (col + c < p.k) acc[r][kk] = __fmaf_rn(xv[r][c], fv[c], acc[r][kk]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < (int)ZO_SHRINK_ROWS; r++)
#pragma unroll
        for (int kk = 0; kk < (int)ZO_SHRINK_RANKS; kk++)
#pragma unroll
            for (int m = 8; m > 0; m >>= 1)
                acc[r][kk] = __fadd_rn(acc[r][kk], __shfl_xor_sync(ZO_FULL_MASK, acc[r][kk], m));
}

// The segment of row t (binary search over the sorted segments): its index, or -1.
static __device__ __forceinline__ int zo_shrink_segment(const ZoSegment* __restrict__ segs,
                                                        uint32_t n_segs, uint32_t t) {
    uint32_t lo = 0, hi = n_segs;
    while (lo < hi) {
        const uint32_t mid = (lo + hi) / 2;
        if (segs[mid].row_end <= t) lo = mid + 1;
        else hi = mid;
    }
    return lo < n_segs && segs[lo].row_start <= t ? (int)lo : -1;
}

// v[r] for a row index known only at run time, without indexing the array (which would move
// it from registers to local memory).
template <typename V>
static __device__ __forceinline__ V zo_shrink_pick(const V (&v)[ZO_SHRINK_ROWS], int r) {
    V out = v[0];
#pragma unroll
    for (int i = 1; i < (int)ZO_SHRINK_ROWS; i++)
        if (i == r) out = v[i];
    return out;
}

template <typename T>
__device__ __forceinline__ void zo_adapter_shrink_impl(ZoShrinkParams p, T* __restrict__ x,
                                                       const float* __restrict__ factor,
                                                       const ZoSegment* __restrict__ segs,
                                                       const uint32_t* __restrict__ seg_dir) {
    __shared__ float part[2][ZO_SHRINK_SPLIT][ZO_SHRINK_ROWS][ZO_SHRINK_RANKS];
    __shared__ float res[ZO_SHRINK_ROWS][ZO_SHRINK_RANKS];
    const int tid = threadIdx.x, lane = tid % 16, w = tid / 16;
    const uint32_t rpb = min(max(p.rows_per_block, 1u), ZO_SHRINK_ROWS);
    const uint32_t t0 = blockIdx.x * rpb;
    const uint32_t k0 = blockIdx.y * ZO_SHRINK_RANKS;
    const int nk = min((int)ZO_SHRINK_RANKS, (int)(p.rank - k0));
    const bool lora = p.family == ZO_ADAPTER_LORA;
    if (t0 >= p.rows) return; // the whole block
    const int nr = (int)min(rpb, p.rows - t0);

    // Each row's direction, segment scale and seed; everything below is uniform over the
    // block.
    int d[ZO_SHRINK_ROWS];
    float sc[ZO_SHRINK_ROWS];
    uint64_t seed[ZO_SHRINK_ROWS];
    bool need0 = false;
#pragma unroll
    for (int r = 0; r < (int)ZO_SHRINK_ROWS; r++) {
        const int sg = r < nr ? zo_shrink_segment(segs, p.n_segs, t0 + r) : -1;
        d[r] = sg >= 0 ? (int)seg_dir[sg] : -1;
        sc[r] = sg >= 0 ? segs[sg].scale : 0.0f;
        seed[r] = sg >= 0 ? ((uint64_t)segs[sg].seed_hi << 32 | segs[sg].seed_lo) : 0;
        need0 |= r < nr && (p.live || d[r] >= 0);
    }
    const bool xvec = p.vec != 0;
    const bool fvec = (reinterpret_cast<uintptr_t>(factor) & 15u) == 0 && (p.k & 3u) == 0;
    if (need0) {
        float acc[ZO_SHRINK_ROWS][ZO_SHRINK_RANKS];
        zo_shrink_dots<T>(x, t0, nr, factor, nullptr, p, k0, nk, w, lane, xvec, fvec, acc);
        if (lane == 0) {
#pragma unroll
            for (int r = 0; r < (int)ZO_SHRINK_ROWS; r++)
#pragma unroll
                for (int kk = 0; kk < (int)ZO_SHRINK_RANKS; kk++) part[0][w][r][kk] = acc[r][kk];
        }
        if (lora) {
            // One Z_A per direction seed among the rows (the + and - segments share one).
#pragma unroll
            for (int lead = 0; lead < (int)ZO_SHRINK_ROWS; lead++) {
                bool first = lead < nr && d[lead] >= 0;
#pragma unroll
                for (int r = 0; r < lead; r++) first &= !(d[r] >= 0 && seed[r] == seed[lead]);
                if (!first) continue;
                ZoRngStream zs;
                zs.seed_lo = (uint32_t)seed[lead];
                zs.seed_hi = (uint32_t)(seed[lead] >> 32);
                zs.tensor = p.tensor;
                zs.role = 3u; // LORA_A
                zo_shrink_dots<T>(x, t0, nr, factor, &zs, p, k0, nk, w, lane, xvec, fvec, acc);
                if (lane == 0) {
#pragma unroll
                    for (int r = lead; r < (int)ZO_SHRINK_ROWS; r++) {
                        if (r >= nr || d[r] < 0 || seed[r] != seed[lead]) continue;
#pragma unroll
                        for (int kk = 0; kk < (int)ZO_SHRINK_RANKS; kk++)
                            part[1][w][r][kk] = acc[r][kk];
                    }
                }
            }
        }
        __syncthreads();
        for (int e = tid; e < nr * nk; e += (int)ZO_SHRINK_THREADS) {
            const int r = e / nk, kk = e % nk;
            float s = part[0][0][r][kk];
            for (int i = 1; i < (int)ZO_SHRINK_SPLIT; i++) s = __fadd_rn(s, part[0][i][r][kk]);
            if (lora && zo_shrink_pick(d, r) >= 0) {
                float z = part[1][0][r][kk];
                for (int i = 1; i < (int)ZO_SHRINK_SPLIT; i++) z = __fadd_rn(z, part[1][i][r][kk]);
                s = __fmaf_rn(zo_shrink_pick(sc, r), z, s);
            }
            res[r][kk] = s;
        }
        __syncthreads();
    }

    // Write the site's block of each row: (dirs + 1) sub-blocks of this block's nk ranks.
    const float down = zo_adapter_exp2(-p.scale_exp);
    const uint32_t per_row = (p.dirs + 1) * nk;
    for (uint32_t e = tid; e < nr * per_row; e += ZO_SHRINK_THREADS) {
        const uint32_t r = e / per_row, sb = (e % per_row) / nk, kk = e % nk;
        const int dr = zo_shrink_pick(d, (int)r);
        const float v = p.live || dr >= 0 ? __fmul_rn(p.scale, res[r][kk]) : 0.0f;
        float out;
        if (sb == 0) out = p.live ? __fmul_rn(v, down) : 0.0f;
        else out = dr == (int)(sb - 1) ? __fmul_rn(v, zo_shrink_pick(sc, (int)r)) : 0.0f;
        x[(uint64_t)(t0 + r) * p.ld + p.col0 + sb * p.rank + k0 + kk] = zo_from_f32<T>(out);
    }
    if (blockIdx.y == 0 && p.pad_end > p.pad_begin) {
        const uint32_t width = p.pad_end - p.pad_begin;
        for (uint32_t e = tid; e < nr * width; e += ZO_SHRINK_THREADS) {
            const uint32_t r = e / width;
            x[(uint64_t)(t0 + r) * p.ld + p.pad_begin + e % width] = zo_from_f32<T>(0.0f);
        }
    }
}

#define ZO_ADAPTER_SHRINK(suffix, T)                                                           \
    extern "C" __global__ void zo_adapter_shrink_##suffix(                                     \
        ZoShrinkParams p, T* __restrict__ x, const float* __restrict__ factor,                 \
        const ZoSegment* __restrict__ segs, const uint32_t* __restrict__ seg_dir) {            \
        zo_adapter_shrink_impl<T>(p, x, factor, segs, seg_dir);                                \
    }
ZO_INSTANTIATE(ZO_ADAPTER_SHRINK)

// One thread per element of the site's block, column fastest so a row's writes coalesce; the
// random factors are generated per element (the block is out x (dirs + 1) rank, tiny next to
// the GEMM).
template <typename T>
__device__ __forceinline__ void zo_adapter_pack_impl(ZoPackParams p, T* __restrict__ w,
                                                     const float* __restrict__ state,
                                                     const uint64_t* __restrict__ seeds) {
    const uint32_t width = (p.dirs + 1) * p.rank;
    const uint64_t n = (uint64_t)p.out * width;
    const float up = zo_adapter_exp2(p.scale_exp);
    const bool lora = p.family == ZO_ADAPTER_LORA;
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t e = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += stride) {
        const uint32_t i = (uint32_t)(e / width), c = (uint32_t)(e % width);
        const uint32_t sb = c / p.rank, k = c % p.rank;
        const uint64_t idx = lora ? (uint64_t)i * p.rank + k : (uint64_t)k * p.out + i;
        float v;
        if (sb == 0) {
            v = __fmul_rn(state[idx], up);
        } else {
            const uint64_t seed = seeds[sb - 1];
            ZoRngStream s;
            s.seed_lo = (uint32_t)seed;
            s.seed_hi = (uint32_t)(seed >> 32);
            s.tensor = p.tensor;
            s.role = lora ? 4u /* LORA_B */ : 1u /* LOWRANK_U */;
            v = zo_adapter_draw(s, p.dist, idx);
        }
        w[(uint64_t)(p.row0 + i) * p.ld + p.col0 + c] = zo_from_f32<T>(v);
    }
}

#define ZO_ADAPTER_PACK(suffix, T)                                                             \
    extern "C" __global__ void zo_adapter_pack_##suffix(ZoPackParams p, T* __restrict__ w,     \
                                                        const float* __restrict__ state,       \
                                                        const uint64_t* __restrict__ seeds) {  \
        zo_adapter_pack_impl<T>(p, w, state, seeds);                                           \
    }
ZO_INSTANTIATE(ZO_ADAPTER_PACK)
