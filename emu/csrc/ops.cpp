// Emulated launchers of the row-op kernels (csrc/ops.cu). Storage-type buffers arrive as raw
// pointers with the storage type as a code (0 f32, 1 bf16, 2 f16), which picks the instance.
#include "zo_emu.h"

#include "ops.cu"

extern "C" void zo_emu_embed(ZoEmuDim grid, ZoEmuDim block, size_t smem, uint32_t st,
                             ZoEmbedParams p, const uint32_t* tokens, const uint32_t* positions,
                             const void* w_e, const void* w_p, float* x) {
    switch (st) {
    case 0: zo_emu::launch_kernel(zo_embed_f32, grid, block, smem, p, tokens, positions,
                                  (const float*)w_e, (const float*)w_p, x); break;
    case 1: zo_emu::launch_kernel(zo_embed_bf16, grid, block, smem, p, tokens, positions,
                                  (const zo_bf16*)w_e, (const zo_bf16*)w_p, x); break;
    case 2: zo_emu::launch_kernel(zo_embed_f16, grid, block, smem, p, tokens, positions,
                                  (const zo_f16*)w_e, (const zo_f16*)w_p, x); break;
    default: zo_emu::fail("unknown storage type %u", st);
    }
}

extern "C" void zo_emu_norm(ZoEmuDim grid, ZoEmuDim block, size_t smem, uint32_t st,
                            ZoNormParams p, const uint32_t* row_idx, const void* w,
                            const void* b, float* x, void* out) {
    switch (st) {
    case 0: zo_emu::launch_kernel(zo_norm_f32, grid, block, smem, p, row_idx, (const float*)w,
                                  (const float*)b, x, (float*)out); break;
    case 1: zo_emu::launch_kernel(zo_norm_bf16, grid, block, smem, p, row_idx,
                                  (const zo_bf16*)w, (const zo_bf16*)b, x, (zo_bf16*)out); break;
    case 2: zo_emu::launch_kernel(zo_norm_f16, grid, block, smem, p, row_idx, (const zo_f16*)w,
                                  (const zo_f16*)b, x, (zo_f16*)out); break;
    default: zo_emu::fail("unknown storage type %u", st);
    }
}

extern "C" void zo_emu_act(ZoEmuDim grid, ZoEmuDim block, size_t smem, uint32_t st,
                           ZoActParams p, const float* in, void* out) {
    switch (st) {
    case 0: zo_emu::launch_kernel(zo_act_f32, grid, block, smem, p, in, (float*)out); break;
    case 1: zo_emu::launch_kernel(zo_act_bf16, grid, block, smem, p, in, (zo_bf16*)out); break;
    case 2: zo_emu::launch_kernel(zo_act_f16, grid, block, smem, p, in, (zo_f16*)out); break;
    default: zo_emu::fail("unknown storage type %u", st);
    }
}

extern "C" void zo_emu_bias_add(ZoEmuDim grid, ZoEmuDim block, size_t smem, uint32_t st,
                                ZoRowsParams p, float* dst, const void* bias) {
    switch (st) {
    case 0: zo_emu::launch_kernel(zo_bias_add_f32, grid, block, smem, p, dst,
                                  (const float*)bias); break;
    case 1: zo_emu::launch_kernel(zo_bias_add_bf16, grid, block, smem, p, dst,
                                  (const zo_bf16*)bias); break;
    case 2: zo_emu::launch_kernel(zo_bias_add_f16, grid, block, smem, p, dst,
                                  (const zo_f16*)bias); break;
    default: zo_emu::fail("unknown storage type %u", st);
    }
}

extern "C" void zo_emu_to_storage(ZoEmuDim grid, ZoEmuDim block, size_t smem, uint32_t st,
                                  ZoRowsParams p, const float* src, void* dst) {
    switch (st) {
    case 0: zo_emu::launch_kernel(zo_to_storage_f32, grid, block, smem, p, src, (float*)dst); break;
    case 1: zo_emu::launch_kernel(zo_to_storage_bf16, grid, block, smem, p, src,
                                  (zo_bf16*)dst); break;
    case 2: zo_emu::launch_kernel(zo_to_storage_f16, grid, block, smem, p, src,
                                  (zo_f16*)dst); break;
    default: zo_emu::fail("unknown storage type %u", st);
    }
}

extern "C" void zo_emu_from_storage(ZoEmuDim grid, ZoEmuDim block, size_t smem, uint32_t st,
                                    ZoRowsParams p, const void* src, float* dst) {
    switch (st) {
    case 0: zo_emu::launch_kernel(zo_from_storage_f32, grid, block, smem, p, (const float*)src,
                                  dst); break;
    case 1: zo_emu::launch_kernel(zo_from_storage_bf16, grid, block, smem, p,
                                  (const zo_bf16*)src, dst); break;
    case 2: zo_emu::launch_kernel(zo_from_storage_f16, grid, block, smem, p,
                                  (const zo_f16*)src, dst); break;
    default: zo_emu::fail("unknown storage type %u", st);
    }
}

extern "C" void zo_emu_fill(ZoEmuDim grid, ZoEmuDim block, size_t smem, uint32_t st,
                            ZoRowsParams p, void* dst) {
    switch (st) {
    case 0: zo_emu::launch_kernel(zo_fill_f32, grid, block, smem, p, (float*)dst); break;
    case 1: zo_emu::launch_kernel(zo_fill_bf16, grid, block, smem, p, (zo_bf16*)dst); break;
    case 2: zo_emu::launch_kernel(zo_fill_f16, grid, block, smem, p, (zo_f16*)dst); break;
    default: zo_emu::fail("unknown storage type %u", st);
    }
}

extern "C" void zo_emu_add_f32(ZoEmuDim grid, ZoEmuDim block, size_t smem, ZoRowsParams p,
                               float* dst, const float* src) {
    zo_emu::launch_kernel(zo_add_f32, grid, block, smem, p, dst, src);
}

extern "C" void zo_emu_scale_f32(ZoEmuDim grid, ZoEmuDim block, size_t smem, ZoRowsParams p,
                                 float* dst) {
    zo_emu::launch_kernel(zo_scale_f32, grid, block, smem, p, dst);
}

extern "C" void zo_emu_gather_rows_f32(ZoEmuDim grid, ZoEmuDim block, size_t smem,
                                       ZoRowsParams p, const uint32_t* idx, const float* src,
                                       float* dst) {
    zo_emu::launch_kernel(zo_gather_rows_f32, grid, block, smem, p, idx, src, dst);
}
