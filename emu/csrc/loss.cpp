// Emulated launchers of the loss kernels (csrc/loss.cu).
#include "zo_emu.h"

#include "loss.cu"

extern "C" void zo_emu_candidate_logprobs(ZoEmuDim grid, ZoEmuDim block, size_t smem,
                                          ZoLogprobParams p, const float* logits,
                                          const uint32_t* queries, float* lse,
                                          float* query_logprobs) {
    zo_emu::launch_kernel(zo_candidate_logprobs, grid, block, smem, p, logits, queries, lse,
                          query_logprobs);
}

extern "C" void zo_emu_classification_loss(ZoEmuDim grid, ZoEmuDim block, size_t smem,
                                           ZoClassifyParams p, const float* query_logprobs,
                                           const uint32_t* candidates,
                                           const uint32_t* example_offsets,
                                           const uint32_t* gold, float* loss, uint32_t* pred,
                                           float* candidate_scores) {
    zo_emu::launch_kernel(zo_classification_loss, grid, block, smem, p, query_logprobs,
                          candidates, example_offsets, gold, loss, pred, candidate_scores);
}
