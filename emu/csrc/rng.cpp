// Emulated launchers of the RNG draw kernels (csrc/rng.cu).
#include "zo_emu.h"

#include "rng.cu"

extern "C" void zo_emu_rng_draw_f32(ZoEmuDim grid, ZoEmuDim block, size_t smem,
                                    ZoRngDrawParams p, float* out) {
    zo_emu::launch_kernel(zo_rng_draw_f32, grid, block, smem, p, out);
}

extern "C" void zo_emu_rng_draw_u32(ZoEmuDim grid, ZoEmuDim block, size_t smem,
                                    ZoRngDrawParams p, uint32_t* out) {
    zo_emu::launch_kernel(zo_rng_draw_u32, grid, block, smem, p, out);
}
