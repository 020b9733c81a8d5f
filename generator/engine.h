// The rollout engine: batched generation over a paged KV cache, continuous batching, per-request
// sampling with batch-independent seeds, per-token log-probs and policy versions, tensor parallelism
// over a Communicator sub-group, and in-flight weight updates between two decode steps.
//
// Life of a request: Submit() validates it (a bad request, or one that could never fit the KV cache,
// is answered as kRejected by the next Step(), never thrown) and queues it. Step() admits queued
// requests in FIFO order while their num_samples slots are free and the KV blocks they may ever need
// are not promised to running sequences (generator/kv_blocks.h), prefills every admitted prompt in one
// padded batch (a group's prompt once, its blocks shared by the group's samples and copied on write),
// samples each sample's first token, then runs one batched decode step over every running sequence.
// Finished sequences leave and free their blocks, so queued requests join between decode steps
// (continuous batching). A sequence holds at most prompt + max_new_tokens positions, so admission
// sizes each request by its own lengths, never by max_position_embeddings.
//
// Padded vocabularies: a model may have more vocabulary rows than its tokenizer has ids (Qwen2.5:
// 151,936 rows, 151,665 ids). With EngineOptions::sampled_vocab_size = the tokenizer's size, ids at
// or above it are never sampled: sampling and log-probs see only the first sampled_vocab_size logits
// (see Completion::logprobs for what the trainer must compute to match).
//
// Ordering contract of weight updates: UpdateWeights may only be called between two Step() calls.
// Every token sampled by a later Step() carries the new version. With
// EngineOptions::refresh_kv_on_update (the default) the running sequences' KV caches are recomputed
// with the new weights at the start of the next Step(), so their next tokens are exactly what a fresh
// engine with the new weights would sample given the same prefix; without it they keep the KV cache
// computed by the old weights (cheaper, but the tokens then follow no single policy).
//
// Multi-turn episodes (GenerationRequest::multi_turn): a turn ends where a single-turn request would
// finish (an EOS id, a stop string, or max_turn_tokens), but the sample keeps its slot and its KV
// blocks and comes back from Step() as a Completion with awaiting_observation. The caller (the
// controller, with an env/ environment) then either Continue()s it with observation tokens, which
// the next Step() prefills after the history already in the sample's blocks (the history is never
// recomputed nor re-tokenized), or End()s it. An awaiting sample is left out of decode steps, so it
// never holds up the others. The episode's tokens (model and observation) count against
// sampling.max_new_tokens, which sizes the KV blocks the sample claims at admission, so a Continue
// that fits RoomLeft() never waits for memory.
//
// Thread safety: none; one thread drives an Engine. Under tensor parallelism every rank of tp_group
// makes the same calls in the same order (SPMD): Submit with the same requests, Step in lockstep,
// UpdateWeights with the same names. Block allocation is deterministic, so every rank holds the same
// block tables.
#pragma once

#include "generator/kv_budget.h"
#include "model/llama_config.h"
#include "model/shard_layout.h"

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

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
class LlamaWeightSource;
class EngineModel;
class KvCache;
class KvBlockPool;
struct BlockTable;

struct SamplingParams {            // per request
  double temperature = 1.0;        // 0 = greedy (argmax, lowest index on ties)
  int64_t top_k = 0;               // 0 = off
  double top_p = 1.0;              // in (0, 1]; 1 = off
  // Token i of sample s of the request draws from Philox(seed, s * 2^32 + i): reproducible whatever
  // else is in the batch.
  uint64_t seed = 0;
  int64_t max_new_tokens = 256;    // >= 1; also capped by EngineOptions::max_seq_len; sizes the KV the request claims
  std::vector<int64_t> eos_ids;    // empty = none; the EOS token is kept in the output
  std::vector<std::string> stop_strings;  // needs EngineOptions::decode; stops when the decoded response contains one
};

struct GenerationRequest {
  uint64_t id = 0;
  std::vector<int64_t> prompt;
  SamplingParams sampling;
  // > 1 = a GRPO group: the prompt is prefilled once and its KV blocks shared by the n samples. All
  // n samples are admitted together, so num_samples must not exceed EngineOptions::max_slots.
  int64_t num_samples = 1;
  // Multi-turn episodes (see the header): each sample pauses after every turn for Continue or End.
  bool multi_turn = false;
  int64_t max_turn_tokens = 0;  // multi-turn: tokens per model turn at most; 0 = no cap but the episode's
};

enum class FinishReason { kEos, kStop, kLength, kRejected };
const char* FinishReasonName(FinishReason reason);  // "eos", "stop", "length", "rejected"

struct Completion {
  uint64_t request_id = 0;
  int64_t sample_index = 0;
  std::vector<int64_t> prompt;     // copy of the request's prompt
  std::vector<int64_t> tokens;     // generated tokens (incl. the EOS token when finish_reason == kEos)
  // log p(token) under softmax(logits[:sampled_vocab_size] / temperature) (greedy: temperature 1),
  // one per token. With a padded vocabulary the distribution is renormalised over the ids that can be
  // sampled, so a trainer scoring these tokens must take its log-softmax over the same first
  // sampled_vocab_size rows of the LM head (e.g. the head's weight narrowed to them); over all rows
  // its log-probs would be lower by log(mass of the kept ids) and the importance ratios biased.
  std::vector<float> logprobs;
  std::vector<int64_t> versions;   // policy version of the weights that produced each token
  FinishReason finish_reason = FinishReason::kLength;  // multi-turn: how the last turn ended
  std::string error;               // why it was rejected (empty otherwise)
  // Multi-turn only (empty / false / 0 otherwise): per token, 1 when the model sampled it and 0 for
  // observation tokens given to Continue (their logprob is 0 and their version the engine's at
  // Continue). With awaiting_observation the episode is paused after a turn that began at
  // tokens[turn_start] and waits for Continue or End (the tokens so far are a copy).
  std::vector<uint8_t> sampled;
  bool awaiting_observation = false;
  int64_t turn_start = 0;
};

struct EngineOptions {
  int64_t max_slots = 64;          // concurrent sequences at most
  // Longest sequence, prompt + new tokens; 0 = config.max_position_embeddings. Longer prompts are
  // rejected and generation stops there. With no KV budget set, the cache holds max_slots
  // sequences of this length (callers that know their lengths pass them: the recipe's longest
  // prompt + max_new_tokens).
  int64_t max_seq_len = 0;
  // The KV budget per rank (bytes, or a fraction of the memory left; generator/kv_budget.h) and the
  // block size. The cache is allocated once, in the weights' dtype, as whole blocks.
  KvCacheConfig kv_cache;
  // Ids in [sampled_vocab_size, vocab_size) are never sampled (a padded vocabulary's rows that the
  // tokenizer cannot decode); 0 = the whole vocabulary.
  int64_t sampled_vocab_size = 0;
  std::function<std::string(const std::vector<int64_t>&)> decode;  // for stop strings (optional)
  Communicator* tp_group = nullptr;  // null or size 1 = no tensor parallelism; must outlive the engine
  bool refresh_kv_on_update = true;  // see the ordering contract above
  // The decoder layers' projections held as float8 e4m3fn with per-row scales and decoded one layer
  // at a time into the compute dtype (the weights' options); generator/engine_model.h. Halves their
  // memory against bf16; costs a decode of every layer in every forward.
  bool fp8_weights = false;
};

// The KV cache's memory and occupancy, for metrics.
struct KvCacheStats {
  int64_t budget_bytes = 0;        // what the cache holds while allocated
  int64_t bytes = 0;               // what it holds now (0 while released)
  int64_t block_size = 0;          // tokens per block
  int64_t num_blocks = 0;
  int64_t blocks_in_use = 0;       // a block shared by a group's samples counts once
  int64_t peak_blocks_in_use = 0;  // since construction or the last ResetKvPeak()
};

class Engine {
 public:
  // `model` holds the FULL weights (e.g. from LoadLlama or InitLlamaWeights); the engine slices its TP
  // shard (in the model's dtype and on its device) and does not keep a reference to `model`
  // afterwards. Starts at policy version `version`. Throws when the options or the TP degree do not
  // fit the config (tp_size must divide the attention heads, the kv heads and intermediate_size).
  Engine(const LlamaConfig& config, LlamaForCausalLMImpl& model, EngineOptions options, int64_t version = 0);
  // Loading by shard: this rank's TP shard (the whole model without TP) read from `weights` (a mapped
  // checkpoint's bytes, model/llama_weights.h) straight into `weights_options` (the dtype the engine
  // computes and keeps its KV cache in: generator.weight_dtype), never the full model first.
  Engine(const LlamaConfig& config, const LlamaWeightSource& weights, const at::TensorOptions& weights_options,
         EngineOptions options, int64_t version = 0);
  // This rank's weights (its TP shard of each HF-named parameter), for checks.
  std::vector<std::pair<std::string, at::Tensor>> LocalParameters() const;
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
  // Multi-turn: resumes an awaiting sample after appending `observation` (>= 1 token, at most
  // RoomLeft() - 1 so that the model can speak again); the next Step() prefills it into the sample's
  // blocks and samples the next turn. Throws when the sample is not awaiting or the tokens do not fit.
  void Continue(uint64_t request_id, int64_t sample_index, const std::vector<int64_t>& observation);
  // Multi-turn: ends an awaiting sample, frees its slot and blocks, and returns its final Completion.
  Completion End(uint64_t request_id, int64_t sample_index);
  // Multi-turn: the tokens an awaiting sample may still take (its observation and the model's turns).
  int64_t RoomLeft(uint64_t request_id, int64_t sample_index) const;
  int64_t NumAwaiting() const;
  // Queued or running work that Step() can advance (awaiting samples wait for the caller).
  bool HasWork() const;
  int64_t NumRunning() const;
  int64_t NumQueued() const;
  int64_t Version() const { return version_; }
  const LlamaConfig& config() const { return config_; }
  int64_t MaxSeqLen() const { return max_seq_len_; }
  int64_t SampledVocabSize() const { return sampled_vocab_; }

  // Colocated placement frees the KV cache while the rank trains. ReleaseCache() needs no running
  // sequence (their KV would be lost; queued requests hold none) and throws naming the running
  // requests otherwise. The next Step() that has work, or ReserveCache(), allocates it again with
  // the same shape, zeroed: what is generated afterwards is exactly what an engine that never
  // released its cache generates. ReserveCache() on an allocated cache does nothing; it exists so
  // that the caller can time the allocation outside generation.
  void ReleaseCache();
  void ReserveCache();
  // Bytes the KV cache holds now: its whole budget while allocated, 0 released.
  int64_t CacheBytes() const;
  KvCacheStats KvStats() const;
  void ResetKvPeak();

  // The engine's one way to take new weights (in-flight update, between two Step() calls). `specs`
  // name this rank's shards of HF-named parameters and their shapes, in `dtype` (for tp=1 the full
  // tensors; embed_tokens / lm_head may be the full matrix or this rank's vocab-row shard of
  // model/shard_layout.h's TensorParallelLayout); a subset of names is allowed. Every spec is
  // checked before anything is written, so a bad one changes nothing. `write` is then handed the
  // tensors to fill, one per spec: the engine's own parameter storage where it has exactly that
  // shape and dtype (a weight push receives straight into it, no second copy of the weights), else
  // a scratch tensor loaded afterwards (another dtype: converted; vocabulary rows under TP:
  // all-gathered, which makes the call collective, so every rank passes the same names). `write`
  // runs inside c10::InferenceMode on the calling thread; should it throw, the weights may be partly
  // written and the version is unchanged. `version` must be >= Version(). controller/weight_push
  // drives it through weight_sync's PushWeightsIntoEngine and WeightReceiver::UpdateEngine; a caller
  // holding the shards as tensors uses CopyWeightsInto below.
  void UpdateWeights(const std::vector<BufferSpec>& specs, at::ScalarType dtype,
                     const std::function<void(std::vector<at::Tensor>& targets)>& write, int64_t version);
  // The same door for weights sent as float8 e4m3fn (weight_sync's fp8 plans): `write` fills, per
  // spec, the e4m3fn bits (uint8, the spec's shape) and their float32 scales (per row: the shape
  // without its last dim; [1] for a 1-D spec). An fp8 engine's projections are written in place
  // (bits and scales straight into its storage); every other parameter arrives in scratch and is
  // decoded into the compute dtype (vocabulary rows under TP then all-gathered, as above).
  void UpdateWeightsFp8(const std::vector<BufferSpec>& specs,
                        const std::function<void(std::vector<at::Tensor>& data, std::vector<at::Tensor>& scales)>& write,
                        int64_t version);
  bool fp8_weights() const;
  // Where the engine's weights and cache live.
  c10::Device device() const;

 private:
  struct Queued {
    GenerationRequest request;
    std::string error;  // non-empty: rejected at Submit
  };
  struct Sequence;

  void Init(std::unique_ptr<EngineModel> model);  // what both constructors share, once the weights are in
  std::vector<Completion> TakeRejected();
  std::vector<Completion> Admit();
  std::vector<Completion> DecodeRunning();
  std::vector<Completion> ResumeContinued();  // prefills the observations given to Continue
  Sequence& Awaiting(uint64_t request_id, int64_t sample_index) const;
  int64_t Room(const Sequence& seq) const;
  void RefreshKv();
  // Prefills rows[i] into positions [0, rows[i].size()) of tables[i]; returns each row's last logits [R, V].
  at::Tensor Prefill(const std::vector<std::vector<int64_t>>& rows, const std::vector<const BlockTable*>& tables);
  // Appends `token` to the sequence; returns true when it finished (and sets its reason).
  bool Accept(Sequence& seq, int64_t token, float logprob);
  // Frees the blocks of finished sequences and drops them (the others keep their order); a
  // multi-turn sample with room left pauses instead (awaiting_observation).
  std::vector<Completion> Retire(const std::vector<bool>& finished);
  // Draws one token per row of `logits` for running_[rows[i]] and accepts it; returns who finished.
  std::vector<Completion> SampleAndAccept(const at::Tensor& logits, const std::vector<int64_t>& rows);
  // The block tables of running_[rows[i]] as one [rows, widest] list, short rows padded.
  std::vector<int64_t> PaddedBlocks(const std::vector<int64_t>& rows, size_t widest) const;
  Completion Snapshot(const Sequence& seq) const;  // an awaiting sample's Completion (a copy)
  Completion Finish(Sequence& seq);

  LlamaConfig config_;
  EngineOptions options_;
  int64_t max_seq_len_ = 0;
  int64_t sampled_vocab_ = 0;
  int64_t kv_bytes_per_block_ = 0;
  int64_t version_ = 0;
  bool kv_stale_ = false;
  std::unique_ptr<EngineModel> model_;
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<KvBlockPool> blocks_;
  std::deque<Queued> queue_;
  std::vector<std::unique_ptr<Sequence>> running_;  // in admission order
};

// Engine::UpdateWeights for shards held as tensors (the synchronous baseline's buffers, a model's
// parameters), with the first shard's dtype as the door's dtype. A shard whose shape and dtype match
// the engine's parameter is copied straight into it; any other (another dtype, vocabulary rows under
// TP) goes through the door's scratch, one copy more than loading it directly. Checked whole before
// anything is copied; the caller may reuse the shards after.
void CopyWeightsInto(Engine& engine, const std::vector<std::pair<std::string, at::Tensor>>& shards,
                     int64_t version);

}  // namespace llamarl
