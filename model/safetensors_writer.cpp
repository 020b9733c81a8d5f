// Writing safetensors files: SaveSafetensors (one file) and SaveSafetensorsSharded (HF's layout).
#include "model/safetensors.h"

#include "core/check.h"
#include "core/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

namespace llamarl {
namespace {

namespace fs = std::filesystem;

// A file being written under a temporary name; removed unless Commit() renamed it into place.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp." + std::to_string(getpid())) {
    fd_ = open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    LLAMARL_CHECK(fd_ >= 0, "cannot create '", tmp_, "': ", std::strerror(errno),
                  "; check that the directory exists and is writable");
  }
  ~AtomicFile() {
    if (fd_ >= 0) close(fd_);
    if (!committed_) unlink(tmp_.c_str());
  }

  void Write(const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      ssize_t n = write(fd_, p, std::min<size_t>(size, size_t(1) << 30));
      if (n < 0 && errno == EINTR) continue;
      LLAMARL_CHECK(n > 0, "writing '", tmp_, "' failed: ", std::strerror(errno), " (is the disk full?)");
      p += n;
      size -= size_t(n);
    }
  }

  // fsync, then rename over the destination, then fsync the directory so the rename is durable.
  void Commit() {
    LLAMARL_CHECK(fsync(fd_) == 0, "fsync of '", tmp_, "' failed: ", std::strerror(errno));
    const int fd = fd_;
    fd_ = -1;
    LLAMARL_CHECK(close(fd) == 0, "closing '", tmp_, "' failed: ", std::strerror(errno));
    LLAMARL_CHECK(std::rename(tmp_.c_str(), path_.c_str()) == 0, "renaming '", tmp_, "' to '", path_,
                  "' failed: ", std::strerror(errno));
    committed_ = true;
    const std::string dir = fs::path(path_).parent_path().string();
    const int dir_fd = open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
      fsync(dir_fd);  // best effort: some filesystems refuse fsync on directories
      close(dir_fd);
    }
  }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// `text` as a JSON string literal; names and metadata must be UTF-8 for the header to be JSON.
std::string JsonString(const std::string& text, const std::string& path, const char* what) {
  try {
    return Json(text).dump();
  } catch (const Json::exception&) {
    LLAMARL_FAIL("saving ", path, ": ", what, " '", text, "' is not valid UTF-8; safetensors headers are JSON");
  }
}

void CheckMetadata(const std::map<std::string, std::string>& metadata, const std::string& path) {
  for (const auto& [key, value] : metadata) {
    JsonString(key, path, "metadata key");
    JsonString(value, path, "metadata value");
  }
}

std::string DumpShape(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? "," : "") + std::to_string(shape[i]);
  return out + "]";
}

// The header JSON, built by hand so that the keys keep the caller's order (nlohmann's default
// object sorts them) in linear time. `begin[i]` is tensor i's offset in the data section.
std::string BuildHeader(const std::vector<TensorHeader>& tensors, const std::vector<uint64_t>& begin,
                        const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  if (!metadata.empty()) header += "\"__metadata__\":" + Json(metadata).dump();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t end = begin[i] + uint64_t(tensors[i].NumBytes());
    header += (header.size() > 1 ? "," : "") + Json(tensors[i].name).dump() + ":{\"dtype\":\"" +
              ScalarTypeToSafetensorsDtype(tensors[i].dtype) + "\",\"shape\":" + DumpShape(tensors[i].shape) +
              ",\"data_offsets\":[" + std::to_string(begin[i]) + "," + std::to_string(end) + "]}";
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  return header;
}

std::vector<TensorHeader> HeadersOf(const NamedTensors& tensors) {
  std::vector<TensorHeader> headers;
  headers.reserve(tensors.size());
  for (const auto& [name, t] : tensors) headers.push_back({name, t.scalar_type(), t.sizes().vec()});
  return headers;
}

// Everything that could fail half-way through a (sharded) save is checked before the first write.
void CheckHeaders(const std::vector<TensorHeader>& tensors, const std::string& path) {
  std::set<std::string> seen;
  for (const auto& t : tensors) {
    LLAMARL_CHECK(!t.name.empty() && t.name != "__metadata__", "saving ", path, ": tensor name '", t.name,
                  "' is reserved; use a non-empty name other than __metadata__");
    LLAMARL_CHECK(seen.insert(t.name).second, "saving ", path, ": tensor name '", t.name,
                  "' appears twice; each tensor needs a unique name");
    JsonString(t.name, path, "tensor name");
    (void)ScalarTypeToSafetensorsDtype(t.dtype);  // throws for unsupported types
  }
}

// One file; tensors[i] comes from produce(first + i).
void WriteFile(const std::string& path, const std::vector<TensorHeader>& tensors, size_t first,
               const TensorProducer& produce, const std::map<std::string, std::string>& metadata) {
  // Largest element size first keeps every tensor aligned without padding (the sizes are powers
  // of two and each tensor's byte size is a multiple of its element size).
  std::vector<size_t> data_order(tensors.size());
  for (size_t i = 0; i < data_order.size(); ++i) data_order[i] = i;
  std::stable_sort(data_order.begin(), data_order.end(), [&](size_t a, size_t b) {
    return c10::elementSize(tensors[a].dtype) > c10::elementSize(tensors[b].dtype);
  });
  std::vector<uint64_t> begin(tensors.size());
  uint64_t offset = 0;
  for (size_t i : data_order) {
    begin[i] = offset;
    offset += uint64_t(tensors[i].NumBytes());
  }
  const std::string header = BuildHeader(tensors, begin, metadata);
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = uint8_t(uint64_t(header.size()) >> (8 * i));

  AtomicFile file(path);
  file.Write(length, sizeof(length));
  file.Write(header.data(), header.size());
  for (size_t i : data_order) {
    const TensorHeader& h = tensors[i];
    const at::Tensor t = produce(first + i).cpu().contiguous();
    LLAMARL_CHECK(t.defined() && t.scalar_type() == h.dtype && t.sizes() == at::IntArrayRef(h.shape), "saving ", path,
                  ": tensor '", h.name, "' was declared ", c10::toString(h.dtype), " ", DumpShape(h.shape), " but ",
                  t.defined() ? std::string(c10::toString(t.scalar_type())) + " " + DumpShape(t.sizes().vec())
                            : std::string("undefined"),
                  " was produced");
    if (t.numel() > 0) file.Write(t.data_ptr(), size_t(h.NumBytes()));
  }
  file.Commit();
}

std::string ShardName(size_t k, size_t n) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "model-%05zu-of-%05zu.safetensors", k, n);
  return buffer;
}

void WriteIndex(const std::string& path, const std::map<std::string, std::string>& weight_map, int64_t total_size) {
  Json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
  const std::string text = index.dump(2) + "\n";
  AtomicFile file(path);
  file.Write(text.data(), text.size());
  file.Commit();
}

void RemoveStale(const fs::path& path) {
  std::error_code ec;
  fs::remove(path, ec);
  LLAMARL_CHECK(!ec, "cannot remove the stale '", path.string(), "': ", ec.message(),
                "; remove it by hand, or the checkpoint reader would pick it up");
}

}  // namespace

int64_t TensorHeader::NumBytes() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n * int64_t(c10::elementSize(dtype));
}

void SaveSafetensors(const std::string& path, const NamedTensors& tensors,
                     const std::map<std::string, std::string>& metadata) {
  for (const auto& [name, tensor] : tensors) {
    LLAMARL_CHECK(tensor.defined(), "saving ", path, ": tensor '", name, "' is undefined");
  }
  const std::vector<TensorHeader> headers = HeadersOf(tensors);
  CheckHeaders(headers, path);
  CheckMetadata(metadata, path);
  WriteFile(path, headers, 0, [&tensors](size_t i) { return tensors[i].second; }, metadata);
}

std::vector<std::string> SaveSafetensorsSharded(const std::string& dir, const NamedTensors& tensors,
                                                const ShardedSaveOptions& options) {
  for (const auto& [name, tensor] : tensors) {
    LLAMARL_CHECK(tensor.defined(), "saving ", dir, ": tensor '", name, "' is undefined");
  }
  return SaveSafetensorsStreamed(dir, HeadersOf(tensors), [&tensors](size_t i) { return tensors[i].second; },
                                 options);
}

std::vector<std::string> SaveSafetensorsStreamed(const std::string& dir, const std::vector<TensorHeader>& tensors,
                                                 const TensorProducer& produce, const ShardedSaveOptions& options) {
  LLAMARL_CHECK(options.max_shard_bytes > 0, "max_shard_bytes must be positive, got ", options.max_shard_bytes);
  CheckHeaders(tensors, dir);
  std::map<std::string, std::string> metadata = options.metadata;
  metadata.emplace("format", "pt");  // HF's loaders look for it; a caller's own value wins
  CheckMetadata(metadata, dir);

  std::vector<size_t> shard_begin;  // index of each shard's first tensor
  int64_t shard_bytes = 0, total_size = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const int64_t bytes = tensors[i].NumBytes();
    if (shard_begin.empty() || (shard_begin.back() < i && shard_bytes + bytes > options.max_shard_bytes)) {
      shard_begin.push_back(i);
      shard_bytes = 0;
    }
    shard_bytes += bytes;
    total_size += bytes;
  }
  shard_begin.push_back(tensors.size());
  std::error_code ec;
  fs::create_directories(dir, ec);
  LLAMARL_CHECK(!ec, "cannot create checkpoint directory '", dir, "': ", ec.message());
  const fs::path root(dir);
  const size_t num_shards = shard_begin.size() - 1;
  if (num_shards <= 1) {
    const std::string path = (root / "model.safetensors").string();
    WriteFile(path, tensors, 0, produce, metadata);
    RemoveStale(root / "model.safetensors.index.json");
    return {path};
  }
  std::vector<std::string> written;
  std::map<std::string, std::string> weight_map;
  for (size_t k = 0; k < num_shards; ++k) {
    const std::string name = ShardName(k + 1, num_shards);
    const std::vector<TensorHeader> shard(tensors.begin() + long(shard_begin[k]), tensors.begin() + long(shard_begin[k + 1]));
    WriteFile((root / name).string(), shard, shard_begin[k], produce, metadata);
    for (const auto& t : shard) weight_map.emplace(t.name, name);
    written.push_back((root / name).string());
  }
  written.push_back((root / "model.safetensors.index.json").string());
  WriteIndex(written.back(), weight_map, total_size);
  RemoveStale(root / "model.safetensors");
  return written;
}

}  // namespace llamarl
