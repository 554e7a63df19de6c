// The buffer-init kernels (csrc/init.cu), launchable by name.
#include "zo_emu.h"

#include "init.cu"

#define ZO_EMU_INIT(suffix, T) ZO_EMU_KERNEL(zo_init_##suffix),
ZO_EMU_FAMILY(init, ZO_INSTANTIATE(ZO_EMU_INIT))
