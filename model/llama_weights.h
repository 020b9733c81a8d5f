// Where a rank's initial weights come from, one HF-named parameter at a time, so that each rank
// materialises only its own slice in its own dtype (trainer: a ZeRO-3 flat range of f32 master
// weights; generator: a tensor-parallel shard in generator.weight_dtype) and nobody builds the full
// model unless its slice is the whole model.
//
// A checkpoint source maps the safetensors files (model/safetensors.h) and hands out tensors that
// alias the mapped pages: nothing is read from disk until a caller slices and converts, and then
// only the pages of that slice. A model source hands out an in-memory module's parameters (the tiny
// models built from a seed, or weights after an SFT warm start).
//
// Copies share the underlying checkpoint or module. Release() drops this copy's share (the mapping is
// unmapped, the module freed, when the last copy lets go). Immutable otherwise, so Get() is
// thread-safe.
#pragma once

#include "model/llama.h"

#include <memory>
#include <string>
#include <vector>

namespace llamarl {

class SafetensorsCheckpoint;

class LlamaWeightSource {
 public:
  // `dir` holds config.json and safetensors (one file or shards with an index). Every parameter the
  // config implies is checked (present, exact shape, floating dtype; the errors of LoadLlama) before
  // anything is read.
  static LlamaWeightSource FromCheckpoint(const std::string& dir);
  // The module's parameters (the source shares their storage, not the module: dropping the module
  // and keeping the source keeps the weights).
  static LlamaWeightSource FromModel(LlamaForCausalLMImpl& model);

  const LlamaConfig& config() const;
  // The full parameter `name` in its stored dtype (a mapped checkpoint's: aliasing the file; slice
  // before converting). Throws naming the parameter when the config implies no such name.
  at::Tensor Get(const std::string& name) const;
  // The caller has copied what it needs of `name`: a mapped checkpoint gives its pages back to the
  // kernel, so that a loader's resident memory is its slice plus one parameter's pages, never the
  // whole file. Nothing for a model source.
  void DoneWith(const std::string& name) const;
  // Bytes the source holds in memory now (a mapped checkpoint: 0; its pages belong to the page cache).
  int64_t ResidentBytes() const;
  void Release();
  bool released() const;

 private:
  struct State;
  std::shared_ptr<const State> state_;
};

// Copies `src` (host memory in any floating dtype: a slice of a mapped checkpoint, a module's
// parameter) into `dst`, converting on the host. Into a CUDA `dst` the converted bytes go through a
// pinned staging buffer and a copy that does not block the host (the caching host allocator keeps
// the buffer alive until the copy ran), so that the conversion of the next slice overlaps this
// transfer and no DMA reads pageable mapped pages; anywhere else it is exactly dst.copy_(src).
void LoadInto(const at::Tensor& dst, const at::Tensor& src);

// A module of `options` (dtype, device) filled from `source`: the whole model. For a rank whose slice
// is the whole model, and for tools (generate, export) that need it.
LlamaForCausalLM MaterializeLlama(const LlamaWeightSource& source, const at::TensorOptions& options);

}  // namespace llamarl
