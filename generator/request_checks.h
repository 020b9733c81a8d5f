// Validation of a GenerationRequest against what the engine can serve. A bad request is answered,
// not thrown: the engine rejects it alone and keeps serving the others.
#pragma once

#include "generator/engine.h"

#include <string>

namespace llamarl {

class KvBlockPool;

struct RequestLimits {
  int64_t vocab_size = 0;
  int64_t max_seq_len = 0;   // prompt + new tokens per sequence
  int64_t max_slots = 0;     // a group's samples are admitted together
  bool can_decode = false;   // EngineOptions::decode is set (stop strings need it)
  const KvBlockPool* blocks = nullptr;  // the whole KV cache must hold the group's worst case
  int64_t bytes_per_block = 0;
};

// Positions a sample of `request` may ever hold in the KV cache: its prompt and every generated token
// but the last (which is returned, never attended to), within max_seq_len.
int64_t MaxCachedPositions(const GenerationRequest& request, int64_t max_seq_len);

// Empty when the request can be served; otherwise the reason, naming the bad value, what was
// expected and the fix.
std::string RequestError(const GenerationRequest& request, const RequestLimits& limits);

}  // namespace llamarl
