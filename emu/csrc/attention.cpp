// Emulated launchers of the attention kernels (csrc/attention.cu).
#include "zo_emu.h"

#include "attention.cu"

extern "C" void zo_emu_rope(ZoEmuDim grid, ZoEmuDim block, size_t smem, ZoRopeParams p,
                            float* x, const float* cos_t, const float* sin_t) {
    zo_emu::launch_kernel(zo_rope, grid, block, smem, p, x, cos_t, sin_t);
}

extern "C" void zo_emu_kv_write(ZoEmuDim grid, ZoEmuDim block, size_t smem, ZoKvWriteParams p,
                                const float* qkv, const uint32_t* slots, float* k_cache,
                                float* v_cache) {
    zo_emu::launch_kernel(zo_kv_write, grid, block, smem, p, qkv, slots, k_cache, v_cache);
}

// One launcher per prefill instance; `out` is float* for _f32 and 16-bit storage otherwise.
#define ZO_EMU_ATTN_PREFILL(name, T)                                                            \
    extern "C" void zo_emu_##name(ZoEmuDim grid, ZoEmuDim block, size_t smem, ZoAttnParams p,   \
                                  const float* q, const float* k_cache, const float* v_cache,   \
                                  const uint32_t* cu_seqlens, const uint32_t* ctx_lens,         \
                                  const uint32_t* block_tables, const float* prefix_k,          \
                                  const float* prefix_v, const ZoSegment* segments, void* out) { \
        zo_emu::launch_kernel(name, grid, block, smem, p, q, k_cache, v_cache, cu_seqlens,     \
                              ctx_lens, block_tables, prefix_k, prefix_v, segments,            \
                              static_cast<T*>(out));                                            \
    }
#define ZO_EMU_ATTN_PREFILL_ALL(suffix, T)                                                      \
    ZO_EMU_ATTN_PREFILL(zo_attn_prefill_hd64_##suffix, T)                                       \
    ZO_EMU_ATTN_PREFILL(zo_attn_prefill_hd128_##suffix, T)                                      \
    ZO_EMU_ATTN_PREFILL(zo_attn_prefill_any_##suffix, T)
ZO_INSTANTIATE(ZO_EMU_ATTN_PREFILL_ALL)
