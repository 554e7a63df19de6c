// The K-augmented GEMM of the lowrank and lora families (layout and conventions in
// params/adapter.h): the shrink writes a site's extra columns of the GEMM input x', the pack
// its extra columns of the weight W'.
//
// Shrink: a block owns ZO_SHRINK_ROWS rows and ZO_SHRINK_RANKS rank components (grid.y covers
// the rank), and streams x through shared memory once per pass in tiles of ZO_SHRINK_KC
// columns (16-byte loads where aligned), together with the matching tile of the fp32 factor
// (V^T or A) or, for lora's perturbed rows, of Z_A generated in place. Thread (pair, lane)
// accumulates rows 2 pair and 2 pair + 1 for all the block's ranks over the columns
// {64 h + 4 lane + c}; the 16 lanes of a half-warp are then summed by an xor butterfly. The
// exact order (which the CPU twin `perturb::augment::shrink` reproduces) per row t and rank k:
//   part[lane] = fma chain over tiles, h = 0, 1, c = 0..3 of x[t][kc + 64 h + 4 lane + c] *
//                f[k][kc + 64 h + 4 lane + c], from 0 (zero beyond K);
//   sum = ((((p0 + p8) + (p4 + p12)) + ...) the butterfly with strides 8, 4, 2, 1.
// lora: h = fma(sc, sum(x Z_A,d), sum(x A)) on rows of direction d.
#include <string.h>

#include "kernel.cuh"

#define ZO_SHRINK_ROWS 16
#define ZO_SHRINK_RANKS 16
#define ZO_SHRINK_KC 128
#define ZO_SHRINK_THREADS 128
// Row stride of the shared tiles: KC + 4 keeps float4 alignment and puts the two rows a warp
// reads in one step on different banks.
#define ZO_SHRINK_LDS (ZO_SHRINK_KC + 4)
#define ZO_PACK_THREADS 256

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

template <typename T>
__device__ __forceinline__ void zo_adapter_shrink_impl(ZoShrinkParams p, T* __restrict__ x,
                                                       const float* __restrict__ factor,
                                                       const ZoSegment* __restrict__ segs,
                                                       const uint32_t* __restrict__ seg_dir) {
    __shared__ __align__(16) float xs[ZO_SHRINK_ROWS][ZO_SHRINK_LDS];
    __shared__ __align__(16) float fs[ZO_SHRINK_RANKS][ZO_SHRINK_LDS];
    __shared__ float res[ZO_SHRINK_ROWS][ZO_SHRINK_RANKS];
    __shared__ int row_dir[ZO_SHRINK_ROWS];
    __shared__ float row_sc[ZO_SHRINK_ROWS];
    __shared__ int dir_list[ZO_SHRINK_ROWS];
    __shared__ ZoRngStream dir_stream[ZO_SHRINK_ROWS];
    __shared__ int n_passes;

    const int tid = threadIdx.x;
    const uint32_t row0 = blockIdx.x * ZO_SHRINK_ROWS;
    const uint32_t k0 = blockIdx.y * ZO_SHRINK_RANKS;
    const uint32_t nk = min(ZO_SHRINK_RANKS, (int)(p.rank - k0));
    const bool lora = p.family == ZO_ADAPTER_LORA;

    // Each row's segment (binary search over the sorted segments) and direction.
    if (tid < ZO_SHRINK_ROWS) {
        const uint32_t t = row0 + tid;
        int d = -1;
        float sc = 0.0f;
        if (t < p.rows) {
            uint32_t lo = 0, hi = p.n_segs;
            while (lo < hi) {
                const uint32_t mid = (lo + hi) / 2;
                if (segs[mid].row_end <= t) lo = mid + 1;
                else hi = mid;
            }
            if (lo < p.n_segs && segs[lo].row_start <= t) {
                d = (int)seg_dir[lo];
                sc = segs[lo].scale;
                dir_stream[tid].seed_lo = segs[lo].seed_lo;
                dir_stream[tid].seed_hi = segs[lo].seed_hi;
            }
        }
        row_dir[tid] = d;
        row_sc[tid] = sc;
    }
    __syncthreads();
    // Pass 0 multiplies by the factor; lora adds one pass per distinct direction of the block's
    // rows (x Z_A,d^T is shared by the + and - rows of d). No pass when nothing is written.
    if (tid == 0) {
        bool any = false;
        int nd = 0;
        for (int r = 0; r < ZO_SHRINK_ROWS; r++) {
            if (row0 + r >= p.rows) break;
            any = any || p.live || row_dir[r] >= 0;
            if (!lora || row_dir[r] < 0) continue;
            bool seen = false;
            for (int i = 0; i < nd; i++) seen = seen || dir_list[i] == row_dir[r];
            if (!seen) {
                dir_list[nd] = row_dir[r];
                ZoRngStream s = dir_stream[r];
                s.tensor = p.tensor;
                s.role = 3u; // LORA_A
                dir_stream[nd] = s;
                nd++;
            }
        }
        n_passes = any ? 1 + nd : 0;
    }
    __syncthreads();
    const int passes = n_passes;

    const int pair = tid / 16, lane = tid % 16;
    for (int pass = 0; pass < passes; pass++) {
        float acc[2][ZO_SHRINK_RANKS];
#pragma unroll
        for (int a = 0; a < 2; a++)
#pragma unroll
            for (int kk = 0; kk < ZO_SHRINK_RANKS; kk++) acc[a][kk] = 0.0f;
        const ZoRngStream zs = dir_stream[pass > 0 ? pass - 1 : 0];

        for (uint32_t kc = 0; kc < p.k; kc += ZO_SHRINK_KC) {
            const uint32_t width = min(ZO_SHRINK_KC, (int)(p.k - kc));
            // x tile, widened to fp32; zero outside the rows and past K.
            constexpr int VEC = 16 / sizeof(T);
            constexpr int CHUNKS = ZO_SHRINK_KC / VEC;
            for (int e = tid; e < ZO_SHRINK_ROWS * CHUNKS; e += ZO_SHRINK_THREADS) {
                const int r = e / CHUNKS, c = (e % CHUNKS) * VEC;
                const uint32_t t = row0 + r;
                if (t >= p.rows) {
#pragma unroll
                    for (int i = 0; i < VEC; i++) xs[r][c + i] = 0.0f;
                    continue;
                }
                const T* src = x + (uint64_t)t * p.ld + kc + c;
                if (p.vec && c + VEC <= (int)width) {
                    const ZoAdapterVec16 v = *reinterpret_cast<const ZoAdapterVec16*>(src);
                    T ev[VEC];
                    memcpy(ev, &v, sizeof(v));
#pragma unroll
                    for (int i = 0; i < VEC; i++) xs[r][c + i] = zo_f32(ev[i]);
                } else {
#pragma unroll
                    for (int i = 0; i < VEC; i++) {
                        xs[r][c + i] = c + i < (int)width ? zo_f32(src[i]) : 0.0f;
                    }
                }
            }
            if (pass == 0) {
                for (int e = tid; e < ZO_SHRINK_RANKS * ZO_SHRINK_KC; e += ZO_SHRINK_THREADS) {
                    const int kk = e / ZO_SHRINK_KC, c = e % ZO_SHRINK_KC;
                    fs[kk][c] = (kk < (int)nk && c < (int)width)
                                    ? factor[(uint64_t)(k0 + kk) * p.k + kc + c]
                                    : 0.0f;
                }
            } else {
                // Z_A tile: element (k0 + kk, kc + c) has index (k0 + kk) K + kc + c. One job
                // per Philox block a tile row touches (at most KC / 4 + 1), all four lanes used.
                constexpr int JOBS = ZO_SHRINK_KC / 4 + 1;
                for (int e = tid; e < ZO_SHRINK_RANKS * JOBS; e += ZO_SHRINK_THREADS) {
                    const int kk = e / JOBS, jb = e % JOBS;
                    if (kk >= (int)nk) continue;
                    const uint64_t base = (uint64_t)(k0 + kk) * p.k + kc;
                    const uint64_t blk = (base >> 2) + jb;
                    if (4 * blk >= base + width) continue;
                    float v[4];
                    if (p.dist == ZO_DIST_GAUSSIAN) {
                        zo_gaussian_block(zs, blk, v);
                    } else {
                        const ZoU32x4 raw = zo_raw_block(zs, blk);
#pragma unroll
                        for (int l = 0; l < 4; l++) v[l] = zo_rademacher_bits(raw.x[l]);
                    }
#pragma unroll
                    for (int l = 0; l < 4; l++) {
                        const uint64_t idx = 4 * blk + l;
                        if (idx >= base && idx < base + width) fs[kk][idx - base] = v[l];
                    }
                }
                for (int e = tid; e < ZO_SHRINK_RANKS * ZO_SHRINK_KC; e += ZO_SHRINK_THREADS) {
                    const int kk = e / ZO_SHRINK_KC, c = e % ZO_SHRINK_KC;
                    if (kk >= (int)nk || c >= (int)width) fs[kk][c] = 0.0f;
                }
            }
            __syncthreads();
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int c = 64 * h + 4 * lane;
                ZoAdapterF4 xv[2];
#pragma unroll
                for (int a = 0; a < 2; a++)
                    xv[a] = *reinterpret_cast<const ZoAdapterF4*>(&xs[2 * pair + a][c]);
#pragma unroll
                for (int kk = 0; kk < ZO_SHRINK_RANKS; kk++) {
                    const ZoAdapterF4 fv = *reinterpret_cast<const ZoAdapterF4*>(&fs[kk][c]);
#pragma unroll
                    for (int a = 0; a < 2; a++)
#pragma unroll
                        for (int i = 0; i < 4; i++)
                            acc[a][kk] = __fmaf_rn(xv[a].v[i], fv.v[i], acc[a][kk]);
                }
            }
            __syncthreads();
        }
        // Sum the 16 lanes of each half-warp; every lane ends with the same totals.
#pragma unroll
        for (int a = 0; a < 2; a++)
#pragma unroll
            for (int kk = 0; kk < ZO_SHRINK_RANKS; kk++)
#pragma unroll
                for (int m = 8; m > 0; m >>= 1)
                    acc[a][kk] = __fadd_rn(acc[a][kk], __shfl_xor_sync(ZO_FULL_MASK, acc[a][kk], m));
#pragma unroll
        for (int a = 0; a < 2; a++) {
            float mine = 0.0f;
#pragma unroll
            for (int kk = 0; kk < ZO_SHRINK_RANKS; kk++) mine = kk == lane ? acc[a][kk] : mine;
            const int r = 2 * pair + a;
            if (pass == 0) {
                res[r][lane] = mine;
            } else if (row_dir[r] == dir_list[pass - 1]) {
                res[r][lane] = __fmaf_rn(row_sc[r], mine, res[r][lane]);
            }
        }
        // Each res entry is read and written by one thread only until the final sync.
    }
    __syncthreads();

    // Write the site's block: per row, (dirs + 1) sub-blocks of this block's nk ranks.
    const float down = zo_adapter_exp2(-p.scale_exp);
    const uint32_t per_row = (p.dirs + 1) * nk;
    for (uint32_t e = tid; e < ZO_SHRINK_ROWS * per_row; e += ZO_SHRINK_THREADS) {
        const uint32_t r = e / per_row, rem = e % per_row;
        const uint32_t sb = rem / nk, kk = rem % nk;
        const uint32_t t = row0 + r;
        if (t >= p.rows) continue;
        const float v = passes > 0 ? __fmul_rn(p.scale, res[r][kk]) : 0.0f;
        float out;
        if (sb == 0) out = p.live ? __fmul_rn(v, down) : 0.0f;
        else out = row_dir[r] == (int)(sb - 1) ? __fmul_rn(v, row_sc[r]) : 0.0f;
        x[(uint64_t)t * p.ld + p.col0 + sb * p.rank + k0 + kk] = zo_from_f32<T>(out);
    }
    if (blockIdx.y == 0 && p.pad_end > p.pad_begin) {
        const uint32_t w = p.pad_end - p.pad_begin;
        for (uint32_t e = tid; e < ZO_SHRINK_ROWS * w; e += ZO_SHRINK_THREADS) {
            const uint32_t t = row0 + e / w;
            if (t < p.rows) x[(uint64_t)t * p.ld + p.pad_begin + e % w] = zo_from_f32<T>(0.0f);
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
