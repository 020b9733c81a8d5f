// Multi-turn episodes in the engine (generator/engine.h): Continue, End, and the prefill of
// observations into a sample's own KV blocks after the history they already hold.
#include "generator/engine.h"

#include "core/check.h"
#include "generator/engine_model.h"
#include "generator/engine_sequence.h"
#include "generator/kv_blocks.h"
#include "generator/kv_cache.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace llamarl {

Engine::Sequence& Engine::Awaiting(uint64_t request_id, int64_t sample_index) const {
  for (const auto& seq : running_) {
    if (seq->request->id != request_id || seq->sample_index != sample_index) continue;
    LLAMARL_CHECK(seq->awaiting, "request ", request_id, " sample ", sample_index,
                  " is not waiting for an observation: its turn has not ended (or it is not multi_turn); call ",
                  "Continue or End after Step() returned it with awaiting_observation");
    return *seq;
  }
  LLAMARL_FAIL("request ", request_id, " sample ", sample_index,
               " is not running (it finished, was ended, or was never submitted)");
}

int64_t Engine::Room(const Sequence& seq) const {
  const int64_t prompt = int64_t(seq.request->prompt.size());
  const int64_t total = prompt + std::min(seq.request->sampling.max_new_tokens, max_seq_len_ - prompt);
  return total - prompt - int64_t(seq.tokens.size());
}

int64_t Engine::RoomLeft(uint64_t request_id, int64_t sample_index) const {
  return Room(Awaiting(request_id, sample_index));
}

int64_t Engine::NumAwaiting() const {
  return std::count_if(running_.begin(), running_.end(), [](const auto& seq) { return seq->awaiting; });
}

void Engine::Continue(uint64_t request_id, int64_t sample_index, const std::vector<int64_t>& observation) {
  Sequence& seq = Awaiting(request_id, sample_index);
  const int64_t room = Room(seq);
  LLAMARL_CHECK(!observation.empty() && int64_t(observation.size()) + 1 <= room, "Continue: an observation of ",
                observation.size(), " tokens for request ", request_id, " sample ", sample_index,
                ", which has room for ", room, " more tokens; give 1 to ", room - 1,
                " tokens (one position stays for the model's next token) or End the episode");
  for (int64_t id : observation) {
    LLAMARL_CHECK(id >= 0 && id < config_.vocab_size, "Continue: observation token ", id,
                  " is outside the vocabulary [0, ", config_.vocab_size, ")");
  }
  seq.observation = observation;
  seq.awaiting = false;
}

Completion Engine::End(uint64_t request_id, int64_t sample_index) {
  Sequence& seq = Awaiting(request_id, sample_index);
  auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& s) { return s.get() == &seq; });
  blocks_->Free(seq.table);
  Completion c = Finish(seq);
  running_.erase(it);
  return c;
}

Completion Engine::Snapshot(const Sequence& seq) const {
  Completion c;
  c.request_id = seq.request->id;
  c.sample_index = seq.sample_index;
  c.prompt = seq.request->prompt;
  c.tokens = seq.tokens;
  c.logprobs = seq.logprobs;
  c.versions = seq.versions;
  c.finish_reason = seq.reason;
  c.sampled = seq.sampled;
  c.awaiting_observation = true;
  c.turn_start = seq.turn_start;
  return c;
}

std::vector<Completion> Engine::ResumeContinued() {
  // Row of a continued sample: its pending token (the last of its turn) and the observation, at the
  // positions after its cached history, into its own blocks.
  std::vector<int64_t> resumed, starts, lengths, slots, flat;
  std::vector<std::vector<int64_t>> rows;
  std::vector<std::pair<int64_t, int64_t>> copies;
  size_t widest = 0;
  for (size_t i = 0; i < running_.size(); ++i) {
    Sequence& seq = *running_[i];
    if (seq.observation.empty()) continue;
    LLAMARL_ASSERT(seq.table.length == seq.Cached(), "block table of ", seq.table.length,
                   " positions for a sequence of ", seq.Cached());
    resumed.push_back(int64_t(i));
    starts.push_back(seq.table.length);
    std::vector<int64_t> row{seq.tokens.back()};
    row.insert(row.end(), seq.observation.begin(), seq.observation.end());
    for (int64_t id : seq.observation) {
      seq.tokens.push_back(id);
      seq.logprobs.push_back(0.0f);
      seq.versions.push_back(version_);
      seq.sampled.push_back(0);
    }
    seq.observation.clear();
    seq.turn_start = int64_t(seq.tokens.size());
    for (size_t t = 0; t < row.size(); ++t) slots.push_back(blocks_->Append(seq.table, copies));
    lengths.push_back(int64_t(row.size()));
    widest = std::max(widest, seq.table.blocks.size());
    rows.push_back(std::move(row));
  }
  if (resumed.empty()) return {};
  cache_->CopyBlocks(copies);
  const int64_t width = *std::max_element(lengths.begin(), lengths.end()), n = int64_t(rows.size());
  at::Tensor ids = at::zeros({n, width}, at::kLong);
  for (int64_t r = 0; r < n; ++r) {
    ids[r].narrow(0, 0, lengths[size_t(r)]).copy_(at::tensor(rows[size_t(r)], at::kLong));
    for (int64_t t = 0; t < lengths[size_t(r)]; ++t) flat.push_back(r * width + t);
  }
  const at::Device device = model_->options().device();
  auto on_device = [&](const std::vector<int64_t>& v) { return at::tensor(v, at::kLong).to(device); };
  ExtendBatch batch{ids.to(device), on_device(starts), on_device(lengths), on_device(slots), on_device(flat),
                    on_device(PaddedBlocks(resumed, widest)).view({n, int64_t(widest)})};
  return SampleAndAccept(model_->Extend(*cache_, batch), resumed);
}

}  // namespace llamarl
