// The rollout engine: batched generation with a slot-based KV cache, continuous batching, per-request
// sampling with batch-independent seeds, per-token log-probs and policy versions, tensor parallelism
// over a Communicator sub-group, and in-flight weight updates between two decode steps.
//
// Life of a request: Submit() validates it (a bad request is answered as kRejected by the next
// Step(), never thrown) and queues it. Step() admits queued requests in FIFO order while their
// num_samples slots are free, prefills every admitted prompt in one padded batch (a group's prompt
// once; its KV is copied to the group's slots), samples each sample's first token, then runs one
// batched decode step over every running slot. Finished sequences leave and free their slots, so
// queued requests join between decode steps (continuous batching).
//
// Ordering contract of weight updates: UpdateWeights / UpdateFrom may only be called between two
// Step() calls. Every token sampled by a later Step() carries the new version. With
// EngineOptions::refresh_kv_on_update (the default) the running sequences' KV caches are recomputed
// with the new weights at the start of the next Step(), so their next tokens are exactly what a fresh
// engine with the new weights would sample given the same prefix; without it they keep the KV cache
// computed by the old weights (cheaper, but the tokens then follow no single policy).
//
// Thread safety: none; one thread drives an Engine. Under tensor parallelism every rank of tp_group
// makes the same calls in the same order (SPMD): Submit with the same requests, Step in lockstep,
// UpdateWeights with the same names.
#pragma once

#include "model/llama_config.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace llamarl {

class Communicator;
class LlamaForCausalLMImpl;
class WeightReceiver;
class EngineModel;
class KvCache;

struct SamplingParams {            // per request
  double temperature = 1.0;        // 0 = greedy (argmax, lowest index on ties)
  int64_t top_k = 0;               // 0 = off
  double top_p = 1.0;              // in (0, 1]; 1 = off
  // Token i of sample s of the request draws from Philox(seed, s * 2^32 + i): reproducible whatever
  // else is in the batch.
  uint64_t seed = 0;
  int64_t max_new_tokens = 256;    // >= 1; also capped by EngineOptions::max_seq_len
  std::vector<int64_t> eos_ids;    // empty = none; the EOS token is kept in the output
  std::vector<std::string> stop_strings;  // needs EngineOptions::decode; stops when the decoded response contains one
};

struct GenerationRequest {
  uint64_t id = 0;
  std::vector<int64_t> prompt;
  SamplingParams sampling;
  // > 1 = a GRPO group: the prompt is prefilled once and its KV copied to the n slots. All n samples
  // are admitted together, so num_samples must not exceed EngineOptions::max_slots.
  int64_t num_samples = 1;
};

enum class FinishReason { kEos, kStop, kLength, kRejected };
const char* FinishReasonName(FinishReason reason);  // "eos", "stop", "length", "rejected"

struct Completion {
  uint64_t request_id = 0;
  int64_t sample_index = 0;
  std::vector<int64_t> prompt;     // copy of the request's prompt
  std::vector<int64_t> tokens;     // generated tokens (incl. the EOS token when finish_reason == kEos)
  std::vector<float> logprobs;     // log p(token) under softmax(logits / temperature) (greedy: temperature 1), one per token
  std::vector<int64_t> versions;   // policy version of the weights that produced each token
  FinishReason finish_reason = FinishReason::kLength;
  std::string error;               // why it was rejected (empty otherwise)
};

struct EngineOptions {
  int64_t max_slots = 64;          // concurrent sequences (KV-cache slots)
  // Prompt + new tokens per slot; 0 = config.max_position_embeddings. The KV cache holds
  // 2 * layers * max_slots * kv_heads / tp * max_seq_len * head_dim elements, allocated up front.
  int64_t max_seq_len = 0;
  std::function<std::string(const std::vector<int64_t>&)> decode;  // for stop strings (optional)
  Communicator* tp_group = nullptr;  // null or size 1 = no tensor parallelism; must outlive the engine
  bool refresh_kv_on_update = true;  // see the ordering contract above
};

class Engine {
 public:
  // `model` holds the FULL weights (e.g. from LoadLlama or InitLlamaWeights); the engine slices its TP
  // shard (in the model's dtype and on its device) and does not keep a reference to `model`
  // afterwards. Starts at policy version `version`. Throws when the options or the TP degree do not
  // fit the config (tp_size must divide the attention heads, the kv heads and intermediate_size).
  Engine(const LlamaConfig& config, LlamaForCausalLMImpl& model, EngineOptions options, int64_t version = 0);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Never throws for a bad request: it comes back from the next Step() as kRejected with `error`.
  void Submit(GenerationRequest request);
  // Admits queued requests (prefill) into free slots, runs one decode step over all running slots,
  // returns the sequences that finished in this step (and rejected requests).
  std::vector<Completion> Step();
  // Step() until nothing is queued or running.
  std::vector<Completion> RunUntilDone();
  bool HasWork() const;
  int64_t NumRunning() const;
  int64_t NumQueued() const;
  int64_t Version() const { return version_; }
  const LlamaConfig& config() const { return config_; }
  int64_t MaxSeqLen() const { return max_seq_len_; }

  // Colocated placement frees the KV cache while the rank trains. ReleaseCache() needs no running
  // sequence (their KV would be lost; queued requests hold none) and throws naming the running
  // requests otherwise. The next Step() that has work, or ReserveCache(), allocates it again with
  // the same shape, zeroed: what is generated afterwards is exactly what an engine that never
  // released its cache generates. ReserveCache() on an allocated cache does nothing; it exists so
  // that the caller can time the allocation outside generation.
  void ReleaseCache();
  void ReserveCache();
  // Bytes the KV cache holds now: all of it (EngineOptions::max_seq_len) while allocated, 0 released.
  int64_t CacheBytes() const;

  // In-flight update, between two Step() calls: each tensor is this rank's TP shard of the HF-named
  // parameter (for tp=1 the full tensor; embed_tokens / lm_head may be either the full matrix or
  // this rank's vocab-row shard of weight_sync's TensorParallelLayout), any dtype (converted); a
  // subset of names is allowed. `version` must be >= Version(). Under TP, a vocab-row shard makes
  // the call collective (the rows are all-gathered), so every rank passes the same names.
  void UpdateWeights(const std::vector<std::pair<std::string, at::Tensor>>& shards, int64_t version);
  // Applies weight_sync's staged push if it is newer than Version() (WeightReceiver::ApplyTo);
  // returns Version(). Collective under TP like UpdateWeights.
  int64_t UpdateFrom(WeightReceiver& receiver);

 private:
  struct Queued {
    GenerationRequest request;
    std::string error;  // non-empty: rejected at Submit
  };
  struct Sequence;

  std::vector<Completion> TakeRejected();
  std::vector<Completion> Admit();
  std::vector<Completion> DecodeRunning();
  void RefreshKv();
  // Appends `token` to sequence `slot`; returns true when it finished (and sets its reason).
  bool Accept(Sequence& seq, int64_t token, float logprob);
  // Frees the slots of finished sequences (keeping running slots dense in [0, NumRunning())).
  std::vector<Completion> Retire(const std::vector<bool>& finished);
  Completion Finish(Sequence& seq);

  LlamaConfig config_;
  EngineOptions options_;
  int64_t max_seq_len_ = 0;
  int64_t version_ = 0;
  bool kv_stale_ = false;
  std::unique_ptr<EngineModel> model_;
  std::unique_ptr<KvCache> cache_;
  std::deque<Queued> queue_;
  std::vector<std::unique_ptr<Sequence>> running_;  // running_[s] occupies KV slot s
};

}  // namespace llamarl
