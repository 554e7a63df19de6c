// Emulated launchers of the K-augmented GEMM's shrink and pack kernels (csrc/adapter.cu).
#include "zo_emu.h"

#include "adapter.cu"

#define ZO_EMU_ADAPTER(suffix, T)                                                              \
    extern "C" void zo_emu_adapter_shrink_##suffix(                                            \
        ZoEmuDim grid, ZoEmuDim block, size_t smem, ZoShrinkParams p, T* x,                    \
        const float* factor, const ZoSegment* segs, const uint32_t* seg_dir) {                 \
        zo_emu::launch_kernel(zo_adapter_shrink_##suffix, grid, block, smem, p, x, factor,     \
                              segs, seg_dir);                                                  \
    }                                                                                          \
    extern "C" void zo_emu_adapter_pack_##suffix(ZoEmuDim grid, ZoEmuDim block, size_t smem,  \
                                                 ZoPackParams p, T* w, const float* state,     \
                                                 const uint64_t* seeds) {                      \
        zo_emu::launch_kernel(zo_adapter_pack_##suffix, grid, block, smem, p, w, state, seeds); \
    }
ZO_INSTANTIATE(ZO_EMU_ADAPTER)
