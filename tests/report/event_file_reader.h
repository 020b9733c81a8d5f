// An independent reader of TensorBoard event files for the tests: TFRecord framing with its masked
// CRC-32C checked by a bit-at-a-time CRC (not the writer's table), and a minimal protocol-buffer
// decoder for the Event fields the writer uses. Throws on any framing, checksum or wire-format error.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace llamarl::testing {

// CRC-32C bit by bit from its definition: reflected, polynomial 0x82f63b78, init and xorout ~0.
inline uint32_t BitwiseCrc32c(const std::string& bytes) {
  uint32_t crc = 0xffffffffu;
  for (unsigned char byte : bytes) {
    crc ^= byte;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

inline uint32_t Masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

struct EventRecord {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  std::map<std::string, float> scalars;      // tag -> simple_value
  std::map<std::string, std::string> texts;  // tag -> string_val of a "text" plugin tensor
};

class ProtoReader {
 public:
  explicit ProtoReader(const std::string& bytes) : s_(bytes) {}
  bool Done() const { return pos_ >= s_.size(); }
  uint64_t Varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= s_.size()) throw std::runtime_error("truncated varint");
      const uint8_t b = uint8_t(s_[pos_++]);
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("varint longer than 10 bytes");
  }
  std::string Take(size_t n) {
    if (pos_ + n > s_.size()) throw std::runtime_error("field runs past its message");
    std::string out = s_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  // Reads the next field; returns its number, fills the payload (varints as their value in *varint).
  int Next(int* wire_type, std::string* bytes, uint64_t* varint) {
    const uint64_t key = Varint();
    *wire_type = int(key & 7);
    if (*wire_type == 0) *varint = Varint();
    else if (*wire_type == 1) *bytes = Take(8);
    else if (*wire_type == 5) *bytes = Take(4);
    else if (*wire_type == 2) *bytes = Take(size_t(Varint()));
    else throw std::runtime_error("unexpected wire type " + std::to_string(*wire_type));
    return int(key >> 3);
  }

 private:
  const std::string& s_;
  size_t pos_ = 0;
};

inline void DecodeValue(const std::string& bytes, EventRecord* e) {
  ProtoReader r(bytes);
  std::string tag, text, plugin;
  float simple = 0;
  bool has_simple = false;
  while (!r.Done()) {
    int wt;
    std::string b;
    uint64_t v;
    const int field = r.Next(&wt, &b, &v);
    if (field == 1) tag = b;
    if (field == 2) std::memcpy(&simple, b.data(), 4), has_simple = true;
    if (field == 8) {  // TensorProto: 8 = string_val
      ProtoReader t(b);
      while (!t.Done()) {
        std::string tb;
        if (t.Next(&wt, &tb, &v) == 8) text = tb;
      }
    }
    if (field == 9) {  // SummaryMetadata: 1 = plugin_data {1 = plugin_name}
      ProtoReader m(b);
      std::string pd;
      while (!m.Done()) {
        if (m.Next(&wt, &pd, &v) != 1) continue;
        ProtoReader p(pd);
        std::string name;
        while (!p.Done())
          if (p.Next(&wt, &name, &v) == 1) plugin = name;
      }
    }
  }
  if (has_simple) e->scalars[tag] = simple;
  if (plugin == "text") e->texts[tag] = text;
}

inline EventRecord DecodeEvent(const std::string& bytes) {
  EventRecord e;
  ProtoReader r(bytes);
  while (!r.Done()) {
    int wt;
    std::string b;
    uint64_t v = 0;
    const int field = r.Next(&wt, &b, &v);
    if (field == 1) std::memcpy(&e.wall_time, b.data(), 8);
    if (field == 2) e.step = int64_t(v);
    if (field == 3) e.file_version = b;
    if (field == 5) {
      ProtoReader s(b);
      while (!s.Done()) {
        std::string value;
        if (s.Next(&wt, &value, &v) == 1) DecodeValue(value, &e);
      }
    }
  }
  return e;
}

inline std::vector<EventRecord> ReadEventFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string data = buffer.str();
  std::vector<EventRecord> events;
  size_t pos = 0;
  auto u32 = [&](size_t at) {
    uint32_t x;
    std::memcpy(&x, data.data() + at, 4);
    return x;
  };
  while (pos < data.size()) {
    if (pos + 12 > data.size()) throw std::runtime_error("truncated record header at byte " + std::to_string(pos));
    uint64_t length;
    std::memcpy(&length, data.data() + pos, 8);
    if (u32(pos + 8) != Masked(BitwiseCrc32c(data.substr(pos, 8))))
      throw std::runtime_error("length CRC mismatch at byte " + std::to_string(pos));
    if (pos + 12 + length + 4 > data.size()) throw std::runtime_error("truncated record at byte " + std::to_string(pos));
    const std::string payload = data.substr(pos + 12, length);
    if (u32(pos + 12 + length) != Masked(BitwiseCrc32c(payload)))
      throw std::runtime_error("data CRC mismatch at byte " + std::to_string(pos));
    events.push_back(DecodeEvent(payload));
    pos += 12 + length + 4;
  }
  return events;
}

}  // namespace llamarl::testing
