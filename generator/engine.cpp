#include "generator/engine.h"

#include "core/check.h"
#include "core/communicator.h"
#include "core/device.h"
#include "generator/engine_model.h"
#include "generator/engine_sequence.h"
#include "generator/kv_blocks.h"
#include "generator/kv_cache.h"
#include "generator/request_checks.h"
#include "kernels/sampling.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <map>
#include <tuple>
#include <unordered_set>

namespace llamarl {

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

namespace {

at::Tensor LongTensor(const std::vector<int64_t>& values, const at::Device& device) {
  return at::tensor(values, at::kLong).to(device);
}

int64_t MemoryLeftBytes(const at::Device& device) {
  LLAMARL_CHECK(device.is_cpu() || device.is_cuda(), "generator.kv_cache_fraction: the memory left is measured for ",
                "CPU and CUDA engines and this engine runs on ", device, "; set generator.kv_cache_bytes instead");
  return device.is_cpu() ? HostMemoryAvailableBytes() : DeviceMemoryAvailableBytes(device);
}

}  // namespace

Engine::Engine(const LlamaConfig& config, LlamaForCausalLMImpl& model, EngineOptions options, int64_t version)
    : config_(config), options_(std::move(options)), version_(version) {
  Init(std::make_unique<EngineModel>(config_, model, options_.tp_group, options_.fp8_weights));
}

Engine::Engine(const LlamaConfig& config, const LlamaWeightSource& weights, const at::TensorOptions& weights_options,
               EngineOptions options, int64_t version)
    : config_(config), options_(std::move(options)), version_(version) {
  Init(std::make_unique<EngineModel>(config_, weights, weights_options, options_.tp_group, options_.fp8_weights));
}

std::vector<std::pair<std::string, at::Tensor>> Engine::LocalParameters() const { return model_->LocalParameters(); }

bool Engine::fp8_weights() const { return model_->fp8_weights(); }

void Engine::Init(std::unique_ptr<EngineModel> model) {
  LLAMARL_CHECK(options_.max_slots >= 1, "EngineOptions::max_slots must be >= 1, got ", options_.max_slots);
  max_seq_len_ = options_.max_seq_len == 0 ? config_.max_position_embeddings : options_.max_seq_len;
  LLAMARL_CHECK(max_seq_len_ >= 2 && max_seq_len_ <= config_.max_position_embeddings,
                "EngineOptions::max_seq_len must be in [2, max_position_embeddings ", config_.max_position_embeddings,
                "] (0 = max_position_embeddings), got ", options_.max_seq_len);
  LLAMARL_CHECK(config_.sliding_window == 0 || max_seq_len_ <= config_.sliding_window, "EngineOptions::max_seq_len (",
                max_seq_len_, ") exceeds the model's sliding_window (", config_.sliding_window,
                "); windowed attention is not implemented, so set max_seq_len <= sliding_window");
  sampled_vocab_ = options_.sampled_vocab_size == 0 ? config_.vocab_size : options_.sampled_vocab_size;
  LLAMARL_CHECK(sampled_vocab_ >= 1 && sampled_vocab_ <= config_.vocab_size,
                "EngineOptions::sampled_vocab_size must be in [1, vocab_size ", config_.vocab_size,
                "] (0 = vocab_size), got ", options_.sampled_vocab_size);
  model_ = std::move(model);
  const LlamaConfig& local = model_->local_config();
  const at::TensorOptions tensor_options = model_->options();
  KvCacheSizing sizing;
  sizing.tp_size = model_->TpSize();
  sizing.dtype_bytes = int64_t(tensor_options.dtype().itemsize());
  sizing.default_tokens = options_.max_slots * max_seq_len_;
  if (options_.kv_cache.bytes == 0 && options_.kv_cache.fraction > 0) {
    sizing.memory_left_bytes = MemoryLeftBytes(tensor_options.device());
  }
  const KvCacheSize size = SizeKvCache(config_, options_.kv_cache, sizing);
  kv_bytes_per_block_ = size.bytes_per_block;
  cache_ = std::make_unique<KvCache>(KvCacheShape{local.num_hidden_layers, size.num_blocks, size.block_size,
                                                  local.num_key_value_heads, local.head_dim},
                                     tensor_options);
  blocks_ = std::make_unique<KvBlockPool>(size.num_blocks, size.block_size);
}

Engine::~Engine() = default;

void Engine::Submit(GenerationRequest request) {
  RequestLimits limits{config_.vocab_size, max_seq_len_, options_.max_slots, bool(options_.decode), blocks_.get(),
                       kv_bytes_per_block_};
  std::string error = RequestError(request, limits);
  queue_.push_back({std::move(request), std::move(error)});
}

bool Engine::HasWork() const {
  if (!queue_.empty()) return true;
  for (const auto& seq : running_) {
    if (!seq->awaiting) return true;
  }
  return false;
}
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
    LLAMARL_FAIL("Engine::ReleaseCache: ", running_.size(), " sequences are still running (request/sample ",
                 ids, ") and their KV would be lost; finish them (RunUntilDone) before releasing the cache");
  }
  LLAMARL_ASSERT(blocks_->NumUsed() == 0, blocks_->NumUsed(), " KV blocks held with no sequence running");
  cache_->Release();
}

void Engine::ReserveCache() { cache_->Allocate(); }

int64_t Engine::CacheBytes() const { return cache_->Bytes(); }

KvCacheStats Engine::KvStats() const {
  KvCacheStats s;
  s.budget_bytes = blocks_->num_blocks() * kv_bytes_per_block_;
  s.bytes = cache_->Bytes();
  s.block_size = blocks_->block_size();
  s.num_blocks = blocks_->num_blocks();
  s.blocks_in_use = blocks_->NumUsed();
  s.peak_blocks_in_use = blocks_->PeakUsed();
  return s;
}

void Engine::ResetKvPeak() { blocks_->ResetPeak(); }

std::vector<Completion> Engine::Step() {
  // After a ReleaseCache(); outside inference mode, so that the cache is an ordinary tensor as
  // when the constructor allocated it.
  if (HasWork()) cache_->Allocate();
  c10::InferenceMode inference;
  std::vector<Completion> done = TakeRejected();
  if (kv_stale_) RefreshKv();
  for (Completion& c : Admit()) done.push_back(std::move(c));
  for (Completion& c : ResumeContinued()) done.push_back(std::move(c));
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

at::Tensor Engine::Prefill(const std::vector<std::vector<int64_t>>& rows, const std::vector<const BlockTable*>& tables) {
  // One padded batch; row i's K/V go to positions [0, its length) of tables[i]. Tables that share
  // blocks (a group's samples) write each shared slot once.
  int64_t width = 0;
  for (const auto& r : rows) width = std::max<int64_t>(width, int64_t(r.size()));
  at::Tensor ids = at::zeros({int64_t(rows.size()), width}, at::kLong);
  std::vector<int64_t> lengths, slots, tokens;
  std::unordered_set<int64_t> written;
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t length = int64_t(rows[i].size());
    ids[int64_t(i)].narrow(0, 0, length).copy_(at::tensor(rows[i], at::kLong));
    lengths.push_back(length);
    for (int64_t p = 0; p < length; ++p) {
      const int64_t slot = blocks_->Slot(*tables[i], p);
      if (!written.insert(slot).second) continue;
      slots.push_back(slot);
      tokens.push_back(int64_t(i) * width + p);
    }
  }
  const at::Device device = model_->options().device();
  return model_->Prefill(*cache_, {ids.to(device), LongTensor(lengths, device), LongTensor(slots, device),
                                   LongTensor(tokens, device)});
}

std::vector<Completion> Engine::Admit() {
  // FIFO: a group waits at the head until its num_samples slots and the blocks it may ever need are
  // free, so later single requests cannot starve it.
  std::vector<const BlockTable*> running_tables;
  for (const auto& seq : running_) running_tables.push_back(&seq->table);
  int64_t available = blocks_->Available(running_tables);
  int64_t free_slots = options_.max_slots - NumRunning();
  const int64_t first_new = NumRunning();
  std::vector<std::vector<int64_t>> prompts;
  std::vector<const BlockTable*> prompt_tables;
  std::vector<int64_t> rows;  // prefill row of each new sequence
  while (!queue_.empty()) {
    const GenerationRequest& head = queue_.front().request;
    const int64_t prompt_len = int64_t(head.prompt.size()), max_length = MaxCachedPositions(head, max_seq_len_);
    const int64_t need = blocks_->GroupBlocks(prompt_len, max_length, head.num_samples);
    if (head.num_samples > free_slots || need > available) break;
    free_slots -= head.num_samples;
    available -= need;
    auto request = std::make_shared<const GenerationRequest>(std::move(queue_.front().request));
    queue_.pop_front();
    std::vector<BlockTable> tables = blocks_->AllocateShared(prompt_len, max_length, request->num_samples);
    for (int64_t s = 0; s < request->num_samples; ++s) {
      auto seq = std::make_unique<Sequence>();
      seq->request = request;
      seq->sample_index = s;
      seq->table = std::move(tables[size_t(s)]);
      running_.push_back(std::move(seq));
      rows.push_back(int64_t(prompts.size()));
    }
    prompts.push_back(request->prompt);
    prompt_tables.push_back(&running_[running_.size() - size_t(request->num_samples)]->table);
  }
  if (prompts.empty()) return {};
  const at::Device device = model_->options().device();
  at::Tensor logits = Prefill(prompts, prompt_tables).index_select(0, LongTensor(rows, device));
  std::vector<int64_t> admitted;
  for (int64_t i = first_new; i < NumRunning(); ++i) admitted.push_back(i);
  return SampleAndAccept(logits, admitted);
}

std::vector<Completion> Engine::SampleAndAccept(const at::Tensor& logits, const std::vector<int64_t>& rows) {
  std::vector<RowDraw> draws;
  for (int64_t i : rows) {
    const Sequence& seq = *running_[size_t(i)];
    draws.push_back({&seq.request->sampling, seq.sample_index, int64_t(seq.tokens.size())});
  }
  std::vector<int64_t> tokens;
  std::vector<float> logprobs;
  SampleRows(logits.narrow(1, 0, sampled_vocab_), draws, tokens, logprobs);
  model_->SyncSampled(tokens, logprobs);
  std::vector<bool> finished(running_.size(), false);
  for (size_t j = 0; j < rows.size(); ++j) {
    finished[size_t(rows[j])] = Accept(*running_[size_t(rows[j])], tokens[j], logprobs[j]);
  }
  return Retire(finished);
}

std::vector<Completion> Engine::DecodeRunning() {
  std::vector<int64_t> active;  // awaiting multi-turn samples sit out
  for (size_t i = 0; i < running_.size(); ++i) {
    if (!running_[i]->awaiting) active.push_back(int64_t(i));
  }
  const int64_t n = int64_t(active.size());
  if (n == 0) return {};
  std::vector<int64_t> pending, positions, slots;
  std::vector<std::pair<int64_t, int64_t>> copies;
  size_t widest = 0;
  for (int64_t i : active) {
    Sequence& seq = *running_[size_t(i)];
    LLAMARL_ASSERT(seq.table.length == seq.Cached() && seq.observation.empty(), "block table of ",
                   seq.table.length, " positions for a sequence of ", seq.Cached());
    pending.push_back(seq.tokens.back());
    positions.push_back(seq.table.length);
    slots.push_back(blocks_->Append(seq.table, copies));
    widest = std::max(widest, seq.table.blocks.size());
  }
  cache_->CopyBlocks(copies);
  const at::Device device = model_->options().device();
  DecodeBatch batch{LongTensor(pending, device), LongTensor(positions, device), LongTensor(slots, device),
                    LongTensor(PaddedBlocks(active, widest), device).view({n, int64_t(widest)})};
  return SampleAndAccept(model_->Decode(*cache_, batch), active);
}

std::vector<int64_t> Engine::PaddedBlocks(const std::vector<int64_t>& rows, size_t widest) const {
  std::vector<int64_t> table;  // [rows, widest], short rows padded with their first block
  for (int64_t i : rows) {
    const std::vector<int64_t>& b = running_[size_t(i)]->table.blocks;
    table.insert(table.end(), b.begin(), b.end());
    table.insert(table.end(), widest - b.size(), b.front());
  }
  return table;
}

void Engine::RefreshKv() {
  // Recompute every running sequence's cache (prompt + all tokens but the pending one) with the
  // current weights, into its own blocks; the logits are not needed.
  kv_stale_ = false;
  if (running_.empty()) return;
  std::vector<std::vector<int64_t>> rows;
  std::vector<const BlockTable*> tables;
  for (const auto& seq : running_) {
    std::vector<int64_t> prefix = seq->request->prompt;
    prefix.insert(prefix.end(), seq->tokens.begin(), seq->tokens.end() - 1);
    rows.push_back(std::move(prefix));
    tables.push_back(&seq->table);
  }
  Prefill(rows, tables);
}

bool Engine::Accept(Sequence& seq, int64_t token, float logprob) {
  seq.tokens.push_back(token);
  seq.logprobs.push_back(logprob);
  seq.versions.push_back(version_);
  const bool multi_turn = seq.request->multi_turn;
  if (multi_turn) seq.sampled.push_back(1);
  const SamplingParams& s = seq.request->sampling;
  if (std::find(s.eos_ids.begin(), s.eos_ids.end(), token) != s.eos_ids.end()) {
    seq.reason = FinishReason::kEos;
    return true;
  }
  if (!s.stop_strings.empty()) {
    // A multi-turn sample's stop strings apply to its current turn.
    const std::string text = seq.turn_start == 0 ? options_.decode(seq.tokens)
                                                 : options_.decode(std::vector<int64_t>(
                                                       seq.tokens.begin() + seq.turn_start, seq.tokens.end()));
    for (const std::string& stop : s.stop_strings) {
      if (text.find(stop) != std::string::npos) {
        seq.reason = FinishReason::kStop;
        return true;
      }
    }
  }
  const int64_t generated = int64_t(seq.tokens.size());
  seq.reason = FinishReason::kLength;
  if (generated >= s.max_new_tokens || int64_t(seq.request->prompt.size()) + generated >= max_seq_len_) return true;
  const int64_t turn_cap = seq.request->max_turn_tokens;
  return multi_turn && turn_cap > 0 && generated - seq.turn_start >= turn_cap;
}

std::vector<Completion> Engine::Retire(const std::vector<bool>& finished) {
  std::vector<Completion> done;
  std::vector<std::unique_ptr<Sequence>> kept;
  for (size_t i = 0; i < running_.size(); ++i) {
    if (finished[i] && running_[i]->request->multi_turn && Room(*running_[i]) >= 2) {
      running_[i]->awaiting = true;  // its turn ended: it keeps its slot and blocks
      done.push_back(Snapshot(*running_[i]));
    }
    if (!finished[i] || running_[i]->awaiting) {
      kept.push_back(std::move(running_[i]));
      continue;
    }
    blocks_->Free(running_[i]->table);
    done.push_back(Finish(*running_[i]));
  }
  running_ = std::move(kept);
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
  c.sampled = std::move(seq.sampled);
  c.turn_start = seq.turn_start;
  return c;
}

void Engine::UpdateWeights(const std::vector<BufferSpec>& specs, at::ScalarType dtype,
                           const std::function<void(std::vector<at::Tensor>&)>& write, int64_t version) {
  LLAMARL_CHECK(version >= version_, "UpdateWeights: version ", version, " is older than the engine's ", version_,
                "; policy versions only move forward");
  std::vector<at::Tensor> targets;
  std::vector<size_t> scratch;  // specs whose shard is loaded from a scratch tensor afterwards
  for (size_t i = 0; i < specs.size(); ++i) {
    at::Tensor target = model_->InPlaceTarget(specs[i].name, specs[i].shape, dtype);
    if (!target.defined()) {
      target = at::empty(specs[i].shape, model_->options().dtype(dtype));
      model_->CheckParameter(specs[i].name, target);
      scratch.push_back(i);
    }
    targets.push_back(std::move(target));
  }
  {
    // The engine's parameters may be inference tensors, writable only in inference mode.
    c10::InferenceMode inference;
    write(targets);
  }
  for (size_t i : scratch) model_->LoadParameter(specs[i].name, targets[i]);
  version_ = version;
  if (options_.refresh_kv_on_update && !specs.empty()) kv_stale_ = !running_.empty();
}

void Engine::UpdateWeightsFp8(const std::vector<BufferSpec>& specs,
                              const std::function<void(std::vector<at::Tensor>&, std::vector<at::Tensor>&)>& write,
                              int64_t version) {
  LLAMARL_CHECK(version >= version_, "UpdateWeightsFp8: version ", version, " is older than the engine's ", version_,
                "; policy versions only move forward");
  const at::TensorOptions on_device = at::TensorOptions().device(model_->options().device());
  std::vector<at::Tensor> data, scales;
  std::vector<size_t> scratch;  // specs decoded from scratch afterwards
  for (size_t i = 0; i < specs.size(); ++i) {
    auto [bits, row_scales] = model_->InPlaceFp8Target(specs[i].name, specs[i].shape);
    if (!bits.defined()) {
      // Checked against the engine's parameter as a compute-dtype value of that shape (no memory).
      model_->CheckParameter(specs[i].name, at::empty(specs[i].shape, model_->options().device(at::kMeta)));
      bits = at::empty(specs[i].shape, on_device.dtype(at::kByte));
      const std::vector<int64_t>& shape = specs[i].shape;
      row_scales = at::empty(shape.size() >= 2 ? std::vector<int64_t>(shape.begin(), shape.end() - 1)
                                               : std::vector<int64_t>{1},
                             on_device.dtype(at::kFloat));
      scratch.push_back(i);
    }
    data.push_back(std::move(bits));
    scales.push_back(std::move(row_scales));
  }
  {
    c10::InferenceMode inference;
    write(data, scales);
  }
  for (size_t i : scratch) model_->LoadFp8Parameter(specs[i].name, data[i], scales[i]);
  version_ = version;
  if (options_.refresh_kv_on_update && !specs.empty()) kv_stale_ = !running_.empty();
}

c10::Device Engine::device() const { return model_->options().device(); }

void CopyWeightsInto(Engine& engine, const std::vector<std::pair<std::string, at::Tensor>>& shards,
                     int64_t version) {
  const at::ScalarType dtype = shards.empty() ? at::kFloat : shards[0].second.scalar_type();
  std::vector<BufferSpec> specs;
  for (const auto& [name, shard] : shards) specs.push_back(BufferSpec{name, shard.sizes().vec()});
  engine.UpdateWeights(specs, dtype, [&](std::vector<at::Tensor>& targets) {
    for (size_t i = 0; i < targets.size(); ++i) targets[i].copy_(shards[i].second);
  }, version);
}

}  // namespace llamarl
