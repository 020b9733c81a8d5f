// safetensors read (memory-mapped, zero-copy where dtype and alignment allow) and write (single
// file and sharded with model.safetensors.index.json), as Hugging Face writes them.
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets:
// [begin, end)}, "__metadata__": {str: str}}, then the data section the offsets point into.
// The header parser itself is LibTorch-free (safetensors_header.h) so it can be fuzzed.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace llamarl {

struct SafetensorsHeader;
class MappedFile;

// One .safetensors file, memory-mapped read-only. Tensors returned by Get() alias the mapping when
// their data is aligned for their dtype (they keep the mapping alive), and are copied otherwise.
// Thread-safe for concurrent Get().
class SafetensorsFile {
 public:
  // Validates the whole header against the file size; any malformed input is an llamarl::Error
  // naming the file and the problem.
  static std::shared_ptr<SafetensorsFile> Open(const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  std::vector<std::string> Names() const;  // in header order
  bool Has(const std::string& name) const;
  // Error lists a few of the names that exist when `name` is missing.
  at::Tensor Get(const std::string& name) const;
  std::vector<int64_t> Shape(const std::string& name) const;
  std::string Dtype(const std::string& name) const;  // "F32", "BF16", ...
  const std::map<std::string, std::string>& Metadata() const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  std::shared_ptr<MappedFile> mapping_;
  std::unique_ptr<SafetensorsHeader> header_;
  std::map<std::string, size_t> index_;
};

// A checkpoint directory: model.safetensors, or model.safetensors.index.json naming the shard file of
// every tensor (HF's sharded layout). Also accepts a path to a single .safetensors file.
class SafetensorsCheckpoint {
 public:
  static SafetensorsCheckpoint Open(const std::string& path);

  std::vector<std::string> Names() const;  // sorted
  bool Has(const std::string& name) const;
  at::Tensor Get(const std::string& name) const;
  std::vector<int64_t> Shape(const std::string& name) const;
  std::string Dtype(const std::string& name) const;

 private:
  std::map<std::string, std::shared_ptr<SafetensorsFile>> owner_;  // tensor name -> file
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Writes one file atomically (a temporary file, then rename). Tensors must be on the CPU or are
// copied there; they are written contiguous, in the given order, 8-byte aligned as HF does.
void SaveSafetensors(const std::string& path, const NamedTensors& tensors,
                     const std::map<std::string, std::string>& metadata = {});

struct ShardedSaveOptions {
  int64_t max_shard_bytes = int64_t(5) << 30;  // HF's default "5GB"
  std::map<std::string, std::string> metadata;  // written into every shard ({"format": "pt"} is added)
};
// Writes `dir`/model.safetensors when everything fits one shard, else
// `dir`/model-0000k-of-0000n.safetensors plus model.safetensors.index.json; returns the files written.
std::vector<std::string> SaveSafetensorsSharded(const std::string& dir, const NamedTensors& tensors,
                                                const ShardedSaveOptions& options = {});

}  // namespace llamarl
