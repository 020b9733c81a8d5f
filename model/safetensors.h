// safetensors read (memory-mapped, zero-copy where dtype and alignment allow) and write (single
// file and sharded with model.safetensors.index.json), as Hugging Face writes them.
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets:
// [begin, end)}, "__metadata__": {str: str}}, then the data section the offsets point into.
// The header parser itself is LibTorch-free (safetensors_header.h) so it can be fuzzed.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace llamarl {

struct SafetensorsEntry;
struct SafetensorsHeader;
class MappedFile;

// "F32" <-> at::kFloat, for F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL (and F8_E4M3, F8_E5M2 on
// LibTorch >= 2.1). Errors name the dtype and list the supported ones.
at::ScalarType SafetensorsDtypeToScalarType(const std::string& dtype);
std::string ScalarTypeToSafetensorsDtype(at::ScalarType type);

// One .safetensors file, memory-mapped. Tensors returned by Get() alias the mapping when their data
// is aligned for their dtype (they keep the mapping alive), and are copied otherwise. The mapping is
// copy-on-write over a read-only descriptor: the file is never modified, an in-place op on an
// aliasing tensor writes private pages, and two Get() calls for the same name share those pages
// (clone() a tensor you mean to modify). Immutable after Open, so Get() is thread-safe.
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
  // The tensor's mapped pages leave the resident set (MappedFile::DropPages): for a loader that has
  // copied what it needs out of a Get() tensor it did not write into.
  void DropPages(const std::string& name) const;
  const std::map<std::string, std::string>& Metadata() const;
  // The whole mapped file; a zero-copy tensor's data lies inside [mapped_data, + mapped_size).
  const uint8_t* mapped_data() const;
  size_t mapped_size() const;

 private:
  SafetensorsFile() = default;
  const SafetensorsEntry& Find(const std::string& name) const;
  std::string path_;
  std::shared_ptr<MappedFile> mapping_;
  std::unique_ptr<SafetensorsHeader> header_;
  std::map<std::string, size_t> index_;
};

// A checkpoint directory: model.safetensors, or model.safetensors.index.json naming the shard file of
// every tensor (HF's sharded layout). Also accepts a path to a single .safetensors file. The index
// is checked against the shards when opened: weight_map must be an object of shard file names in
// `path`, every shard must exist and hold the tensors the index assigns to it, no tensor may sit in
// two shards, and no shard may hold a tensor that the index does not list. Every shard is opened
// (mapped) once, up front. Immutable after Open, so Get() is thread-safe.
class SafetensorsCheckpoint {
 public:
  static SafetensorsCheckpoint Open(const std::string& path);

  std::vector<std::string> Names() const;  // sorted
  bool Has(const std::string& name) const;
  at::Tensor Get(const std::string& name) const;
  std::vector<int64_t> Shape(const std::string& name) const;
  std::string Dtype(const std::string& name) const;
  void DropPages(const std::string& name) const;  // SafetensorsFile::DropPages

 private:
  const SafetensorsFile& Owner(const std::string& name) const;
  std::string path_;
  std::map<std::string, std::shared_ptr<SafetensorsFile>> owner_;  // tensor name -> file
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Writes one file atomically (path + ".tmp.<pid>", fsync, rename). Tensors on another device are
// copied to the CPU; all are written contiguous and little-endian. The header lists them in the
// given order; the data section orders them by element size, largest first (stable), and the
// header is space-padded to a multiple of 8 bytes, so that every tensor is aligned for its dtype
// without the padding holes that safetensors forbids (HF's writer does the same). Deterministic:
// the same input gives the same bytes. Names must be unique, non-empty and not "__metadata__".
void SaveSafetensors(const std::string& path, const NamedTensors& tensors,
                     const std::map<std::string, std::string>& metadata = {});

struct ShardedSaveOptions {
  int64_t max_shard_bytes = int64_t(5) << 30;  // HF's default "5GB"
  std::map<std::string, std::string> metadata;  // written into every shard ({"format": "pt"} is added)
};
// Writes `dir`/model.safetensors when everything fits one shard, else
// `dir`/model-0000k-of-0000n.safetensors plus model.safetensors.index.json ({"metadata":
// {"total_size": bytes}, "weight_map": {name: shard}}); returns the files written. Shards are
// filled greedily in the given order; a tensor larger than max_shard_bytes gets a shard of its own.
// Creates `dir` if needed and removes a stale model.safetensors or index left by the other layout,
// so that SafetensorsCheckpoint::Open(dir) reads what was just written.
std::vector<std::string> SaveSafetensorsSharded(const std::string& dir, const NamedTensors& tensors,
                                                const ShardedSaveOptions& options = {});

// A tensor declared before its bytes exist: what a streamed save writes into the headers.
struct TensorHeader {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  int64_t NumBytes() const;
};
// Returns tensor `i` of the declared list, with exactly its declared dtype and shape.
using TensorProducer = std::function<at::Tensor(size_t i)>;
// SaveSafetensorsSharded for tensors made one at a time: the headers (and the shard split) come from
// `tensors`, and each tensor's bytes from produce(i), called once per tensor, shard by shard, in each
// shard's data order (element size descending, stable), and dropped once written. A checkpoint much
// larger than memory is written holding one tensor at a time. A produced tensor that differs from its
// declaration is an error naming both.
std::vector<std::string> SaveSafetensorsStreamed(const std::string& dir, const std::vector<TensorHeader>& tensors,
                                                 const TensorProducer& produce, const ShardedSaveOptions& options = {});

}  // namespace llamarl
