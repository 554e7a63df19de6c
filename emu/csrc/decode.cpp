// The decode kernels (csrc/decode.cu), launchable by name.
#include "zo_emu.h"

#include "decode.cu"

#define ZO_EMU_DECODE(suffix, T)                                                               \
    ZO_EMU_KERNEL(zo_attn_decode_hd64_##suffix), ZO_EMU_KERNEL(zo_attn_decode_hd128_##suffix), \
        ZO_EMU_KERNEL(zo_attn_decode_any_##suffix),                                           \
        ZO_EMU_KERNEL(zo_attn_decode_combine_##suffix),
ZO_EMU_FAMILY(decode, ZO_INSTANTIATE(ZO_EMU_DECODE) ZO_EMU_KERNEL(zo_pick))
