/*
 * zo: zeroth-order fine-tuning as an inference workload. The C ABI of libzo.
 *
 * Every function returns a zo_status (ZO_OK = 0) and leaves a message for zo_last_error()
 * on the calling thread. Params structs start with struct_size: get them from the
 * zo_*_default_params() functions and change only the fields you need. See README.md,
 * "Embedding zo".
 */

#ifndef ZO_H
#define ZO_H

/* Generated from src/ffi/ by cbindgen (tests/ffi_header.rs). Do not edit. */

#include <stddef.h>
#include <stdint.h>

/**
 * Bumped on every change of the ABI: a function, a struct's fields, a constant's meaning.
 */
#define ZO_ABI_VERSION 1

/**
 * Element types of weights and activations (`dtype` arguments).
 */
#define ZO_DTYPE_F32 0

#define ZO_DTYPE_BF16 1

#define ZO_DTYPE_F16 2

/**
 * Distributions of the random directions (`dist` arguments).
 */
#define ZO_DIST_GAUSSIAN 0

#define ZO_DIST_RADEMACHER 1

/**
 * The RNG role of a parameter's dense perturbation. A role says which use of a tensor a random
 * stream serves: every random element is a pure function of (seed, tensor id, role, element
 * index), and zo's own families draw with these roles.
 */
#define ZO_ROLE_DENSE 0

/**
 * Low-rank Uᵀ (`[rank][out]`), from a step's direction seed.
 */
#define ZO_ROLE_LOWRANK_U 1

/**
 * Low-rank Vᵀ (`[rank][in]`), from the period seed.
 */
#define ZO_ROLE_LOWRANK_V 2

/**
 * Perturbation of LoRA A (`[rank][in]`).
 */
#define ZO_ROLE_LORA_A 3

/**
 * Perturbation of LoRA B (`[out][rank]`).
 */
#define ZO_ROLE_LORA_B 4

/**
 * Perturbation of prefix keys and values.
 */
#define ZO_ROLE_PREFIX 6

/**
 * `zo_kernel_target.device`: run the kernels under zo-emu on the CPU, on host pointers: the
 * host twin of every kernel, bit-exact with the GPU. Calls are synchronous (they return when
 * the kernel has run) and the stream is ignored.
 */
#define ZO_KERNEL_HOST 0

/**
 * `zo_kernel_target.device`: run the kernels on GPU `ordinal`, on device pointers, enqueued on
 * `stream`.
 */
#define ZO_KERNEL_CUDA 1

/**
 * `zo_kernel_adapter_site.family`: lowrank, `h = x·V` (factor Vᵀ, f32 `[rank][k]`), state
 * `bankᵀ` (f32 `[rank][out]`), directions Uᵀ_d.
 */
#define ZO_ADAPTER_LOWRANK 0

/**
 * `zo_kernel_adapter_site.family`: lora, `h = x·(A + sc·Z_A)ᵀ` (factor A, f32 `[rank][k]`),
 * state B (f32 `[out][rank]`), directions Z_B,d.
 */
#define ZO_ADAPTER_LORA 1

/**
 * Tokens per KV-cache page. A cache is f32 `[num_pages][ZO_KERNEL_ATTN_PAGE][kv_heads]
 * [head_dim]`: block-table position p of a sequence lives in page `block_tables[s * max_pages
 * + p / ZO_KERNEL_ATTN_PAGE]`, slot `p % ZO_KERNEL_ATTN_PAGE`.
 */
#define ZO_KERNEL_ATTN_PAGE 16

/**
 * How `zo_kernel_pick` scores a token.
 */
#define ZO_KERNEL_PICK_GREEDY 0

#define ZO_KERNEL_PICK_SEEDED 1

/**
 * `zo_kernel_moments_params.rule`: ZO-SGD with heavy-ball momentum.
 */
#define ZO_RULE_MOMENTUM 1

/**
 * `zo_kernel_moments_params.rule`: ZO-Adam with bias correction.
 */
#define ZO_RULE_ADAM 2

/**
 * `zo_kernel_merge_params.left`: the left factor is a LoZO bank `bankᵀ`, f32 `[rank][out]`.
 */
#define ZO_FACTOR_BANK_T 0

/**
 * `zo_kernel_merge_params.left`: the left factor is LoRA B, f32 `[out][rank]`.
 */
#define ZO_FACTOR_LORA_B 1

/**
 * `device`: where the session runs the model.
 * The GPU when this build has the CUDA backend, a GPU answers and the family runs there;
 * else the CPU (as `zo-run train --device auto`).
 */
#define ZO_DEVICE_AUTO 0

/**
 * The CPU backend (the f32 reference).
 */
#define ZO_DEVICE_CPU 1

/**
 * GPU 0 through the CUDA backend, weights stored as `dtype`.
 */
#define ZO_DEVICE_CUDA 2

/**
 * The CUDA backend on its CPU emulation of a GPU: GPU numerics without a GPU, slowly.
 */
#define ZO_DEVICE_EMULATED 3

/**
 * `split` arguments.
 */
#define ZO_SPLIT_TRAIN 0

#define ZO_SPLIT_DEV 1

#define ZO_SPLIT_TEST 2

/**
 * `zo_session_export` states: the best dev evaluation's state (the last state when there
 * was none), or the state after the last step.
 */
#define ZO_EXPORT_BEST 0

#define ZO_EXPORT_LAST 1

/**
 * An open session (`zo_session_open`, `zo_session_free`): a model, a training config, the
 * examples and the trained state.
 *
 * Thread safety: a session may be called from any thread. Calls on one session are
 * serialized by a lock inside it (a second caller waits); different sessions run in
 * parallel. Pointers it hands out (a begun step's plan) stay valid until the step ends or
 * is skipped, or the session is freed.
 */
typedef struct zo_session zo_session;

/**
 * Where a kernel call runs.
 *
 * With `ZO_KERNEL_CUDA`, every pointer argument of the call is a device address of GPU
 * `ordinal`, and the call only enqueues the kernel on `stream` and returns: the caller orders
 * and waits for it like any other work on that stream, and must keep every buffer alive and
 * unchanged by other streams until the kernel has run. No call allocates, copies or
 * synchronises, so calls can be captured into a CUDA graph (call `zo_kernel_prepare` once
 * before the capture). zo uses the GPU's primary context (the CUDA runtime's): `stream` must
 * belong to it. The calling thread's current context is restored before a call returns.
 * Calls may come from any thread.
 *
 * With `ZO_KERNEL_HOST`, every pointer is a host address and the call runs to completion on
 * the CPU.
 */
typedef struct {
  /**
   * `sizeof(zo_kernel_target)`.
   */
  size_t struct_size;
  /**
   * `ZO_KERNEL_CUDA` (the default) or `ZO_KERNEL_HOST`.
   */
  int32_t device;
  /**
   * The GPU (CUDA device ordinal, default 0); ignored by `ZO_KERNEL_HOST`.
   */
  int32_t ordinal;
  /**
   * The `CUstream` (or `cudaStream_t`) to enqueue on; NULL (the default) is the legacy
   * default stream. Ignored by `ZO_KERNEL_HOST`.
   */
  void *stream;
} zo_kernel_target;

/**
 * What every entry point returns: `ZO_OK` or one of the `ZO_ERR_*` codes, with a message
 * for [`zo_last_error`].
 */
typedef int32_t zo_status;

/**
 * Rows `[row_start, row_end)` of the packed batch that run under one perturbed variant:
 * its direction seed and `scale` = sign · ε. The input of `zo_kernel_segment_table_fill`.
 */
typedef struct {
  size_t row_start;
  size_t row_end;
  uint64_t seed;
  float scale;
} zo_kernel_segment;

/**
 * One Linear's column block of a K-augmented GEMM `y = x'·W'ᵀ`, where x' (`[rows][ld]`) and
 * W' (`[out_total][ld]`) are in the GEMM's storage dtype. A group of G sites sharing one
 * input x (q/k/v, gate/up, or a single Linear) uses `ld = K_aug = round_up(k + G·(dirs+1)·rank,
 * 8)`; site g owns columns `[col0, col0 + (dirs+1)·rank)` with `col0 = k + g·(dirs+1)·rank`,
 * in sub-blocks of `rank` columns: sub-block 0 the trained state on every row, sub-block
 * 1 + d direction d's perturbation on the rows of its segments. Columns
 * `[k + G·(dirs+1)·rank, ld)` are padding (zeroed by one site's shrink).
 */
typedef struct {
  /**
   * `sizeof(zo_kernel_adapter_site)`.
   */
  size_t struct_size;
  /**
   * `ZO_ADAPTER_LOWRANK` (the default) or `ZO_ADAPTER_LORA`.
   */
  int32_t family;
  /**
   * `ZO_DTYPE_*` of x' and W' (default `ZO_DTYPE_BF16`).
   */
  int32_t dtype;
  /**
   * Input width K: columns `[0, k)` of x' are the activation.
   */
  size_t k;
  /**
   * Row stride of x' and W' (K_aug).
   */
  size_t ld;
  /**
   * First column of the site's block.
   */
  size_t col0;
  /**
   * The factors' rank (default 1).
   */
  size_t rank;
  /**
   * Direction sub-blocks the site's columns hold (at least the step's q; default 1).
   */
  size_t dirs;
  /**
   * Non-zero when the trained state is (LoZO bank since the last merge, LoRA B): sub-block
   * 0 is then written, else zeros (default 1).
   */
  int32_t live;
  /**
   * `ZO_DIST_*` of the directions (default `ZO_DIST_GAUSSIAN`).
   */
  int32_t dist;
  /**
   * The Linear's weight's RNG tensor id.
   */
  uint32_t tensor_id;
  /**
   * e: sub-block 0 of x' is scaled by 2^-e and of W' by 2^e, exact power-of-two scalings
   * that keep a tiny state out of fp16's subnormals; in [-126, 126], 0 (the default) for
   * f32 and bf16.
   */
  int32_t scale_exp;
  /**
   * lowrank s (1 or 1/√rank), lora α/rank (default 1).
   */
  float scale;
} zo_kernel_adapter_site;

/**
 * Shapes and scalars of `zo_kernel_attention_prefill`.
 */
typedef struct {
  /**
   * `sizeof(zo_kernel_attention_params)`.
   */
  size_t struct_size;
  /**
   * `ZO_DTYPE_*` of the output (default `ZO_DTYPE_BF16`): the o-projection's GEMM input.
   */
  int32_t out_dtype;
  /**
   * Query heads, key/value heads (a divisor of heads) and the head dimension (1..=256).
   */
  size_t heads;
  size_t kv_heads;
  size_t head_dim;
  /**
   * Packed new tokens of every sequence.
   */
  size_t rows;
  /**
   * The queries: row r, head h starts at `q[r * q_ld + q_col + h * head_dim]` (f32; `q_ld`
   * 0, the default, means heads·head_dim), e.g. the q columns of a fused qkv output.
   */
  size_t q_ld;
  size_t q_col;
  /**
   * Row stride of the output (0, the default, means heads·head_dim); head h of row r is
   * written at `out[r * out_ld + h * head_dim]`, other columns are left as they are.
   */
  size_t out_ld;
  /**
   * Row length of the block table (at least 1).
   */
  size_t max_pages;
  /**
   * At least the longest sequence's own token count (it sizes the grid; the rows of a
   * longer sequence would be left unwritten).
   */
  size_t max_seqlen;
  /**
   * Scores are `(q·k) * scale` (Llama: 1/√head_dim; OPT: 1, its q is pre-scaled).
   */
  float scale;
  /**
   * Trainable prefix positions every sequence attends to first (0, the default: none).
   */
  size_t prefix_tokens;
  /**
   * The prefix's layer (below 2²⁴): its keys and values are perturbed with the streams of
   * zo's prefix family for that layer.
   */
  size_t prefix_layer;
  /**
   * `ZO_DIST_*` of the prefix perturbation (default `ZO_DIST_GAUSSIAN`).
   */
  int32_t prefix_dist;
} zo_kernel_attention_params;

/**
 * The buffers of `zo_kernel_attention_prefill`, each with its element count, all on the
 * target's device.
 */
typedef struct {
  /**
   * `sizeof(zo_kernel_attention_buffers)`.
   */
  size_t struct_size;
  /**
   * The queries, f32 (layout in `zo_kernel_attention_params`).
   */
  const float *q;
  size_t q_len;
  /**
   * The K and V caches, f32, the same whole number of pages each (see
   * `ZO_KERNEL_ATTN_PAGE`); every sequence's own tokens must already be in them.
   */
  const float *k_cache;
  size_t k_cache_len;
  const float *v_cache;
  size_t v_cache_len;
  /**
   * `n_seqs + 1` entries: sequence s owns packed rows `[cu_seqlens[s], cu_seqlens[s+1])`.
   */
  const uint32_t *cu_seqlens;
  size_t cu_seqlens_len;
  /**
   * `n_seqs` entries: cached tokens a sequence attends to before its own (a shared prompt).
   */
  const uint32_t *ctx_lens;
  size_t ctx_lens_len;
  /**
   * `n_seqs * max_pages` page ids: cached token c of a sequence is at table position c, own
   * token i at `own_starts[s] + i` (see `own_starts`). Page ids past the caches read as
   * zeros.
   */
  const uint32_t *block_tables;
  size_t block_tables_len;
  /**
   * The prefix's keys and values, f32 `[prefix_tokens][kv_heads * head_dim]` each (NULL
   * without a prefix).
   */
  const float *prefix_k;
  size_t prefix_k_len;
  const float *prefix_v;
  size_t prefix_v_len;
  /**
   * The step's segment table (`zo_kernel_segment_table_fill`; NULL when `n_segments` and
   * `n_dirs` are 0): a sequence whose first row lies in a segment reads the prefix as
   * `fmaf(scale, z, x)`, z from the segment's seed; the others read it as stored.
   */
  const void *segment_table;
  size_t n_segments;
  size_t n_dirs;
  /**
   * The output, `out_len` elements of `out_dtype`.
   */
  void *out;
  size_t out_len;
  /**
   * `n_seqs` entries (or NULL): the block-table position of each sequence's first own
   * token. NULL means `ctx_lens[s]`, own tokens right after the cached ones. A sequence
   * reading a prompt shared with others starts its own tokens on a fresh page,
   * `ceil(ctx_lens[s] / ZO_KERNEL_ATTN_PAGE) * ZO_KERNEL_ATTN_PAGE`, so that none of them
   * writes into the prompt's partially filled last page. Callers built against a header
   * without this field pass the shorter struct and get NULL.
   */
  const uint32_t *own_starts;
  size_t own_starts_len;
} zo_kernel_attention_buffers;

/**
 * Shapes and sampling of `zo_kernel_pick`.
 */
typedef struct {
  /**
   * `sizeof(zo_kernel_pick_params)`.
   */
  size_t struct_size;
  /**
   * The logits are f32 `[rows][ld]`, of which the first `vocab` columns are read (`ld` 0,
   * the default, means `vocab`).
   */
  size_t rows;
  size_t vocab;
  size_t ld;
  /**
   * `ZO_KERNEL_PICK_*` (default `ZO_KERNEL_PICK_GREEDY`).
   */
  int32_t sampling;
  /**
   * Seeded sampling: Gumbel-max at `temperature` (finite, > 0) with noise from `seed`.
   */
  float temperature;
  uint64_t seed;
} zo_kernel_pick_params;

/**
 * The logits of `zo_kernel_candidate_logprobs`.
 */
typedef struct {
  /**
   * `sizeof(zo_kernel_logprob_params)`.
   */
  size_t struct_size;
  /**
   * The logits are f32 `[rows][ld]`, of which the first `vocab` columns are read (`ld` 0,
   * the default, means `vocab`): the head GEMM's output at the scoring rows.
   */
  size_t rows;
  size_t vocab;
  size_t ld;
} zo_kernel_logprob_params;

/**
 * One direction of a seeded update as the kernels read it (16 bytes, 4-byte aligned): the
 * direction's seed as two 32-bit halves, and its coefficient. Fill arrays of them with
 * `zo_kernel_update_dirs_fill`, then place them where the kernel runs (device memory for
 * `ZO_KERNEL_CUDA`): the kernel reads them when it runs, so a captured CUDA graph can be
 * replayed with new directions written into the same array.
 */
typedef struct {
  /**
   * Bits 0..32 of the seed.
   */
  uint32_t seed_lo;
  /**
   * Bits 32..64 of the seed.
   */
  uint32_t seed_hi;
  /**
   * The direction's coefficient.
   */
  float coef;
  /**
   * 0.
   */
  uint32_t reserved;
} zo_kernel_update_dir;

/**
 * A seeded update of one tensor: `zo_kernel_seeded_axpy`.
 */
typedef struct {
  /**
   * `sizeof(zo_kernel_axpy_params)`.
   */
  size_t struct_size;
  /**
   * `ZO_DTYPE_*` of the tensor's elements (default `ZO_DTYPE_F32`).
   */
  int32_t dtype;
  /**
   * `ZO_DIST_*` of the directions (default `ZO_DIST_GAUSSIAN`).
   */
  int32_t dist;
  /**
   * The tensor's RNG tensor id (default 0).
   */
  uint32_t tensor_id;
  /**
   * The RNG role: `ZO_ROLE_DENSE` (the default) for a weight, `ZO_ROLE_LORA_A` or
   * `ZO_ROLE_LORA_B` for a LoRA factor.
   */
  uint32_t role;
  /**
   * The tensor is `rows` × `cols` (default 1 × 0), row `i` stored from element `i * ld`;
   * `ld` 0 (the default) means `cols`. Element (i, j) has RNG index `i * cols + j`, so a
   * weight inside a wider buffer draws the same directions as on its own.
   */
  size_t rows;
  size_t cols;
  size_t ld;
  /**
   * λ = lr · weight decay, applied first as `θ = fmaf(-λ, θ, θ)`; 0 (the default) applies
   * none and leaves θ bit for bit as it is before the directions.
   */
  float decay;
} zo_kernel_axpy_params;

/**
 * A low-rank bank update: `zo_kernel_lowrank_bank_update`.
 */
typedef struct {
  /**
   * `sizeof(zo_kernel_bank_params)`.
   */
  size_t struct_size;
  /**
   * `ZO_DIST_*` of U (default `ZO_DIST_GAUSSIAN`).
   */
  int32_t dist;
  /**
   * The Linear's RNG tensor id (default 0).
   */
  uint32_t tensor_id;
  /**
   * LoZO-M only: the momentum factor β (default 0.9).
   */
  float beta;
  /**
   * LoZO-M only: −lr (default 0).
   */
  float neg_lr;
} zo_kernel_bank_params;

/**
 * A momentum or Adam update of one trained f32 tensor: `zo_kernel_moments_update`.
 */
typedef struct {
  /**
   * `sizeof(zo_kernel_moments_params)`.
   */
  size_t struct_size;
  /**
   * `ZO_RULE_MOMENTUM` (the default) or `ZO_RULE_ADAM`.
   */
  int32_t rule;
  /**
   * `ZO_DIST_*` of the directions (default `ZO_DIST_GAUSSIAN`).
   */
  int32_t dist;
  /**
   * The tensor's RNG tensor id and role (defaults 0 and `ZO_ROLE_DENSE`).
   */
  uint32_t tensor_id;
  uint32_t role;
  /**
   * Momentum's β, or Adam's β₁ (default 0.9), in [0, 1).
   */
  float beta1;
  /**
   * Adam's β₂ (default 0.999), in [0, 1).
   */
  float beta2;
  /**
   * Adam's ε (default 1e-8), positive.
   */
  float eps;
  /**
   * The step's learning rate (default 0).
   */
  float lr;
  /**
   * Updates already applied to these moments (default 0): Adam's bias corrections use
   * t = `updates` + 1.
   */
  uint64_t updates;
  /**
   * λ = lr · weight decay, applied first as `θ = fmaf(-λ, θ, θ)`; 0 (the default): none.
   */
  float decay;
} zo_kernel_moments_params;

/**
 * A factor merge: `zo_kernel_factor_merge`.
 */
typedef struct {
  /**
   * `sizeof(zo_kernel_merge_params)`.
   */
  size_t struct_size;
  /**
   * `ZO_DTYPE_*` of the weight (default `ZO_DTYPE_F32`).
   */
  int32_t dtype;
  /**
   * `ZO_FACTOR_BANK_T` (the default) or `ZO_FACTOR_LORA_B`.
   */
  int32_t left;
  /**
   * The weight is `out` × `k`, row `i` stored from element `i * ld` (`ld` 0, the default,
   * means `k`).
   */
  size_t out;
  size_t k;
  size_t ld;
  /**
   * The factors' rank (default 1).
   */
  size_t rank;
  /**
   * s: the low-rank scale (1, or 1/√rank), or LoRA's α/rank (default 1).
   */
  float scale;
} zo_kernel_merge_params;

/**
 * A perturbation variant: the model runs as θ + sign·ε·Z(seed). Sign 0 is the unperturbed
 * model.
 */
typedef struct {
  uint64_t seed;
  int32_t sign;
  float eps;
} zo_variant;

/**
 * log p(token | the sequence up to and including packed row `row`).
 */
typedef struct {
  uint32_t row;
  uint32_t token;
} zo_query;

/**
 * One example scored under one variant: its candidates are
 * `candidates[first_candidate .. first_candidate + n_candidates]`.
 */
typedef struct {
  uint32_t variant;
  /**
   * Index of the correct candidate within the group.
   */
  uint32_t gold;
  uint32_t first_candidate;
  uint32_t n_candidates;
} zo_group;

/**
 * A candidate's queries, `queries[query_start .. query_end]`: its score is their mean
 * log-prob.
 */
typedef struct {
  uint32_t query_start;
  uint32_t query_end;
} zo_candidate;

/**
 * A begun step: every (example, variant) sequence packed into one token buffer with no
 * padding, variant-major, and what to score. The arrays belong to the session and stay
 * valid until the step ends or is skipped, or the session is freed.
 *
 * MeZO's classification loss of a group is the cross-entropy over its candidates' scores
 * with the gold candidate as the label.
 */
typedef struct {
  /**
   * `sizeof(zo_plan)`, set by the caller (`zo_plan_default()`).
   */
  size_t struct_size;
  uint64_t step;
  float lr;
  /**
   * Examples per variant.
   */
  size_t batch;
  size_t n_tokens;
  const uint32_t *tokens;
  /**
   * Position of each token within its own sequence, from 0 (architectures add their own
   * offset: OPT +2).
   */
  const uint32_t *positions;
  size_t n_seqs;
  /**
   * `n_seqs + 1` sequence boundaries into `tokens`, from 0.
   */
  const uint32_t *cu_seqlens;
  /**
   * Variant of each sequence.
   */
  const uint32_t *seq_variant;
  size_t n_variants;
  /**
   * In zo's order: for each direction d, (seed_d, +1, ε) then (seed_d, −1, ε); one-sided:
   * (seed_d, +1, ε) for each d, then the unperturbed variant.
   */
  const zo_variant *variants;
  size_t n_queries;
  const zo_query *queries;
  /**
   * Example groups, `batch` per variant in variant order.
   */
  size_t n_groups;
  const zo_group *groups;
  size_t n_candidates;
  const zo_candidate *candidates;
} zo_plan;

/**
 * What the caller's forward scored: exactly one of the two arrays.
 */
typedef struct {
  /**
   * `sizeof(zo_step_scores)` (`zo_step_scores_default()`).
   */
  size_t struct_size;
  /**
   * log p(query.token | row) for each of the plan's `n_queries` queries, in plan order.
   */
  const float *query_logprobs;
  size_t n_query_logprobs;
  /**
   * Or MeZO's classification loss of each of the plan's `n_groups` groups, in plan order.
   */
  const float *example_losses;
  size_t n_example_losses;
} zo_step_scores;

/**
 * What one ZO step produced. The caller sets `struct_size` (`zo_step_result_default()`),
 * `capacity` and the array pointers (any may be NULL when not wanted); zo fills the rest.
 */
typedef struct {
  size_t struct_size;
  /**
   * Length of each array below; at least the config's q.
   */
  size_t capacity;
  /**
   * Mean loss under +εZ_d, per direction d.
   */
  double *loss_plus;
  /**
   * Mean loss under −εZ_d, per direction (two-sided estimators; NaN one-sided).
   */
  double *loss_minus;
  /**
   * The projected gradients g_d.
   */
  float *g;
  /**
   * The coefficient of each direction in the update: g_d, or the optimizer's transform of
   * it (sign, FZOO).
   */
  float *coefs;
  /**
   * The direction seeds.
   */
  uint64_t *seeds;
  /**
   * The step's index (from 0).
   */
  uint64_t step;
  /**
   * q, the directions filled in the arrays.
   */
  size_t n_directions;
  /**
   * The learning rate of the step.
   */
  float lr;
  /**
   * The unperturbed mean loss (one-sided estimators; NaN two-sided).
   */
  double loss0;
  /**
   * The mean over every scored variant (the training-loss estimate).
   */
  double loss;
  /**
   * 1 when the estimate was not finite and the step was logged as skipped (nothing
   * applied), as `zo-run train` does.
   */
  int32_t skipped;
  /**
   * Low-rank runs: the period's seed of V (`has_period_seed` = 1).
   */
  uint64_t period_seed;
  int32_t has_period_seed;
  /**
   * Packed tokens scored.
   */
  size_t tokens;
} zo_step_result;

/**
 * A seeded ZO-SGD update of one f32 tensor on the host, owned by the caller.
 */
typedef struct {
  /**
   * `sizeof(zo_update_params)` (`zo_update_default_params()`).
   */
  size_t struct_size;
  /**
   * The tensor, updated in place.
   */
  float *data;
  size_t n;
  /**
   * The RNG stream of the tensor: its id and role (zo's ids for zo's tensors, see
   * `zo_adapter_site.tensor_id`; any fixed ids for the caller's own).
   */
  uint32_t tensor_id;
  uint32_t role;
  /**
   * `ZO_DIST_*`, the config's distribution.
   */
  int32_t dist;
  /**
   * The step's direction seeds and coefficients (`zo_step_result`'s `seeds`, `coefs`).
   */
  const uint64_t *seeds;
  const float *coefs;
  size_t n_directions;
  float lr;
  float weight_decay;
  /**
   * 1: weight decay applies to this tensor (weights), 0: it does not (biases, norms).
   */
  int32_t decayed;
} zo_update_params;

/**
 * A Linear the family perturbs through factors (lora: its targets; lowrank: every block
 * Linear).
 */
typedef struct {
  /**
   * The layer, or −1 for a model-level Linear.
   */
  int32_t layer;
  /**
   * The module's HF name, NUL-terminated: "model.layers.0.self_attn.q_proj".
   */
  char hf_module[128];
  /**
   * The weight's shape, out × in.
   */
  size_t out_dim;
  size_t in_dim;
  size_t rank;
  /**
   * lora: α/r, the scale of B·A; lowrank: the scale s of U·Vᵀ (1 or 1/√r).
   */
  float scale;
  /**
   * The RNG tensor id of the site's weight (for `zo_apply_update` on LoRA factors).
   */
  uint32_t tensor_id;
} zo_adapter_site;

/**
 * How to open a session. Start from `zo_session_default_params()`.
 */
typedef struct {
  /**
   * `sizeof(zo_session_params)`, set by `zo_session_default_params()`.
   */
  size_t struct_size;
  /**
   * An HF model directory (config.json, safetensors, tokenizer.json) or a `.gguf` file.
   */
  const char *model_path;
  /**
   * A whole training config as JSON, as stored in a checkpoint's `config` object. NULL:
   * `preset` with its learning rate scaled to the model's size, as `zo-run train` does.
   */
  const char *config_json;
  /**
   * The preset used when `config_json` is NULL: mezo, mezo-lora, mezo-prefix, lozo,
   * lozo-m. NULL: lozo.
   */
  const char *preset;
  /**
   * `ZO_DEVICE_*`.
   */
  int32_t device;
  /**
   * GPU weight storage, `ZO_DTYPE_*` (arithmetic is fp32 in every case).
   */
  int32_t dtype;
} zo_session_params;

/**
 * One tokenized classification example, as the caller's arrays.
 */
typedef struct {
  /**
   * The rendered prompt's token ids (with the model's BOS if it uses one).
   */
  const uint32_t *prompt;
  size_t prompt_len;
  /**
   * Every candidate's tokens back to back.
   */
  const uint32_t *candidate_tokens;
  /**
   * `n_candidates + 1` offsets into `candidate_tokens`, from 0: candidate c is
   * `candidate_tokens[candidate_offsets[c] .. candidate_offsets[c + 1]]`.
   */
  const size_t *candidate_offsets;
  size_t n_candidates;
  /**
   * Index of the correct candidate.
   */
  size_t gold;
} zo_example;

/**
 * An evaluation's result.
 */
typedef struct {
  double accuracy;
  /**
   * Mean classification loss.
   */
  double mean_loss;
  size_t n_examples;
} zo_eval_result;

#define ZO_OK 0

/**
 * A required pointer or handle is NULL.
 */
#define ZO_ERR_NULL 1

/**
 * An argument is out of range, misaligned, not UTF-8, or a handle of the wrong kind.
 */
#define ZO_ERR_ARGUMENT 2

/**
 * A params struct's `struct_size` is not one this library knows (a header/library mismatch).
 */
#define ZO_ERR_STRUCT_SIZE 3

/**
 * An output buffer is smaller than the result; the needed size is reported where the call
 * has a `needed` argument.
 */
#define ZO_ERR_BUFFER_TOO_SMALL 4

/**
 * Shapes that do not match the model, the plan or each other.
 */
#define ZO_ERR_SHAPE 5

/**
 * A call out of order: a step ended twice or never begun, a second begin, a run whose
 * steps are all done, training data changed after training started.
 */
#define ZO_ERR_STATE 6

/**
 * Losses or log-probs that contain NaN or an infinity.
 */
#define ZO_ERR_NOT_FINITE 7

/**
 * A file or directory that does not exist or cannot be read or written (a full disk).
 */
#define ZO_ERR_IO 8

/**
 * A file whose contents are not what it claims (corrupt, truncated, another base model).
 */
#define ZO_ERR_FORMAT 9

/**
 * A configuration that is malformed or inconsistent.
 */
#define ZO_ERR_CONFIG 10

/**
 * Examples, tokens or a task that cannot be used.
 */
#define ZO_ERR_DATA 11

/**
 * Something this build or backend does not do: a dtype it was built without, a family the
 * GPU does not run, no CUDA in this build.
 */
#define ZO_ERR_UNSUPPORTED 12

/**
 * A CUDA failure: no driver or device, a failed launch.
 */
#define ZO_ERR_CUDA 13

/**
 * Training diverged.
 */
#define ZO_ERR_DIVERGED 14

/**
 * An internal error (a Rust panic, caught at the boundary). The handle it happened on may be
 * inconsistent: free it.
 */
#define ZO_ERR_INTERNAL 15

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * The ABI version this library implements; a client compares it with the
 * `ZO_ABI_VERSION` of the header it was built against.
 */
uint32_t zo_abi_version(void);

/**
 * A target of GPU 0's legacy default stream.
 */
zo_kernel_target zo_kernel_target_default_params(void);

/**
 * Opens the target's GPU and loads and resolves every kernel now, so that later calls only
 * enqueue launches: call it before capturing kernel calls into a CUDA graph (a capture
 * refuses the module load a first call would make). Calls without it do the same on first
 * use. `ZO_ERR_UNSUPPORTED` when this build has no CUDA kernels; `ZO_ERR_CUDA` when there is
 * no driver or no such GPU. Nothing to do for `ZO_KERNEL_HOST`.
 *
 * # Safety
 * `target` is NULL or points at a `zo_kernel_target` whose stream is NULL or live.
 */
zo_status zo_kernel_prepare(const zo_kernel_target *target);

/**
 * Writes `*bytes`, the size of the segment table of `n_segments` segments and `n_dirs`
 * directions. The table is 32-bit words: at word 0, `n_segments` records of six words
 * (row_start, row_end, seed bits 0..32, seed bits 32..64, scale as float bits, 0); at word
 * 6·n_segments, each segment's direction index (the position of its seed among the
 * directions); from the next even word, the `n_dirs` direction seeds as (low, high) word
 * pairs. Place it 8-byte aligned.
 *
 * # Safety
 * `bytes` points at a writable `size_t`.
 */
zo_status zo_kernel_segment_table_size(size_t n_segments, size_t n_dirs, size_t *bytes);

/**
 * Fills the segment table (host memory, `table_bytes` bytes at `table`, 4-byte aligned) for
 * `segments` (sorted by row, disjoint, rows below 2³²) and the step's direction seeds
 * `dir_seeds` (each segment's seed must be among them; the + and − segments of a direction
 * share it). `ZO_ERR_BUFFER_TOO_SMALL` when the table needs more than `table_bytes` (see
 * `zo_kernel_segment_table_size`), `ZO_ERR_ARGUMENT` for segments out of order or a seed that
 * is not a direction's. Copy the table to where the kernels run; they read it when they run,
 * so a captured graph can be replayed over a table rewritten for the next step with the same
 * counts.
 *
 * # Safety
 * `segments` holds `n_segments`, `dir_seeds` `n_dirs` elements (NULL when 0); `table` holds
 * `table_bytes` writable bytes.
 */
zo_status zo_kernel_segment_table_fill(const zo_kernel_segment *segments,
                                       size_t n_segments,
                                       const uint64_t *dir_seeds,
                                       size_t n_dirs,
                                       void *table,
                                       size_t table_bytes);

/**
 * Defaults of `zo_kernel_adapter_site`.
 */
zo_kernel_adapter_site zo_kernel_adapter_site_default_params(void);

/**
 * The shrink: writes the site's columns of x' (`x`, `x_len` elements of the site's dtype,
 * `[rows][ld]`, columns `[0, k)` read) from the factor (f32 `[rank][k]`, `factor_len`
 * floats): on row t, h = the row's shrink (see `ZO_ADAPTER_*`), sub-block 0 = `scale · h ·
 * 2^-e` (zeros when not live), sub-block 1 + d = `scale · h · sc_t` on the rows of direction
 * d's segments (zeros elsewhere), sc_t the row's segment scale. Zeroes columns
 * `[pad_begin, pad_end)` of every row (pass the group's padding on one site's call,
 * `pad_begin == pad_end` on the others). Bit for bit zo's CPU twin.
 *
 * `segment_table` is the table of `zo_kernel_segment_table_fill` for `n_segments` segments
 * and `n_dirs` directions (n_dirs ≤ the site's dirs), on the target's device, 8-byte aligned
 * (NULL when both counts are 0).
 *
 * # Safety
 * The pointers hold what their counts say on the target's device (see `zo_kernel_target`);
 * `target` and `site` point at valid structs.
 */
zo_status zo_kernel_adapter_shrink(const zo_kernel_target *target,
                                   const zo_kernel_adapter_site *site,
                                   size_t rows,
                                   void *x,
                                   size_t x_len,
                                   const float *factor,
                                   size_t factor_len,
                                   const void *segment_table,
                                   size_t n_segments,
                                   size_t n_dirs,
                                   size_t pad_begin,
                                   size_t pad_end);

/**
 * The pack: writes rows `[row0, row0 + out)` × the site's columns of W' (`w`, `w_len`
 * elements of the site's dtype, `[*][ld]`): sub-block 0 = the state · 2^e (`state`, f32,
 * `state_len` floats: bankᵀ `[rank][out]` or B `[out][rank]`), sub-block 1 + d = direction
 * d's Uᵀ_d or Z_B,d generated from its seed, for the table's `n_dirs` directions (other
 * sub-blocks keep what they hold). The segment table as for `zo_kernel_adapter_shrink`.
 * Bit for bit zo's CPU twin.
 *
 * # Safety
 * As `zo_kernel_adapter_shrink`.
 */
zo_status zo_kernel_adapter_pack(const zo_kernel_target *target,
                                 const zo_kernel_adapter_site *site,
                                 size_t out,
                                 size_t row0,
                                 void *w,
                                 size_t w_len,
                                 const float *state,
                                 size_t state_len,
                                 const void *segment_table,
                                 size_t n_segments,
                                 size_t n_dirs);

/**
 * Defaults of `zo_kernel_attention_params`.
 */
zo_kernel_attention_params zo_kernel_attention_default_params(void);

/**
 * Defaults of `zo_kernel_attention_buffers`: every pointer NULL, every count 0.
 */
zo_kernel_attention_buffers zo_kernel_attention_default_buffers(void);

/**
 * Causal prefill attention of every packed row over its sequence's prefix, cached context
 * and own tokens (in that order), with online softmax in f32, written in `out_dtype`. Within
 * a few ulp of a double-precision evaluation; bit-exact between the GPU and the host twin.
 * `ZO_ERR_SHAPE` when shapes and counts disagree, `ZO_ERR_UNSUPPORTED` for a head dimension
 * above 256 or counts past the kernel's 32 bits.
 *
 * # Safety
 * The buffers hold what their counts say on the target's device (see `zo_kernel_target`);
 * `target`, `params` and `buffers` point at valid structs.
 */
zo_status zo_kernel_attention_prefill(const zo_kernel_target *target,
                                      const zo_kernel_attention_params *params,
                                      const zo_kernel_attention_buffers *buffers);

/**
 * Defaults of `zo_kernel_pick_params`: no rows, greedy.
 */
zo_kernel_pick_params zo_kernel_pick_default_params(void);

/**
 * The token of each row of `logits` into `tokens` (uint32 `[rows]`, `tokens_len` ≥ rows),
 * exactly zo's CPU pick: the argmax over the vocabulary (ties to the lowest id, NaN never
 * wins, a row without a number picks 0), of `fma(logit, 1/T, G)` when seeded, with `G` the
 * Gumbel noise of token t at position `pos[r]` of sequence `seq[r]` (uint32 `[rows]` each,
 * `n_rows` ≥ rows; read only when seeded, else may be NULL). All on the target's device.
 * `ZO_ERR_SHAPE` when an extent exceeds its count, the vocabulary is empty or the
 * temperature is not a finite value > 0.
 *
 * # Safety
 * The pointers hold what their counts say on the target's device (see `zo_kernel_target`);
 * `target` and `params` point at valid structs.
 */
zo_status zo_kernel_pick(const zo_kernel_target *target,
                         const zo_kernel_pick_params *params,
                         const float *logits,
                         size_t logits_len,
                         const uint32_t *seq,
                         const uint32_t *pos,
                         size_t n_rows,
                         uint32_t *tokens,
                         size_t tokens_len);

/**
 * Defaults of `zo_kernel_logprob_params`: no rows.
 */
zo_kernel_logprob_params zo_kernel_logprob_default_params(void);

/**
 * Log-softmax at the scoring rows, read at the candidates' tokens: `lse[r] = log Σ_v
 * exp(logits[r][v])` and, for each query q, `logprobs[q] = logits[row_q][token_q] -
 * lse[row_q]`, in f32 with f32 block reductions (within a few ulp of a double-precision
 * evaluation). `queries` holds `n_queries` pairs `(row_q, token_q)` of uint32 (2·n_queries
 * words); a query whose row or token is out of range gets NaN. `lse` is optional (NULL: not
 * written; else `lse_len` ≥ rows floats). `logits` holds `logits_len` floats, `logprobs`
 * `logprobs_len` ≥ n_queries. All on the target's device. `ZO_ERR_SHAPE` when an extent
 * exceeds its count or the vocabulary is empty.
 *
 * # Safety
 * The pointers hold what their counts say on the target's device (see `zo_kernel_target`);
 * `target` and `params` point at valid structs.
 */
zo_status zo_kernel_candidate_logprobs(const zo_kernel_target *target,
                                       const zo_kernel_logprob_params *params,
                                       const float *logits,
                                       size_t logits_len,
                                       const uint32_t *queries,
                                       size_t n_queries,
                                       float *lse,
                                       size_t lse_len,
                                       float *logprobs,
                                       size_t logprobs_len);

/**
 * Writes `out[d]` = direction `d` of seed `seeds[d]` and coefficient `coefs[d]`, for `d < n`
 * (host memory). For the dense and LoRA SGD updates the coefficient is `-(lr * g_d) / q` in
 * float arithmetic (q directions); for the low-rank bank, see `zo_kernel_lowrank_bank_update`.
 * `ZO_ERR_NOT_FINITE` for a NaN or infinite coefficient.
 *
 * # Safety
 * `seeds` and `coefs` hold `n` elements and `out` room for `n` (each may be NULL when `n` is
 * 0).
 */
zo_status zo_kernel_update_dirs_fill(const uint64_t *seeds,
                                     const float *coefs,
                                     size_t n,
                                     zo_kernel_update_dir *out);

/**
 * Defaults of `zo_kernel_axpy_params`: an f32 tensor of no elements.
 */
zo_kernel_axpy_params zo_kernel_axpy_default_params(void);

/**
 * The seeded update in place: for every element θ of the tensor (computed in f32 from its
 * dtype), the optional decay `θ = fmaf(-λ, θ, θ)`, then for each direction d in order
 * `θ = fmaf(dirs[d].coef, z_d, θ)` with z_d element `i * cols + j` of the stream (seed_d,
 * tensor_id, role, dist), rounded once to the dtype (round to nearest even). Bit for bit
 * zo's own dense and LoRA updates, and MeZO's in-place perturbation with one direction of
 * coefficient ±ε.
 *
 * `theta` holds `theta_len` elements of the dtype, `dirs` `n_dirs` directions (may be NULL
 * when `n_dirs` is 0), both on the target's device. `ZO_ERR_SHAPE` when the tensor's extent
 * (`(rows - 1) * ld + cols`) exceeds `theta_len` or `ld < cols`.
 *
 * # Safety
 * The pointers hold what their counts say on the target's device (see `zo_kernel_target`);
 * `target` and `params` point at valid structs.
 */
zo_status zo_kernel_seeded_axpy(const zo_kernel_target *target,
                                const zo_kernel_axpy_params *params,
                                void *theta,
                                size_t theta_len,
                                const zo_kernel_update_dir *dirs,
                                size_t n_dirs);

/**
 * Defaults of `zo_kernel_bank_params`.
 */
zo_kernel_bank_params zo_kernel_bank_default_params(void);

/**
 * One step's update of a LoZO bank `bankᵀ` (f32 `[rank][out]`, `n` = rank·out elements),
 * with u_d element `e` of Uᵀ_d, the stream (seed_d, tensor_id, `ZO_ROLE_LOWRANK_U`, dist):
 * - `momentum` NULL (LoZO): for each d, `bank[e] = fmaf(c_d, u_d, bank[e])`, with
 *   `c_d = -(lr * g_d) / q`;
 * - `momentum` non-NULL (LoZO-M, f32, `n` elements, updated too): `m = beta * m`, then for
 *   each d `m = fmaf(a_d, u_d, m)`, then `bank = fmaf(neg_lr, m, bank)`, with `a_d = g_d / q`
 *   on the first update of a run and `((1 - beta) * g_d) / q` after.
 *
 * The coefficients are `dirs[d].coef` (`n_dirs` of them). Bit for bit zo's lowrank family.
 *
 * # Safety
 * As `zo_kernel_seeded_axpy`.
 */
zo_status zo_kernel_lowrank_bank_update(const zo_kernel_target *target,
                                        const zo_kernel_bank_params *params,
                                        float *bank,
                                        float *momentum,
                                        size_t n,
                                        const zo_kernel_update_dir *dirs,
                                        size_t n_dirs);

/**
 * Defaults of `zo_kernel_moments_params`: momentum 0.9, lr 0.
 */
zo_kernel_moments_params zo_kernel_moments_default_params(void);

/**
 * One update of ZO-SGD momentum or ZO-Adam on the f32 tensor `theta` (`n` elements, RNG index
 * = element) and its moments `m` (and, for Adam, `v`), each `n` floats that start at zero
 * before a run's first update. Per element, after the optional decay: ĝ = the fmaf chain
 * over d of `dirs[d].coef * z_d` from 0, with `coef = g_d / q`; momentum: `m = fmaf(β, m,
 * ĝ)`, `θ = fmaf(-lr, m, θ)`; Adam: `m = fmaf(β₁, m, (1-β₁)ĝ)`, `v = fmaf(β₂, v, (1-β₂)ĝ²)`,
 * `θ = fmaf(-lr c₁, m / (sqrtf(v c₂) + ε), θ)` with the bias corrections c₁, c₂ of update t.
 * Bit for bit zo's own momentum and Adam on LoRA factors and prefixes.
 *
 * `v` may be NULL for momentum. `ZO_ERR_ARGUMENT` for a rule or coefficient out of range.
 *
 * # Safety
 * As `zo_kernel_seeded_axpy`.
 */
zo_status zo_kernel_moments_update(const zo_kernel_target *target,
                                   const zo_kernel_moments_params *params,
                                   float *theta,
                                   float *m,
                                   float *v,
                                   size_t n,
                                   const zo_kernel_update_dir *dirs,
                                   size_t n_dirs);

/**
 * Defaults of `zo_kernel_merge_params`.
 */
zo_kernel_merge_params zo_kernel_merge_default_params(void);

/**
 * Merges a product of factors into a weight: `w[i][j] = round(fmaf(scale, acc, w[i][j]))`
 * for i < out, j < k, where acc is the fmaf chain from 0 over ascending kk of
 * `b(i, kk) * a[kk * k + j]`; `b(i, kk)` is `b[kk * out + i]` (`ZO_FACTOR_BANK_T`) or
 * `b[i * rank + kk]` (`ZO_FACTOR_LORA_B`); `a` is f32 `[rank][k]` (Vᵀ or LoRA A). Bit for bit
 * zo's merges of a LoZO bank at a period's end and of LoRA into the base weight.
 *
 * `w` holds `w_len` elements of the dtype, `b` `b_len` and `a` `a_len` floats, on the
 * target's device. `ZO_ERR_SHAPE` when an extent exceeds its count.
 *
 * # Safety
 * As `zo_kernel_seeded_axpy`.
 */
zo_status zo_kernel_factor_merge(const zo_kernel_target *target,
                                 const zo_kernel_merge_params *params,
                                 void *w,
                                 size_t w_len,
                                 const float *b,
                                 size_t b_len,
                                 const float *a,
                                 size_t a_len);

/**
 * An empty plan view with `struct_size` set.
 */
zo_plan zo_plan_default(void);

/**
 * Begins the next step: starts it on the session's state (low-rank: the period switch)
 * and fills `*plan` with the step's variants and packed plan, for the caller's forward.
 * End it with `zo_step_end` or `zo_step_skip`.
 *
 * # Safety
 * `s` is a live session; `plan` points at a `zo_plan` with `struct_size` set.
 */
zo_status zo_step_begin(zo_session *s, zo_plan *plan);

/**
 * zo's own forward over the begun step's plan: writes the `n_queries` per-query log-probs
 * into `out` (`n` floats), ready for `zo_step_end`.
 *
 * # Safety
 * `s` is a live session; `out` holds `n` writable floats.
 */
zo_status zo_session_score(const zo_session *s, float *out, size_t n);

/**
 * No scores, `struct_size` set.
 */
zo_step_scores zo_step_scores_default(void);

/**
 * Ends the begun step with the caller's scores: estimates g, applies the update to the
 * session's state, logs the step and fills `*out` (the update's seeds and coefficients, for
 * `zo_apply_update`). Scores of the wrong length are `ZO_ERR_SHAPE`; a NaN or infinite score
 * is `ZO_ERR_NOT_FINITE`. In both cases the step stays begun: score it again, or skip it.
 *
 * # Safety
 * `s` is a live session; `scores` points at a `zo_step_scores` whose array holds its stated
 * length; `out` is a `zo_step_result` whose arrays hold `capacity` elements.
 */
zo_status zo_step_end(zo_session *s, const zo_step_scores *scores, zo_step_result *out);

/**
 * Logs the begun step as skipped (nothing applied), as training does with a non-finite
 * estimate; `reason` (may be NULL) goes into the log.
 *
 * # Safety
 * `s` is a live session; `reason` is NULL or NUL-terminated.
 */
zo_status zo_step_skip(zo_session *s, const char *reason);

/**
 * No tensor, Gaussian directions, no weight decay.
 */
zo_update_params zo_update_default_params(void);

/**
 * Applies a step's update to a host tensor the caller owns, element i as zo updates its
 * own: with weight decay (and `decayed`) first θ = fma(−lr·wd, θ, θ); then for each
 * direction d in order θ = fma(c_d, z_d, θ) with c_d = −(lr·coef_d)/q and z_d element i of
 * the stream (seed_d, tensor_id, role). Bit for bit the update zo applies to the dense
 * family's weights and to LoRA factors (role 3 for A, 4 for B), and that of the kernel
 * level's `zo_kernel_seeded_axpy`.
 *
 * # Safety
 * `p` points at a `zo_update_params` whose arrays hold their stated lengths.
 */
zo_status zo_apply_update(const zo_update_params *p);

/**
 * Elements `start .. start + n` of the random stream (seed, tensor_id, role) in `dist`
 * (`ZO_DIST_*`): the Z every perturbation and update of zo regenerates, bit-exact with the
 * device's.
 *
 * # Safety
 * `out` holds `n` writable floats.
 */
zo_status zo_rng_fill(uint64_t seed,
                      uint32_t tensor_id,
                      uint32_t role,
                      uint64_t start,
                      int32_t dist,
                      float *out,
                      size_t n);

/**
 * The family's adapter sites: `*n` gets their number; the first `min(*n, cap)` are written
 * to `out` (NULL with `cap` 0 to ask for the number only).
 *
 * # Safety
 * `s` is a live session; `out` holds `cap` writable sites; `n` is writable.
 */
zo_status zo_session_adapter_sites(const zo_session *s,
                                   zo_adapter_site *out,
                                   size_t cap,
                                   size_t *n);

/**
 * The LoRA factors `variant` runs with at adapter site `site` (lora family): `a` gets
 * A + sign·ε·Z_A (rank × in, row-major) and `b` gets B + sign·ε·Z_B (out × rank), each
 * element one fma, so the variant's Linear is y = x·Wᵀ + scale·(x·aᵀ)·bᵀ. A NULL `variant`
 * gives the current factors.
 *
 * # Safety
 * `s` is a live session; `variant` is NULL or valid; `a`/`b` hold `a_len`/`b_len` floats.
 */
zo_status zo_session_lora_factors(const zo_session *s,
                                  const zo_variant *variant,
                                  size_t site,
                                  float *a,
                                  size_t a_len,
                                  float *b,
                                  size_t b_len);

/**
 * The low-rank perturbation `variant` adds at adapter site `site` (lowrank family), as
 * factors of the begun step: `u` gets sign·ε·s·U (out × rank, row-major) and `v` gets V
 * (in × rank), so the variant's weight is W + u·vᵀ, W being the session's trained weight.
 *
 * # Safety
 * `s` is a live session; `variant` is valid; `u`/`v` hold `u_len`/`v_len` floats.
 */
zo_status zo_session_lowrank_factors(const zo_session *s,
                                     const zo_variant *variant,
                                     size_t site,
                                     float *u,
                                     size_t u_len,
                                     float *v,
                                     size_t v_len);

/**
 * Defaults: no model (it must be set), the lozo preset, `ZO_DEVICE_AUTO`, bf16 storage.
 */
zo_session_params zo_session_default_params(void);

/**
 * An empty result: `struct_size` set, no arrays.
 */
zo_step_result zo_step_result_default(void);

/**
 * Opens a session: loads the model and its tokenizer, checks the config and builds the
 * family's fresh state on the device. On success `*out` holds the new handle (free it with
 * `zo_session_free`); on failure `*out` is NULL.
 *
 * # Safety
 * `params` points at a `zo_session_params` whose strings are NUL-terminated; `out` is
 * writable.
 */
zo_status zo_session_open(const zo_session_params *params, zo_session **out);

/**
 * Frees a session and everything it holds. NULL is ignored.
 *
 * # Safety
 * `s` is NULL or a live session handle, not used again after this call.
 */
void zo_session_free(zo_session *s);

/**
 * The session's whole training config as JSON (what its checkpoints store). `*needed` (if
 * not NULL) gets the size with the NUL; a smaller `cap` is `ZO_ERR_BUFFER_TOO_SMALL`.
 *
 * # Safety
 * `s` is a live session; `buf` holds `cap` writable bytes; `needed` is NULL or writable.
 */
zo_status zo_session_config_json(const zo_session *s, char *buf, size_t cap, size_t *needed);

/**
 * Replaces the train, dev and test examples with the config's task read from the split
 * files in `data_dir` (train/dev/test .jsonl or .tsv), as `zo-run train --data` does.
 * Refused once training has started.
 *
 * # Safety
 * `s` is a live session; `data_dir` is a NUL-terminated string.
 */
zo_status zo_session_load_task(zo_session *s, const char *data_dir);

/**
 * Appends `n` tokenized examples to `split`. Token ids must be inside the model's
 * vocabulary; every example needs a prompt, two or more non-empty candidates and a `gold`
 * among them. Train examples are refused once training has started. Nothing is added when
 * any example is refused.
 *
 * # Safety
 * `s` is a live session; `examples` points at `n` examples whose arrays hold the lengths
 * they state.
 */
zo_status zo_session_add_examples(zo_session *s,
                                  int32_t split,
                                  const zo_example *examples,
                                  size_t n);

/**
 * Tokenizes one example with the session's tokenizer, as the data pipeline does (the
 * prompt with the tokenizer's special tokens, each candidate alone without them, so label
 * words keep their leading space: " great"), and appends it to `split`.
 *
 * # Safety
 * `s` is a live session; `prompt` and the `n_candidates` strings of `candidates` are
 * NUL-terminated.
 */
zo_status zo_session_add_text_example(zo_session *s,
                                      int32_t split,
                                      const char *prompt,
                                      const char *const *candidates,
                                      size_t n_candidates,
                                      size_t gold);

/**
 * How many examples `split` holds.
 *
 * # Safety
 * `s` is a live session; `out` is writable.
 */
zo_status zo_session_n_examples(const zo_session *s, int32_t split, size_t *out);

/**
 * Steps completed so far (applied or skipped); the next step's index.
 *
 * # Safety
 * `s` is a live session; `out` is writable.
 */
zo_status zo_session_steps_done(const zo_session *s, uint64_t *out);

/**
 * Runs the next ZO step whole, as `zo-run train` does: scores the step's batch under every
 * variant, estimates g, applies the update and logs the step. A non-finite estimate is
 * logged as skipped (`out->skipped` = 1) and is not an error.
 *
 * # Safety
 * `s` is a live session; `out` is a `zo_step_result` whose arrays hold `capacity` elements.
 */
zo_status zo_session_step(zo_session *s, zo_step_result *out);

/**
 * Accuracy and mean loss of the current state on `split` (unperturbed). A dev evaluation is
 * recorded in the session's log, as the training loop records its evaluations (model
 * selection, `ZO_EXPORT_BEST`).
 *
 * # Safety
 * `s` is a live session; `out` is writable.
 */
zo_status zo_session_evaluate(zo_session *s, int32_t split, zo_eval_result *out);

/**
 * Writes the seed-log checkpoint to `path`, atomically (a crash or a full disk keeps the
 * previous file). It is the file `zo-run train` writes, and `zo-run export` reads it.
 *
 * # Safety
 * `s` is a live session; `path` is NUL-terminated.
 */
zo_status zo_session_save(const zo_session *s, const char *path);

/**
 * Continues from a checkpoint of the same base model and config: replays its seed log
 * onto the session's fresh state. Only before the session's first step.
 *
 * # Safety
 * `s` is a live session; `path` is NUL-terminated.
 */
zo_status zo_session_resume(zo_session *s, const char *path);

/**
 * Replays the log onto the base weights and writes an HF directory to `out_dir`: merged
 * weights as safetensors in `dtype` (`ZO_DTYPE_*`), the config and tokenizer files, and for
 * the lora family a PEFT adapter in `out_dir/adapter/`. `state` is `ZO_EXPORT_BEST` or
 * `ZO_EXPORT_LAST`.
 *
 * # Safety
 * `s` is a live session; `out_dir` is NUL-terminated.
 */
zo_status zo_session_export(const zo_session *s, const char *out_dir, int32_t state, int32_t dtype);

/**
 * The message of the last failed zo call on this thread ("" after a successful call). The
 * pointer stays valid until the next zo call on this thread.
 */
const char *zo_last_error(void);

/**
 * The name of a status code ("ZO_ERR_SHAPE"), or "unknown status" (static storage).
 */
const char *zo_status_name(zo_status status);

/**
 * Panics inside the entry-point guard, so a client can check that a panic comes back as
 * `ZO_ERR_INTERNAL` with a message and never unwinds into C. Nothing else calls it.
 */
zo_status zo_debug_panic(void);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* ZO_H */
