#include "model/safetensors_header.h"

#include "core/check.h"
#include "core/config.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

namespace llamarl {
namespace {

constexpr const char* kCorruptHint = " (the file is corrupt or is not safetensors; re-export or re-download it)";

struct DtypeInfo {
  const char* name;
  size_t size;
};
// HF's Dtype enum, minus the sub-byte float formats that no LibTorch can hold.
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
    {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8},
};

const DtypeInfo* FindDtype(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

std::string KnownDtypes() {
  std::string known;
  for (const auto& d : kDtypes) known += (known.empty() ? "" : ", ") + std::string(d.name);
  return known;
}

// A valid header nests three containers (root > entry > shape). One more level is let through so
// that `"shape": [[1]]` gets the precise shape error; anything deeper stops the parse, which also
// keeps hostile nesting away from recursive JSON code.
constexpr int kMaxJsonDepth = 4;

// "[2, 3]"; long shapes are cut, the message only needs to identify the tensor's shape.
std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size() && i < 8; ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + (shape.size() > 8 ? ", ...]" : "]");
}

std::string Where(const std::string& file, const std::string& tensor) {
  return tensor.empty() ? file + ": " : file + ": tensor '" + tensor + "': ";
}

// The parse callback sees every key before nlohmann folds duplicates into one (last wins); it
// records the top-level key order, which std::map-backed JSON objects would lose.
class KeyTracker {
 public:
  explicit KeyTracker(const std::string& file) : file_(file) {}

  bool OnEvent(int depth, Json::parse_event_t event, const Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        LLAMARL_CHECK(depth < kMaxJsonDepth, file_, ": header JSON nests containers more than ", kMaxJsonDepth,
                      " deep; a safetensors header is {name: {\"shape\": [...]}}", kCorruptHint);
        if (event == Json::parse_event_t::object_start) open_objects_.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        open_objects_.pop_back();
        break;
      case Json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        LLAMARL_CHECK(open_objects_.back().insert(key).second, file_, ": header JSON repeats the key '", key,
                      open_objects_.size() == 1 ? "' at the top level" : "' inside one object",
                      "; each tensor name and field must appear once", kCorruptHint);
        if (open_objects_.size() == 1) top_level_order_.push_back(key);
        break;
      }
      default:
        break;
    }
    return true;
  }

  const std::vector<std::string>& top_level_order() const { return top_level_order_; }

 private:
  const std::string& file_;
  std::vector<std::set<std::string>> open_objects_;
  std::vector<std::string> top_level_order_;
};

Json ParseJson(const uint8_t* begin, const uint8_t* end, const std::string& file, KeyTracker* tracker) {
  auto callback = [tracker](int depth, Json::parse_event_t event, Json& parsed) {
    return tracker->OnEvent(depth, event, parsed);
  };
  try {
    return Json::parse(begin, end, callback, /*allow_exceptions=*/true);
  } catch (const Json::exception& e) {
    LLAMARL_FAIL(file, ": header is not valid JSON: ", e.what(), kCorruptHint);
  }
}

uint64_t ReadHeaderLength(const uint8_t* data, size_t size, const std::string& file) {
  LLAMARL_CHECK(size >= 8, file, ": file is ", size,
                " bytes; a safetensors file starts with an 8-byte header length", kCorruptHint);
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | data[i];  // little-endian on every host
  LLAMARL_CHECK(length <= kMaxSafetensorsHeaderBytes, file, ": header length ", length,
                " is absurdly large (the limit is ", kMaxSafetensorsHeaderBytes, " bytes)", kCorruptHint);
  LLAMARL_CHECK(length <= size - 8, file, ": header length ", length, " runs past the end of the file (",
                size, " bytes, so at most ", size - 8, " header bytes)", kCorruptHint);
  return length;
}

void ParseMetadata(const Json& value, const std::string& file, SafetensorsHeader* header) {
  LLAMARL_CHECK(value.is_object(), file, ": __metadata__ must be an object of strings, got ",
                DescribeJson(value), kCorruptHint);
  for (const auto& [key, item] : value.items()) {
    LLAMARL_CHECK(item.is_string(), file, ": __metadata__ value of '", key, "' must be a string, got ",
                  DescribeJson(item), kCorruptHint);
    header->metadata.emplace(key, item.get<std::string>());
  }
}

// A non-negative JSON integer that fits int64; `what` names the field in the error.
int64_t ReadCount(const Json& value, const std::string& where, const char* what) {
  LLAMARL_CHECK(value.is_number_unsigned() && value.get<uint64_t>() <= uint64_t(std::numeric_limits<int64_t>::max()),
                where, what, " must be a non-negative integer below 2^63, got ", DescribeJson(value), kCorruptHint);
  return static_cast<int64_t>(value.get<uint64_t>());
}

// Reads dtype, shape and data_offsets and checks that they agree with each other.
SafetensorsEntry ParseEntry(const std::string& name, const Json& value, const std::string& file) {
  const std::string where = Where(file, name);
  LLAMARL_CHECK(value.is_object(), where, "entry must be an object with dtype, shape and data_offsets, got ",
                DescribeJson(value), kCorruptHint);
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    LLAMARL_CHECK(value.contains(key), where, "entry is missing \"", key, "\"", kCorruptHint);
  }
  for (const auto& item : value.items()) {
    const std::string& key = item.key();
    LLAMARL_CHECK(key == "dtype" || key == "shape" || key == "data_offsets", where, "unknown key '", key,
                  "'; an entry has exactly dtype, shape and data_offsets", kCorruptHint);
  }
  SafetensorsEntry entry;
  entry.name = name;
  const Json& dtype = value["dtype"];
  LLAMARL_CHECK(dtype.is_string(), where, "dtype must be a string such as \"F32\", got ", DescribeJson(dtype),
                kCorruptHint);
  entry.dtype = dtype.get<std::string>();
  const DtypeInfo* info = FindDtype(entry.dtype);
  LLAMARL_CHECK(info, where, "unknown dtype '", entry.dtype, "'; known: ", KnownDtypes(), kCorruptHint);
  const size_t item_size = info->size;

  const Json& shape = value["shape"];
  LLAMARL_CHECK(shape.is_array(), where, "shape must be a list of integers, got ", DescribeJson(shape), kCorruptHint);
  uint64_t num_bytes = item_size;
  for (const Json& dim : shape) {
    int64_t d = ReadCount(dim, where, "every shape dim");
    entry.shape.push_back(d);
    LLAMARL_CHECK(!__builtin_mul_overflow(num_bytes, uint64_t(d), &num_bytes) &&
                      num_bytes <= uint64_t(std::numeric_limits<int64_t>::max()),
                  where, "shape ", DescribeJson(shape), " of ", entry.dtype, " overflows 2^63 bytes", kCorruptHint);
  }

  const Json& offsets = value["data_offsets"];
  LLAMARL_CHECK(offsets.is_array() && offsets.size() == 2, where,
                "data_offsets must be [begin, end], got ", DescribeJson(offsets), kCorruptHint);
  entry.begin = uint64_t(ReadCount(offsets[0], where, "data_offsets begin"));
  entry.end = uint64_t(ReadCount(offsets[1], where, "data_offsets end"));
  LLAMARL_CHECK(entry.begin <= entry.end, where, "data_offsets [", entry.begin, ", ", entry.end,
                "] has begin > end", kCorruptHint);
  LLAMARL_CHECK(entry.end - entry.begin == num_bytes, where, "data_offsets [", entry.begin, ", ", entry.end,
                "] span ", entry.end - entry.begin, " bytes but shape ", ShapeString(entry.shape), " of ", entry.dtype,
                " needs ", num_bytes, " bytes", kCorruptHint);
  return entry;
}

// The entries, ordered by offset, must cover [0, data_size) exactly once (see the header comment).
void CheckTiling(const SafetensorsHeader& header, const std::string& file) {
  std::vector<const SafetensorsEntry*> by_offset;
  by_offset.reserve(header.entries.size());
  for (const auto& e : header.entries) by_offset.push_back(&e);
  std::stable_sort(by_offset.begin(), by_offset.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
    return std::make_pair(a->begin, a->end) < std::make_pair(b->begin, b->end);
  });
  uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry* e : by_offset) {
    LLAMARL_CHECK(e->end <= header.data_size, Where(file, e->name), "data_offsets [", e->begin, ", ", e->end,
                  "] run past the end of the data section (", header.data_size, " bytes)", kCorruptHint);
    LLAMARL_CHECK(e->begin >= covered, Where(file, e->name), "data_offsets [", e->begin, ", ", e->end,
                  "] overlap tensor '", previous ? previous->name : "", "', which ends at ", covered, kCorruptHint);
    LLAMARL_CHECK(e->begin == covered, Where(file, e->name), "data_offsets [", e->begin, ", ", e->end,
                  "] leave a hole of ", e->begin - covered, " bytes at [", covered, ", ", e->begin,
                  ") in the data section; safetensors requires tensors to be packed back to back", kCorruptHint);
    covered = e->end;
    previous = e;
  }
  LLAMARL_CHECK(covered == header.data_size, file, ": the tensors cover ", covered, " bytes of the ",
                header.data_size, "-byte data section; the trailing ", header.data_size - covered,
                " bytes belong to no tensor", kCorruptHint);
}

}  // namespace

const std::vector<std::string>& SafetensorsDtypes() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& d : kDtypes) out.emplace_back(d.name);
    return out;
  }();
  return names;
}

size_t SafetensorsDtypeSize(const std::string& dtype) {
  const DtypeInfo* info = FindDtype(dtype);
  LLAMARL_CHECK(info, "unknown safetensors dtype '", dtype, "'; known: ", KnownDtypes());
  return info->size;
}

SafetensorsHeader ParseSafetensorsHeader(const uint8_t* data, size_t size, const std::string& file_name) {
  const uint64_t length = ReadHeaderLength(data, size, file_name);
  SafetensorsHeader header;
  header.data_offset = 8 + length;
  header.data_size = size - header.data_offset;

  KeyTracker tracker(file_name);
  const Json root = ParseJson(data + 8, data + 8 + length, file_name, &tracker);
  LLAMARL_CHECK(root.is_object(), file_name, ": header must be a JSON object {name: {dtype, shape, data_offsets}}, got ",
                DescribeJson(root), kCorruptHint);
  for (const std::string& name : tracker.top_level_order()) {
    const Json& value = root.at(name);
    if (name == "__metadata__") {
      ParseMetadata(value, file_name, &header);
      continue;
    }
    header.entries.push_back(ParseEntry(name, value, file_name));
  }
  CheckTiling(header, file_name);
  return header;
}

}  // namespace llamarl
