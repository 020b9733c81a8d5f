#include "report/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "core/check.h"

namespace llamarl {
namespace {

// Byte-at-a-time table of the reflected Castagnoli polynomial.
const std::array<uint32_t, 256>& Crc32cTable() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

// Protocol buffer wire format: tag = field << 3 | wire type (0 varint, 1 64-bit, 2 bytes, 5 32-bit).
void Varint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(char(uint8_t(v) | 0x80));
    v >>= 7;
  }
  out->push_back(char(uint8_t(v)));
}

void Tag(std::string* out, int field, int wire_type) { Varint(out, uint64_t(field) << 3 | uint64_t(wire_type)); }

void Bytes(std::string* out, int field, const std::string& bytes) {
  Tag(out, field, 2);
  Varint(out, bytes.size());
  out->append(bytes);
}

template <typename T>
void Fixed(std::string* out, int field, T value) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "fixed32 or fixed64");
  Tag(out, field, sizeof(T) == 8 ? 1 : 5);
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // little-endian hosts (x86-64, aarch64)
  out->append(bytes, sizeof(T));
}

std::string HostName() {
  char name[256] = {0};
  if (gethostname(name, sizeof(name) - 1) != 0 || !name[0]) return "localhost";
  return name;
}

double WallTime() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t Crc32c(const void* data, size_t size) {
  const auto& table = Crc32cTable();
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffffu;
}

uint32_t MaskedCrc32c(const void* data, size_t size) {
  const uint32_t crc = Crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

EventFileWriter::EventFileWriter(const std::string& dir) {
  path_ = dir + "/events.out.tfevents." + std::to_string(int64_t(WallTime())) + "." + HostName() + "." +
          std::to_string(getpid());
  file_ = std::fopen(path_.c_str(), "wb");
  LLAMARL_CHECK(file_ != nullptr, "tensorboard: cannot create '", path_, "': ", std::strerror(errno),
                "; make run_dir writable, or set logging.tensorboard to false");
  std::string body;
  Bytes(&body, 3, "brain.Event:2");
  WriteEvent(0, body);
}

EventFileWriter::~EventFileWriter() {
  if (file_) std::fclose(file_);
}

void EventFileWriter::AddScalar(const std::string& tag, double value, int64_t step) {
  std::string v;
  Bytes(&v, 1, tag);
  Fixed(&v, 2, float(value));
  std::string summary;
  Bytes(&summary, 1, v);
  std::string body;
  Bytes(&body, 5, summary);
  WriteEvent(step, body);
}

void EventFileWriter::AddText(const std::string& tag, const std::string& text, int64_t step) {
  std::string plugin_data, metadata, tensor, value, summary, body;
  Bytes(&plugin_data, 1, "text");
  Bytes(&metadata, 1, plugin_data);
  Tag(&tensor, 1, 0);
  Varint(&tensor, 7);         // DT_STRING
  Bytes(&tensor, 2, "");      // a scalar: TensorShapeProto without dims
  Bytes(&tensor, 8, text);
  Bytes(&value, 1, tag);
  Bytes(&value, 8, tensor);
  Bytes(&value, 9, metadata);
  Bytes(&summary, 1, value);
  Bytes(&body, 5, summary);
  WriteEvent(step, body);
}

void EventFileWriter::WriteEvent(int64_t step, const std::string& body) {
  std::string event;
  Fixed(&event, 1, WallTime());
  Tag(&event, 2, 0);
  Varint(&event, uint64_t(step));
  event += body;
  WriteRecord(event);
}

void EventFileWriter::WriteRecord(const std::string& data) {
  char header[12];
  const uint64_t length = data.size();
  std::memcpy(header, &length, 8);
  const uint32_t length_crc = MaskedCrc32c(header, 8), data_crc = MaskedCrc32c(data.data(), data.size());
  std::memcpy(header + 8, &length_crc, 4);
  char footer[4];
  std::memcpy(footer, &data_crc, 4);
  const bool ok = std::fwrite(header, 1, 12, file_) == 12 && std::fwrite(data.data(), 1, data.size(), file_) == data.size() &&
                  std::fwrite(footer, 1, 4, file_) == 4 && std::fflush(file_) == 0;
  LLAMARL_CHECK(ok, "tensorboard: writing to '", path_, "' failed: ", std::strerror(errno), " (is the disk full?)");
}

}  // namespace llamarl
