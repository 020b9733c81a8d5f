#include "generator/engine.h"

#include "core/communicator.h"
#include "generator/engine_model.h"
#include "generator/kv_cache.h"
#include "generator/request_checks.h"
#include "kernels/sampling.h"
#include "weight_sync/weight_sync.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <map>
#include <tuple>

namespace llamarl {

// One sample of a request, occupying one KV slot. Its last token is pending: sampled but not yet
// in the cache, so the cache holds prompt + tokens - 1 positions.
struct Engine::Sequence {
  std::shared_ptr<const GenerationRequest> request;  // shared by a group's samples
  int64_t sample_index = 0;
  std::vector<int64_t> tokens;
  std::vector<float> logprobs;
  std::vector<int64_t> versions;
  FinishReason reason = FinishReason::kLength;

  int64_t Cached() const { return int64_t(request->prompt.size() + tokens.size()) - 1; }
};

namespace {

// Draws one token per row of logits [N, V]. Rows are grouped by their sampling options (one
// SampleTokens call per distinct temperature / top-k / top-p), each row keyed by its request's seed
// and the counter (sample_index << 32) + token index: independent of the batch.
struct RowDraw {
  const SamplingParams* sampling;
  int64_t sample_index;
  int64_t token_index;
};

void SampleRows(const at::Tensor& logits, const std::vector<RowDraw>& draws, std::vector<int64_t>& tokens,
                std::vector<float>& logprobs) {
  using Key = std::tuple<double, int64_t, double>;
  std::map<Key, std::vector<int64_t>> groups;
  for (size_t i = 0; i < draws.size(); ++i) {
    const SamplingParams& s = *draws[i].sampling;
    groups[Key(s.temperature, s.top_k, s.top_p)].push_back(int64_t(i));
  }
  tokens.assign(draws.size(), 0);
  logprobs.assign(draws.size(), 0.0f);
  for (const auto& [key, rows] : groups) {
    std::vector<int64_t> seeds, offsets;
    for (int64_t r : rows) {
      seeds.push_back(int64_t(draws[size_t(r)].sampling->seed));  // the bits of the uint64 seed
      offsets.push_back((draws[size_t(r)].sample_index << 32) + draws[size_t(r)].token_index);
    }
    const auto cpu_long = at::TensorOptions().dtype(at::kLong);
    at::Tensor sub = rows.size() == draws.size() ? logits
                                                 : logits.index_select(0, at::tensor(rows, cpu_long).to(logits.device()));
    kernels::SamplingOptions options{std::get<0>(key), std::get<1>(key), std::get<2>(key)};
    kernels::SampledTokens out = kernels::SampleTokens(sub, options, at::tensor(seeds, cpu_long).to(logits.device()),
                                                       at::tensor(offsets, cpu_long).to(logits.device()));
    const at::Tensor t = out.tokens.cpu().contiguous(), lp = out.logprobs.cpu().to(at::kFloat).contiguous();
    for (size_t j = 0; j < rows.size(); ++j) {
      tokens[size_t(rows[j])] = t.data_ptr<int64_t>()[j];
      logprobs[size_t(rows[j])] = lp.data_ptr<float>()[j];
    }
  }
}

}  // namespace

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos: return "eos";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kRejected: return "rejected";
  }
  return "unknown";
}

Engine::Engine(const LlamaConfig& config, LlamaForCausalLMImpl& model, EngineOptions options, int64_t version)
    : config_(config), options_(std::move(options)), version_(version) {
  TORCH_CHECK(options_.max_slots >= 1, "EngineOptions::max_slots must be >= 1, got ", options_.max_slots);
  max_seq_len_ = options_.max_seq_len == 0 ? config_.max_position_embeddings : options_.max_seq_len;
  TORCH_CHECK(max_seq_len_ >= 2 && max_seq_len_ <= config_.max_position_embeddings,
              "EngineOptions::max_seq_len must be in [2, max_position_embeddings ", config_.max_position_embeddings,
              "] (0 = max_position_embeddings), got ", options_.max_seq_len);
  TORCH_CHECK(config_.sliding_window == 0 || max_seq_len_ <= config_.sliding_window, "EngineOptions::max_seq_len (",
              max_seq_len_, ") exceeds the model's sliding_window (", config_.sliding_window,
              "); windowed attention is not implemented, so set max_seq_len <= sliding_window");
  model_ = std::make_unique<EngineModel>(config_, model, options_.tp_group);
  const LlamaConfig& local = model_->local_config();
  cache_ = std::make_unique<KvCache>(KvCacheShape{local.num_hidden_layers, options_.max_slots,
                                                  local.num_key_value_heads, max_seq_len_, local.head_dim},
                                     model_->options());
}

Engine::~Engine() = default;

void Engine::Submit(GenerationRequest request) {
  RequestLimits limits{config_.vocab_size, max_seq_len_, options_.max_slots, bool(options_.decode)};
  std::string error = RequestError(request, limits);
  queue_.push_back({std::move(request), std::move(error)});
}

bool Engine::HasWork() const { return !queue_.empty() || !running_.empty(); }
int64_t Engine::NumRunning() const { return int64_t(running_.size()); }
int64_t Engine::NumQueued() const { return int64_t(queue_.size()); }

void Engine::ReleaseCache() {
  if (!running_.empty()) {
    std::string ids;
    for (const auto& seq : running_) {
      if (ids.size() > 60) {
        ids += ", ...";
        break;
      }
      ids += (ids.empty() ? "" : ", ") + std::to_string(seq->request->id) + "/" + std::to_string(seq->sample_index);
    }
    TORCH_CHECK(false, "Engine::ReleaseCache: ", running_.size(), " sequences are still running (request/sample ",
                ids, ") and their KV would be lost; finish them (RunUntilDone) before releasing the cache");
  }
  cache_->Release();
}

void Engine::ReserveCache() { cache_->Allocate(); }

int64_t Engine::CacheBytes() const { return cache_->Bytes(); }

std::vector<Completion> Engine::Step() {
  // After a ReleaseCache(); outside inference mode, so that the cache is an ordinary tensor as
  // when the constructor allocated it.
  if (HasWork()) cache_->Allocate();
  c10::InferenceMode inference;
  std::vector<Completion> done = TakeRejected();
  if (kv_stale_) RefreshKv();
  for (Completion& c : Admit()) done.push_back(std::move(c));
  for (Completion& c : DecodeRunning()) done.push_back(std::move(c));
  return done;
}

std::vector<Completion> Engine::RunUntilDone() {
  std::vector<Completion> done;
  while (HasWork()) {
    for (Completion& c : Step()) done.push_back(std::move(c));
  }
  return done;
}

std::vector<Completion> Engine::TakeRejected() {
  std::vector<Completion> rejected;
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (it->error.empty()) {
      ++it;
      continue;
    }
    Completion c;
    c.request_id = it->request.id;
    c.prompt = std::move(it->request.prompt);
    c.finish_reason = FinishReason::kRejected;
    c.error = std::move(it->error);
    rejected.push_back(std::move(c));
    it = queue_.erase(it);
  }
  return rejected;
}

std::vector<Completion> Engine::Admit() {
  // FIFO: a group waits at the head until its num_samples slots are free, so later single requests
  // cannot starve it.
  std::vector<std::shared_ptr<const GenerationRequest>> admitted;
  int64_t free_slots = options_.max_slots - NumRunning();
  while (!queue_.empty() && queue_.front().request.num_samples <= free_slots) {
    free_slots -= queue_.front().request.num_samples;
    admitted.push_back(std::make_shared<const GenerationRequest>(std::move(queue_.front().request)));
    queue_.pop_front();
  }
  if (admitted.empty()) return {};
  const int64_t num_rows = int64_t(admitted.size()), first_new = NumRunning();
  int64_t max_len = 0;
  for (const auto& r : admitted) max_len = std::max<int64_t>(max_len, int64_t(r->prompt.size()));
  at::Tensor ids = at::zeros({num_rows, max_len}, at::kLong);
  std::vector<int64_t> lengths, slots, rows;
  for (int64_t i = 0; i < num_rows; ++i) {
    const auto& r = admitted[size_t(i)];
    ids[i].narrow(0, 0, int64_t(r->prompt.size())).copy_(at::tensor(r->prompt, at::kLong));
    lengths.push_back(int64_t(r->prompt.size()));
    for (int64_t s = 0; s < r->num_samples; ++s) {
      slots.push_back(NumRunning());
      rows.push_back(i);
      auto seq = std::make_unique<Sequence>();
      seq->request = r;
      seq->sample_index = s;
      running_.push_back(std::move(seq));
    }
  }
  const at::Device device = model_->options().device();
  PrefillBatch batch{ids.to(device), at::tensor(lengths, at::kLong).to(device), at::tensor(slots, at::kLong).to(device),
                     at::tensor(rows, at::kLong).to(device)};
  at::Tensor logits = model_->Prefill(*cache_, batch).index_select(0, batch.rows);
  std::vector<RowDraw> draws;
  for (int64_t slot = first_new; slot < NumRunning(); ++slot) {
    draws.push_back({&running_[size_t(slot)]->request->sampling, running_[size_t(slot)]->sample_index, 0});
  }
  std::vector<int64_t> tokens;
  std::vector<float> logprobs;
  SampleRows(logits, draws, tokens, logprobs);
  model_->SyncSampled(tokens, logprobs);
  std::vector<bool> finished(running_.size(), false);
  for (int64_t slot = first_new; slot < NumRunning(); ++slot) {
    const size_t j = size_t(slot - first_new);
    finished[size_t(slot)] = Accept(*running_[size_t(slot)], tokens[j], logprobs[j]);
  }
  return Retire(finished);
}

std::vector<Completion> Engine::DecodeRunning() {
  const int64_t n = NumRunning();
  if (n == 0) return {};
  std::vector<int64_t> pending, positions;
  std::vector<RowDraw> draws;
  for (const auto& seq : running_) {
    pending.push_back(seq->tokens.back());
    positions.push_back(seq->Cached());
    draws.push_back({&seq->request->sampling, seq->sample_index, int64_t(seq->tokens.size())});
  }
  const at::Device device = model_->options().device();
  at::Tensor logits = model_->Decode(*cache_, at::tensor(pending, at::kLong).to(device),
                                     at::tensor(positions, at::kLong).to(device));
  std::vector<int64_t> tokens;
  std::vector<float> logprobs;
  SampleRows(logits, draws, tokens, logprobs);
  model_->SyncSampled(tokens, logprobs);
  std::vector<bool> finished(size_t(n), false);
  for (int64_t slot = 0; slot < n; ++slot) {
    finished[size_t(slot)] = Accept(*running_[size_t(slot)], tokens[size_t(slot)], logprobs[size_t(slot)]);
  }
  return Retire(finished);
}

void Engine::RefreshKv() {
  // Recompute every running sequence's cache (prompt + all tokens but the pending one) with the
  // current weights: one padded prefill into the sequences' own slots; its logits are not needed.
  kv_stale_ = false;
  const int64_t n = NumRunning();
  if (n == 0) return;
  int64_t max_len = 0;
  for (const auto& seq : running_) max_len = std::max(max_len, seq->Cached());
  at::Tensor ids = at::zeros({n, max_len}, at::kLong);
  std::vector<int64_t> lengths;
  for (int64_t i = 0; i < n; ++i) {
    const Sequence& seq = *running_[size_t(i)];
    std::vector<int64_t> prefix = seq.request->prompt;
    prefix.insert(prefix.end(), seq.tokens.begin(), seq.tokens.end() - 1);
    ids[i].narrow(0, 0, int64_t(prefix.size())).copy_(at::tensor(prefix, at::kLong));
    lengths.push_back(int64_t(prefix.size()));
  }
  const at::Device device = model_->options().device();
  at::Tensor index = at::arange(n, at::TensorOptions().dtype(at::kLong).device(device));
  model_->Prefill(*cache_, {ids.to(device), at::tensor(lengths, at::kLong).to(device), index, index});
}

bool Engine::Accept(Sequence& seq, int64_t token, float logprob) {
  seq.tokens.push_back(token);
  seq.logprobs.push_back(logprob);
  seq.versions.push_back(version_);
  const SamplingParams& s = seq.request->sampling;
  if (std::find(s.eos_ids.begin(), s.eos_ids.end(), token) != s.eos_ids.end()) {
    seq.reason = FinishReason::kEos;
    return true;
  }
  if (!s.stop_strings.empty()) {
    const std::string text = options_.decode(seq.tokens);
    for (const std::string& stop : s.stop_strings) {
      if (text.find(stop) != std::string::npos) {
        seq.reason = FinishReason::kStop;
        return true;
      }
    }
  }
  const int64_t generated = int64_t(seq.tokens.size());
  seq.reason = FinishReason::kLength;
  return generated >= s.max_new_tokens || int64_t(seq.request->prompt.size()) + generated >= max_seq_len_;
}

std::vector<Completion> Engine::Retire(const std::vector<bool>& finished) {
  // From the highest slot down: every slot above the current one is already settled, so the last
  // running slot is a live sequence that can move into the hole (keeping slots dense).
  std::vector<Completion> done;
  for (int64_t slot = NumRunning() - 1; slot >= 0; --slot) {
    if (!finished[size_t(slot)]) continue;
    done.push_back(Finish(*running_[size_t(slot)]));
    const int64_t last = NumRunning() - 1;
    if (slot != last) {
      cache_->MoveSlot(last, slot, running_[size_t(last)]->Cached());
      running_[size_t(slot)] = std::move(running_[size_t(last)]);
    }
    running_.pop_back();
  }
  std::reverse(done.begin(), done.end());
  return done;
}

Completion Engine::Finish(Sequence& seq) {
  Completion c;
  c.request_id = seq.request->id;
  c.sample_index = seq.sample_index;
  c.prompt = seq.request->prompt;
  c.tokens = std::move(seq.tokens);
  c.logprobs = std::move(seq.logprobs);
  c.versions = std::move(seq.versions);
  c.finish_reason = seq.reason;
  return c;
}

void Engine::UpdateWeights(const std::vector<std::pair<std::string, at::Tensor>>& shards, int64_t version) {
  TORCH_CHECK(version >= version_, "UpdateWeights: version ", version, " is older than the engine's ", version_,
              "; policy versions only move forward");
  for (const auto& [name, shard] : shards) model_->CheckParameter(name, shard);
  for (const auto& [name, shard] : shards) model_->LoadParameter(name, shard);
  version_ = version;
  if (options_.refresh_kv_on_update && !shards.empty()) kv_stale_ = !running_.empty();
}

int64_t Engine::UpdateFrom(WeightReceiver& receiver) {
  if (receiver.StagedVersion() <= version_) return version_;
  // The staged shards are only valid inside ApplyTo (the next push reuses them), so each is copied
  // into the weights there.
  const int64_t applied = receiver.ApplyTo([&](const std::string& name, const at::Tensor& shard) {
    model_->CheckParameter(name, shard);
    model_->LoadParameter(name, shard);
  });
  version_ = std::max(version_, applied);
  if (options_.refresh_kv_on_update) kv_stale_ = !running_.empty();
  return version_;
}

}  // namespace llamarl
