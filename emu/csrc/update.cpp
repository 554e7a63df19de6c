// The seeded update kernels (csrc/update.cu), launchable by name.
#include "zo_emu.h"

#include "update.cu"

#define ZO_EMU_UPDATE(suffix, T)                                                               \
    ZO_EMU_KERNEL(zo_seeded_axpy_##suffix), ZO_EMU_KERNEL(zo_factor_merge_##suffix),
ZO_EMU_FAMILY(update, ZO_INSTANTIATE(ZO_EMU_UPDATE) ZO_EMU_KERNEL(zo_lowrank_momentum),
              ZO_EMU_KERNEL(zo_moments_update),
              ZO_EMU_KERNEL(zo_lowrank_basis), ZO_EMU_KERNEL(zo_lowrank_project))
