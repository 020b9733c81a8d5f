// Reading: SafetensorsFile (one mapped file) and SafetensorsCheckpoint (a directory, maybe sharded).
// The writer is in safetensors_writer.cpp.
#include "model/safetensors.h"

#include "core/check.h"
#include "core/config.h"
#include "model/mapped_file.h"
#include "model/safetensors_header.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <torch/version.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; the zero-copy reader assumes a little-endian host"
#endif

namespace llamarl {
namespace {

namespace fs = std::filesystem;

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define LLAMARL_TORCH_HAS_FLOAT8 1
#endif

struct DtypePair {
  const char* name;
  at::ScalarType type;
};
constexpr DtypePair kTorchDtypes[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf}, {"BF16", at::kBFloat16}, {"I64", at::kLong},
    {"I32", at::kInt},    {"I16", at::kShort}, {"I8", at::kChar},  {"U8", at::kByte},       {"BOOL", at::kBool},
#ifdef LLAMARL_TORCH_HAS_FLOAT8
    {"F8_E4M3", at::kFloat8_e4m3fn}, {"F8_E5M2", at::kFloat8_e5m2},
#endif
};

std::string SupportedDtypes() {
  std::string out;
  for (const auto& d : kTorchDtypes) out += (out.empty() ? "" : ", ") + std::string(d.name);
  return out;
}

// Up to five existing names, those sharing the longest prefix with `name` first: a typo in a layer
// index or suffix then shows its neighbours.
std::string SuggestNames(std::vector<std::string> names, const std::string& name) {
  auto common = [&name](const std::string& s) {
    return std::mismatch(s.begin(), s.begin() + std::min(s.size(), name.size()), name.begin()).first - s.begin();
  };
  std::stable_sort(names.begin(), names.end(),
                   [&](const std::string& a, const std::string& b) { return common(a) > common(b); });
  std::string out;
  for (size_t i = 0; i < names.size() && i < 5; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > 5) out += ", ...";
  return out.empty() ? "(none)" : out;
}

}  // namespace

at::ScalarType SafetensorsDtypeToScalarType(const std::string& dtype) {
  for (const auto& d : kTorchDtypes) {
    if (dtype == d.name) return d.type;
  }
  LLAMARL_FAIL("safetensors dtype '", dtype, "' has no LibTorch ", TORCH_VERSION,
               " equivalent; supported: ", SupportedDtypes(),
               ". Convert the checkpoint (e.g. to BF16) before loading it");
}

std::string ScalarTypeToSafetensorsDtype(at::ScalarType type) {
  for (const auto& d : kTorchDtypes) {
    if (type == d.type) return d.name;
  }
  LLAMARL_FAIL("tensors of type ", c10::toString(type), " cannot be stored in safetensors; supported: ",
               SupportedDtypes(), ". Convert the tensor with .to(...) first");
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->mapping_ = MappedFile::Open(path);
  file->header_ = std::make_unique<SafetensorsHeader>(
      ParseSafetensorsHeader(file->mapping_->data(), file->mapping_->size(), path));
  for (size_t i = 0; i < file->header_->entries.size(); ++i) file->index_[file->header_->entries[i].name] = i;
  return file;
}

SafetensorsFile::~SafetensorsFile() = default;

std::vector<std::string> SafetensorsFile::Names() const {
  std::vector<std::string> names;
  names.reserve(header_->entries.size());
  for (const auto& e : header_->entries) names.push_back(e.name);
  return names;
}

bool SafetensorsFile::Has(const std::string& name) const { return index_.count(name) != 0; }

const SafetensorsEntry& SafetensorsFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  LLAMARL_CHECK(it != index_.end(), path_, ": no tensor named '", name, "'; it holds ", index_.size(),
                " tensors, such as: ", SuggestNames(Names(), name));
  return header_->entries[it->second];
}

at::Tensor SafetensorsFile::Get(const std::string& name) const {
  const SafetensorsEntry& entry = Find(name);
  at::ScalarType type;
  try {
    type = SafetensorsDtypeToScalarType(entry.dtype);
  } catch (const Error& e) {
    LLAMARL_FAIL(path_, ": tensor '", name, "': ", e.what());
  }
  const auto options = at::TensorOptions().dtype(type);
  const size_t num_bytes = entry.end - entry.begin;
  if (num_bytes == 0) return at::empty(entry.shape, options);
  uint8_t* bytes = mapping_->mutable_data() + header_->data_offset + entry.begin;
  const size_t item_size = SafetensorsDtypeSize(entry.dtype);
  if (reinterpret_cast<uintptr_t>(bytes) % item_size == 0) {
    // The deleter owns a reference to the mapping: the tensor (and its views) keep it alive.
    std::shared_ptr<MappedFile> keep_alive = mapping_;
    return at::from_blob(bytes, entry.shape, [keep_alive](void*) {}, options);
  }
  // Misaligned data (a writer that does not order tensors by alignment): LibTorch kernels may
  // assume natural alignment, so copy.
  at::Tensor copy = at::empty(entry.shape, options);
  std::memcpy(copy.data_ptr(), bytes, num_bytes);
  return copy;
}

void SafetensorsFile::DropPages(const std::string& name) const {
  const SafetensorsEntry& entry = Find(name);
  mapping_->DropPages(header_->data_offset + entry.begin, entry.end - entry.begin);
}

std::vector<int64_t> SafetensorsFile::Shape(const std::string& name) const { return Find(name).shape; }

std::string SafetensorsFile::Dtype(const std::string& name) const { return Find(name).dtype; }

const std::map<std::string, std::string>& SafetensorsFile::Metadata() const { return header_->metadata; }

const uint8_t* SafetensorsFile::mapped_data() const { return mapping_->data(); }

size_t SafetensorsFile::mapped_size() const { return mapping_->size(); }

// ---- SafetensorsCheckpoint -------------------------------------------------------------------

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

// weight_map as {tensor: shard file name}, with every value checked to be a plain file name.
std::map<std::string, std::string> ReadWeightMap(const std::string& index_path) {
  const Json index = ReadJsonFile(index_path);
  LLAMARL_CHECK(index.is_object(), index_path, ": expected a JSON object with \"weight_map\", got ",
                DescribeJson(index));
  LLAMARL_CHECK(index.contains("weight_map"), index_path,
                ": missing \"weight_map\" ({tensor name: shard file}); the index is incomplete, re-save the checkpoint");
  const Json& weight_map = index["weight_map"];
  LLAMARL_CHECK(weight_map.is_object(), index_path, ": \"weight_map\" must be an object {tensor name: shard file}, got ",
                DescribeJson(weight_map));
  if (index.contains("metadata")) {
    LLAMARL_CHECK(index["metadata"].is_object(), index_path, ": \"metadata\" must be an object, got ",
                  DescribeJson(index["metadata"]));
  }
  std::map<std::string, std::string> out;
  for (const auto& [tensor, shard] : weight_map.items()) {
    LLAMARL_CHECK(shard.is_string(), index_path, ": weight_map['", tensor, "'] must be a shard file name, got ",
                  DescribeJson(shard));
    const std::string file = shard.get<std::string>();
    LLAMARL_CHECK(!file.empty() && file != "." && file != ".." && file.find('/') == std::string::npos, index_path,
                  ": weight_map['", tensor, "'] is '", file,
                  "'; expected the file name of a shard in the same directory");
    out.emplace(tensor, file);
  }
  return out;
}

}  // namespace

SafetensorsCheckpoint SafetensorsCheckpoint::Open(const std::string& path) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  LLAMARL_CHECK(fs::exists(status), "checkpoint '", path, "' does not exist; expected a directory holding ",
                kSingleName, " or ", kIndexName, ", or a .safetensors file");
  SafetensorsCheckpoint checkpoint;
  checkpoint.path_ = path;
  if (!fs::is_directory(status)) {
    auto file = SafetensorsFile::Open(path);
    for (const auto& name : file->Names()) checkpoint.owner_.emplace(name, file);
    return checkpoint;
  }
  const fs::path dir(path);
  if (!fs::exists(dir / kIndexName)) {
    LLAMARL_CHECK(fs::exists(dir / kSingleName), "checkpoint directory '", path, "' has neither ", kSingleName,
                  " nor ", kIndexName, "; point at the directory that holds the weights");
    checkpoint = Open((dir / kSingleName).string());
    checkpoint.path_ = path;
    return checkpoint;
  }
  const std::string index_path = (dir / kIndexName).string();
  const auto weight_map = ReadWeightMap(index_path);
  std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
  for (const auto& [tensor, shard] : weight_map) {
    if (shards.count(shard)) continue;
    const fs::path shard_path = dir / shard;
    LLAMARL_CHECK(fs::exists(shard_path), index_path, ": weight_map['", tensor, "'] names shard '", shard,
                  "', which does not exist in ", path, "; the checkpoint is incomplete (re-download it)");
    shards.emplace(shard, SafetensorsFile::Open(shard_path.string()));
  }
  std::map<std::string, std::string> found_in;  // tensor -> shard that holds it
  for (const auto& [shard, file] : shards) {
    for (const auto& name : file->Names()) {
      auto [it, inserted] = found_in.emplace(name, shard);
      LLAMARL_CHECK(inserted, path, ": tensor '", name, "' is stored in two shards, '", it->second, "' and '", shard,
                    "'; a tensor must live in exactly one shard");
      LLAMARL_CHECK(weight_map.count(name), path, ": shard '", shard, "' holds tensor '", name, "', which ",
                    kIndexName, " does not list; the index and the shards disagree (re-save the checkpoint)");
      checkpoint.owner_.emplace(name, file);
    }
  }
  for (const auto& [tensor, shard] : weight_map) {
    auto it = found_in.find(tensor);
    LLAMARL_CHECK(it != found_in.end() && it->second == shard, index_path, ": weight_map puts tensor '", tensor,
                  "' in shard '", shard, "', but ",
                  it == found_in.end() ? "no shard holds it" : "it is in '" + it->second + "'",
                  "; the index and the shards disagree (re-save the checkpoint)");
  }
  return checkpoint;
}

std::vector<std::string> SafetensorsCheckpoint::Names() const {
  std::vector<std::string> names;
  names.reserve(owner_.size());
  for (const auto& entry : owner_) names.push_back(entry.first);
  return names;
}

bool SafetensorsCheckpoint::Has(const std::string& name) const { return owner_.count(name) != 0; }

const SafetensorsFile& SafetensorsCheckpoint::Owner(const std::string& name) const {
  auto it = owner_.find(name);
  LLAMARL_CHECK(it != owner_.end(), "checkpoint ", path_, " has no tensor named '", name, "'; it holds ", owner_.size(),
                " tensors, such as: ", SuggestNames(Names(), name));
  return *it->second;
}

at::Tensor SafetensorsCheckpoint::Get(const std::string& name) const { return Owner(name).Get(name); }

std::vector<int64_t> SafetensorsCheckpoint::Shape(const std::string& name) const { return Owner(name).Shape(name); }

void SafetensorsCheckpoint::DropPages(const std::string& name) const { Owner(name).DropPages(name); }

std::string SafetensorsCheckpoint::Dtype(const std::string& name) const { return Owner(name).Dtype(name); }

}  // namespace llamarl
