/* Parameter structs of csrc/update.cu (see zo_params.h).
 *
 * Every update is bit-exact with the CPU family code (src/perturb/{lowrank,lora,dense}.rs):
 * the host computes the per-direction coefficients exactly as the CPU does and passes them in
 * a ZoUpdateDir array; kernels apply them per element in direction order with __fmaf_rn. */
#pragma once

#include <stdint.h>

/* One direction of an update: its seed and coefficient (c_d = -(lr * g_d) / q for the seeded
 * axpy, a_d for the LoZO-M momentum). */
typedef struct ZoUpdateDir {
    uint32_t seed_lo;
    uint32_t seed_hi;
    float coef;
    uint32_t reserved;
} ZoUpdateDir;

/* zo_seeded_axpy_<T>(ZoAxpyParams, T* theta, const ZoUpdateDir* dirs): for element (i, j) of a
 * rows x cols tensor stored at theta[i * ld + j], with index n = i * cols + j:
 *   t = float(theta); if (decay) t = fma(neg_decay, t, t);
 *   for d in 0..dirs: t = fma(dirs[d].coef, z_d(n), t);   theta = round_T(t)
 * z_d from (dirs[d] seed, tensor, role, n), Gaussian or Rademacher. Serves the dense update and
 * in-place perturbation (role DENSE), the LoZO bank update (role LOWRANK_U) and the LoRA A/B
 * updates (roles LORA_A / LORA_B). */
typedef struct ZoAxpyParams {
    uint64_t rows;
    uint64_t cols;
    uint64_t ld;
    uint32_t tensor;
    uint32_t role;
    uint32_t dist;
    uint32_t dirs;
    uint32_t decay;  /* apply the weight-decay fma first */
    float neg_decay; /* -(lr * wd) as the CPU computes it */
} ZoAxpyParams;

/* zo_lowrank_momentum(ZoMomentumParams, float* bank, float* mom, const ZoUpdateDir* dirs):
 * LoZO-M, per element of bank^T / m^T (role LOWRANK_U, index = element):
 *   m = beta * m; for d: m = fma(a_d, u_d, m); bank = fma(neg_lr, m, bank). */
typedef struct ZoMomentumParams {
    uint64_t n;
    uint32_t tensor;
    uint32_t dist;
    uint32_t dirs;
    float beta;
    float neg_lr;
    uint32_t reserved;
} ZoMomentumParams;

/* zo_moments_update(ZoMomentsParams, float* theta, float* m, float* v, const ZoUpdateDir* dirs):
 * ZO-SGD momentum or ZO-Adam on a trained fp32 tensor, per element n (src/perturb/step_rule.rs;
 * every scalar computed on the host by its RuleCoefs):
 *   if (decay) t = fma(neg_decay, t, t);
 *   g = 0; for d: g = fma(dirs[d].coef, z_d(n), g)            (coef = g_d / q)
 *   momentum: m = fma(beta1, m, g); t = fma(neg_lr, m, t)
 *   adam:     m = fma(beta1, m, one_m_b1 * g); v = fma(beta2, v, one_m_b2 * (g * g));
 *             t = fma(neg_lr, m / (sqrt(v * c2) + eps), t)    (neg_lr = -lr * c1)
 * v is not read for momentum. */
typedef struct ZoMomentsParams {
    uint64_t n;
    uint32_t tensor;
    uint32_t role;
    uint32_t dist;
    uint32_t dirs;
    uint32_t decay; /* apply the weight-decay fma first */
    uint32_t adam;  /* 0: momentum */
    float neg_decay;
    float beta1;
    float beta2;
    float one_m_b1;
    float one_m_b2;
    float c2;
    float eps;
    float neg_lr;
} ZoMomentsParams;

/* zo_factor_merge_<T>(ZoMergeParams, T* w, const float* b, const float* a): for i < out,
 * j < k: acc = 0; for kk ascending: acc = fma(b[i * b_si + kk * b_sk], a[kk * k + j], acc);
 * w[i * ld + j] = round_T(fma(scale, acc, float(w[i * ld + j]))). Lowrank: b = bank^T
 * (b_si = 1, b_sk = out), a = V^T; lora: b = B (b_si = rank, b_sk = 1), a = A. */
typedef struct ZoMergeParams {
    uint32_t out;
    uint32_t k;
    uint32_t ld;
    uint32_t rank;
    uint32_t b_si;
    uint32_t b_sk;
    float scale;
    uint32_t reserved;
} ZoMergeParams;

/* zo_lowrank_basis(ZoBasisParams, float* p, const float* old_vt, const float* new_vt):
 * p[k * rank + l] = (fma chain over ascending j of old[k][j] * new[l][j]) / (float)k_in.
 * zo_lowrank_project(ZoBasisParams, float* new_m, const float* m, const float* p):
 * new_m[l * out + i] = fma chain over ascending k of m[k * out + i] * p[k * rank + l]. */
typedef struct ZoBasisParams {
    uint32_t rank;
    uint32_t k_in;
    uint32_t out;
    uint32_t reserved;
} ZoBasisParams;
