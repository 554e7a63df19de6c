// Philox4x32-10 and the portable Gaussian/Rademacher transforms, device side.
//
// The host twin is src/rng.rs: every function here has a same-named Rust function with the same
// operation sequence, and the two must agree bit for bit. Rules that make that hold:
// - only correctly rounded operations, each spelled as an explicit round-to-nearest intrinsic
//   (__fmaf_rn, __fmul_rn, __fadd_rn, __fsub_rn, __fdiv_rn, __fsqrt_rn). nvcc and ptxas never
//   contract or approximate these, even where they would fuse a plain a * b + c;
// - no libm, no curand, no fast-math: log and sin/cos are our own polynomials;
// - float constants are written with 9 significant digits (exact round trip); their f32 bit
//   patterns are checked against the Rust constants by a host test.
#pragma once

#include <stdint.h>

#include "zo_params.h"

#define ZO_PHILOX_M0 0xD2511F53u
#define ZO_PHILOX_M1 0xCD9E8D57u
#define ZO_PHILOX_W0 0x9E3779B9u
#define ZO_PHILOX_W1 0xBB67AE85u

// Polynomial coefficients (relative minimax fits on the reduced ranges, rounded to f32).
static constexpr float ZO_LOG_P0 = 6.666677594e-1f;    // 0x3f2aaabd
static constexpr float ZO_LOG_P1 = 3.997757435e-1f;    // 0x3eccaf68
static constexpr float ZO_LOG_P2 = 2.987093627e-1f;    // 0x3e98f06f
static constexpr float ZO_LN2_HI = 6.931457520e-1f;    // 0x3f317200, e * LN2_HI exact
static constexpr float ZO_LN2_LO = 1.428606765e-6f;    // 0x35bfbe8e
static constexpr float ZO_SQRT2 = 1.414213538e0f;      // 0x3fb504f3
static constexpr float ZO_SIN_P0 = -1.666665524e-1f;   // 0xbe2aaaa3
static constexpr float ZO_SIN_P1 = 8.332160302e-3f;    // 0x3c08839d
static constexpr float ZO_SIN_P2 = -1.951528393e-4f;   // 0xb94ca1f1
static constexpr float ZO_COS_P0 = 4.166664556e-2f;    // 0x3d2aaaa5
static constexpr float ZO_COS_P1 = -1.388731645e-3f;   // 0xbab6061a
static constexpr float ZO_COS_P2 = 2.443315680e-5f;    // 0x37ccf5ce
static constexpr float ZO_TURN_STEP = 3.745070387e-7f; // 0x34c90fdb, 2*pi / 2^24
static constexpr float ZO_TWO_M24 = 5.960464478e-8f;   // 0x33800000, 2^-24 exactly

struct ZoU32x4 {
    uint32_t x[4];
};

struct ZoF32x2 {
    float a, b;
};

static __device__ __forceinline__ ZoU32x4 zo_philox_round(ZoU32x4 c, uint32_t k0, uint32_t k1) {
    const uint32_t lo0 = ZO_PHILOX_M0 * c.x[0];
    const uint32_t hi0 = __umulhi(ZO_PHILOX_M0, c.x[0]);
    const uint32_t lo1 = ZO_PHILOX_M1 * c.x[2];
    const uint32_t hi1 = __umulhi(ZO_PHILOX_M1, c.x[2]);
    ZoU32x4 r;
    r.x[0] = hi1 ^ c.x[1] ^ k0;
    r.x[1] = lo1;
    r.x[2] = hi0 ^ c.x[3] ^ k1;
    r.x[3] = lo0;
    return r;
}

static __device__ __forceinline__ ZoU32x4 zo_philox4x32_10(ZoU32x4 ctr, uint32_t k0, uint32_t k1) {
    ctr = zo_philox_round(ctr, k0, k1);
#pragma unroll
    for (int i = 1; i < 10; i++) {
        k0 += ZO_PHILOX_W0;
        k1 += ZO_PHILOX_W1;
        ctr = zo_philox_round(ctr, k0, k1);
    }
    return ctr;
}

// Uniform in (0, 1] from the top 24 bits; never 0.
static __device__ __forceinline__ float zo_uniform_open0(uint32_t x) {
    return __fmul_rn(__uint2float_rn((x >> 8) + 1u), ZO_TWO_M24);
}

// ln(u) for a positive normal u: u = 2^e * f, f in [sqrt(1/2), sqrt(2)),
// ln f = 2 atanh(s) = 2s + s^3 P(s^2), s = (f - 1) / (f + 1).
static __device__ __forceinline__ float zo_log_unit(float u) {
    const uint32_t bits = __float_as_uint(u);
    int e = (int)((bits >> 23) & 0xffu) - 127;
    float f = __uint_as_float((bits & 0x007fffffu) | 0x3f800000u);
    if (f > ZO_SQRT2) {
        f = __fmul_rn(f, 0.5f);
        e += 1;
    }
    const float s = __fdiv_rn(__fsub_rn(f, 1.0f), __fadd_rn(f, 1.0f));
    const float w = __fmul_rn(s, s);
    const float p = __fmaf_rn(w, __fmaf_rn(w, ZO_LOG_P2, ZO_LOG_P1), ZO_LOG_P0);
    const float lnf = __fmaf_rn(__fmul_rn(s, w), p, __fadd_rn(s, s));
    const float ef = __int2float_rn(e);
    return __fmaf_rn(ef, ZO_LN2_HI, __fmaf_rn(ef, ZO_LN2_LO, lnf));
}

// (cos t, sin t) for t = 2 pi k / 2^24, k a 24-bit integer. Range reduction on the integer
// (exact): q = nearest quarter turn, residual r in [-pi/4, pi/4], then rotate by q.
static __device__ __forceinline__ ZoF32x2 zo_sincos_turn24(uint32_t k) {
    const uint32_t q = (k + (1u << 21)) >> 22;
    const int d = (int)k - (int)(q << 22);
    const float r = __fmul_rn(__int2float_rn(d), ZO_TURN_STEP);
    const float z = __fmul_rn(r, r);
    const float sp = __fmaf_rn(z, __fmaf_rn(z, ZO_SIN_P2, ZO_SIN_P1), ZO_SIN_P0);
    const float s = __fmaf_rn(__fmul_rn(r, z), sp, r);
    const float cp = __fmaf_rn(z, __fmaf_rn(z, ZO_COS_P2, ZO_COS_P1), ZO_COS_P0);
    const float c = __fmaf_rn(z, __fmaf_rn(z, cp, -0.5f), 1.0f);
    switch (q & 3u) {
    case 0: return ZoF32x2{c, s};
    case 1: return ZoF32x2{-s, c};
    case 2: return ZoF32x2{-c, -s};
    default: return ZoF32x2{s, -c};
    }
}

// Box-Muller on two raw lanes: a gives the radius, b the angle; returns (r cos t, r sin t).
static __device__ __forceinline__ ZoF32x2 zo_box_muller(uint32_t a, uint32_t b) {
    const float r = __fsqrt_rn(__fmul_rn(-2.0f, zo_log_unit(zo_uniform_open0(a))));
    const ZoF32x2 cs = zo_sincos_turn24(b >> 8);
    return ZoF32x2{__fmul_rn(r, cs.a), __fmul_rn(r, cs.b)};
}

// +1 or -1 from the top bit of a raw lane.
static __device__ __forceinline__ float zo_rademacher_bits(uint32_t x) {
    return (x & 0x80000000u) ? -1.0f : 1.0f;
}

// The four raw lanes of Philox block `block` of a stream (elements 4 block .. 4 block + 3).
static __device__ __forceinline__ ZoU32x4 zo_raw_block(ZoRngStream s, uint64_t block) {
    ZoU32x4 ctr;
    ctr.x[0] = (uint32_t)block;
    ctr.x[1] = (uint32_t)(block >> 32);
    ctr.x[2] = s.tensor;
    ctr.x[3] = s.role;
    return zo_philox4x32_10(ctr, s.seed_lo, s.seed_hi);
}

// The four standard normals of a block: lanes (0, 1) -> elements 0, 1; lanes (2, 3) -> 2, 3.
static __device__ __forceinline__ void zo_gaussian_block(ZoRngStream s, uint64_t block, float g[4]) {
    const ZoU32x4 x = zo_raw_block(s, block);
    const ZoF32x2 g01 = zo_box_muller(x.x[0], x.x[1]);
    const ZoF32x2 g23 = zo_box_muller(x.x[2], x.x[3]);
    g[0] = g01.a;
    g[1] = g01.b;
    g[2] = g23.a;
    g[3] = g23.b;
}

// Standard normal of one element (computes its whole lane pair).
static __device__ __forceinline__ float zo_gaussian(ZoRngStream s, uint64_t index) {
    const ZoU32x4 x = zo_raw_block(s, index >> 2);
    const uint32_t lane = (uint32_t)(index & 3u);
    const ZoF32x2 g = lane < 2 ? zo_box_muller(x.x[0], x.x[1]) : zo_box_muller(x.x[2], x.x[3]);
    return (lane & 1u) ? g.b : g.a;
}

// +1 or -1 of one element.
static __device__ __forceinline__ float zo_rademacher(ZoRngStream s, uint64_t index) {
    return zo_rademacher_bits(zo_raw_block(s, index >> 2).x[index & 3u]);
}
