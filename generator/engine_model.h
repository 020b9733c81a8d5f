// The decoder as the engine runs it: this rank's tensor-parallel shard of every layer, run piece by
// piece (model/llama.h's Embed, Rope, Layer(i) pieces; model/attention.h's AttendEager for prefill)
// against the paged KV cache instead of the full-sequence forward. Decode attends through
// kernels/paged_attention.h, which reads each sequence's blocks in place (on the CPU).
//
// Tensor parallelism (Megatron, the convention of weight_sync's TensorParallelLayout): q/k/v and
// gate/up are column-parallel (rank r holds rows [r, r + 1) * out / tp of the [out, in] weight, whole
// heads for q/k/v), o/down row-parallel (columns), followed by an all-reduce over the TP group;
// norms, embeddings and the LM head are replicated. The local shard is itself a Llama module, built
// from the config with heads, kv heads and intermediate_size divided by tp, so its layers run
// unchanged; only the two all-reduces are added here.
//
// fp8 weights (EngineOptions::fp8_weights): the 2-D weights inside the decoder layers (q/k/v/o,
// gate/up/down: what `llamarl plan` counts as layer_linear_params) are held as float8 e4m3fn bits
// (uint8) with one float32 scale per row of the local shard (kernels/fp8.h), and decoded into the
// compute dtype one layer at a time, just before the layer runs, into one layer's worth of scratch
// that every layer's module weights alias. Embeddings, norms, biases and the LM head stay in the
// compute dtype. Memory per parameter of those layers: 1 byte + 4 bytes per row, plus one layer
// decoded. Every forward decodes each layer once (a weight-only quantisation: it saves memory, not
// time; LibTorch 1.13 has no fp8 GEMM).
// Legend: R = prefill rows, T = tokens, M = positions written, N = decoding sequences, NB = blocks per
// sequence, D = hidden_size, V = vocab_size.
#pragma once

#include "model/llama.h"
#include "model/llama_weights.h"

#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace llamarl {

class Communicator;
class KvCache;

struct PrefillBatch {
  at::Tensor input_ids;  // [R, T] int64, right-padded
  at::Tensor lengths;    // [R] int64 in [1, T]: real tokens per row
  at::Tensor slots;      // [M] int64: cache slots (KvCache) written, distinct ...
  at::Tensor tokens;     // [M] int64: ... with the K/V of these tokens (row * T + position)
};

struct DecodeBatch {
  at::Tensor tokens;     // [N] int64: each sequence's pending token ...
  at::Tensor positions;  // [N] int64: ... at this position (its cached length) ...
  at::Tensor slots;      // [N] int64: ... written to this cache slot
  at::Tensor blocks;     // [N, NB] int64: each sequence's blocks, padded with any block id
};

// Multi-turn: rows that continue sequences already in the cache (an observation appended after a
// turn). Row r's tokens take positions [starts[r], starts[r] + lengths[r]) and attend to the cached
// positions before them through their blocks.
struct ExtendBatch {
  at::Tensor input_ids;  // [R, T] int64, right-padded
  at::Tensor starts;     // [R] int64: cached positions before the row
  at::Tensor lengths;    // [R] int64 in [1, T]
  at::Tensor slots;      // [M] int64: cache slots of the rows' real tokens ...
  at::Tensor tokens;     // [M] int64: ... row * T + t
  at::Tensor blocks;     // [R, NB] int64: each row's blocks (covering starts + lengths), padded with any block id
};

// Throws unless tp_size divides the attention heads, the kv heads and intermediate_size.
void CheckTensorParallel(const LlamaConfig& config, int tp_size);

class EngineModel {
 public:
  // Slices this rank's shard of `full` (same dtype and device); keeps no reference to `full`.
  EngineModel(const LlamaConfig& config, LlamaForCausalLMImpl& full, Communicator* tp_group, bool fp8_weights = false);
  // Loading by shard: this rank's shard of each parameter of `weights` sliced as a view (of the mapped
  // bytes, for a checkpoint) and converted once into a module of `options` (dtype, device); the full
  // model is never built. Keeps no reference to `weights`. With fp8_weights the layers' 2-D weights
  // are quantised per row from the source's bytes (see the header); `options` is the compute dtype.
  EngineModel(const LlamaConfig& config, const LlamaWeightSource& weights, const at::TensorOptions& options,
              Communicator* tp_group, bool fp8_weights = false);

  const LlamaConfig& local_config() const { return local_config_; }
  int TpSize() const;
  int TpRank() const;
  at::TensorOptions options() const;  // the compute dtype and device
  LlamaForCausalLMImpl& local() { return *local_; }  // fp8 projections: views of one layer's scratch
  bool fp8_weights() const { return !fp8_.empty(); }
  // This rank's shard of every parameter by HF name, in named_parameters() order; fp8 weights decoded
  // into the compute dtype (a copy), the others the parameters themselves.
  std::vector<std::pair<std::string, at::Tensor>> LocalParameters() const;

  // Writes the K/V of every row's tokens into the cache and returns the logits [R, V] at each row's
  // last real token (rows whose logits are not wanted still cost only their final norm + LM head).
  at::Tensor Prefill(KvCache& cache, const PrefillBatch& batch);
  // Writes the K/V of every row's tokens after its cached positions and returns the logits [R, V] at
  // each row's last real token; the cached positions are read, never recomputed.
  at::Tensor Extend(KvCache& cache, const ExtendBatch& batch);
  // Every sequence appends its pending token and attends over positions [0, position]; returns
  // logits [N, V].
  at::Tensor Decode(KvCache& cache, const DecodeBatch& batch);

  // Under TP: makes every rank hold TP rank 0's sampled tokens and log-probs. The ranks compute the
  // same logits, but an all-reduce is not promised to be bitwise identical everywhere, and ranks that
  // disagreed on a token would decode different sequences from then on.
  void SyncSampled(std::vector<int64_t>& tokens, std::vector<float>& logprobs);

  // Copies a new value of the HF-named parameter into the local shard: `value` is this rank's shard,
  // the full parameter (sliced here), or for embed_tokens / lm_head under TP this rank's vocab-row
  // shard (all-gathered: collective). Throws naming the parameter and the expected shapes. An fp8
  // weight is quantised per row of this rank's shard.
  void LoadParameter(const std::string& name, const at::Tensor& value);
  // LoadParameter for a value sent as e4m3fn bits (uint8) and float32 scales (per row, [1] for 1-D):
  // decoded into the compute dtype, then loaded (an fp8 weight of the full parameter: re-quantised).
  void LoadFp8Parameter(const std::string& name, const at::Tensor& data, const at::Tensor& scales);
  // Throws what LoadParameter would throw, without copying anything (and without communicating).
  void CheckParameter(const std::string& name, const at::Tensor& value) const { Resolve(name, value); }
  // The local parameter that this rank's shard of `name` (of `shape`, in `dtype`) may be written into
  // directly: the parameter itself when it has exactly that shape and dtype and is contiguous;
  // undefined otherwise (the vocabulary rows under TP, another dtype), where LoadParameter must take it.
  at::Tensor InPlaceTarget(const std::string& name, at::IntArrayRef shape, at::ScalarType dtype) const;
  // For an fp8 weight whose local shard has `shape`: its e4m3fn bits and per-row scales, which an fp8
  // transfer may write directly. {undefined, undefined} for any other parameter or shape.
  std::pair<at::Tensor, at::Tensor> InPlaceFp8Target(const std::string& name, at::IntArrayRef shape) const;

 private:
  // One decoder layer; `attend` maps (q, k, v) to attended [B, T, H * E] and fills the cache.
  template <typename Attend>
  at::Tensor RunLayer(int64_t index, const at::Tensor& x, const RopePositions& rope, Attend&& attend);
  // Rows [R, T] whose tokens' K/V go to the cache: their real lengths [R], and the slots [M] written
  // with the K/V of tokens [M] (row * T + t).
  struct RowsInCache {
    at::Tensor lengths, slots, tokens;
  };
  // Every layer over the rows' hidden states h, writing their K/V, attending with attend(layer, qkv);
  // returns the logits [R, V] at each row's last real token.
  template <typename Attend>
  at::Tensor RunRows(KvCache& cache, at::Tensor h, const RopePositions& rope, const RowsInCache& rows, Attend&& attend);
  at::Tensor AllReduce(at::Tensor partial);
  // fp8: makes every layer's q/k/v/o/gate/up/down weights views of one layer's scratch, on `options`.
  void ShareLayerScratch(const at::TensorOptions& options);
  void DecodeLayer(int64_t index);  // fp8: layer `index`'s weights into the scratch
  // Rank's shard of a full parameter (a view).
  at::Tensor ShardOf(const std::string& name, const at::Tensor& full) const;
  at::Tensor GatherVocabRows(const at::Tensor& rows) const;
  enum class LoadKind { kLocal, kVocabRows, kFull };
  struct LoadTarget {
    at::Tensor param;
    LoadKind kind;
  };
  LoadTarget Resolve(const std::string& name, const at::Tensor& value) const;

  LlamaConfig config_;
  LlamaConfig local_config_;
  Communicator* tp_;  // null = tp 1
  LlamaForCausalLM local_{nullptr};
  std::unordered_map<std::string, at::Tensor> params_;  // local_'s parameters by HF name (shared storage)
  struct Fp8Weight {
    at::Tensor data;    // uint8 e4m3fn bits, the local shard's shape
    at::Tensor scales;  // float32, one per row
  };
  std::unordered_map<std::string, Fp8Weight> fp8_;  // fp8 weights by HF name (empty without fp8)
  std::vector<std::vector<std::string>> fp8_layers_;  // each layer's fp8 weight names
};

}  // namespace llamarl
