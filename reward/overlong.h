// DAPO's soft overlong punishment (Yu et al. 2025, arXiv:2503.14476, eq. 13): a length penalty added
// to the task reward, so that a response which runs into the generation limit scores lower without
// the noise of a flat -1 on every truncated sample. With L_max the longest response (the recipe's
// rollout.max_new_tokens) and L_cache the buffer before it:
//
//   R_length(|y|) = 0                              if |y| <= L_max - L_cache
//                 = ((L_max - L_cache) - |y|) / L_cache   if L_max - L_cache < |y| <= L_max
//                 = -1                             if |y| > L_max
//
// i.e. 0 up to the buffer, then linear down to -1 at L_max. |y| counts the response tokens as
// generated (a final EOS included, as verl's valid_response_length does). The controller adds
// penalty_factor x R_length to each sample's reward before advantages are computed
// (algorithm.dapo.overlong "penalty"; recipes/README.md).
//
// LibTorch-free; pure.
#pragma once

#include <cstdint>

namespace llamarl::reward {

// R_length above. Requires 1 <= buffer <= max_length (a user error otherwise, naming both).
double OverlongPenalty(int64_t length, int64_t max_length, int64_t buffer);

}  // namespace llamarl::reward
