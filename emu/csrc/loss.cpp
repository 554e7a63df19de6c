// The candidate log-prob kernel (csrc/loss.cu), launchable by name.
#include "zo_emu.h"

#include "loss.cu"

ZO_EMU_FAMILY(loss, ZO_EMU_KERNEL(zo_candidate_logprobs))
