// The attention kernels (csrc/attention.cu), launchable by name.
#include "zo_emu.h"

#include "attention.cu"

#define ZO_EMU_ATTN(suffix, T)                                                                 \
    ZO_EMU_KERNEL(zo_attn_prefill_hd64_##suffix), ZO_EMU_KERNEL(zo_attn_prefill_hd128_##suffix), \
        ZO_EMU_KERNEL(zo_attn_prefill_any_##suffix),
ZO_EMU_FAMILY(attention, ZO_EMU_KERNEL(zo_rope), ZO_EMU_KERNEL(zo_kv_write),
              ZO_INSTANTIATE(ZO_EMU_ATTN))
