// TensorBoard event files, written without TensorFlow or protobuf: RUN_DIR/events.out.tfevents.
// <unix seconds>.<host>.<pid>, read by `tensorboard --logdir RUN_DIR` and any TFRecord reader.
//
// Format (TensorFlow's record_writer.cc and event.proto, the few fields used here):
//   record  = uint64 length (little-endian) | uint32 masked_crc32c(length bytes) | data
//             | uint32 masked_crc32c(data)
//   masked  = ((crc >> 15) | (crc << 17)) + 0xa282ead8, crc = CRC-32C (Castagnoli)
//   Event   = 1: wall_time (double) | 2: step (int64) | 3: file_version (string, the first record:
//             "brain.Event:2") | 5: summary (Summary)
//   Summary = repeated 1: Value;  Value = 1: tag (string) | 2: simple_value (float)
//             | 8: tensor (TensorProto) | 9: metadata (SummaryMetadata)
//   text    = a Value whose metadata names plugin "text" (SummaryMetadata 1: plugin_data = {1:
//             plugin_name}) and whose tensor is a DT_STRING scalar (TensorProto 1: dtype = 7,
//             2: tensor_shape = {}, 8: string_val).
// Each record is flushed to the kernel when written, like metrics.jsonl. Not thread-safe.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace llamarl {

// CRC-32C (Castagnoli, reflected polynomial 0x82f63b78) of `size` bytes; Crc32c("123456789") is
// 0xe3069283. MaskedCrc32c is the masked form TFRecord stores.
uint32_t Crc32c(const void* data, size_t size);
uint32_t MaskedCrc32c(const void* data, size_t size);

class EventFileWriter {
 public:
  // Creates a new event file in `dir` (which must exist) and writes the file_version record.
  explicit EventFileWriter(const std::string& dir);
  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  void AddScalar(const std::string& tag, double value, int64_t step);
  // Text for TensorBoard's text plugin (rendered as markdown).
  void AddText(const std::string& tag, const std::string& text, int64_t step);
  const std::string& path() const { return path_; }

 private:
  void WriteEvent(int64_t step, const std::string& body);  // body: the Event fields after wall_time and step
  void WriteRecord(const std::string& data);

  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace llamarl
