// Emulated launchers of the seeded update kernels (csrc/update.cu).
#include "zo_emu.h"

#include "update.cu"

#define ZO_EMU_UPDATE(suffix, T)                                                               \
    extern "C" void zo_emu_seeded_axpy_##suffix(ZoEmuDim grid, ZoEmuDim block, size_t smem,    \
                                                ZoAxpyParams p, T* theta,                      \
                                                const ZoUpdateDir* dirs) {                     \
        zo_emu::launch_kernel(zo_seeded_axpy_##suffix, grid, block, smem, p, theta, dirs);     \
    }                                                                                          \
    extern "C" void zo_emu_factor_merge_##suffix(ZoEmuDim grid, ZoEmuDim block, size_t smem,   \
                                                 ZoMergeParams p, T* w, const float* b,        \
                                                 const float* a) {                             \
        zo_emu::launch_kernel(zo_factor_merge_##suffix, grid, block, smem, p, w, b, a);        \
    }
ZO_INSTANTIATE(ZO_EMU_UPDATE)

extern "C" void zo_emu_lowrank_momentum(ZoEmuDim grid, ZoEmuDim block, size_t smem,
                                        ZoMomentumParams p, float* bank, float* mom,
                                        const ZoUpdateDir* dirs) {
    zo_emu::launch_kernel(zo_lowrank_momentum, grid, block, smem, p, bank, mom, dirs);
}

extern "C" void zo_emu_lowrank_basis(ZoEmuDim grid, ZoEmuDim block, size_t smem, ZoBasisParams p,
                                     float* out, const float* old_vt, const float* new_vt) {
    zo_emu::launch_kernel(zo_lowrank_basis, grid, block, smem, p, out, old_vt, new_vt);
}

extern "C" void zo_emu_lowrank_project(ZoEmuDim grid, ZoEmuDim block, size_t smem,
                                       ZoBasisParams p, float* new_m, const float* m,
                                       const float* pm) {
    zo_emu::launch_kernel(zo_lowrank_project, grid, block, smem, p, new_m, m, pm);
}
