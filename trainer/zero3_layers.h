// ZeRO-3 per-layer parameter gathering. The flat parameter vector (named_parameters() order) holds
// every decoder layer's parameters as one contiguous range, so a layer is gathered with one uneven
// all-gather of that range (each rank contributes the part of its shard that falls inside it).
//
// ShardedLayerForward runs one decoder layer as a custom autograd function. With activation
// checkpointing (ShardedLayer::checkpoint, the default):
//   forward:  gather the layer, run it without recording the graph, free the layer; keep the input.
//   backward: gather the layer again, recompute its forward with the graph (activation
//             recomputation), backpropagate, reduce-scatter the layer's gradient into the ranks' grad
//             shards (accumulated across micro-batches), free the layer.
// Without it (trainer.activation_checkpointing false), as FSDP does: the forward records the layer's
// graph and keeps its activations, then frees the bytes of the gathered parameters while the graph
// still refers to them; the backward gathers the layer into those same storages again and
// backpropagates through the recorded graph: no recomputed forward, more activation memory.
// Either way a rank holds the full parameters of at most one decoder layer in use plus the next one in
// flight (plus the embedding, final norm and LM head, which the step gathers once).
// Prefetch: while a layer computes, the all-gather of the layer that runs next (ShardedLayer::next in
// forward, ::prev in backward) is already issued, non-blocking, so that on NCCL it overlaps the
// compute; the next GatherLayer waits for it instead of starting its own.
// Collective: every rank must run the same sequence of layer forwards and backwards (the trainer
// pads ranks with fewer micro-batches with empty ones).
#pragma once

#include "model/llama.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace llamarl {

class Communicator;
struct ParamSpec;
struct PendingGather;  // an all-gather in flight (zero3_layers.cpp)

// A contiguous group of parameters (one decoder layer; or the embedding, or the final norm and LM
// head), where they lie in the flat vector, and the shards they are cut from.
struct ShardedLayer {
  Communicator* comm = nullptr;
  LlamaDecoderLayerImpl* layer = nullptr;    // null for the groups outside the decoder layers
  std::vector<at::Tensor> params;            // the module's parameter tensors (set_data swaps storage)
  std::vector<std::vector<int64_t>> shapes;  // of the parameters, in order
  int64_t begin = 0, end = 0;                // the layer's flat range
  const std::vector<int64_t>* bounds = nullptr;  // EvenSplit of the flat vector over the ranks
  at::Tensor* shard = nullptr;               // this rank's shard (the master's float32; a frozen copy's any dtype)
  at::Tensor* grad_shard = nullptr;          // this rank's gradient shard (float32), accumulated into; null when frozen
  bool checkpoint = true;                    // recompute the forward in backward (see above)
  ShardedLayer* next = nullptr;              // the layer whose gather a forward prefetches (null: none)
  ShardedLayer* prev = nullptr;              // the layer whose gather a backward prefetches (null: none)
  std::shared_ptr<PendingGather> pending;    // this layer's prefetched gather, taken by GatherLayer
};

// Links the decoder layers of `groups` (embedding, layers..., norm/head) for prefetching and sets
// their checkpoint flag. The vector must not reallocate afterwards.
void LinkDecoderLayers(std::vector<ShardedLayer>& groups, bool checkpoint);

// Collective: issues the group's all-gather without waiting; the group's next GatherLayer takes it.
// Nothing may change the shards before then.
void PrefetchLayer(ShardedLayer& s);
// Collective (unless prefetched): fills the group's parameters from the shards (gathered in the
// shards' dtype, converted to the parameters'). Returns the buffer the parameters are views of, or an
// undefined tensor when they have several dtypes (each then holds its own converted copy).
at::Tensor GatherLayer(ShardedLayer& s);
// Frees the group's parameter storage.
void ReleaseLayer(const ShardedLayer& s);
// Collective: the group's gradients (in parameter order) reduce-scattered and added into the shards.
void ReduceScatterLayerGrads(const ShardedLayer& s, const std::vector<at::Tensor>& grads);

// Collective: one decoder layer with per-layer gathered parameters (see above). x [B, T, D].
at::Tensor ShardedLayerForward(ShardedLayer* s, const at::Tensor& x_BTD, const RopePositions& rope,
                               const AttentionLayout& layout);

}  // namespace llamarl
