// Validation of a GenerationRequest against what the engine can serve. A bad request is answered,
// not thrown: the engine rejects it alone and keeps serving the others.
#pragma once

#include "generator/engine.h"

#include <string>

namespace llamarl {

struct RequestLimits {
  int64_t vocab_size = 0;
  int64_t max_seq_len = 0;   // prompt + new tokens per slot
  int64_t max_slots = 0;     // a group's samples are admitted together
  bool can_decode = false;   // EngineOptions::decode is set (stop strings need it)
};

// Empty when the request can be served; otherwise the reason, naming the bad value, what was
// expected and the fix.
std::string RequestError(const GenerationRequest& request, const RequestLimits& limits);

}  // namespace llamarl
