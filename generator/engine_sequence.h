// Internal to the engine (engine.cpp, engine_turns.cpp): one running sample of a request.
#pragma once

#include "generator/engine.h"
#include "generator/kv_blocks.h"

#include <memory>
#include <vector>

namespace llamarl {

// One sample of a request. Its last token is pending: sampled but not yet in the cache, so its
// block table holds prompt + tokens - 1 positions. A multi-turn sample also holds observation tokens
// in `tokens` (sampled[i] == 0), and between turns it is `awaiting` (left out of decode steps) until
// Continue gives it an `observation`, which the next Step() appends and prefills.
struct Engine::Sequence {
  std::shared_ptr<const GenerationRequest> request;  // shared by a group's samples
  int64_t sample_index = 0;
  BlockTable table;
  std::vector<int64_t> tokens;
  std::vector<float> logprobs;
  std::vector<int64_t> versions;
  FinishReason reason = FinishReason::kLength;
  // Multi-turn only.
  std::vector<uint8_t> sampled;
  int64_t turn_start = 0;            // index in tokens of the current turn's first token
  bool awaiting = false;             // its turn ended; waiting for Continue or End
  std::vector<int64_t> observation;  // given by Continue, prefilled by the next Step()

  int64_t Cached() const { return int64_t(request->prompt.size() + tokens.size()) - 1; }
};

}  // namespace llamarl
