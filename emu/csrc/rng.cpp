// The RNG draw kernels (csrc/rng.cu), launchable by name.
#include "zo_emu.h"

#include "rng.cu"

ZO_EMU_FAMILY(rng, ZO_EMU_KERNEL(zo_rng_draw_f32), ZO_EMU_KERNEL(zo_rng_draw_u32))
