#include "generator/request_checks.h"

#include "generator/kv_blocks.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace llamarl {
namespace {

template <typename... Parts>
std::string Cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

std::string SamplingError(const SamplingParams& s, const RequestLimits& limits) {
  if (!std::isfinite(s.temperature) || s.temperature < 0)
    return Cat("sampling.temperature must be a finite value >= 0 (0 = greedy), got ", s.temperature);
  if (s.top_k < 0) return Cat("sampling.top_k must be >= 0 (0 = off), got ", s.top_k);
  if (!(s.top_p > 0 && s.top_p <= 1)) return Cat("sampling.top_p must be in (0, 1] (1 = off), got ", s.top_p);
  if (s.max_new_tokens < 1) return Cat("sampling.max_new_tokens must be >= 1, got ", s.max_new_tokens);
  for (int64_t id : s.eos_ids) {
    if (id < 0 || id >= limits.vocab_size)
      return Cat("sampling.eos_ids holds ", id, ", outside the vocabulary [0, ", limits.vocab_size,
                 "); use the model's eos token ids");
  }
  for (const std::string& stop : s.stop_strings) {
    if (stop.empty()) return "sampling.stop_strings holds an empty string, which would stop at once; remove it";
  }
  if (!s.stop_strings.empty() && !limits.can_decode)
    return "sampling.stop_strings needs a detokenizer: set EngineOptions::decode, or stop on eos_ids instead";
  return "";
}

// A group whose worst case exceeds the whole cache would wait at the head of the queue forever.
std::string CacheError(const GenerationRequest& r, const RequestLimits& limits) {
  const int64_t prompt_len = int64_t(r.prompt.size()), max_length = MaxCachedPositions(r, limits.max_seq_len);
  const int64_t need = limits.blocks->GroupBlocks(prompt_len, max_length, r.num_samples);
  if (need <= limits.blocks->num_blocks()) return "";
  return Cat("the request can never fit the KV cache: a prompt of ", prompt_len, " tokens shared by ", r.num_samples,
             " samples of up to ", max_length + 1 - prompt_len, " new tokens needs up to ", need, " blocks of ",
             limits.blocks->block_size(), " tokens (", need * limits.bytes_per_block, " bytes), but the cache holds ",
             limits.blocks->num_blocks(), " blocks (", limits.blocks->num_blocks() * limits.bytes_per_block,
             " bytes); raise generator.kv_cache_bytes (EngineOptions::kv_cache.bytes) to at least ",
             need * limits.bytes_per_block, ", or lower num_samples or max_new_tokens");
}

}  // namespace

int64_t MaxCachedPositions(const GenerationRequest& request, int64_t max_seq_len) {
  const int64_t prompt_len = int64_t(request.prompt.size());
  return prompt_len + std::min(request.sampling.max_new_tokens, max_seq_len - prompt_len) - 1;
}

std::string RequestError(const GenerationRequest& r, const RequestLimits& limits) {
  const int64_t prompt_len = int64_t(r.prompt.size());
  if (prompt_len == 0) return "the prompt is empty; give at least one token (e.g. the BOS token)";
  if (prompt_len >= limits.max_seq_len)
    return Cat("the prompt has ", prompt_len, " tokens, leaving no room to generate within max_seq_len ",
               limits.max_seq_len, "; shorten the prompt or raise EngineOptions::max_seq_len");
  for (int64_t i = 0; i < prompt_len; ++i) {
    const int64_t id = r.prompt[size_t(i)];
    if (id < 0 || id >= limits.vocab_size)
      return Cat("prompt token ", i, " is ", id, ", outside the vocabulary [0, ", limits.vocab_size,
                 "); the tokenizer does not match this model");
  }
  if (r.num_samples < 1 || r.num_samples > limits.max_slots)
    return Cat("num_samples must be in [1, max_slots ", limits.max_slots, "] (a group is admitted at once), got ",
               r.num_samples, "; raise EngineOptions::max_slots or split the group");
  if (r.max_turn_tokens < 0 || (r.max_turn_tokens > 0 && !r.multi_turn))
    return Cat("max_turn_tokens must be >= 0 (0 = no cap) and needs multi_turn, got ", r.max_turn_tokens,
               r.multi_turn ? "" : " on a single-turn request");
  std::string error = SamplingError(r.sampling, limits);
  if (error.empty() && limits.blocks != nullptr) error = CacheError(r, limits);
  return error;
}

}  // namespace llamarl
