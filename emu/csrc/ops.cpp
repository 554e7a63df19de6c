// The row-op kernels (csrc/ops.cu), launchable by name.
#include "zo_emu.h"

#include "ops.cu"

#define ZO_EMU_OPS(suffix, T)                                                                  \
    ZO_EMU_KERNEL(zo_embed_##suffix), ZO_EMU_KERNEL(zo_norm_##suffix),                         \
        ZO_EMU_KERNEL(zo_act_##suffix),
ZO_EMU_FAMILY(ops, ZO_INSTANTIATE(ZO_EMU_OPS))
