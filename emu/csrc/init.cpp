// Emulated launcher of the on-device init kernel (csrc/init.cu).
#include "zo_emu.h"

#include "init.cu"

extern "C" void zo_emu_init_f32(ZoEmuDim grid, ZoEmuDim block, size_t smem, ZoInitParams p,
                                float* out) {
    zo_emu::launch_kernel(zo_init_f32, grid, block, smem, p, out);
}
