// The K-augmented GEMM's shrink and pack kernels (csrc/adapter.cu), launchable by name.
#include "zo_emu.h"

#include "adapter.cu"

#define ZO_EMU_ADAPTER(suffix, T)                                                              \
    ZO_EMU_KERNEL(zo_adapter_shrink_##suffix), ZO_EMU_KERNEL(zo_adapter_pack_##suffix),
ZO_EMU_FAMILY(adapter, ZO_INSTANTIATE(ZO_EMU_ADAPTER))
