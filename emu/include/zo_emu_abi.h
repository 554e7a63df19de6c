/* The C ABI of launch by name (emu/csrc/registry.cpp) and its Rust declaration (emu/src/lib.rs).
 * Mirrored by zo_emu::ZoEmuDim. */
#ifndef ZO_EMU_ABI_H
#define ZO_EMU_ABI_H

#include <stdint.h>

/* Grid or block dimensions of a launch, as cudarc's LaunchConfig gives them. */
typedef struct ZoEmuDim {
    uint32_t x;
    uint32_t y;
    uint32_t z;
} ZoEmuDim;

#endif /* ZO_EMU_ABI_H */
