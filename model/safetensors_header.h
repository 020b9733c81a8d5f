// The safetensors header parser, LibTorch-free so that it builds with clang alone for fuzzing.
//
// File layout: u64 little-endian N, then N bytes of JSON, then the data section:
//   {"__metadata__": {str: str},                       (optional)
//    name: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
// Offsets are relative to the data section, which starts at byte 8 + N.
//
// Strictness follows Hugging Face's reference implementation (safetensors/src/tensor.rs), so a file
// this parser accepts loads everywhere, and every file HF writes loads here:
//   - the header is at most 100,000,000 bytes and is one JSON object;
//   - every tensor entry has exactly the keys dtype, shape, data_offsets, with the right JSON types;
//   - end - begin == numel * itemsize, with no integer overflow anywhere;
//   - the tensors, ordered by offset, tile the data section exactly: no overlap, no hole between
//     two tensors and no trailing bytes after the last one (HF's "InvalidOffset" and
//     "MetadataIncompleteBuffer"). Zero-sized tensors may share an offset.
// Stricter than HF in two places, both to rule out silently ambiguous files: a key repeated in the
// same JSON object (tensor names included) is an error rather than last-one-wins, and an entry
// with a key other than the three above is an error rather than ignored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace llamarl {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;           // one of SafetensorsDtypes()
  std::vector<int64_t> shape;  // every dim >= 0; numel * itemsize fits in int64
  uint64_t begin = 0;          // [begin, end) relative to the data section; end <= data_size
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // in the order the JSON lists them
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // 8 + header length: where the data section starts in the file
  uint64_t data_size = 0;    // file size - data_offset; the entries tile [0, data_size) exactly
};

// The largest header accepted, as in HF's reader; a larger length field means a corrupt file.
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Parses and validates the header of a whole safetensors file held in `data[0, size)` (the data
// section must be included: the offsets are checked against it). `file_name` names the file in
// errors. Any malformed input throws llamarl::Error naming the file, the tensor and the problem;
// the parser reads only inside [data, data + size).
SafetensorsHeader ParseSafetensorsHeader(const uint8_t* data, size_t size,
                                         const std::string& file_name = "<memory>");

// Bytes per element of a safetensors dtype ("F32" -> 4); Error listing the known dtypes otherwise.
size_t SafetensorsDtypeSize(const std::string& dtype);
// Every dtype the format defines, as spelled in headers.
const std::vector<std::string>& SafetensorsDtypes();

}  // namespace llamarl
